//! xorshift64: a tiny deterministic generator for reconnect jitter, demo
//! chatters and property tests. It has no security role: tokens, secrets and
//! nonces come from the OS (`getrandom`).

#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// A generator from `seed` (made odd: an all-zero state would stay zero).
    pub fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    /// Seeded from the OS, or the clock if that fails.
    pub fn seeded() -> Self {
        Self::new(getrandom::u64().unwrap_or_else(|_| crate::app::now_ms()))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (modulo bias is irrelevant here); 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// In `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
