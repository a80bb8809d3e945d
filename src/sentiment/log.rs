//! The per-broadcaster vote log, a state-based CRDT ([`VoteLog`]): counting,
//! resets, merge, compaction, and the window and decay views over it.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::{Memory, NodeId, Side, Tally};

/// Width of one counting bucket. Also the resolution of resets and of
/// [`VoteLog::last_vote_ms`].
pub const BUCKET_MS: u64 = 100;

/// Buckets older than this are folded into per-node bases by [`VoteLog::compact`]:
/// the longest finite window (120 s), so no finite window ever needs them again.
pub const FOLD_AFTER_MS: u64 = 120_000;

/// Decay ignores the log once its newest vote is older than this (the value is ~0).
pub(super) const DECAY_HORIZON_MS: u64 = 3_600_000;

/// Points per vote in the decay model, and the bound of its value (±).
const DECAY_POINTS: f64 = 10.0;
const DECAY_LIMIT: f64 = 100.0;

/// Decay speed bounds, per second (see [`Model::Decay`]).
const MIN_SPEED: f64 = 0.1;
const MAX_SPEED: f64 = 2.0;

/// Window lengths are clamped into this range, in seconds (see [`Memory::Seconds`]);
/// the upper bound is what [`FOLD_AFTER_MS`] keeps.
const MIN_WINDOW_S: u32 = 5;
pub(super) const MAX_WINDOW_S: u32 = (FOLD_AFTER_MS / 1000) as u32;

/// A reset: everything counted before `ms` is dropped. Ordered (ms, node)
/// lexicographically so two simultaneous resets still have one winner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Epoch {
    pub(super) ms: u64,
    pub(super) node: NodeId,
}

impl Epoch {
    /// First bucket whose start is at or after the reset.
    pub(super) fn first_bucket(self) -> u64 {
        self.ms.div_ceil(BUCKET_MS)
    }
}

/// One node's votes in one bucket. Only that node increments them, so merging two
/// replicas' copies by `max` never loses a vote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) for_votes: u32,
    pub(super) against_votes: u32,
}

/// One node's folded history: every vote of `node` in buckets `..=through_bucket`
/// counted since `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Base {
    pub(super) through_bucket: u64,
    /// The epoch the base was built under. After every public operation it equals
    /// the log's epoch (older ones are dropped); it makes each base self-describing
    /// in the encoding.
    pub(super) epoch: Epoch,
    pub(super) for_votes: u64,
    pub(super) against_votes: u64,
}

impl Base {
    /// Merge order: newer epoch, then further folded. The counts only break ties
    /// between two replicas that folded the same buckets with different knowledge
    /// (the fuller one wins); they make the order total, hence the merge a join.
    fn rank(&self) -> (Epoch, u64, u64, u64) {
        (
            self.epoch,
            self.through_bucket,
            self.for_votes,
            self.against_votes,
        )
    }
}

/// One broadcaster's votes, as a state-based CRDT: [`VoteLog::merge`] is
/// commutative, associative and idempotent, so nodes can exchange whole logs in any
/// order and converge.
///
/// Layout: votes are counted per [`BUCKET_MS`] bucket and per node; only node `n`
/// increments node `n`'s counters, and copies merge by `max`. [`VoteLog::compact`]
/// folds buckets older than [`FOLD_AFTER_MS`] into one base per node, so memory stays
/// bounded even for [`Memory::Infinite`]; of two bases for a node the further folded
/// one wins. A reset is an epoch `(ms, node)`; the larger epoch wins and drops every
/// bucket starting before it and every base built under an older epoch.
///
/// Merge never drops buckets a base covers; queries skip them and the next
/// `compact` removes them. Dropping them eagerly would make merge depend on order
/// when a reset arrives late.
///
/// Known imprecisions:
/// - A reset that reaches a replica more than 120 s late drops the votes that
///   replica had already folded under the older epoch, including those after the
///   reset (a base cannot be split). Other replicas that still hold those buckets
///   unfolded contribute them back on merge.
/// - Likewise a node's bucket that reaches a replica only after that replica folded
///   past it is lost there (merge keeps the fuller of two equally folded bases).
/// - A reset drops the votes of the rest of its bucket (≤ 100 ms after the reset);
///   a vote whose bucket is already folded (clock > 120 s behind) is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoteLog {
    pub(super) epoch: Epoch,
    pub(super) bases: BTreeMap<NodeId, Base>,
    /// Keyed by (bucket index, node); a few hundred entries between compactions.
    pub(super) buckets: BTreeMap<(u64, NodeId), Counts>,
}

