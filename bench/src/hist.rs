//! Latency histograms (hdrhistogram, nanosecond values) and their report form, plus small
//! helpers shared by the reports: ratios and the resident set size from `/proc/self/statm`.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A histogram of nanosecond values from 1 ns to 60 s with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl Percentiles {
    /// The percentiles of `h` (values in nanoseconds).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// `a / b`, or 0 when `b` is not positive (a missing limit, not an infinite ratio).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Resident set size of this process in bytes (`/proc/self/statm`, field 2 × page size);
/// 0 where `/proc` is not available.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| parse_statm_rss(&s)).unwrap_or(0)
}

/// Resident bytes from the text of `/proc/self/statm` (4 KiB pages).
pub fn parse_statm_rss(statm: &str) -> Option<u64> {
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform_1_to_1000_us() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        // 3 significant digits: within 0.1 % of the exact order statistic.
        assert!((p.p50_us - 500.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99_us - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.p999_us - 999.0).abs() <= 1.0, "{p:?}");
        assert!((p.max_us - 1000.0).abs() <= 1.0, "{p:?}");
    }

    #[test]
    fn tail_is_seen_by_p999_not_p99() {
        let mut h = new_histogram();
        h.record_n(2_000, 9_980).unwrap();
        h.record_n(500_000, 20).unwrap();
        let p = Percentiles::of(&h);
        assert!((p.p99_us - 2.0).abs() < 0.01, "{p:?}");
        assert!((p.p999_us - 500.0).abs() < 0.5, "{p:?}");
    }

    #[test]
    fn ratio_and_statm() {
        assert_eq!(ratio(3.0, 4.0), 0.75);
        assert_eq!(ratio(1.0, 0.0), 0.0);
        assert_eq!(parse_statm_rss("1000 250 100 10 0 300 0\n"), Some(250 * 4096));
        assert_eq!(parse_statm_rss("garbage"), None);
        assert!(rss_bytes() > 0);
    }
}
