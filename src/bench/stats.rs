//! Pure helpers of the load tool: latency percentiles (nearest rank) and a
//! fixed-rate pacer. Unit-tested; no clocks inside.

/// Nearest-rank percentile of an ascending-sorted slice; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summary of a set of latency samples (microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Summary {
    /// The report's latency line; `note` goes inside the closing parenthesis.
    pub fn line(&self, note: &str) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "latency ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (n={}{note})",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

pub fn summarize(samples: &mut [u64]) -> Summary {
    samples.sort_unstable();
    let at = |p| percentile(samples, p).unwrap_or(0);
    Summary {
        count: samples.len() as u64,
        p50: at(50.0),
        p90: at(90.0),
        p99: at(99.0),
        max: samples.last().copied().unwrap_or(0),
    }
}

/// How many events a fixed rate owes by a point in time: sending
/// `due(elapsed) - sent` each tick keeps the long-run rate exact whatever the
/// tick jitter.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    per_second: f64,
}

impl Pacer {
    pub fn new(per_second: f64) -> Self {
        Pacer {
            per_second: per_second.max(0.0),
        }
    }

    pub fn due(&self, elapsed_micros: u64) -> u64 {
        (self.per_second * elapsed_micros as f64 / 1e6).floor() as u64
    }
}

/// Reads `"key":<integer>` from a JSON text without parsing all of it (frames
/// are flat objects we produce ourselves; this keeps the client cheap).
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let start = text.find(&pat)? + pat.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        let mut s = vec![5, 1, 4, 2, 3];
        assert_eq!(
            summarize(&mut s),
            Summary {
                count: 5,
                p50: 3,
                p90: 5,
                p99: 5,
                max: 5
            }
        );
    }

    #[test]
    fn pacer_keeps_the_rate() {
        let p = Pacer::new(2000.0);
        assert_eq!(p.due(0), 0);
        assert_eq!(p.due(499), 0);
        assert_eq!(p.due(500), 1);
        assert_eq!(p.due(1_000_000), 2000);
        assert_eq!(p.due(30_000_000), 60_000);
        assert_eq!(Pacer::new(-1.0).due(1_000_000), 0);
    }

    #[test]
    fn json_fields() {
        let f = r#"{"type":"update","seq":12,"ts":1764066276123,"forRatio":0.5}"#;
        assert_eq!(json_u64(f, "ts"), Some(1764066276123));
        assert_eq!(json_u64(f, "seq"), Some(12));
        assert_eq!(json_u64(f, "nope"), None);
    }
}
