//! The `[telemetry]` table: where traces are exported. The OpenTelemetry
//! SDK's own variables (`OTEL_EXPORTER_OTLP_ENDPOINT` and the rest) set
//! the same keys, read where the environment is read (after the file,
//! before `--set` flags: see `sources`).

use std::collections::BTreeMap;
use std::time::Duration;

use mcp_provider_core::telemetry::otlp::{Format, Resource};
use mcp_provider_core::telemetry::Sampler;
use mcp_provider_kit::telemetry::{check_header, parse_headers, traces_url, Settings as Export};
use serde::{Deserialize, Serialize};

use super::BadSettings;

/// The service name spans are reported under when none is given.
pub const DEFAULT_SERVICE_NAME: &str = "mcp-provider";

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The collector's base URL: traces go to its `/v1/traces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The traces URL itself (wins over `endpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces_endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Sent with each export; often credentials, so never printed back.
    /// A table, or `key=value,…` with URL-encoded values.
    #[serde(default, deserialize_with = "headers", skip_serializing)]
    pub headers: BTreeMap<String, String>,
    /// `OTEL_TRACES_SAMPLER`'s names; `parentbased_always_on` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler_arg: Option<String>,
    /// Nothing is traced or exported, whatever else is set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Spans carry content: the prompts and answers of model requests,
    /// the arguments and results of tool calls (each cut to 4 KiB).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture_content: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_export_batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_size: Option<usize>,
}

/// The OpenTelemetry SDK's variables and the keys they set, the generic
/// ones before the traces-only ones, which win.
pub(super) const OTEL_VARIABLES: [(&str, &str); 16] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "endpoint"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "traces_endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "protocol"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "protocol"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "headers"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "headers"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "timeout_ms"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "timeout_ms"),
    ("OTEL_SERVICE_NAME", "service_name"),
    ("OTEL_TRACES_SAMPLER", "sampler"),
    ("OTEL_TRACES_SAMPLER_ARG", "sampler_arg"),
    ("OTEL_SDK_DISABLED", "disabled"),
    ("OTEL_BSP_SCHEDULE_DELAY", "schedule_delay_ms"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "max_export_batch_size"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "max_queue_size"),
    (
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        "capture_content",
    ),
];

/// An OpenTelemetry variable's value as its key's TOML value: numbers for
/// the numeric keys, `disabled` and `capture_content` true only for `true`
/// (any case, as the specification says), text as it is otherwise.
pub(super) fn otel_value(key: &str, text: &str) -> toml::Value {
    let text = text.trim();
    match key {
        "disabled" | "capture_content" => toml::Value::Boolean(text.eq_ignore_ascii_case("true")),
        "timeout_ms" | "schedule_delay_ms" | "max_export_batch_size" | "max_queue_size" => {
            text.parse::<i64>().map_or_else(
                |_| toml::Value::String(text.to_owned()),
                toml::Value::Integer,
            )
        }
        _ => toml::Value::String(text.to_owned()),
    }
}

/// Headers from a table, or from `key=value,…` text.
fn headers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrTable {
        Text(String),
        Table(BTreeMap<String, String>),
    }
    let pairs = match TextOrTable::deserialize(d)? {
        TextOrTable::Text(text) => parse_headers(&text).map_err(serde::de::Error::custom)?,
        TextOrTable::Table(table) => table.into_iter().collect(),
    };
    for (key, value) in &pairs {
        check_header(key, value).map_err(serde::de::Error::custom)?;
    }
    Ok(pairs.into_iter().collect())
}

impl TelemetrySettings {
    pub fn is_default(&self) -> bool {
        self == &TelemetrySettings::default()
    }

    /// The exporter's settings: `None` when no endpoint is set or the SDK
    /// is disabled; an error for a value that cannot be used.
    pub fn export(&self) -> Result<Option<Export>, BadSettings> {
        let bad =
            |key: &str, why: String| BadSettings(format!("bad setting `telemetry.{key}`: {why}"));
        let url = traces_url(self.endpoint.as_deref(), self.traces_endpoint.as_deref()).map_err(
            |why| match self.traces_endpoint {
                Some(_) => bad("traces_endpoint", why.to_string()),
                None => bad("endpoint", why.to_string()),
            },
        )?;
        // Checked even when disabled or unset, so a typo shows at once.
        let format = Format::parse(self.protocol.as_deref().unwrap_or("http/protobuf"))
            .map_err(|why| bad("protocol", why))?;
        let sampler = match &self.sampler {
            Some(name) => Sampler::parse(name, self.sampler_arg.as_deref())
                .map_err(|why| bad("sampler", why))?,
            None => Sampler::default(),
        };
        let positive = |key: &str, n: Option<usize>| match n {
            Some(0) => Err(bad(key, "must be at least 1".to_owned())),
            _ => Ok(()),
        };
        positive("max_export_batch_size", self.max_export_batch_size)?;
        positive("max_queue_size", self.max_queue_size)?;
        let (Some(url), false) = (url, self.disabled) else {
            return Ok(None);
        };
        let service = self
            .service_name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let mut export = Export::new(
            url,
            Resource::new(
                service.unwrap_or(DEFAULT_SERVICE_NAME),
                env!("CARGO_PKG_VERSION"),
            ),
        );
        export.format = format;
        export.sampler = sampler;
        export.capture_content = self.capture_content;
        export.headers = self.headers.clone().into_iter().collect();
        if let Some(ms) = self.timeout_ms {
            export.timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = self.schedule_delay_ms {
            export.schedule_delay = Duration::from_millis(ms);
        }
        export.max_queue = self.max_queue_size.unwrap_or(export.max_queue);
        export.max_batch = self
            .max_export_batch_size
            .unwrap_or(export.max_batch)
            .min(export.max_queue);
        Ok(Some(export))
    }
}
