//! The few statistics the benchmark rows share: percentiles, medians and
//! this process's peak resident set size.

use std::time::Duration;

/// The `p`-th percentile (0.0–1.0) of `samples`, nearest rank; zero when
/// there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let rank = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted[rank.min(last)]
}

/// The median of `values` (the lower middle for an even count); zero when
/// there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Milliseconds, for table cells.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// This process's peak resident set size so far, in MiB (Linux's
/// `VmHWM`, what GNU time reports as maximum resident set size); `None`
/// where /proc does not say.
pub fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The peak RSS cell of a row.
pub fn rss_cell() -> String {
    peak_rss_mib().map_or_else(|| "n/a".into(), |m| format!("{m} MiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.0);
    }
}
