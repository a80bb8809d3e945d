//! Votes and what the overlay shows of them (pure: no I/O, no clocks; every
//! function takes `now_ms`, Unix milliseconds).
//!
//! Owns: trigger matching of chat messages ([`match_trigger`]), the per-broadcaster
//! vote log that a mesh of nodes can merge ([`VoteLog`], a state-based CRDT) and its
//! binary encoding, the two views the overlay shows ([`snapshot`]: REV B sliding
//! window, REV A exponential decay), and the two per-chatter / per-connection
//! limits ([`Debouncer`], [`TokenBucket`]).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};

/// Identifies the node that counted a vote (random, persisted in redb).
pub type NodeId = u64;

/// Which side a chat message voted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    For,
    Against,
}

/// How far back the sliding window looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// 5..=120 seconds.
    Seconds(u32),
    /// Every vote since the last reset.
    Infinite,
}

/// The two views of one vote log (REV B window, REV A decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Model {
    Window(Memory),
    /// Each vote ±10, decaying as e^(−speed·Δt); speed 0.1..=2.0 per second.
    Decay {
        speed: f64,
    },
}

// ---------------------------------------------------------------------------
// Trigger matching
// ---------------------------------------------------------------------------

/// Which side `text` votes for: the whole message (trimmed) must equal a trigger,
/// case-insensitively. Substrings never match, blank triggers never match, and For
/// wins when a message is in both lists.
///
/// Hot path (every chat line): no allocation. ASCII uses `eq_ignore_ascii_case`;
/// anything else compares `char::to_lowercase` char by char, with ς folded to σ:
/// the same result as comparing `to_lowercase()` strings except that sigma matches
/// in any position, as in the Go reference's `strings.EqualFold`.
pub fn match_trigger(
    text: &str,
    for_triggers: &[String],
    against_triggers: &[String],
) -> Option<Side> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let ascii = text.is_ascii();
    let hit = |triggers: &[String]| triggers.iter().any(|t| same_folded(text, ascii, t));
    if hit(for_triggers) {
        Some(Side::For)
    } else if hit(against_triggers) {
        Some(Side::Against)
    } else {
        None
    }
}

/// Case-insensitive equality of an already trimmed, non-empty `text` with `trigger`.
fn same_folded(text: &str, text_is_ascii: bool, trigger: &str) -> bool {
    // Trimming the trigger too forgives stray spaces in the config; `trim` borrows.
    let trigger = trigger.trim();
    if trigger.is_empty() {
        return false;
    }
    if text_is_ascii && trigger.is_ascii() {
        return text.eq_ignore_ascii_case(trigger);
    }
    lowered(text).eq(lowered(trigger))
}

/// `s` lower-cased lazily, char by char (never collected). Final sigma folds to
/// σ as in Unicode simple case folding, so "ΝΑΣ", "νας" and "νασ" are one word.
fn lowered(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
}

// ---------------------------------------------------------------------------
// Vote log (CRDT)
// ---------------------------------------------------------------------------

/// Width of one counting bucket. Also the resolution of resets and of
/// [`VoteLog::last_vote_ms`].
pub const BUCKET_MS: u64 = 100;

/// Buckets older than this are folded into per-node bases by [`VoteLog::compact`]:
/// the longest finite window (120 s), so no finite window ever needs them again.
pub const FOLD_AFTER_MS: u64 = 120_000;

/// Decay ignores the log once its newest vote is older than this (the value is ~0).
const DECAY_HORIZON_MS: u64 = 3_600_000;

/// Points per vote in the decay model, and the bound of its value (±).
const DECAY_POINTS: f64 = 10.0;
const DECAY_LIMIT: f64 = 100.0;

/// Decay speed bounds, per second (see [`Model::Decay`]).
const MIN_SPEED: f64 = 0.1;
const MAX_SPEED: f64 = 2.0;

/// Window lengths are clamped into this range, in seconds (see [`Memory::Seconds`]);
/// the upper bound is what [`FOLD_AFTER_MS`] keeps.
const MIN_WINDOW_S: u32 = 5;
const MAX_WINDOW_S: u32 = (FOLD_AFTER_MS / 1000) as u32;

/// A reset: everything counted before `ms` is dropped. Ordered (ms, node)
/// lexicographically so two simultaneous resets still have one winner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Epoch {
    ms: u64,
    node: NodeId,
}

impl Epoch {
    /// First bucket whose start is at or after the reset.
    fn first_bucket(self) -> u64 {
        self.ms.div_ceil(BUCKET_MS)
    }
}

/// One node's votes in one bucket. Only that node increments them, so merging two
/// replicas' copies by `max` never loses a vote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    for_votes: u32,
    against_votes: u32,
}

/// One node's folded history: every vote of `node` in buckets `..=through_bucket`
/// counted since `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Base {
    through_bucket: u64,
    /// The epoch the base was built under. After every public operation it equals
    /// the log's epoch (older ones are dropped); it makes each base self-describing
    /// in the encoding.
    epoch: Epoch,
    for_votes: u64,
    against_votes: u64,
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

