//! The per-chatter and per-connection limits: [`Debouncer`] (one vote per chatter per
//! window) and [`TokenBucket`] (continuous-refill rate limit).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

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
