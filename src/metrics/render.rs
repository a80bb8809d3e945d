//! Prometheus text exposition (format 0.0.4): [`Metrics::render`], which writes every
//! family in a fixed order, and the small writers it is built from (`# HELP`/`# TYPE`
//! headers, label escaping, float syntax, counter/gauge/histogram series).

use std::fmt::Write as _;

use super::process::{ProcessStats, render_process};
use super::{CounterVec, GaugeVec, Histogram, Label, Metrics, lock};

impl Metrics {
    /// Full exposition in Prometheus text format 0.0.4 (serve with
    /// [`CONTENT_TYPE`](super::CONTENT_TYPE)).
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
            "http_connections_open",
            "Open connections that are not overlay WebSockets (requests, keep-alives, handshakes).",
            self.http_connections_open.get(),
        );
        counter_vec(
            out,
            "http_connections_refused_total",
            "TCP connections answered 503 and closed on accept, by the cap they hit.",
            "reason",
            &self.http_connections_refused,
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
            "mesh_forwards_unacked",
            "Chat lines handed to their owner node and not yet acknowledged.",
            self.mesh_forwards_unacked.get(),
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

// ---------------------------------------------------------------------------------------
// Text format writing
// ---------------------------------------------------------------------------------------

pub(super) fn header(out: &mut String, name: &str, help: &str, ty: &str) {
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
pub(super) fn write_f64(out: &mut String, v: f64) {
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
    labelled_rows::<L>(out, name, label, |l| i128::from(vec.get(l)));
}

fn gauge_vec<L: Label, const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    vec: &GaugeVec<L, N>,
) {
    header(out, name, help, "gauge");
    labelled_rows::<L>(out, name, label, |l| i128::from(vec.get(l)));
}

/// One `name{label="value"} n` row per label value of `L`.
fn labelled_rows<L: Label>(out: &mut String, name: &str, label: &str, value: impl Fn(L) -> i128) {
    for l in L::ALL {
        out.push_str(name);
        out.push('{');
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, l.as_str());
        let _ = writeln!(out, "\"}} {}", value(*l));
    }
}

pub(super) fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    header(out, name, help, "histogram");
    histogram_series(out, name, "", h);
}

/// One histogram series; `labels` is `k="v",...` (already escaped) or empty.
fn histogram_series(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let cumulative = h.cumulative_counts();
    let sep = if labels.is_empty() { "" } else { "," };
    for (i, n) in cumulative.iter().enumerate() {
        let _ = write!(out, "{name}_bucket{{{labels}{sep}le=\"");
        match h.bounds().get(i) {
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
