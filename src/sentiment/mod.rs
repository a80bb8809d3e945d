//! Votes and what the overlay shows of them (pure: no I/O, no clocks; every
//! function takes `now_ms`, Unix milliseconds).
//!
//! Owns: trigger matching of chat messages ([`match_trigger`]), the per-broadcaster
//! vote log that a mesh of nodes can merge ([`VoteLog`], a state-based CRDT) and its
//! binary encoding, the two views the overlay shows ([`snapshot`]: REV B sliding
//! window, REV A exponential decay), and the two per-chatter / per-connection
//! limits ([`Debouncer`], [`TokenBucket`]).
//!
//! Layout: this module holds the shared types ([`Side`], [`Memory`], [`Model`],
//! [`Tally`]), trigger matching and [`snapshot`]; `log` is the [`VoteLog`] CRDT,
//! `codec` its binary encoding ([`DecodeError`]), `limits` the [`Debouncer`] and
//! [`TokenBucket`]. Everything is re-exported here, so `crate::sentiment::X` paths are
//! unchanged.

mod codec;
mod limits;
mod log;
#[cfg(test)]
mod tests;

pub use codec::DecodeError;
pub use limits::{Debouncer, TokenBucket};
pub use log::{BUCKET_MS, FOLD_AFTER_MS, VoteLog};

use log::MAX_WINDOW_S;

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
// Tallies and what the overlay shows
// ---------------------------------------------------------------------------

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
