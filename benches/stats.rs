//! Summaries of latency samples.

/// The `q` quantile (0..=1) of sorted samples, in microseconds.
pub fn quantile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let at = ((sorted_ns.len() - 1) as f64 * q).round() as usize;
    sorted_ns[at] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_from_sorted_samples() {
        let s: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_us(&s, 0.5), 51.0);
        assert_eq!(quantile_us(&s, 0.99), 99.0);
        assert_eq!(quantile_us(&[], 0.5), 0.0);
    }
}