fn bucket_start(bucket: u64) -> u64 {
    bucket.saturating_mul(BUCKET_MS)
}

impl VoteLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one vote of `node` (this node) at `now_ms`.
    pub fn record(&mut self, node: NodeId, side: Side, now_ms: u64) {
        let bucket = now_ms / BUCKET_MS;
        if bucket < self.epoch.first_bucket() || self.is_folded(node, bucket) {
            return;
        }
        let counts = self.buckets.entry((bucket, node)).or_default();
        let counter = match side {
            Side::For => &mut counts.for_votes,
            Side::Against => &mut counts.against_votes,
        };
        *counter = counter.saturating_add(1);
    }

    /// Forgets every vote before `now_ms`. A reset older than the current epoch
    /// (clock skew) loses to it and changes nothing.
    pub fn reset(&mut self, node: NodeId, now_ms: u64) {
        self.raise_epoch(Epoch { ms: now_ms, node });
    }

    /// Joins `other` into `self` (see the type's docs for the rules).
    pub fn merge(&mut self, other: &VoteLog) {
        self.raise_epoch(other.epoch);
        for (&node, base) in &other.bases {
            self.merge_base(node, *base);
        }
        let first = self.epoch.first_bucket();
        for (&key, counts) in other.buckets.range((first, 0)..) {
            let mine = self.buckets.entry(key).or_default();
            mine.for_votes = mine.for_votes.max(counts.for_votes);
            mine.against_votes = mine.against_votes.max(counts.against_votes);
        }
    }

    /// Folds buckets that start more than [`FOLD_AFTER_MS`] before `now_ms` into the
    /// per-node bases and drops buckets a base already covers.
    pub fn compact(&mut self, now_ms: u64) {
        let Some(cutoff_ms) = now_ms.checked_sub(FOLD_AFTER_MS) else {
            return;
        };
        let recent = self.buckets.split_off(&(cutoff_ms.div_ceil(BUCKET_MS), 0));
        let old = std::mem::replace(&mut self.buckets, recent);
        // Ascending (bucket, node) order: each node's buckets fold oldest first.
        for ((bucket, node), counts) in old {
            self.fold(node, bucket, counts);
        }
        let bases = &self.bases;
        self.buckets
            .retain(|&(bucket, node), _| !covered(bases, node, bucket));
    }

    /// Votes in buckets starting at or after `now_ms − memory`; `Infinite` counts
    /// everything since the epoch, folded bases included. `Seconds` is clamped into
    /// 5..=120.
    pub fn window(&self, memory: Memory, now_ms: u64) -> Tally {
        let mut tally = Tally::default();
        let first_bucket = match memory {
            Memory::Infinite => {
                for base in self.bases.values() {
                    tally.add(base.for_votes, base.against_votes);
                }
                0
            }
            Memory::Seconds(s) => {
                let span_ms = u64::from(s.clamp(MIN_WINDOW_S, MAX_WINDOW_S)) * 1000;
                now_ms.saturating_sub(span_ms).div_ceil(BUCKET_MS)
            }
        };
        for (_, counts) in self.live_buckets(first_bucket) {
            tally.add(counts.for_votes.into(), counts.against_votes.into());
        }
        tally
    }

    /// REV A decay value: clamp(Σ (for − against)·10·e^(−speed·Δt), −100, 100) over
    /// the unfolded buckets, Δt in seconds from the bucket's start to `now_ms`
    /// (a bucket in the future counts as Δt = 0). `speed` is clamped into 0.1..=2.0
    /// (NaN → 0.1). 0.0 once the newest unfolded vote is older than 3600 s.
    ///
    /// Folded bases are ignored: at the slowest speed a vote 120 s old weighs
    /// e^−12 ≈ 6·10⁻⁶ of its 10 points.
    ///
    /// Unlike REV A, which clamped the running value at each vote, this clamps
    /// lazily at read: 12 votes at once then 1 s at speed 1 read 120·e^−1 ≈ 44.1
    /// here, 100·e^−1 ≈ 36.8 in REV A. Below the bound the two agree.
    pub fn decay_value(&self, speed: f64, now_ms: u64) -> f64 {
        let speed = if speed.is_nan() {
            MIN_SPEED
        } else {
            speed.clamp(MIN_SPEED, MAX_SPEED)
        };
        let newest = self.buckets.last_key_value().map(|(&(b, _), _)| b);
        match newest {
            Some(b) if now_ms.saturating_sub(bucket_start(b)) <= DECAY_HORIZON_MS => {}
            _ => return 0.0,
        }
        self.decay_sum(speed, now_ms)
            .clamp(-DECAY_LIMIT, DECAY_LIMIT)
    }

    /// Start of the newest bucket holding a vote (folded or not), at bucket
    /// resolution.
    pub fn last_vote_ms(&self) -> Option<u64> {
        let unfolded = self.buckets.last_key_value().map(|(&(b, _), _)| b);
        let folded = self.bases.values().map(|b| b.through_bucket).max();
        unfolded.max(folded).map(bucket_start)
    }

    /// No vote since the epoch. The epoch itself may still matter to a merge.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.bases.is_empty()
    }

    /// When the last reset happened (0 if never).
    pub fn epoch_ms(&self) -> u64 {
        self.epoch.ms
    }

    /// Unclamped decay sum, one `exp` per bucket (all nodes' votes netted first).
    fn decay_sum(&self, speed: f64, now_ms: u64) -> f64 {
        let mut sum = 0.0;
        let mut current: Option<(u64, i64)> = None;
        for (bucket, counts) in self.live_buckets(0) {
            let net = i64::from(counts.for_votes) - i64::from(counts.against_votes);
            match &mut current {
                Some((b, acc)) if *b == bucket => *acc += net,
                _ => {
                    if let Some((b, n)) = current.replace((bucket, net)) {
                        sum += decay_term(b, n, speed, now_ms);
                    }
                }
            }
        }
        if let Some((b, n)) = current {
            sum += decay_term(b, n, speed, now_ms);
        }
        sum
    }

    fn raise_epoch(&mut self, epoch: Epoch) {
        if epoch <= self.epoch {
            return;
        }
        self.epoch = epoch;
        self.bases.retain(|_, base| base.epoch == epoch);
        self.buckets = self.buckets.split_off(&(epoch.first_bucket(), 0));
    }

    fn merge_base(&mut self, node: NodeId, base: Base) {
        // A base under an older epoch counts votes from before the reset.
        if base.epoch != self.epoch {
            return;
        }
        match self.bases.entry(node) {
            Entry::Vacant(slot) => {
                slot.insert(base);
            }
            Entry::Occupied(mut slot) if base.rank() > slot.get().rank() => {
                slot.insert(base);
            }
            Entry::Occupied(_) => {}
        }
    }

    /// Adds one old bucket to its node's base unless the base already covers it.
    fn fold(&mut self, node: NodeId, bucket: u64, counts: Counts) {
        if self.is_folded(node, bucket) {
            return;
        }
        let epoch = self.epoch;
        let base = self.bases.entry(node).or_insert(Base {
            through_bucket: bucket,
            epoch,
            for_votes: 0,
            against_votes: 0,
        });
        base.through_bucket = bucket;
        base.for_votes = base.for_votes.saturating_add(counts.for_votes.into());
        base.against_votes = base
            .against_votes
            .saturating_add(counts.against_votes.into());
    }

    fn is_folded(&self, node: NodeId, bucket: u64) -> bool {
        covered(&self.bases, node, bucket)
    }

    /// Buckets from `first_bucket` on that no base covers, in key order.
    fn live_buckets(&self, first_bucket: u64) -> impl Iterator<Item = (u64, &Counts)> {
        self.buckets
            .range((first_bucket, 0)..)
            .filter(|&(&(bucket, node), _)| !self.is_folded(node, bucket))
            .map(|(&(bucket, _), counts)| (bucket, counts))
    }
}

fn covered(bases: &BTreeMap<NodeId, Base>, node: NodeId, bucket: u64) -> bool {
    bases.get(&node).is_some_and(|b| bucket <= b.through_bucket)
}

/// One bucket's contribution to the decay value.
fn decay_term(bucket: u64, net: i64, speed: f64, now_ms: u64) -> f64 {
    if net == 0 {
        return 0.0;
    }
    let dt_s = now_ms.saturating_sub(bucket_start(bucket)) as f64 / 1000.0;
    net as f64 * DECAY_POINTS * (-speed * dt_s).exp()
}
