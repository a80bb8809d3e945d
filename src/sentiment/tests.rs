//! Unit tests for triggers, the vote log, its encoding, the views and the limits.

use super::log::DECAY_HORIZON_MS;
use super::*;
use crate::rng::XorShift;

fn list(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// --- triggers -----------------------------------------------------------

#[test]
fn trigger_trims_and_ignores_case() {
    let (f, a) = (list(&["yes"]), list(&["no"]));
    assert_eq!(match_trigger("  YeS \t\n", &f, &a), Some(Side::For));
    assert_eq!(match_trigger("NO", &f, &a), Some(Side::Against));
    assert_eq!(match_trigger("maybe", &f, &a), None);
    assert_eq!(match_trigger("   ", &f, &a), None);
    assert_eq!(match_trigger("", &f, &a), None);
}

#[test]
fn trigger_unicode_case() {
    let (f, a) = (list(&["JA"]), list(&["ÄH"]));
    assert_eq!(match_trigger("ja", &f, &a), Some(Side::For));
    assert_eq!(match_trigger("äh", &f, &a), Some(Side::Against));
    assert_eq!(match_trigger("Äh", &f, &a), Some(Side::Against));
    assert_eq!(match_trigger("ah", &f, &a), None);
    // Kelvin sign lower-cases to ASCII k: the slow path must catch it.
    assert_eq!(
        match_trigger("\u{212A}", &list(&["k"]), &[]),
        Some(Side::For)
    );
    // Position-independent sigma: both lower forms match the capital.
    let sigma = list(&["ΝΑΣ"]);
    assert_eq!(match_trigger("νας", &sigma, &[]), Some(Side::For));
    assert_eq!(match_trigger("νασ", &sigma, &[]), Some(Side::For));
}

#[test]
fn trigger_substrings_never_match() {
    let (f, a) = (list(&["yes"]), list(&["no"]));
    assert_eq!(match_trigger("yes please", &f, &a), None);
    assert_eq!(match_trigger("nope", &f, &a), None);
    assert_eq!(match_trigger("ye", &f, &a), None);
    assert_eq!(match_trigger("ä", &list(&["äh"]), &a), None);
}

#[test]
fn trigger_for_wins_and_lists() {
    let f = list(&["1", "yes", "Y"]);
    let a = list(&["2", "no", "y"]);
    assert_eq!(match_trigger("y", &f, &a), Some(Side::For));
    assert_eq!(match_trigger("1", &f, &a), Some(Side::For));
    assert_eq!(match_trigger("2", &f, &a), Some(Side::Against));
    assert_eq!(match_trigger("No", &f, &a), Some(Side::Against));
    assert_eq!(match_trigger("x", &[], &[]), None);
}

#[test]
fn trigger_blank_never_matches() {
    let blank = list(&["", "  "]);
    assert_eq!(match_trigger("", &blank, &blank), None);
    assert_eq!(match_trigger(" ", &blank, &blank), None);
    assert_eq!(match_trigger("a", &blank, &blank), None);
    assert_eq!(
        match_trigger("yes", &list(&[" yes "]), &[]),
        Some(Side::For)
    );
}

// --- tally, window, compaction --------------------------------------------

#[test]
fn tally_ratios() {
    assert_eq!(Tally::default().ratios(), (0.0, 0.0));
    let t = Tally {
        for_votes: 3,
        against_votes: 1,
    };
    assert_eq!(t.total(), 4);
    assert_eq!(t.ratios(), (0.75, 0.25));
}

#[test]
fn window_expires_exactly_at_boundary() {
    let mut log = VoteLog::new();
    let t = 1_000_000;
    log.record(1, Side::For, t + 50); // bucket starts at t
    log.record(1, Side::Against, t + 5_000);
    let w = Memory::Seconds(10);
    assert_eq!(log.window(w, t + 10_000).for_votes, 1);
    assert_eq!(log.window(w, t + 10_001).for_votes, 0);
    assert_eq!(log.window(w, t + 10_001).against_votes, 1);
    assert_eq!(log.window(w, t + 15_000).against_votes, 1);
    assert_eq!(log.window(w, t + 15_001).total(), 0);
}

#[test]
fn window_seconds_are_clamped() {
    let mut log = VoteLog::new();
    log.record(1, Side::For, 1_000_000);
    // 1 s asks for less than the 5 s minimum; 10 000 s for more than 120 s.
    assert_eq!(log.window(Memory::Seconds(1), 1_005_000).for_votes, 1);
    assert_eq!(log.window(Memory::Seconds(10_000), 1_120_001).for_votes, 0);
    assert_eq!(log.window(Memory::Infinite, 9_000_000).for_votes, 1);
}

#[test]
fn infinite_memory_survives_compaction() {
    let mut log = VoteLog::new();
    for i in 0..1000u64 {
        let side = if i % 3 == 0 { Side::Against } else { Side::For };
        log.record(i % 2, side, 10_000 + i * 997);
        log.compact(10_000 + i * 997);
    }
    let now = 10_000 + 1000 * 997;
    let before = log.window(Memory::Infinite, now);
    assert_eq!(before.total(), 1000);
    assert_eq!(before.against_votes, 334);
    log.compact(now + 10 * FOLD_AFTER_MS);
    assert_eq!(log.window(Memory::Infinite, now), before);
    assert!(log.buckets.is_empty());
    assert_eq!(log.bases.len(), 2);
    assert_eq!(log.last_vote_ms(), Some(10_000 + 999 * 997 / 100 * 100));
}

#[test]
fn compaction_keeps_every_finite_window() {
    let mut log = VoteLog::new();
    for i in 0..300u64 {
        log.record(7, Side::For, 500_000 + i * 1000);
    }
    let now = 500_000 + 300 * 1000;
    let before = log.window(Memory::Seconds(120), now);
    log.compact(now);
    assert_eq!(log.window(Memory::Seconds(120), now), before);
    assert_eq!(before.for_votes, 120);
    assert_eq!(log.window(Memory::Infinite, now).for_votes, 300);
    // Only about 120 s of buckets stay unfolded.
    assert!(log.buckets.len() <= 121);
}

#[test]
fn reset_then_votes() {
    let mut log = VoteLog::new();
    for i in 0..10 {
        log.record(1, Side::For, 1_000 + i * 10);
    }
    log.compact(200_000);
    log.record(1, Side::Against, 200_000);
    log.reset(2, 200_050);
    assert_eq!(log.epoch_ms(), 200_050);
    assert!(log.is_empty());
    assert_eq!(log.window(Memory::Infinite, 200_100).total(), 0);
    // Rest of the reset's bucket is dropped; the next one counts.
    log.record(1, Side::For, 200_080);
    log.record(1, Side::For, 200_100);
    log.record(1, Side::Against, 201_000);
    let t = log.window(Memory::Infinite, 201_000);
    assert_eq!((t.for_votes, t.against_votes), (1, 1));
    // An older reset (skewed clock) loses.
    log.reset(9, 100_000);
    assert_eq!(log.epoch_ms(), 200_050);
    assert_eq!(log.window(Memory::Infinite, 201_000).total(), 2);
}

#[test]
fn last_vote_and_empty() {
    let mut log = VoteLog::new();
    assert!(log.is_empty());
    assert_eq!(log.last_vote_ms(), None);
    log.record(3, Side::For, 12_345);
    assert!(!log.is_empty());
    assert_eq!(log.last_vote_ms(), Some(12_300));
}

// --- decay ---------------------------------------------------------------

#[test]
fn decay_single_vote_at_bucket_boundaries() {
    for speed in [0.1, 0.5, 1.0, 2.0] {
        let mut log = VoteLog::new();
        log.record(1, Side::For, 50_000);
        for dt_ms in [0u64, 100, 1_000, 2_500, 60_000] {
            let want = 10.0 * (-speed * dt_ms as f64 / 1000.0).exp();
            assert!(approx(log.decay_value(speed, 50_000 + dt_ms), want));
        }
        let mut against = VoteLog::new();
        against.record(1, Side::Against, 50_000);
        assert!(approx(
            against.decay_value(speed, 51_000),
            -10.0 * (-speed).exp()
        ));
    }
}

#[test]
fn decay_matches_rev_a_below_the_bound() {
    // REV A: 80, then one second later a +10 vote: 80·e^−1 + 10.
    let mut log = VoteLog::new();
    for node in 0..8 {
        log.record(node, Side::For, 10_000);
    }
    assert!(approx(log.decay_value(1.0, 10_000), 80.0));
    log.record(0, Side::For, 11_000);
    let want = 80.0 * (-1.0f64).exp() + 10.0;
    assert!(approx(log.decay_value(1.0, 11_000), want));
}

#[test]
fn decay_clamps_lazily_at_read() {
    let mut log = VoteLog::new();
    for _ in 0..12 {
        log.record(1, Side::For, 10_000);
    }
    assert_eq!(log.decay_value(1.0, 10_000), 100.0);
    // REV A would read 100·e^−1; the unclamped sum decays from 120.
    assert!(approx(
        log.decay_value(1.0, 11_000),
        120.0 * (-1.0f64).exp()
    ));
    let mut neg = VoteLog::new();
    for _ in 0..30 {
        neg.record(1, Side::Against, 10_000);
    }
    assert_eq!(neg.decay_value(0.1, 10_000), -100.0);
}

#[test]
fn decay_guards_speed_and_horizon() {
    let mut log = VoteLog::new();
    log.record(1, Side::For, 10_000);
    let slow = 10.0 * (-0.1f64).exp();
    let fast = 10.0 * (-2.0f64).exp();
    assert!(approx(log.decay_value(f64::NAN, 11_000), slow));
    assert!(approx(log.decay_value(-5.0, 11_000), slow));
    assert!(approx(log.decay_value(f64::INFINITY, 11_000), fast));
    assert!(log.decay_value(0.1, 10_000 + DECAY_HORIZON_MS) > 0.0);
    assert_eq!(log.decay_value(0.1, 10_001 + DECAY_HORIZON_MS), 0.0);
    // A future bucket counts as fresh rather than growing exponentially.
    assert!(approx(log.decay_value(1.0, 0), 10.0));
    assert_eq!(VoteLog::new().decay_value(1.0, 10_000), 0.0);
}

#[test]
fn decay_nets_nodes_within_a_bucket() {
    let mut log = VoteLog::new();
    log.record(1, Side::For, 10_000);
    log.record(2, Side::Against, 10_010);
    log.record(3, Side::For, 10_020);
    assert!(approx(log.decay_value(1.0, 12_000), 10.0 * (-2.0f64).exp()));
}

// --- snapshot ------------------------------------------------------------

#[test]
fn snapshot_views() {
    let mut log = VoteLog::new();
    log.record(1, Side::For, 100_000);
    log.record(1, Side::Against, 190_000);
    let now = 200_000;
    let window = snapshot(&log, Model::Window(Memory::Seconds(30)), now);
    assert_eq!(window.tally.total(), 1);
    assert_eq!(window.value, 0.0);
    let infinite = snapshot(&log, Model::Window(Memory::Infinite), now);
    assert_eq!(infinite.tally.total(), 2);
    let decay = snapshot(&log, Model::Decay { speed: 1.0 }, now);
    assert_eq!(decay.tally.total(), 2);
    assert!(decay.value < 0.0);
}

// --- merge laws ----------------------------------------------------------

fn merged(a: &VoteLog, b: &VoteLog) -> VoteLog {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// Small logs covering each rule: votes, bases, resets, stale epochs.
fn hand_made_logs() -> Vec<VoteLog> {
    let mut votes = VoteLog::new();
    votes.record(1, Side::For, 10_000);
    votes.record(2, Side::Against, 10_000);
    votes.record(1, Side::For, 200_000);
    let mut folded = votes.clone();
    folded.compact(200_000);
    let mut more = folded.clone();
    more.record(1, Side::For, 10_050); // ignored: already folded
    more.record(2, Side::For, 250_000);
    let mut reset = votes.clone();
    reset.reset(3, 150_000);
    reset.record(3, Side::Against, 160_000);
    let mut tie = VoteLog::new();
    tie.record(1, Side::For, 10_000);
    tie.compact(200_000); // same through as `folded`, fewer votes
    let mut late = votes.clone();
    late.record(1, Side::Against, 130_000);
    late.compact(300_000); // folds past the reset at 150 s
    vec![VoteLog::new(), votes, folded, more, reset, tie, late]
}

/// Replicas with skewed clocks recording, resetting, compacting and gossiping at
/// random; returns snapshots taken along the way plus the final replicas.
fn random_logs(seed: u64) -> Vec<VoteLog> {
    let mut rng = XorShift(seed);
    let mut replicas = vec![VoteLog::new(); 3];
    let mut clocks = [0u64; 3];
    let mut out = Vec::new();
    // Rare resets and frequent compaction, so that bases exist and resets often
    // reach replicas that already folded (the case eager dropping gets wrong).
    for _ in 0..600 {
        let i = rng.below(3) as usize;
        clocks[i] += rng.below(3_000);
        let now = clocks[i];
        match rng.below(100) {
            0 => replicas[i].reset(i as NodeId, now),
            1..=8 => replicas[i].compact(now),
            9..=20 => {
                let other = replicas[rng.below(3) as usize].clone();
                replicas[i].merge(&other);
            }
            n => {
                let side = if n % 2 == 0 { Side::For } else { Side::Against };
                replicas[i].record(i as NodeId, side, now);
            }
        }
        if rng.below(40) == 0 {
            out.push(replicas[i].clone());
        }
    }
    out.extend(replicas);
    out
}

fn all_logs() -> Vec<VoteLog> {
    let mut logs = hand_made_logs();
    for seed in 1..=6u64 {
        logs.extend(random_logs(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    }
    logs
}

#[test]
fn merge_is_idempotent_and_commutative() {
    let logs = all_logs();
    for a in &logs {
        assert_eq!(&merged(a, a), a);
        for b in &logs {
            assert_eq!(merged(a, b), merged(b, a));
        }
    }
}

#[test]
fn merge_is_associative() {
    let logs = all_logs();
    let mut rng = XorShift(42);
    let pick = |rng: &mut XorShift| &logs[rng.below(logs.len() as u64) as usize];
    for _ in 0..3000 {
        let (a, b, c) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
        assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
    }
    let hand = hand_made_logs();
    for a in &hand {
        for b in &hand {
            for c in &hand {
                assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
            }
        }
    }
}

#[test]
fn gossip_converges() {
    for seed in 1..=6 {
        let logs = random_logs(seed);
        let mut forward = VoteLog::new();
        logs.iter().for_each(|l| forward.merge(l));
        let mut backward = VoteLog::new();
        logs.iter().rev().for_each(|l| backward.merge(l));
        assert_eq!(forward, backward);
    }
}

#[test]
fn merge_counts_each_nodes_votes_once() {
    let mut a = VoteLog::new();
    let mut b = VoteLog::new();
    a.record(1, Side::For, 5_000);
    a.record(1, Side::For, 5_010);
    b.record(2, Side::Against, 5_020);
    let mut c = merged(&a, &b);
    c.merge(&a);
    c.merge(&b);
    let t = c.window(Memory::Infinite, 6_000);
    assert_eq!((t.for_votes, t.against_votes), (2, 1));
    // A folded replica and an unfolded one agree.
    let mut folded = c.clone();
    folded.compact(500_000);
    let both = merged(&folded, &c);
    assert_eq!(both.window(Memory::Infinite, 500_000), t);
    let mut compacted = both.clone();
    compacted.compact(500_000);
    assert_eq!(compacted, folded);
}

#[test]
fn merge_applies_the_newer_reset() {
    let mut a = VoteLog::new();
    a.record(1, Side::For, 1_000);
    a.compact(200_000);
    a.record(1, Side::For, 190_000);
    let mut b = VoteLog::new();
    b.reset(2, 150_000);
    b.record(2, Side::Against, 160_000);
    let m = merged(&a, &b);
    assert_eq!(m.epoch_ms(), 150_000);
    let t = m.window(Memory::Infinite, 200_000);
    assert_eq!((t.for_votes, t.against_votes), (1, 1));
}

#[test]
fn late_reset_drops_votes_folded_under_old_epoch() {
    let mut a = VoteLog::new();
    a.record(1, Side::For, 160_000);
    let unfolded = a.clone();
    a.compact(300_000);
    let mut b = VoteLog::new();
    b.reset(2, 150_000);
    // The vote came after the reset, but `a` folded it under epoch 0.
    let m = merged(&a, &b);
    assert_eq!(m.window(Memory::Infinite, 300_000).total(), 0);
    // A replica that still holds the bucket unfolded brings it back.
    let m = merged(&m, &unfolded);
    assert_eq!(m.window(Memory::Infinite, 300_000).for_votes, 1);
}

// --- encoding --------------------------------------------------------------

#[test]
fn encode_round_trips() {
    for log in all_logs() {
        let bytes = log.encode();
        assert_eq!(VoteLog::decode(&bytes), Ok(log));
    }
}

#[test]
fn decode_rejects_truncation_and_trailing() {
    let logs = hand_made_logs();
    let bytes = logs[3].encode();
    for len in 0..bytes.len() {
        assert!(VoteLog::decode(&bytes[..len]).is_err(), "prefix {len}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(VoteLog::decode(&long), Err(DecodeError::TrailingBytes));
    let mut version = bytes.clone();
    version[4] = 9;
    assert_eq!(
        VoteLog::decode(&version),
        Err(DecodeError::UnsupportedVersion(9))
    );
    assert_eq!(VoteLog::decode(b"nope"), Err(DecodeError::BadMagic));
}

#[test]
fn decode_survives_garbage() {
    let mut rng = XorShift(7);
    for _ in 0..2000 {
        let len = rng.below(200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if rng.below(2) == 0 && len >= 5 {
            bytes[..5].copy_from_slice(b"CPVL\x01");
        }
        let _ = VoteLog::decode(&bytes);
    }
    // Corrupted real logs: whatever decodes is canonical.
    for log in all_logs().iter().take(40) {
        let good = log.encode();
        for _ in 0..50 {
            let mut bytes = good.clone();
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = rng.next_u64() as u8;
            if let Ok(decoded) = VoteLog::decode(&bytes) {
                assert_eq!(decoded.encode(), bytes);
            }
        }
    }
    let error: Box<dyn std::error::Error> = Box::new(DecodeError::Invalid("x"));
    assert_eq!(error.to_string(), "invalid vote log: x");
}

// --- limits ----------------------------------------------------------------

#[test]
fn debounce_one_second() {
    let mut d = Debouncer::new(1000);
    assert!(d.accept("chan", "alice", 10_000));
    assert!(!d.accept("chan", "alice", 10_999));
    assert!(d.accept("chan", "bob", 10_500));
    assert!(d.accept("other", "alice", 10_500));
    assert!(d.accept("chan", "alice", 11_000));
    assert!(!d.accept("chan", "alice", 11_500));
    // A clock far behind does not silence the chatter.
    assert!(d.accept("chan", "alice", 5_000));
    assert_eq!(d.len(), 3);
    d.prune(11_499);
    assert_eq!(d.len(), 2);
    d.prune(11_500);
    assert_eq!(d.len(), 0);
    assert!(d.is_empty());
}

#[test]
fn debounce_prune_keeps_live_entries() {
    let mut d = Debouncer::new(1000);
    d.accept("c", "a", 1_000);
    d.accept("c", "b", 1_600);
    d.prune(2_000);
    assert_eq!(d.len(), 1);
    assert!(!d.accept("c", "b", 2_000));
}

#[test]
fn token_bucket_refills_per_minute() {
    let mut b = TokenBucket::new(100.0, 100.0, 0);
    assert!((0..100).all(|_| b.try_take(0)));
    assert!(!b.try_take(0));
    assert!((0..100).all(|_| b.try_take(60_000)));
    assert!(!b.try_take(60_000));
    assert!((0..50).all(|_| b.try_take(90_000)));
    assert!(!b.try_take(90_000));
    // Idle far longer than a minute: still capped at capacity.
    assert!((0..100).all(|_| b.try_take(10_000_000)));
    assert!(!b.try_take(10_000_000));
}

#[test]
fn token_bucket_ignores_backwards_clock() {
    let mut b = TokenBucket::new(10.0, 60.0, 100_000);
    assert!((0..10).all(|_| b.try_take(100_000)));
    assert!(!b.try_take(40_000));
    assert!(!b.try_take(100_500));
    // One second after the latest time seen: one token.
    assert!(b.try_take(101_000));
    assert!(!b.try_take(101_000));
    let mut broken = TokenBucket::new(f64::NAN, -1.0, 0);
    assert!(!broken.try_take(1_000_000));
}
