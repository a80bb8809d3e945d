//! Hand-written metrics registry with a Prometheus text exposition writer (format 0.0.4).
//!
//! No global statics: one [`Metrics`] is created per server with [`Metrics::new`] and shared
//! by `Arc`. Hot paths stay cheap:
//!
//! * plain counters and gauges are single atomics updated with `Relaxed` ordering;
//! * labelled families with a small fixed label set ([`CounterVec`]) are arrays of atomics
//!   indexed by an enum, so an increment never locks or allocates;
//! * only `http_requests_total{method,route,status}` and `http_request_duration_seconds`
//!   sit behind one `Mutex<BTreeMap<..>>`, keyed by `&'static str` method, `&'static str`
//!   route *template* (e.g. `"/overlay/{token}"`, `"unmatched"`) and status, so the number of
//!   series is bounded by the code, never by client input. A map entry (and, for a new
//!   (method, route) pair, one histogram) is allocated only the first time a key is seen.
//!
//! Process metrics are read from `/proc/self` at render time; anything unreadable (non-Linux,
//! restricted procfs) is simply left out, never a panic.
//!
//! Only `std` is used so the file can be tested on its own:
//! `rustc --edition 2024 --test src/metrics.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Content-Type` to send with [`Metrics::render`] output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of `http_request_duration_seconds`.
pub const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of `websocket_connection_duration_seconds`.
pub const WS_CONNECTION_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
];
/// Upper bounds (seconds) of `vote_processing_duration_seconds`.
pub const VOTE_PROCESSING_BUCKETS: &[f64] =
    &[0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05];
/// Upper bounds (seconds) of `store_flush_duration_seconds`.
pub const STORE_FLUSH_BUCKETS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];
/// From an owner accepting a vote to another node merging it: a LAN hop plus up to
/// one 50 ms publish gap normally; seconds mean a slow peer or a resync.
pub const MESH_CONVERGENCE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Linux `USER_HZ`: the unit of utime/stime in /proc/self/stat. It is fixed at 100 for
/// userspace on every architecture Linux supports, so no `sysconf` (libc) is needed.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// Page size assumed only for the /proc/self/statm fallback. The primary source,
/// /proc/self/status (VmRSS/VmSize in kB), needs no page size at all.
const FALLBACK_PAGE_SIZE: u64 = 4096;

impl<L: Label + std::fmt::Debug, const N: usize> std::fmt::Debug for GaugeVec<L, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(L::ALL.iter().map(|l| (l, self.get(*l))))
            .finish()
    }
}

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

macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($variant:ident => $s:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];
            pub const COUNT: usize = Self::ALL.len();

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $s,)+
                }
            }
        }

        impl Label for $name {
            const ALL: &'static [Self] = $name::ALL;

            #[inline]
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            #[inline]
            fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// `websocket_connections_total{result}`.
    WsConnectResult {
        Accepted => "accepted",
        UnknownToken => "unknown_token",
    }
}

label_enum! {
    /// `websocket_connections_rejected_total{reason}`.
    RejectReason {
        RateLimit => "rate_limit",
        GlobalLimit => "global_limit",
        IpLimit => "ip_limit",
        BroadcasterLimit => "broadcaster_limit",
        Origin => "origin",
        BadRequest => "bad_request",
    }
}

label_enum! {
    /// `websocket_inbound_dropped_total{reason}`.
    InboundDropReason {
        TooLarge => "too_large",
        Protocol => "protocol",
    }
}

label_enum! {
    /// `vote_processing_total{result}`.
    VoteResult {
        Applied => "applied",
        NoMatch => "no_match",
        Debounced => "debounced",
        RateLimited => "rate_limited",
        NoViewers => "no_viewers",
        UnknownChannel => "unknown_channel",
        Invalid => "invalid",
        Forwarded => "forwarded",
    }
}

label_enum! {
    /// `mesh_members{state}` (as [`crate::mesh::MemberState`]).
    MeshMemberState {
        Alive => "alive",
        Suspect => "suspect",
        Down => "down",
        Left => "left",
    }
}

label_enum! {
    /// `vote_trigger_matches_total{side}`.
    VoteSide {
        For => "for",
        Against => "against",
    }
}

label_enum! {
    /// `chat_messages_received_total{source}`.
    ChatSource {
        Demo => "demo",
        Irc => "irc",
        EventSubWs => "eventsub_ws",
        EventSubWebhook => "eventsub_webhook",
        Test => "test",
        Dashboard => "dashboard",
    }
}

label_enum! {
    /// `auth_logins_total{result}`: how each dashboard sign-in attempt ended.
    LoginResult {
        Success => "success",
        WrongPassword => "wrong_password",
        Cancelled => "cancelled",
        StateMismatch => "state_mismatch",
        TwitchError => "twitch_error",
        Error => "error",
    }
}

label_enum! {
    /// `http_rate_limited_total{class}`: requests answered 429 by the per-IP limits.
    RateClass {
        Auth => "auth",
        Dashboard => "dashboard",
    }
}

label_enum! {
    /// `csrf_rejected_total{reason}`: state-changing requests refused for their CSRF token.
    CsrfReason {
        Missing => "missing",
        Invalid => "invalid",
    }
}

label_enum! {
    /// `chat_lines_dropped_total{reason}`.
    ChatDropReason {
        Malformed => "malformed",
        TooLong => "too_long",
    }
}

label_enum! {
    /// `eventsub_webhook_requests_total{result}`: how each `POST /webhooks/eventsub` ended.
    WebhookResult {
        Notification => "notification",
        Duplicate => "duplicate",
        Verification => "verification",
        Revocation => "revocation",
        Ignored => "ignored",
        Malformed => "malformed",
        BadSignature => "bad_signature",
        Stale => "stale",
        BadRequest => "bad_request",
    }
}