/// Vote count of one view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub for_votes: u64,
    pub against_votes: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.for_votes.saturating_add(self.against_votes)
    }

    /// (for/total, against/total); (0, 0) when nobody voted.
    pub fn ratios(&self) -> (f64, f64) {
        let total = self.total();
        if total == 0 {
            return (0.0, 0.0);
        }
        let total = total as f64;
        (
            self.for_votes as f64 / total,
            self.against_votes as f64 / total,
        )
    }

    fn add(&mut self, for_votes: u64, against_votes: u64) {
        self.for_votes = self.for_votes.saturating_add(for_votes);
        self.against_votes = self.against_votes.saturating_add(against_votes);
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
    epoch: Epoch,
    bases: BTreeMap<NodeId, Base>,
    /// Keyed by (bucket index, node); a few hundred entries between compactions.
    buckets: BTreeMap<(u64, NodeId), Counts>,
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

// ---------------------------------------------------------------------------
// Binary encoding of a vote log
// ---------------------------------------------------------------------------

/// Leads every encoded log; the byte after it is the format version.
const MAGIC: &[u8; 4] = b"CPVL";
const FORMAT_VERSION: u8 = 1;
/// node, through_bucket, epoch ms, epoch node, for, against: six u64.
const BASE_LEN: usize = 48;
/// bucket, node: u64; for, against: u32.
const BUCKET_LEN: usize = 24;

/// Why bytes are not a vote log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Ended early, or a count claims more entries than there are bytes.
    Truncated,
    BadMagic,
    UnsupportedVersion(u8),
    /// Well-formed bytes that no `VoteLog` encodes to.
    Invalid(&'static str),
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("vote log truncated"),
            DecodeError::BadMagic => f.write_str("not a vote log"),
            DecodeError::UnsupportedVersion(v) => write!(f, "vote log version {v} unsupported"),
            DecodeError::Invalid(why) => write!(f, "invalid vote log: {why}"),
            DecodeError::TrailingBytes => f.write_str("bytes after the vote log"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl VoteLog {
    /// Version 1, little-endian: magic `CPVL`, version u8, epoch (ms u64, node u64),
    /// u32 base count then bases sorted by node (node, through_bucket, epoch ms,
    /// epoch node, for, against: u64 each), u32 bucket count then buckets sorted by
    /// (bucket, node) (bucket u64, node u64, for u32, against u32).
    pub fn encode(&self) -> Vec<u8> {
        let len = 4 + 1 + 16 + 8 + self.bases.len() * BASE_LEN + self.buckets.len() * BUCKET_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        put_epoch(&mut out, self.epoch);
        put_count(&mut out, self.bases.len());
        for (&node, base) in &self.bases {
            for v in [node, base.through_bucket] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            put_epoch(&mut out, base.epoch);
            for v in [base.for_votes, base.against_votes] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        put_count(&mut out, self.buckets.len());
        for (&(bucket, node), counts) in &self.buckets {
            out.extend_from_slice(&bucket.to_le_bytes());
            out.extend_from_slice(&node.to_le_bytes());
            out.extend_from_slice(&counts.for_votes.to_le_bytes());
            out.extend_from_slice(&counts.against_votes.to_le_bytes());
        }
        out
    }

    /// Inverse of [`VoteLog::encode`]. Never panics; accepts only what `encode`
    /// could have written (sorted, unique, consistent with the epoch), so a decoded
    /// log re-encodes to the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<VoteLog, DecodeError> {
        let mut r = Reader { rest: bytes };
        if &r.array::<4>()? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        match r.u8()? {
            FORMAT_VERSION => {}
            v => return Err(DecodeError::UnsupportedVersion(v)),
        }
        let mut log = VoteLog {
            epoch: r.epoch()?,
            ..VoteLog::default()
        };
        for _ in 0..r.count(BASE_LEN)? {
            log.decode_base(&mut r)?;
        }
        for _ in 0..r.count(BUCKET_LEN)? {
            log.decode_bucket(&mut r)?;
        }
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(log)
    }

    fn decode_base(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let node = r.u64()?;
        let base = Base {
            through_bucket: r.bucket()?,
            epoch: r.epoch()?,
            for_votes: r.u64()?,
            against_votes: r.u64()?,
        };
        if base.epoch != self.epoch {
            return Err(DecodeError::Invalid("base from another epoch"));
        }
        if self
            .bases
            .last_key_value()
            .is_some_and(|(&last, _)| last >= node)
        {
            return Err(DecodeError::Invalid("bases not sorted"));
        }
        self.bases.insert(node, base);
        Ok(())
    }

    fn decode_bucket(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let key = (r.bucket()?, r.u64()?);
        let counts = Counts {
            for_votes: r.u32()?,
            against_votes: r.u32()?,
        };
        if key.0 < self.epoch.first_bucket() {
            return Err(DecodeError::Invalid("bucket before the epoch"));
        }
        if self
            .buckets
            .last_key_value()
            .is_some_and(|(&last, _)| last >= key)
        {
            return Err(DecodeError::Invalid("buckets not sorted"));
        }
        self.buckets.insert(key, counts);
        Ok(())
    }
}

fn put_epoch(out: &mut Vec<u8>, epoch: Epoch) {
    out.extend_from_slice(&epoch.ms.to_le_bytes());
    out.extend_from_slice(&epoch.node.to_le_bytes());
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    // A log holds a few hundred buckets; u32 is far beyond any real count.
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A bucket index whose start fits in u64 ms.
    fn bucket(&mut self) -> Result<u64, DecodeError> {
        let bucket = self.u64()?;
        if bucket > u64::MAX / BUCKET_MS {
            return Err(DecodeError::Invalid("bucket out of range"));
        }
        Ok(bucket)
    }

    fn epoch(&mut self) -> Result<Epoch, DecodeError> {
        Ok(Epoch {
            ms: self.u64()?,
            node: self.u64()?,
        })
    }

    /// An entry count, checked against the bytes left so garbage cannot make the
    /// decoder loop billions of times.
    fn count(&mut self, entry_len: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| DecodeError::Truncated)?;
        if n.saturating_mul(entry_len) > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------
// What the overlay shows
// ---------------------------------------------------------------------------

/// Both views of a log at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub tally: Tally,
    /// Decay value in −100..=100; 0.0 for the window model.
    pub value: f64,
}

/// The tally of the model's window (the 120 s window for Decay) and, for Decay,
/// its value.
pub fn snapshot(log: &VoteLog, model: Model, now_ms: u64) -> Snapshot {
    match model {
        Model::Window(memory) => Snapshot {
            tally: log.window(memory, now_ms),
            value: 0.0,
        },
        Model::Decay { speed } => Snapshot {
            tally: log.window(Memory::Seconds(MAX_WINDOW_S), now_ms),
            value: log.decay_value(speed, now_ms),
        },
    }
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// One counted vote per (broadcaster, chatter) per window (default use: 1000 ms).
///
/// Memory: one `u64 → u64` entry per chatter seen within the window, once the
/// caller runs [`Debouncer::prune`] every few seconds.
pub struct Debouncer {
    window_ms: u64,
    /// Per process, so chat cannot aim for collisions. A collision only debounces
    /// one extra vote.
    hasher: RandomState,
    /// Key hash → when its last vote was accepted.
    accepted_at: HashMap<u64, u64>,
}

impl Debouncer {
    pub fn new(window_ms: u64) -> Self {
        Debouncer {
            window_ms,
            hasher: RandomState::new(),
            accepted_at: HashMap::new(),
        }
    }

    /// True (and remembered) unless this pair was accepted less than `window_ms`
    /// ago. Measured both ways, so a clock that jumps back by a window or more does
    /// not silence a chatter until it catches up.
    pub fn accept(&mut self, broadcaster: &str, chatter: &str, now_ms: u64) -> bool {
        let key = self.hasher.hash_one((broadcaster, chatter));
        let window_ms = self.window_ms;
        match self.accepted_at.get_mut(&key) {
            Some(at) if at.abs_diff(now_ms) < window_ms => false,
            Some(at) => {
                *at = now_ms;
                true
            }
            None => {
                self.accepted_at.insert(key, now_ms);
                true
            }
        }
    }

    /// Forgets pairs whose window has passed.
    pub fn prune(&mut self, now_ms: u64) {
        let window_ms = self.window_ms;
        self.accepted_at
            .retain(|_, at| at.abs_diff(now_ms) < window_ms);
    }

    /// Pairs currently remembered.
    pub fn len(&self) -> usize {
        self.accepted_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted_at.is_empty()
    }
}

/// Rate limit (REV A): starts full, refills continuously, one token per action.
pub struct TokenBucket {
    capacity: f64,
    refill_per_minute: f64,
    tokens: f64,
    /// Latest `now_ms` seen; never moves back, so a backwards clock adds nothing.
    last_ms: u64,
}

impl TokenBucket {
    /// Negative or NaN `capacity` / `refill_per_minute` count as 0.
    pub fn new(capacity: f64, refill_per_minute: f64, now_ms: u64) -> Self {
        let capacity = capacity.max(0.0);
        TokenBucket {
            capacity,
            refill_per_minute: refill_per_minute.max(0.0),
            tokens: capacity,
            last_ms: now_ms,
        }
    }

    /// Takes one token if at least one is available.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        if now_ms > self.last_ms {
            let elapsed_ms = (now_ms - self.last_ms) as f64;
            let refill = elapsed_ms / 60_000.0 * self.refill_per_minute;
            self.tokens = self.capacity.min(self.tokens + refill);
            self.last_ms = now_ms;
        }
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

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
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
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
                bytes[at] = rng.next() as u8;
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
}
