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
    out.extend(ingestion());
    out.extend(extra);
    out
}

/// Parsing and verification on the chat ingestion paths.
fn ingestion() -> Vec<Result> {
    use crate::chat::irc::parse;
    use crate::chat::webhook::verify;
    // Twitch's documented PRIVMSG example (tags reference), as received.
    const LINE: &str = "@badge-info=;badges=global_mod/1,turbo/1;color=#0D4200;display-name=ronni;\
emotes=25:0-4,12-16/1902:6-10;id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;mod=0;room-id=1337;\
subscriber=0;tmi-sent-ts=1507246572675;turbo=1;user-id=1337;user-type=global_mod \
:ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #ronni :Kappa Keepo Kappa";
    let mut out = vec![measure("IRC PRIVMSG parse (tags + fields)", |_| {
        if let Ok(msg) = parse::parse_line(black_box(LINE)) {
            black_box(msg.privmsg());
        }
    })];
    let mut framed = Vec::new();
    for _ in 0..64 {
        framed.extend_from_slice(LINE.as_bytes());
        framed.extend_from_slice(b"\r\n");
    }
    let mut lines = parse::LineBuffer::new();
    out.push(measure("IRC framing + parse, per line (64/read)", |i| {
        if i % 64 == 0 {
            lines.extend(&framed);
        }
        if let Some(Ok(line)) = lines.next_line()
            && let Ok(msg) = parse::parse_line(line)
        {
            black_box(msg.privmsg());
        }
    }));
    let body = br#"{"subscription":{"id":"ae2ff348-e102-16be-a3eb-6830c1bf38d2","status":"enabled","type":"channel.follow","version":"1","condition":{"broadcaster_user_id":"44429626"},"transport":{"method":"webhook","callback":"null"},"created_at":"2021-02-19T23:47:00.7621315Z"},"event":{"user_id":"28408015","user_login":"testFromUser","user_name":"testFromUser","broadcaster_user_id":"44429626","broadcaster_user_login":"44429626","broadcaster_user_name":"testBroadcaster"}}"#;
    let (id, ts) = (
        "ae2ff348-e102-16be-a3eb-6830c1bf38d2",
        "2021-02-19T23:47:00.8091512Z",
    );
    let header = "sha256=d10f5bd9474b7ac7bd7105eb79c2d52768b4d0cd2a135982c3bf5a1d59a78823";
    assert!(
        verify::signature_ok(b"secretabcd", id, ts, body, header),
        "documented vector"
    );
    out.push(measure("webhook HMAC-SHA256 verify (458 B body)", |_| {
        black_box(verify::signature_ok(
            b"secretabcd",
            id,
            ts,
            black_box(body),
            header,
        ));
    }));
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
