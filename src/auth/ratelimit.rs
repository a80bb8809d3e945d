//! Per-IP request limits of the sign-in pages and the dashboard: one token
//! bucket per (class, client), refilled at `per_minute`, holding up to `burst`.
//! A refused request learns how long until its next token (`Retry-After`).
//!
//! IPv6 clients are counted per /64 (one host usually holds a whole /64). The
//! table of each class is bounded: idle buckets (full again by now) are swept
//! every [`SWEEP_EVERY`]; a table still full after a sweep refuses newcomers
//! rather than grow, because a flood of addresses is exactly when a password
//! must not be guessable faster. Pure: the time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::metrics::RateClass;

/// Clients tracked per class; ~64 bytes each.
const MAX_TRACKED: usize = 10_000;
/// Idle buckets are dropped this often: the table stays small without a timer task.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Retry-After when the table itself is full.
const FULL_TABLE_RETRY_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSettings {
    pub per_minute: u32,
    pub burst: u32,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Table {
    settings: RateSettings,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

pub struct RateLimiter {
    tables: [Mutex<Table>; RateClass::COUNT],
}

impl RateLimiter {
    pub fn new(auth: RateSettings, dashboard: RateSettings) -> RateLimiter {
        let table = |settings| {
            Mutex::new(Table {
                settings,
                buckets: HashMap::new(),
                last_sweep: None,
            })
        };
        RateLimiter {
            tables: [table(auth), table(dashboard)],
        }
    }

    /// Takes a token for `ip` in `class`; `Err(seconds)` until the next one.
    pub fn check(&self, class: RateClass, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut table = self.tables[class as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        table.take(client_key(ip), now)
    }
}

impl Table {
    fn per_second(&self) -> f64 {
        f64::from(self.settings.per_minute) / 60.0
    }

    fn take(&mut self, key: IpAddr, now: Instant) -> Result<(), u64> {
        let (rate, burst) = (self.per_second(), f64::from(self.settings.burst));
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
        {
            self.last_sweep = Some(now);
            let refill = |b: &Bucket| now.saturating_duration_since(b.last).as_secs_f64() * rate;
            self.buckets.retain(|_, b| b.tokens + refill(b) < burst);
        }
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED {
            return Err(FULL_TABLE_RETRY_SECS);
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        // The epsilon keeps float noise (2.0000001 s) from adding a whole second.
        Err(((1.0 - bucket.tokens) / rate - 1e-6).ceil().max(1.0) as u64)
    }
}

/// IPv4 as is (also when mapped into IPv6); IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        let s = |per_minute, burst| RateSettings { per_minute, burst };
        RateLimiter::new(s(10, 5), s(30, 10))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_rate_with_retry_after() {
        let l = limiter();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check(RateClass::Auth, ip("10.0.0.1"), t), Ok(()));
        }
        // 10/min: a token every 6 s.
        assert_eq!(l.check(RateClass::Auth, ip("10.0.0.1"), t), Err(6));
        let later = t + Duration::from_secs(4);
        assert_eq!(l.check(RateClass::Auth, ip("10.0.0.1"), later), Err(2));
        assert_eq!(
            l.check(RateClass::Auth, ip("10.0.0.1"), t + Duration::from_secs(6)),
            Ok(())
        );
        // Other clients and the other class are independent.
        assert_eq!(l.check(RateClass::Auth, ip("10.0.0.2"), t), Ok(()));
        for _ in 0..10 {
            assert_eq!(l.check(RateClass::Dashboard, ip("10.0.0.1"), t), Ok(()));
        }
        assert_eq!(l.check(RateClass::Dashboard, ip("10.0.0.1"), t), Err(2));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let l = limiter();
        let t = Instant::now();
        for i in 0..5 {
            let addr = ip(&format!("2001:db8:1:2::{i}"));
            assert_eq!(l.check(RateClass::Auth, addr, t), Ok(()));
        }
        assert!(
            l.check(RateClass::Auth, ip("2001:db8:1:2:ffff::1"), t)
                .is_err()
        );
        assert_eq!(l.check(RateClass::Auth, ip("2001:db8:1:3::1"), t), Ok(()));
        for _ in 0..5 {
            assert_eq!(l.check(RateClass::Auth, ip("192.0.2.1"), t), Ok(()));
        }
        assert!(l.check(RateClass::Auth, ip("::ffff:192.0.2.1"), t).is_err());
    }

    #[test]
    fn table_is_bounded_and_idle_entries_are_swept() {
        let l = limiter();
        let t = Instant::now();
        let nth = |i: usize| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..MAX_TRACKED {
            assert_eq!(l.check(RateClass::Auth, nth(i), t), Ok(()));
        }
        assert_eq!(
            l.check(RateClass::Auth, ip("192.0.2.9"), t),
            Err(FULL_TABLE_RETRY_SECS)
        );
        // After the sweep interval every bucket is full again, so all are forgotten.
        let later = t + SWEEP_EVERY;
        assert_eq!(l.check(RateClass::Auth, ip("192.0.2.9"), later), Ok(()));
        let len = l.tables[RateClass::Auth as usize]
            .lock()
            .unwrap()
            .buckets
            .len();
        assert_eq!(len, 1);
    }
}
