//! The metric primitives: [`Counter`], [`Gauge`], [`Histogram`] and the enum-labelled
//! families [`CounterVec`] / [`GaugeVec`] over a [`Label`]. Lock-free atomics only.

use std::marker::PhantomData;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Primitive metric types
// ---------------------------------------------------------------------------------------

/// Monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Value that can go up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }

    #[inline]
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Histogram with fixed upper bounds. Buckets are stored non-cumulatively (one atomic per
/// bound plus one overflow bucket for `+Inf`) and summed at render time, so `_count`
/// always equals the `+Inf` bucket. `_sum` is an f64 kept as bits in an `AtomicU64`.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `bounds.len() + 1` entries; the last one counts observations above every bound.
    buckets: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

impl Histogram {
    /// Panics if `bounds` are not finite and strictly increasing (a programming error,
    /// caught at server start).
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(
            bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be finite and strictly increasing"
        );
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation (seconds for every histogram here). NaN is ignored.
    #[inline]
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        // First bound with v <= bound; bounds.len() (the +Inf bucket) if none.
        let i = self.bounds.partition_point(|b| *b < v);
        self.buckets[i].fetch_add(1, Relaxed);
        let _ = self.sum_bits.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Total number of observations (equals the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Relaxed))
    }

    /// Cumulative bucket counts, one per bound followed by the `+Inf` bucket.
    pub fn cumulative_counts(&self) -> Vec<u64> {
        let mut acc = 0u64;
        self.buckets
            .iter()
            .map(|b| {
                acc = acc.wrapping_add(b.load(Relaxed));
                acc
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Enum-labelled families
// ---------------------------------------------------------------------------------------

/// A label value drawn from a small fixed set (implemented by the enums below).
pub trait Label: Copy + 'static {
    /// Every value, in index order.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    fn index(self) -> usize;
}

/// Counter family with one label whose values are the enum `L` (`N` must be `L::COUNT`,
/// checked at compile time). Lock-free, allocation-free.
pub struct CounterVec<L: Label, const N: usize> {
    counters: [Counter; N],
    _label: PhantomData<fn() -> L>,
}

impl<L: Label, const N: usize> CounterVec<L, N> {
    pub const fn new() -> Self {
        const {
            assert!(
                L::ALL.len() == N,
                "CounterVec size must equal the label count"
            )
        };
        Self {
            counters: [const { Counter::new() }; N],
            _label: PhantomData,
        }
    }

    #[inline]
    pub fn inc(&self, l: L) {
        self.counters[l.index()].inc();
    }

    #[inline]
    pub fn add(&self, l: L, n: u64) {
        self.counters[l.index()].add(n);
    }

    #[inline]
    pub fn get(&self, l: L) -> u64 {
        self.counters[l.index()].get()
    }

    #[inline]
    pub fn counter(&self, l: L) -> &Counter {
        &self.counters[l.index()]
    }
}

/// A gauge per label value (fixed set), like [`CounterVec`].
pub struct GaugeVec<L: Label, const N: usize> {
    gauges: [Gauge; N],
    _label: PhantomData<fn() -> L>,
}

impl<L: Label, const N: usize> GaugeVec<L, N> {
    pub const fn new() -> Self {
        const {
            assert!(
                L::ALL.len() == N,
                "GaugeVec size must equal the label count"
            )
        };
        Self {
            gauges: [const { Gauge::new() }; N],
            _label: PhantomData,
        }
    }

    #[inline]
    pub fn set(&self, l: L, v: i64) {
        self.gauges[l.index()].set(v);
    }

    #[inline]
    pub fn get(&self, l: L) -> i64 {
        self.gauges[l.index()].get()
    }
}

impl<L: Label, const N: usize> Default for GaugeVec<L, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Label, const N: usize> Default for CounterVec<L, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Label + std::fmt::Debug, const N: usize> std::fmt::Debug for CounterVec<L, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(L::ALL.iter().map(|l| (l, self.get(*l))))
            .finish()
    }
}

impl<L: Label + std::fmt::Debug, const N: usize> std::fmt::Debug for GaugeVec<L, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(L::ALL.iter().map(|l| (l, self.get(*l))))
            .finish()
    }
}
