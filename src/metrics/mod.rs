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
//! This module owns the [`Metrics`] registry itself: its fields, constructor and the
//! `observe_*` helpers. The rest lives beside it and is re-exported here, so every
//! `crate::metrics::X` path is unchanged:
//!
//! * `types` — [`Counter`], [`Gauge`], [`Histogram`], [`CounterVec`], [`GaugeVec`], [`Label`];
//! * `labels` — the label enums ([`VoteResult`], [`RejectReason`], …);
//! * `render` — [`Metrics::render`] and the Prometheus text-format writers;
//! * `process` — `/proc/self` readers behind the `process_*` families.

mod labels;
mod process;
mod render;
#[cfg(test)]
mod tests;
mod types;

pub use labels::{
    BadRequest, ChatDropReason, ChatSource, CsrfReason, EventSubWsMessage, FlushResult,
    InboundDropReason, LoginResult, MeshMemberState, RateClass, RejectReason, SlotRefused,
    VoteResult, VoteSide, WebhookResult, WsConnectResult,
};
pub use types::{Counter, CounterVec, Gauge, GaugeVec, Histogram, Label};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

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
    /// `http_connections_open`
    pub http_connections_open: Gauge,
    /// `http_connections_refused_total{reason}`
    pub http_connections_refused: CounterVec<SlotRefused, { SlotRefused::COUNT }>,

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
    /// `mesh_forwards_unacked`: chat lines handed to an owner and not yet acknowledged.
    pub mesh_forwards_unacked: Gauge,
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
            http_connections_open: Gauge::new(),
            http_connections_refused: CounterVec::new(),
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
            mesh_forwards_unacked: Gauge::new(),
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
}

/// Locks, recovering from poisoning: metrics must never take the server down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