label_enum! {
    /// `eventsub_ws_messages_total{type}`: EventSub WebSocket messages by `message_type`,
    /// plus notifications dropped as already seen and messages we could not read.
    EventSubWsMessage {
        Welcome => "session_welcome",
        Keepalive => "session_keepalive",
        Notification => "notification",
        Reconnect => "session_reconnect",
        Revocation => "revocation",
        Other => "other",
        Duplicate => "duplicate",
        Invalid => "invalid",
    }
}

label_enum! {
    /// `http_bad_requests_total{reason}`.
    BadRequest {
        HeadTooLarge => "head_too_large",
        HeadTimeout => "head_timeout",
        Malformed => "malformed",
        BodyTooLarge => "body_too_large",
        UnsupportedEncoding => "unsupported_encoding",
    }
}

label_enum! {
    /// `store_flush_total{result}`.
    FlushResult {
        Ok => "ok",
        Error => "error",
    }
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

// ---------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------

/// Values for `build_info{version,commit,rustc} 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub rustc: &'static str,
}

#[derive(Debug, Default)]
struct HttpStats {
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    durations: BTreeMap<(&'static str, &'static str), Histogram>,
}

/// All server metrics. Create once, share by `Arc`. Simple counters, gauges, enum-labelled
/// families and histograms are public fields to be updated directly, e.g.
/// `m.ws_rejected.inc(RejectReason::Origin)` or `m.ws_messages_sent.inc()`.
#[derive(Debug)]
pub struct Metrics {
    build: BuildInfo,
    start_time: SystemTime,
    http: Mutex<HttpStats>,

    /// `http_bad_requests_total{reason}`
    pub http_bad_requests: CounterVec<BadRequest, { BadRequest::COUNT }>,

    /// `websocket_connections_current`
    pub ws_connections_current: Gauge,
    /// `websocket_connections_total{result}`
    pub ws_connections: CounterVec<WsConnectResult, { WsConnectResult::COUNT }>,
    /// `websocket_connections_rejected_total{reason}`
    pub ws_rejected: CounterVec<RejectReason, { RejectReason::COUNT }>,
    /// `websocket_messages_sent_total`
    pub ws_messages_sent: Counter,
    /// `websocket_pings_sent_total`
    pub ws_pings_sent: Counter,
    /// `websocket_pong_timeouts_total`
    pub ws_pong_timeouts: Counter,
    /// `websocket_inbound_dropped_total{reason}`
    pub ws_inbound_dropped: CounterVec<InboundDropReason, { InboundDropReason::COUNT }>,
    /// `websocket_connection_duration_seconds`
    pub ws_connection_duration: Histogram,

    /// `broadcaster_active_sessions` (broadcasters with at least one local overlay)
    pub broadcaster_active_sessions: Gauge,
    /// `broadcaster_slow_clients_evicted_total`
    pub broadcaster_slow_clients_evicted: Counter,
    /// `broadcaster_updates_published_total`
    pub broadcaster_updates_published: Counter,
    /// `broadcaster_updates_coalesced_total`
    pub broadcaster_updates_coalesced: Counter,

    /// `vote_processing_total{result}`
    pub vote_processing: CounterVec<VoteResult, { VoteResult::COUNT }>,
    /// `vote_processing_duration_seconds`
    pub vote_processing_duration: Histogram,
    /// `vote_trigger_matches_total{side}`
    pub vote_trigger_matches: CounterVec<VoteSide, { VoteSide::COUNT }>,

    /// `chat_messages_received_total{source}`
    pub chat_messages_received: CounterVec<ChatSource, { ChatSource::COUNT }>,
    /// `chat_source_connected{source}`: 1 while the source's connection is up.
    pub chat_source_connected: GaugeVec<ChatSource, { ChatSource::COUNT }>,
    /// `chat_source_reconnects_total{source}`
    pub chat_source_reconnects: CounterVec<ChatSource, { ChatSource::COUNT }>,
    /// `chat_source_last_message_timestamp_seconds{source}` (Unix seconds, 0 = never).
    pub chat_source_last_message: GaugeVec<ChatSource, { ChatSource::COUNT }>,
    /// `chat_lines_dropped_total{reason}`
    pub chat_lines_dropped: CounterVec<ChatDropReason, { ChatDropReason::COUNT }>,
    /// `eventsub_webhook_requests_total{result}`
    pub eventsub_webhook_requests: CounterVec<WebhookResult, { WebhookResult::COUNT }>,
    /// `eventsub_ws_messages_total{type}`
    pub eventsub_ws_messages: CounterVec<EventSubWsMessage, { EventSubWsMessage::COUNT }>,
    /// `twitch_token_failures_total`: app-token acquisitions or validations that failed.
    pub twitch_token_failures: Counter,

    /// `auth_logins_total{result}`
    pub auth_logins: CounterVec<LoginResult, { LoginResult::COUNT }>,
    /// `http_rate_limited_total{class}`
    pub http_rate_limited: CounterVec<RateClass, { RateClass::COUNT }>,
    /// `csrf_rejected_total{reason}`
    pub csrf_rejected: CounterVec<CsrfReason, { CsrfReason::COUNT }>,

    /// `store_flush_total{result}`
    pub store_flush: CounterVec<FlushResult, { FlushResult::COUNT }>,
    /// `store_flush_duration_seconds`
    pub store_flush_duration: Histogram,

