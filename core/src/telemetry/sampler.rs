//! Which traces are recorded: the samplers `OTEL_TRACES_SAMPLER` names.

use super::{SpanContext, TraceId};

/// A sampling rule (`parentbased_always_on` by default).
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// This fraction of traces, chosen by trace id so every process of a
    /// trace decides the same.
    Ratio(f64),
    /// As the caller decided when there is one; else by the rule inside.
    ParentBased(Box<Sampler>),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
    }
}

impl Sampler {
    /// The sampler `OTEL_TRACES_SAMPLER` names, with `OTEL_TRACES_SAMPLER_ARG`
    /// for the ratio (1.0 when missing or not a number in 0..=1), or the
    /// error to report for a name this does not know.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || {
            let r = arg
                .and_then(|a| a.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            Sampler::Ratio(if (0.0..=1.0).contains(&r) { r } else { 1.0 })
        };
        let parent = |root| Sampler::ParentBased(Box::new(root));
        Ok(match name.trim() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => ratio(),
            "parentbased_always_on" => parent(Sampler::AlwaysOn),
            "parentbased_always_off" => parent(Sampler::AlwaysOff),
            "parentbased_traceidratio" => parent(ratio()),
            other => {
                return Err(format!(
                    "unknown sampler `{other}` (always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
                ))
            }
        })
    }

    /// Whether a span of `trace` under `parent` is recorded.
    pub fn samples(&self, parent: Option<&SpanContext>, trace: TraceId) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio(r) => {
                // The trace id's last 8 bytes, as the specification's
                // reference samplers read them.
                let mut low = [0u8; 8];
                low.copy_from_slice(&trace.0[8..]);
                let bound = (r * (u64::MAX as f64)) as u64;
                *r >= 1.0 || u64::from_be_bytes(low) < bound
            }
            Sampler::ParentBased(root) => match parent {
                Some(p) => p.sampled,
                None => root.samples(None, trace),
            },
        }
    }
}
