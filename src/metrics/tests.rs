//! Unit tests for the registry, the text writer and the `/proc` parsers.

use super::process::{
    ProcessStats, parse_limits_max_fds, parse_stat_cpu_seconds, parse_statm, parse_status_kb,
    render_process,
};
use super::render::{header, histogram, write_f64};
use super::*;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

const BUILD: BuildInfo = BuildInfo {
    version: "0.1.0",
    commit: "abc123",
    rustc: "1.95.0",
};

const FAMILIES: &[(&str, &str)] = &[
    ("http_requests_total", "counter"),
    ("http_request_duration_seconds", "histogram"),
    ("http_bad_requests_total", "counter"),
    ("http_connections_open", "gauge"),
    ("http_connections_refused_total", "counter"),
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
    let le10 =
        "http_request_duration_seconds_bucket{method=\"GET\",route=\"/overlay/{token}\",le=\"10\"}";
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
    assert!(
        text.contains(
            "http_requests_total{method=\"GET\",route=\"/q\\\"x\\\\y\",status=\"404\"} 1\n"
        )
    );
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
        heap_in_use_bytes: Some(4096),
        heap_free_bytes: Some(0),
    };
    let mut out = String::new();
    render_process(
        &mut out,
        &p,
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
    );
    assert!(
        out.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.25\n")
    );
    assert!(out.contains("process_resident_memory_bytes 5242880\n"));
    assert!(!out.contains("process_virtual_memory_bytes"));
    assert!(out.contains("process_open_fds 12\n"));
    assert!(out.contains("process_max_fds 1024\n"));
    assert!(out.contains("process_heap_in_use_bytes 4096\n"));
    assert!(out.contains("process_heap_free_bytes 0\n"));
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
        if cfg!(target_env = "gnu") {
            assert!(p.heap_in_use_bytes.unwrap() > 0);
            assert!(text.contains("# TYPE process_heap_in_use_bytes gauge"));
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