    /// The mesh's own counters (`mesh_frames_total`, refusals, RTT); set when the
    /// node joins a cluster. No `mesh_*` family is rendered without it.
    pub mesh: std::sync::OnceLock<Arc<crate::mesh::MeshCounters>>,
    /// `mesh_members{state}`, this node included; refreshed by the presence loop.
    pub mesh_members: GaugeVec<MeshMemberState, { MeshMemberState::COUNT }>,
    /// `mesh_convergence_seconds`
    pub mesh_convergence: Histogram,
}

impl Metrics {
    /// Records `SystemTime::now()` as the process start time; call it at startup.
    pub fn new(build: BuildInfo) -> Self {
        Self::with_start_time(build, SystemTime::now())
    }

    /// Like [`Metrics::new`] with an explicit `process_start_time_seconds`.
    pub fn with_start_time(build: BuildInfo, start_time: SystemTime) -> Self {
        Self {
            build,
            start_time,
            http: Mutex::new(HttpStats::default()),
            http_bad_requests: CounterVec::new(),
            ws_connections_current: Gauge::new(),
            ws_connections: CounterVec::new(),
            ws_rejected: CounterVec::new(),
            ws_messages_sent: Counter::new(),
            ws_pings_sent: Counter::new(),
            ws_pong_timeouts: Counter::new(),
            ws_inbound_dropped: CounterVec::new(),
            ws_connection_duration: Histogram::new(WS_CONNECTION_DURATION_BUCKETS),
            broadcaster_active_sessions: Gauge::new(),
            broadcaster_slow_clients_evicted: Counter::new(),
            broadcaster_updates_published: Counter::new(),
            broadcaster_updates_coalesced: Counter::new(),
            vote_processing: CounterVec::new(),
            vote_processing_duration: Histogram::new(VOTE_PROCESSING_BUCKETS),
            vote_trigger_matches: CounterVec::new(),
            chat_messages_received: CounterVec::new(),
            chat_source_connected: GaugeVec::new(),
            chat_source_reconnects: CounterVec::new(),
            chat_source_last_message: GaugeVec::new(),
            chat_lines_dropped: CounterVec::new(),
            eventsub_webhook_requests: CounterVec::new(),
            eventsub_ws_messages: CounterVec::new(),
            twitch_token_failures: Counter::new(),
            auth_logins: CounterVec::new(),
            http_rate_limited: CounterVec::new(),
            csrf_rejected: CounterVec::new(),
            store_flush: CounterVec::new(),
            store_flush_duration: Histogram::new(STORE_FLUSH_BUCKETS),
            mesh: std::sync::OnceLock::new(),
            mesh_members: GaugeVec::new(),
            mesh_convergence: Histogram::new(MESH_CONVERGENCE_BUCKETS),
        }
    }

    pub fn build_info(&self) -> BuildInfo {
        self.build
    }

    pub fn start_time(&self) -> SystemTime {
        self.start_time
    }

    /// Counts one finished HTTP request and records its duration. `method` must be one of a
    /// fixed set of static strings (map anything unusual to e.g. `"other"`) and `route` a
    /// route template (`"/overlay/{token}"`, `"unmatched"`), never a raw path.
    pub fn observe_http(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        seconds: f64,
    ) {
        let mut s = lock(&self.http);
        *s.requests.entry((method, route, status)).or_insert(0) += 1;
        s.durations
            .entry((method, route))
            .or_insert_with(|| Histogram::new(HTTP_DURATION_BUCKETS))
            .observe(seconds);
    }

    /// Current value of `http_requests_total{method,route,status}` (0 if never seen).
    pub fn http_requests(&self, method: &str, route: &str, status: u16) -> u64 {
        lock(&self.http)
            .requests
            .iter()
            .find(|((m, r, s), _)| *m == method && *r == route && *s == status)
            .map_or(0, |(_, v)| *v)
    }

    /// `vote_processing_total{result}` plus `vote_processing_duration_seconds`.
    pub fn observe_vote(&self, result: VoteResult, seconds: f64) {
        self.vote_processing.inc(result);
        self.vote_processing_duration.observe(seconds);
    }

    /// `store_flush_total{result}` plus `store_flush_duration_seconds`.
    pub fn observe_store_flush(&self, ok: bool, seconds: f64) {
        self.store_flush.inc(if ok {
            FlushResult::Ok
        } else {
            FlushResult::Error
        });
        self.store_flush_duration.observe(seconds);
    }

