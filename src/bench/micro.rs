//! Micro-benchmarks of the hot pure paths (`chatpulse-bench micro`), on stable
//! Rust: each case runs in batches sized to ~50 ms, 7 samples, median ns/op.
//! Numbers are noisy on a shared machine; BENCHMARKS.md records medians, and
//! `valgrind --tool=callgrind` gives repeatable instruction counts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::channel::OverlayConfig;
use crate::sentiment::{self, Debouncer, Memory, Model, Side, TokenBucket, VoteLog};

const SAMPLES: usize = 7;
const SAMPLE_TARGET: Duration = Duration::from_millis(50);

pub struct Result {
    pub name: &'static str,
    pub ns_per_op: f64,
}

/// Median ns per call of `f` over [`SAMPLES`] batches.
pub fn measure(name: &'static str, mut f: impl FnMut(u64)) -> Result {
    // Size a batch so it takes about SAMPLE_TARGET.
    let mut batch: u64 = 1;
    loop {
        let t = Instant::now();
        for i in 0..batch {
            f(i);
        }
        if t.elapsed() >= SAMPLE_TARGET / 4 || batch >= 1 << 30 {
            let per = t.elapsed().as_nanos() as f64 / batch as f64;
            batch = ((SAMPLE_TARGET.as_nanos() as f64 / per.max(0.1)) as u64).max(1);
            break;
        }
        batch *= 4;
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for i in 0..batch {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    Result {
        name,
        ns_per_op: samples[SAMPLES / 2],
    }
}

/// The cases; `extra` lets callers add paths that live elsewhere (IRC, HMAC).
pub fn run_all(extra: Vec<Result>) -> Vec<Result> {
    let triggers_for: Vec<String> = ["yes", "y", "1", "PogChamp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let triggers_against: Vec<String> = ["no", "n", "2", "NotLikeThis"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = vec![
        measure("trigger match (hit, ASCII)", |_| {
            black_box(sentiment::match_trigger(
                black_box("  POGCHAMP "),
                &triggers_for,
                &triggers_against,
            ));
        }),
        measure("trigger match (miss, chat line)", |_| {
            black_box(sentiment::match_trigger(
                black_box("that was a great play honestly"),
                &triggers_for,
                &triggers_against,
            ));
        }),
    ];
    let mut log = VoteLog::new();
    let mut bucket = TokenBucket::new(1e12, 1e12, 0);
    let mut debounce = Debouncer::new(1000);
    let mut chatter = String::new();
    out.push(measure("vote: debounce + bucket + log record", |i| {
        use std::fmt::Write;
        chatter.clear();
        let _ = write!(chatter, "{}", i % 10_000);
        let now = 1_000_000 + i / 20;
        if debounce.accept("streamer", &chatter, now) && bucket.try_take(now) {
            log.record(1, if i % 3 == 0 { Side::Against } else { Side::For }, now);
        }
        if i % 100_000 == 0 {
            debounce.prune(now);
        }
    }));
    let mut busy = VoteLog::new();
    for i in 0..1200u64 {
        busy.record(
            1,
            if i % 2 == 0 { Side::For } else { Side::Against },
            1_000_000 + i * 100,
        );
    }
    let now = 1_000_000 + 120_000;
    out.push(measure("snapshot: 30 s window over 1200 buckets", |_| {
        black_box(sentiment::snapshot(
            &busy,
            Model::Window(Memory::Seconds(30)),
            black_box(now),
        ));
    }));
    let cfg = OverlayConfig::default();
    let snap = sentiment::snapshot(&busy, cfg.model, now);
    out.push(measure("frame encode", |i| {
        black_box(crate::frame::encode("update", i, now, &snap, &cfg));
    }));
    out.extend(extra);
    out
}

pub fn table(results: &[Result]) -> String {
    let mut s = String::from("case                                        ns/op      ops/s\n");
    for r in results {
        s.push_str(&format!(
            "{:<42} {:>8.1} {:>10.0}\n",
            r.name,
            r.ns_per_op,
            1e9 / r.ns_per_op.max(1e-9)
        ));
    }
    s
}
