//! Admission control. Overlay WebSockets are checked before the upgrade in the
//! reference's order: per-IP attempt rate (429), global cap (503), per-IP cap
//! (429); a granted [`Permit`] holds the slots until it is dropped. Plain HTTP
//! connections (everything not yet an overlay) are capped on accept by
//! [`AddrSlots`], so a flood of idle or slow sockets cannot pile up tasks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::metrics::{RejectReason, SlotRefused};

/// Per-IP rate state older than this is forgotten (its bucket is full again anyway).
const IDLE_FORGET_SECS: f64 = 600.0;
/// How often (in attempts) idle rate entries are swept, to bound the map's size.
const SWEEP_EVERY: u32 = 4096;

#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    pub max_connections: u32,
    pub max_per_ip: u32,
    pub rate_per_ip: f64,
    pub burst_per_ip: u32,
}

#[derive(Default)]
struct IpEntry {
    open: u32,
    tokens: f64,
    last: Option<Instant>,
}

struct Inner {
    total: u32,
    ips: HashMap<IpAddr, IpEntry>,
    attempts: u32,
}

pub struct ConnLimits {
    settings: LimitSettings,
    inner: Mutex<Inner>,
}

/// Holds one global and one per-IP slot; released on drop.
pub struct Permit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    pub fn new(settings: LimitSettings) -> Arc<Self> {
        Arc::new(ConnLimits {
            settings,
            inner: Mutex::new(Inner {
                total: 0,
                ips: HashMap::new(),
                attempts: 0,
            }),
        })
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Permit, RejectReason> {
        let s = self.settings;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.attempts = inner.attempts.wrapping_add(1);
        if inner.attempts.is_multiple_of(SWEEP_EVERY) {
            inner.ips.retain(|_, e| {
                e.open > 0
                    || e.last
                        .is_some_and(|l| now.duration_since(l).as_secs_f64() < IDLE_FORGET_SECS)
            });
        }
        let total = inner.total;
        let entry = inner.ips.entry(ip).or_default();
        // Every attempt spends a rate token, even one later refused (as the reference).
        let elapsed = entry.last.map_or(f64::INFINITY, |l| {
            now.saturating_duration_since(l).as_secs_f64()
        });
        entry.tokens = (entry.tokens + elapsed * s.rate_per_ip).min(s.burst_per_ip as f64);
        entry.last = Some(now);
        if entry.tokens < 1.0 {
            return Err(RejectReason::RateLimit);
        }
        entry.tokens -= 1.0;
        if total >= s.max_connections {
            return Err(RejectReason::GlobalLimit);
        }
        if entry.open >= s.max_per_ip {
            return Err(RejectReason::IpLimit);
        }
        entry.open += 1;
        inner.total += 1;
        Ok(Permit {
            limits: Arc::clone(self),
            ip,
        })
    }

    pub fn open_connections(&self) -> u32 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut inner = self.limits.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.total = inner.total.saturating_sub(1);
        if let Some(e) = inner.ips.get_mut(&self.ip) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

/// Caps on connections in some phase, overall and per peer address: open HTTP
/// connections (requests in flight, idle keep-alives, TLS handshakes, slow
/// heads) and mesh handshakes. A caller may exempt an address from the
/// per-address cap (trusted proxies: every client behind them shares one).
pub struct AddrSlots {
    max: u32,
    per_ip: u32,
    inner: Mutex<(u32, HashMap<IpAddr, u32>)>,
}

/// One slot; released on drop.
pub struct SlotPermit {
    slots: Arc<AddrSlots>,
    ip: Option<IpAddr>,
}

impl AddrSlots {
    pub fn new(max: u32, per_ip: u32) -> Arc<Self> {
        Arc::new(AddrSlots {
            max,
            per_ip,
            inner: Mutex::new((0, HashMap::new())),
        })
    }

    /// `counted_ip` is `None` for an address exempt from the per-address cap.
    pub fn acquire(
        self: &Arc<Self>,
        counted_ip: Option<IpAddr>,
    ) -> Result<SlotPermit, SlotRefused> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (total, ips) = &mut *inner;
        if *total >= self.max {
            return Err(SlotRefused::GlobalLimit);
        }
        if let Some(ip) = counted_ip {
            let open = ips.entry(ip).or_default();
            if *open >= self.per_ip {
                return Err(SlotRefused::IpLimit);
            }
            *open += 1;
        }
        *total += 1;
        Ok(SlotPermit {
            slots: Arc::clone(self),
            ip: counted_ip,
        })
    }

    pub fn open(&self) -> u32 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let mut inner = self.slots.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (total, ips) = &mut *inner;
        *total = total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(open) = ips.get_mut(&ip)
        {
            *open -= 1;
            if *open == 0 {
                ips.remove(&ip); // the map holds only addresses with open sockets
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max: u32, per_ip: u32, rate: f64, burst: u32) -> Arc<ConnLimits> {
        ConnLimits::new(LimitSettings {
            max_connections: max,
            max_per_ip: per_ip,
            rate_per_ip: rate,
            burst_per_ip: burst,
        })
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn burst_then_rate() {
        let l = limits(1000, 1000, 10.0, 20);
        let t = Instant::now();
        let permits: Vec<_> = (0..20).map(|_| l.acquire(ip(1), t).unwrap()).collect();
        assert_eq!(l.acquire(ip(1), t).err(), Some(RejectReason::RateLimit));
        // another IP is independent
        assert!(l.acquire(ip(2), t).is_ok());
        // 10/s: after 100 ms one more token
        assert!(l.acquire(ip(1), t + Duration::from_millis(100)).is_ok());
        assert_eq!(
            l.acquire(ip(1), t + Duration::from_millis(100)).err(),
            Some(RejectReason::RateLimit)
        );
        drop(permits);
    }

    #[test]
    fn global_and_per_ip_caps_release_on_drop() {
        let l = limits(3, 2, 1000.0, 1000);
        let t = Instant::now();
        let a = l.acquire(ip(1), t).unwrap();
        let _b = l.acquire(ip(1), t).unwrap();
        assert_eq!(l.acquire(ip(1), t).err(), Some(RejectReason::IpLimit));
        let _c = l.acquire(ip(2), t).unwrap();
        assert_eq!(l.acquire(ip(3), t).err(), Some(RejectReason::GlobalLimit));
        drop(a);
        assert_eq!(l.open_connections(), 2);
        assert!(l.acquire(ip(1), t).is_ok());
    }

    #[test]
    fn http_slots_cap_overall_and_per_address_but_not_proxies() {
        let slots = AddrSlots::new(4, 2);
        let a = Some(ip(1));
        let held: Vec<_> = (0..2).map(|_| slots.acquire(a).unwrap()).collect();
        assert_eq!(slots.acquire(a).err(), Some(SlotRefused::IpLimit));
        let proxy: Vec<_> = (0..2).map(|_| slots.acquire(None).unwrap()).collect();
        assert_eq!(
            slots.acquire(Some(ip(2))).err(),
            Some(SlotRefused::GlobalLimit)
        );
        drop(held);
        assert_eq!(slots.open(), 2);
        assert!(slots.acquire(a).is_ok());
        drop(proxy);
        assert_eq!(slots.open(), 0);
        assert!(slots.inner.lock().unwrap().1.is_empty());
    }
}