    /// Full exposition in Prometheus text format 0.0.4 (serve with [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_into(&mut out);
        out
    }

    /// Appends the full exposition to `out`.
    pub fn render_into(&self, out: &mut String) {
        self.render_http(out);
        counter_vec(
            out,
            "http_bad_requests_total",
            "HTTP requests rejected before routing, by reason.",
            "reason",
            &self.http_bad_requests,
        );

        gauge(
            out,
            "websocket_connections_current",
            "Open overlay WebSocket connections.",
            self.ws_connections_current.get(),
        );
        counter_vec(
            out,
            "websocket_connections_total",
            "WebSocket upgrade requests that reached token lookup, by result.",
            "result",
            &self.ws_connections,
        );
        counter_vec(
            out,
            "websocket_connections_rejected_total",
            "WebSocket connections rejected before upgrade, by reason.",
            "reason",
            &self.ws_rejected,
        );
        counter(
            out,
            "websocket_messages_sent_total",
            "WebSocket data messages sent to overlays.",
            self.ws_messages_sent.get(),
        );
        counter(
            out,
            "websocket_pings_sent_total",
            "WebSocket pings sent.",
            self.ws_pings_sent.get(),
        );
        counter(
            out,
            "websocket_pong_timeouts_total",
            "WebSocket connections closed because no pong arrived in time.",
            self.ws_pong_timeouts.get(),
        );
        counter_vec(
            out,
            "websocket_inbound_dropped_total",
            "Inbound WebSocket frames dropped, by reason.",
            "reason",
            &self.ws_inbound_dropped,
        );
        histogram(
            out,
            "websocket_connection_duration_seconds",
            "Lifetime of closed WebSocket connections.",
            &self.ws_connection_duration,
        );

        gauge(
            out,
            "broadcaster_active_sessions",
            "Broadcasters with at least one overlay connected to this node.",
            self.broadcaster_active_sessions.get(),
        );
        counter(
            out,
            "broadcaster_slow_clients_evicted_total",
            "Overlay clients disconnected for not keeping up with updates.",
            self.broadcaster_slow_clients_evicted.get(),
        );
        counter(
            out,
            "broadcaster_updates_published_total",
            "Vote state updates published to overlays.",
            self.broadcaster_updates_published.get(),
        );
        counter(
            out,
            "broadcaster_updates_coalesced_total",
            "Vote state updates merged into a later update before sending.",
            self.broadcaster_updates_coalesced.get(),
        );

        counter_vec(
            out,
            "vote_processing_total",
            "Chat messages run through vote processing, by result.",
            "result",
            &self.vote_processing,
        );
        histogram(
            out,
            "vote_processing_duration_seconds",
            "Time to process one chat message for votes.",
            &self.vote_processing_duration,
        );
        counter_vec(
            out,
            "vote_trigger_matches_total",
            "Chat messages matching a vote trigger, by side.",
            "side",
            &self.vote_trigger_matches,
        );

        counter_vec(
            out,
            "chat_messages_received_total",
            "Chat messages received, by source.",
            "source",
            &self.chat_messages_received,
        );
        gauge_vec(
            out,
            "chat_source_connected",
            "1 while the chat source's connection to Twitch is up.",
            "source",
            &self.chat_source_connected,
        );
        counter_vec(
            out,
            "chat_source_reconnects_total",
            "Reconnections of the chat source to Twitch.",
            "source",
            &self.chat_source_reconnects,
        );
        gauge_vec(
            out,
            "chat_source_last_message_timestamp_seconds",
            "Unix time of the last chat message from the source (0 = none yet).",
            "source",
            &self.chat_source_last_message,
        );
        counter_vec(
            out,
            "chat_lines_dropped_total",
            "Chat lines dropped before processing, by reason.",
            "reason",
            &self.chat_lines_dropped,
        );
        counter_vec(
            out,
            "eventsub_webhook_requests_total",
            "EventSub webhook requests, by result.",
            "result",
            &self.eventsub_webhook_requests,
        );
        counter_vec(
            out,
            "eventsub_ws_messages_total",
            "EventSub WebSocket messages received, by type (duplicate, invalid: dropped).",
            "type",
            &self.eventsub_ws_messages,
        );
        counter(
            out,
            "twitch_token_failures_total",
            "Twitch app access token acquisitions or validations that failed.",
            self.twitch_token_failures.get(),
        );

        counter_vec(
            out,
            "auth_logins_total",
            "Dashboard sign-in attempts, by result.",
            "result",
            &self.auth_logins,
        );
        counter_vec(
            out,
            "http_rate_limited_total",
            "Requests refused (429) by the per-IP limits of the sign-in and dashboard routes, by class.",
            "class",
            &self.http_rate_limited,
        );
        counter_vec(
            out,
            "csrf_rejected_total",
            "State-changing dashboard requests refused for a missing or invalid CSRF token.",
            "reason",
            &self.csrf_rejected,
        );

        counter_vec(
            out,
            "store_flush_total",
            "Store flushes, by result.",
            "result",
            &self.store_flush,
        );
        histogram(
            out,
            "store_flush_duration_seconds",
            "Time taken by store flushes.",
            &self.store_flush_duration,
        );

        self.render_mesh(out);

        header(
            out,
            "build_info",
            "Build information; value is always 1.",
            "gauge",
        );
        out.push_str("build_info{version=\"");
        escape_label_value(out, self.build.version);
        out.push_str("\",commit=\"");
        escape_label_value(out, self.build.commit);
        out.push_str("\",rustc=\"");
        escape_label_value(out, self.build.rustc);
        out.push_str("\"} 1\n");

        render_process(out, &ProcessStats::read(), self.start_time);
    }

    fn render_mesh(&self, out: &mut String) {
        let Some(m) = self.mesh.get() else {
            return;
        };
        gauge_vec(
            out,
            "mesh_members",
            "Cluster members as this node sees them (itself included), by state.",
            "state",
            &self.mesh_members,
        );
        header(
            out,
            "mesh_frames_total",
            "Mesh frames decoded from peers (in) or queued to peers (out), by kind.",
            "counter",
        );
        for kind in crate::mesh::FrameKind::ALL {
            for (dir, n) in [("in", m.frames_in_of(kind)), ("out", m.frames_out_of(kind))] {
                let _ = writeln!(
                    out,
                    "mesh_frames_total{{kind=\"{}\",dir=\"{dir}\"}} {n}",
                    kind.as_str()
                );
            }
        }
        histogram(
            out,
            "mesh_peer_rtt_seconds",
            "SWIM probe round trips to peers.",
            &m.rtt,
        );
        histogram(
            out,
            "mesh_convergence_seconds",
            "From the owner accepting a vote to this node merging it.",
            &self.mesh_convergence,
        );
        gauge(
            out,
            "mesh_connections",
            "Open mesh connections, both directions.",
            m.connections.get(),
        );
        for (name, help, c) in [
            (
                "mesh_auth_failures_total",
                "Mesh connections refused: a frame's tag did not verify (wrong secret).",
                &m.auth_failures,
            ),
            (
                "mesh_version_mismatches_total",
                "Mesh connections refused: the peer speaks another protocol version.",
                &m.version_mismatches,
            ),
            (
                "mesh_bad_frames_total",
                "Mesh connections dropped for malformed or misplaced frames.",
                &m.bad_frames,
            ),
            (
                "mesh_slow_peer_drops_total",
                "Mesh peers dropped because their send queue was full.",
                &m.slow_peer_drops,
            ),
            (
                "mesh_frames_dropped_total",
                "Mesh frames not queued because the peer's connection was down.",
                &m.frames_dropped,
            ),
            (
                "mesh_swim_dropped_total",
                "SWIM messages dropped because the membership loop was behind.",
                &m.swim_dropped,
            ),
            (
                "mesh_dial_failures_total",
                "Mesh dials or handshakes that failed.",
                &m.dial_failures,
            ),
        ] {
            counter(out, name, help, c.get());
        }
    }

    fn render_http(&self, out: &mut String) {
        let s = lock(&self.http);
        header(
            out,
            "http_requests_total",
            "HTTP requests handled, by method, route template and status.",
            "counter",
        );
        for ((method, route, status), n) in &s.requests {
            out.push_str("http_requests_total{method=\"");
            escape_label_value(out, method);
            out.push_str("\",route=\"");
            escape_label_value(out, route);
            let _ = writeln!(out, "\",status=\"{status}\"}} {n}");
        }
        header(
            out,
            "http_request_duration_seconds",
            "HTTP request duration, by method and route template.",
            "histogram",
        );
        let mut labels = String::new();
        for ((method, route), h) in &s.durations {
            labels.clear();
            labels.push_str("method=\"");
            escape_label_value(&mut labels, method);
            labels.push_str("\",route=\"");
            escape_label_value(&mut labels, route);
            labels.push('"');
            histogram_series(out, "http_request_duration_seconds", &labels, h);
        }
    }
}

/// Locks, recovering from poisoning: metrics must never take the server down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Text format writing
// ---------------------------------------------------------------------------------------

fn header(out: &mut String, name: &str, help: &str, ty: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(ty);
    out.push('\n');
}

/// Escapes a label value per the text format: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Float in exposition syntax: Rust `{}` formatting, `+Inf`/`-Inf`/`NaN` for the rest.
fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {v}");
}

fn counter_vec<L: Label, const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    vec: &CounterVec<L, N>,
) {
    header(out, name, help, "counter");
    for l in L::ALL {
        out.push_str(name);
        out.push('{');
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, l.as_str());
        let _ = writeln!(out, "\"}} {}", vec.get(*l));
    }
}

fn gauge_vec<L: Label, const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    vec: &GaugeVec<L, N>,
) {
    header(out, name, help, "gauge");
    for l in L::ALL {
        out.push_str(name);
        out.push('{');
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, l.as_str());
        let _ = writeln!(out, "\"}} {}", vec.get(*l));
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    header(out, name, help, "histogram");
    histogram_series(out, name, "", h);
}

/// One histogram series; `labels` is `k="v",...` (already escaped) or empty.
fn histogram_series(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let cumulative = h.cumulative_counts();
    let sep = if labels.is_empty() { "" } else { "," };
    for (i, n) in cumulative.iter().enumerate() {
        let _ = write!(out, "{name}_bucket{{{labels}{sep}le=\"");
        match h.bounds.get(i) {
            Some(b) => write_f64(out, *b),
            None => out.push_str("+Inf"),
        }
        let _ = writeln!(out, "\"}} {n}");
    }
    let count = cumulative.last().copied().unwrap_or(0);
    let braced = |out: &mut String, suffix: &str| {
        if labels.is_empty() {
            let _ = write!(out, "{name}{suffix} ");
        } else {
            let _ = write!(out, "{name}{suffix}{{{labels}}} ");
        }
    };
    braced(out, "_sum");
    write_f64(out, h.sum());
    out.push('\n');
    braced(out, "_count");
    let _ = writeln!(out, "{count}");
}

// ---------------------------------------------------------------------------------------
// Process metrics (/proc/self)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct ProcessStats {
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads what it can; every field is `None` when its source is unreadable.
    fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let mut s = Self::default();
        if let Some(status) = read("/proc/self/status") {
            s.resident_bytes =
                parse_status_kb(&status, "VmRSS").and_then(|kb| kb.checked_mul(1024));
            s.virtual_bytes =
                parse_status_kb(&status, "VmSize").and_then(|kb| kb.checked_mul(1024));
        }
        if (s.resident_bytes.is_none() || s.virtual_bytes.is_none())
            && let Some((size, resident)) =
                read("/proc/self/statm").as_deref().and_then(parse_statm)
        {
            s.virtual_bytes = s.virtual_bytes.or(size.checked_mul(FALLBACK_PAGE_SIZE));
            s.resident_bytes = s
                .resident_bytes
                .or(resident.checked_mul(FALLBACK_PAGE_SIZE));
        }
        s.cpu_seconds = read("/proc/self/stat")
            .as_deref()
            .and_then(parse_stat_cpu_seconds);
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.flatten().count() as u64);
        s.max_fds = read("/proc/self/limits")
            .as_deref()
            .and_then(parse_limits_max_fds);
        s
    }
}

/// `Key:   1234 kB` line of /proc/self/status -> 1234.
fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let v = it.next()?.parse().ok()?;
        match it.next() {
            None | Some("kB") => Some(v),
            Some(_) => None,
        }
    })
}

/// /proc/self/statm -> (size, resident) in pages.
fn parse_statm(statm: &str) -> Option<(u64, u64)> {
    let mut it = statm.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// utime + stime (fields 14 and 15 of /proc/self/stat) in seconds. The comm field (2) may
/// contain spaces and parentheses, so fields are counted after the *last* `)`.
fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state): field 14 is index 11, field 15 index 12.
    let mut it = rest.split_whitespace();
    let utime: u64 = it.nth(11)?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// Soft limit from the "Max open files" line of /proc/self/limits (`None` if unlimited).
fn parse_limits_max_fds(limits: &str) -> Option<u64> {
    limits.lines().find_map(|line| {
        line.strip_prefix("Max open files")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn render_process(out: &mut String, p: &ProcessStats, start_time: SystemTime) {
    if let Some(v) = p.cpu_seconds {
        header(
            out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
        );
        out.push_str("process_cpu_seconds_total ");
        write_f64(out, v);
        out.push('\n');
    }
    let gauges = [
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        if let Some(v) = v {
            header(out, name, help, "gauge");
            let _ = writeln!(out, "{name} {v}");
        }
    }
    if let Ok(d) = start_time.duration_since(UNIX_EPOCH) {
        header(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
        );
        out.push_str("process_start_time_seconds ");
        write_f64(out, d.as_secs_f64());
        out.push('\n');
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const BUILD: BuildInfo = BuildInfo {
        version: "0.1.0",
        commit: "abc123",
        rustc: "1.95.0",
    };

    const FAMILIES: &[(&str, &str)] = &[
        ("http_requests_total", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("http_bad_requests_total", "counter"),
        ("websocket_connections_current", "gauge"),
        ("websocket_connections_total", "counter"),
        ("websocket_connections_rejected_total", "counter"),
        ("websocket_messages_sent_total", "counter"),
        ("websocket_pings_sent_total", "counter"),
        ("websocket_pong_timeouts_total", "counter"),
        ("websocket_inbound_dropped_total", "counter"),
        ("websocket_connection_duration_seconds", "histogram"),
        ("broadcaster_active_sessions", "gauge"),
        ("broadcaster_slow_clients_evicted_total", "counter"),
        ("broadcaster_updates_published_total", "counter"),
        ("broadcaster_updates_coalesced_total", "counter"),
        ("vote_processing_total", "counter"),
        ("vote_processing_duration_seconds", "histogram"),
        ("vote_trigger_matches_total", "counter"),
        ("chat_messages_received_total", "counter"),
        ("chat_lines_dropped_total", "counter"),
        ("store_flush_total", "counter"),
        ("store_flush_duration_seconds", "histogram"),
        ("build_info", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ];

    fn sample_value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn renders_every_family_when_zero() {
        let m = Metrics::new(BUILD);
        let text = m.render();
        for (name, ty) in FAMILIES {
            assert!(text.contains(&format!("# HELP {name} ")), "HELP {name}");
            assert!(
                text.contains(&format!("# TYPE {name} {ty}\n")),
                "TYPE {name}"
            );
        }
        // Each family header exactly once.
        for (name, _) in FAMILIES {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
        // Every known label value of enum-labelled families is present at 0.
        for r in RejectReason::ALL {
            let s = format!("websocket_connections_rejected_total{{reason=\"{r}\"}}");
            assert_eq!(sample_value(&text, &s).as_deref(), Some("0"), "{s}");
        }
        for r in VoteResult::ALL {
            let s = format!("vote_processing_total{{result=\"{r}\"}}");
            assert_eq!(sample_value(&text, &s).as_deref(), Some("0"), "{s}");
        }
        for (s, n) in [
            ("websocket_connections_total{result=\"accepted\"}", "0"),
            ("websocket_connections_total{result=\"unknown_token\"}", "0"),
            ("websocket_inbound_dropped_total{reason=\"too_large\"}", "0"),
            ("websocket_inbound_dropped_total{reason=\"protocol\"}", "0"),
            ("vote_trigger_matches_total{side=\"for\"}", "0"),
            ("vote_trigger_matches_total{side=\"against\"}", "0"),
            (
                "chat_messages_received_total{source=\"eventsub_webhook\"}",
                "0",
            ),
            ("chat_lines_dropped_total{reason=\"too_long\"}", "0"),
            (
                "http_bad_requests_total{reason=\"unsupported_encoding\"}",
                "0",
            ),
            ("store_flush_total{result=\"ok\"}", "0"),
            ("store_flush_total{result=\"error\"}", "0"),
            ("websocket_connections_current", "0"),
            (
                "websocket_connection_duration_seconds_bucket{le=\"14400\"}",
                "0",
            ),
            (
                "websocket_connection_duration_seconds_bucket{le=\"+Inf\"}",
                "0",
            ),
            ("websocket_connection_duration_seconds_count", "0"),
            ("websocket_connection_duration_seconds_sum", "0"),
            (
                "vote_processing_duration_seconds_bucket{le=\"0.00001\"}",
                "0",
            ),
            (
                "build_info{version=\"0.1.0\",commit=\"abc123\",rustc=\"1.95.0\"}",
                "1",
            ),
        ] {
            assert_eq!(sample_value(&text, s).as_deref(), Some(n), "{s}");
        }
        assert!(text.ends_with('\n'));
        // Integers carry no decimal point.
        assert!(!text.contains(" 0.0\n") && !text.contains(" 1.0\n"));
    }

    #[test]
    fn values_render() {
        let m = Metrics::new(BUILD);
        m.ws_connections_current.inc();
        m.ws_connections_current.inc();
        m.ws_connections_current.dec();
        m.broadcaster_active_sessions.set(-3);
        m.ws_rejected.add(RejectReason::IpLimit, 5);
        m.ws_messages_sent.add(7);
        m.observe_store_flush(false, 0.002);
        m.observe_vote(VoteResult::Applied, 0.00002);
        let text = m.render();
        for (s, n) in [
            ("websocket_connections_current", "1"),
            ("broadcaster_active_sessions", "-3"),
            (
                "websocket_connections_rejected_total{reason=\"ip_limit\"}",
                "5",
            ),
            ("websocket_messages_sent_total", "7"),
            ("store_flush_total{result=\"error\"}", "1"),
            ("store_flush_total{result=\"ok\"}", "0"),
            ("store_flush_duration_seconds_bucket{le=\"0.001\"}", "0"),
            ("store_flush_duration_seconds_bucket{le=\"0.005\"}", "1"),
            ("store_flush_duration_seconds_sum", "0.002"),
            ("vote_processing_total{result=\"applied\"}", "1"),
            (
                "vote_processing_duration_seconds_bucket{le=\"0.00005\"}",
                "1",
            ),
        ] {
            assert_eq!(sample_value(&text, s).as_deref(), Some(n), "{s}");
        }
    }

    #[test]
    fn histogram_is_cumulative_and_count_matches_inf() {
        static BOUNDS: &[f64] = &[0.1, 0.5, 1.0];
        let h = Histogram::new(BOUNDS);
        for v in [0.05, 0.1, 0.2, 0.5, 0.7, 1.0, 3.0, 100.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        // NaN ignored; -1 lands in the first bucket; bounds are inclusive (le).
        assert_eq!(h.cumulative_counts(), vec![3, 5, 7, 9]);
        assert_eq!(h.count(), 9);
        assert!((h.sum() - 104.55).abs() < 1e-9);

        let mut out = String::new();
        histogram(&mut out, "x_seconds", "help", &h);
        let buckets: Vec<u64> = out
            .lines()
            .filter(|l| l.starts_with("x_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets, vec![3, 5, 7, 9]);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 9\n"));
        assert!(out.contains("x_seconds_bucket{le=\"0.1\"} 3\n"));
        assert!(out.contains("x_seconds_bucket{le=\"1\"} 7\n"));
        assert!(out.contains("x_seconds_count 9\n"));

        // Labelled HTTP series: _count equals +Inf, per series.
        let m = Metrics::new(BUILD);
        for s in [0.0001, 0.003, 0.003, 20.0] {
            m.observe_http("GET", "/overlay/{token}", 200, s);
        }
        let text = m.render();
        let inf = "http_request_duration_seconds_bucket{method=\"GET\",route=\"/overlay/{token}\",le=\"+Inf\"}";
        let cnt = "http_request_duration_seconds_count{method=\"GET\",route=\"/overlay/{token}\"}";
        assert_eq!(sample_value(&text, inf).as_deref(), Some("4"));
        assert_eq!(sample_value(&text, cnt).as_deref(), Some("4"));
        let le5ms = "http_request_duration_seconds_bucket{method=\"GET\",route=\"/overlay/{token}\",le=\"0.005\"}";
        assert_eq!(sample_value(&text, le5ms).as_deref(), Some("3"));
        let le10 = "http_request_duration_seconds_bucket{method=\"GET\",route=\"/overlay/{token}\",le=\"10\"}";
        assert_eq!(sample_value(&text, le10).as_deref(), Some("3"));
    }

    #[test]
    fn float_formatting() {
        let mut s = String::new();
        for v in [
            0.0005,
            1.0,
            2.5,
            0.00001,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.0,
        ] {
            write_f64(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0.0005 1 2.5 0.00001 +Inf -Inf NaN 0 ");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new(BuildInfo {
            version: "1.0 \"beta\"",
            commit: "a\\b\nc",
            rustc: "rustc 1.95.0 (59807616e 2026-04-14)",
        });
        m.observe_http("GET", "/q\"x\\y", 404, 0.01);
        let text = m.render();
        assert!(text.contains(
            "build_info{version=\"1.0 \\\"beta\\\"\",commit=\"a\\\\b\\nc\",rustc=\"rustc 1.95.0 (59807616e 2026-04-14)\"} 1\n"
        ));
        assert!(text.contains(
            "http_requests_total{method=\"GET\",route=\"/q\\\"x\\\\y\",status=\"404\"} 1\n"
        ));
        // No raw newline leaked into a sample line.
        assert!(
            text.lines()
                .all(|l| l.is_empty() || l.starts_with('#') || l.contains(' '))
        );

        let mut h = String::new();
        header(&mut h, "n", "a\\b\nc \"q\"", "gauge");
        assert_eq!(h, "# HELP n a\\\\b\\nc \"q\"\n# TYPE n gauge\n");
    }

    #[test]
    fn http_map_grows_only_per_distinct_key() {
        let m = Metrics::new(BUILD);
        for _ in 0..100 {
            m.observe_http("GET", "/overlay/{token}", 200, 0.001);
            m.observe_http("GET", "/overlay/{token}", 404, 0.001);
            m.observe_http("POST", "/api/vote", 200, 0.001);
            m.observe_http("GET", "unmatched", 404, 0.001);
        }
        {
            let s = lock(&m.http);
            assert_eq!(s.requests.len(), 4);
            assert_eq!(s.durations.len(), 3);
        }
        assert_eq!(m.http_requests("GET", "/overlay/{token}", 200), 100);
        assert_eq!(m.http_requests("GET", "unmatched", 404), 100);
        assert_eq!(m.http_requests("DELETE", "unmatched", 404), 0);
        let text = m.render();
        assert_eq!(text.matches("http_requests_total{").count(), 4);
        assert_eq!(
            text.matches("http_request_duration_seconds_count{").count(),
            3
        );
        // Deterministic order: BTreeMap sorted by (method, route, status).
        let a = text.find("status=\"200\"").unwrap();
        let b = text.find("status=\"404\"").unwrap();
        assert!(a < b);
    }

    #[test]
    fn concurrent_increments_sum() {
        let m = Arc::new(Metrics::new(BUILD));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        m.ws_messages_sent.inc();
                        m.ws_connections_current.inc();
                        m.chat_messages_received
                            .inc(ChatSource::ALL[t % ChatSource::COUNT]);
                        m.vote_processing.inc(VoteResult::Applied);
                        m.vote_processing_duration.observe(0.25);
                        if i % 10 == 0 {
                            m.observe_http("GET", "/metrics", 200, 0.5);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.ws_messages_sent.get(), 40_000);
        assert_eq!(m.ws_connections_current.get(), 40_000);
        assert_eq!(m.vote_processing.get(VoteResult::Applied), 40_000);
        let per_source: u64 = ChatSource::ALL
            .iter()
            .map(|s| m.chat_messages_received.get(*s))
            .sum();
        assert_eq!(per_source, 40_000);
        assert_eq!(m.vote_processing_duration.count(), 40_000);
        assert_eq!(m.vote_processing_duration.sum(), 10_000.0);
        assert_eq!(m.http_requests("GET", "/metrics", 200), 4_000);
    }

    #[test]
    fn parses_proc_stat_with_odd_comm() {
        let stat = "12345 (chat pulse) (x) S 1 12345 12345 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 8 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n";
        assert_eq!(parse_stat_cpu_seconds(stat), Some(3.25));
        // Comm ending in ") " with digits must not shift the fields.
        let tricky = "7 (a) 1 2 3) R 1 7 7 0 -1 0 0 0 0 0 12 8 0 0 20 0 1 0 5 100 10\n";
        assert_eq!(parse_stat_cpu_seconds(tricky), Some(0.2));
        assert_eq!(parse_stat_cpu_seconds("garbage"), None);
        assert_eq!(parse_stat_cpu_seconds("1 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_seconds(""), None);
    }

    #[test]
    fn parses_other_proc_files() {
        let status =
            "Name:\tchatpulse\nVmPeak:\t  20000 kB\nVmSize:\t   18000 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(5120));
        assert_eq!(parse_status_kb(status, "VmSize"), Some(18000));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(
            parse_statm("4500 1280 300 10 0 900 0\n"),
            Some((4500, 1280))
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_limits_max_fds(limits), Some(1024));
        assert_eq!(
            parse_limits_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );

        let p = ProcessStats {
            resident_bytes: Some(5120 * 1024),
            virtual_bytes: None,
            cpu_seconds: Some(3.25),
            open_fds: Some(12),
            max_fds: Some(1024),
        };
        let mut out = String::new();
        render_process(
            &mut out,
            &p,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
        );
        assert!(out.contains(
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.25\n"
        ));
        assert!(out.contains("process_resident_memory_bytes 5242880\n"));
        assert!(!out.contains("process_virtual_memory_bytes"));
        assert!(out.contains("process_open_fds 12\n"));
        assert!(out.contains("process_max_fds 1024\n"));
        assert!(out.contains("process_start_time_seconds 1700000000.5\n"));

        let mut none = String::new();
        render_process(
            &mut none,
            &ProcessStats::default(),
            UNIX_EPOCH - Duration::from_secs(1),
        );
        assert!(none.is_empty());
    }

    #[test]
    fn reads_live_proc_without_panicking() {
        let p = ProcessStats::read();
        if cfg!(target_os = "linux") && std::path::Path::new("/proc/self/stat").exists() {
            assert!(p.resident_bytes.unwrap() > 0);
            assert!(p.virtual_bytes.unwrap() >= p.resident_bytes.unwrap());
            assert!(p.open_fds.unwrap() >= 3);
            assert!(p.cpu_seconds.is_some());
            let text = Metrics::new(BUILD).render();
            for name in [
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_cpu_seconds_total",
                "process_open_fds",
            ] {
                assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            }
        }
    }

    /// Writes a populated exposition to `$CHATPULSE_METRICS_DUMP` (if set) so it can be
    /// checked with `promtool check metrics < file`.
    #[test]
    fn render_sample_for_promtool() {
        let m = Metrics::new(BuildInfo {
            version: "0.1.0",
            commit: "dirty\"x\\y",
            rustc: "rustc 1.95.0",
        });
        m.observe_http("GET", "/overlay/{token}", 200, 0.004);
        m.observe_http("GET", "unmatched", 404, 0.0001);
        m.observe_http("POST", "/api/vote", 500, 12.0);
        m.http_bad_requests.inc(BadRequest::HeadTimeout);
        m.ws_connections.inc(WsConnectResult::Accepted);
        m.ws_connection_duration.observe(42.0);
        m.observe_vote(VoteResult::NoMatch, 0.0003);
        m.vote_trigger_matches.inc(VoteSide::Against);
        m.observe_store_flush(true, 0.02);
        let text = m.render();
        assert!(text.len() > 1000);
        if let Some(path) = std::env::var_os("CHATPULSE_METRICS_DUMP") {
            std::fs::write(&path, &text).unwrap();
            std::fs::write(
                std::path::Path::new(&path).with_extension("empty.prom"),
                Metrics::new(BUILD).render(),
            )
            .unwrap();
        }
    }

    #[test]
    fn metrics_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Metrics>();
    }
}
