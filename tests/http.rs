//! HTTP surface: routes, health, metrics, headers, and bad input answered
//! with a clear error (never a panic).

use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use crate::common::{TEST_TIMEOUT, TestServer, get, http_raw, read_response, run};

#[test]
fn health_version_and_pages() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let (s, _, body) = get(srv.addr, "/health/live").await;
        assert_eq!(s, 200);
        assert!(body.starts_with("{\"status\":\"ok\",\"uptime\":"), "{body}");
        assert_eq!(get(srv.addr, "/health/ready").await.0, 200);
        assert_eq!(get(srv.addr, "/health/startup").await.0, 200);
        let (s, _, body) = get(srv.addr, "/version").await;
        assert_eq!(s, 200);
        assert!(
            body.contains(&format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{body}"
        );

        let (s, head, body) = get(srv.addr, &format!("/overlay/{}", srv.token("alice"))).await;
        assert_eq!(s, 200);
        assert!(
            head.contains("frame-ancestors *"),
            "OBS may frame the overlay: {head}"
        );
        assert!(!head.to_ascii_lowercase().contains("x-frame-options"));
        assert!(body.contains("/ws/overlay/"));
        let (s, _, body) = get(srv.addr, "/overlay/nope").await;
        assert_eq!(s, 404);
        assert!(
            body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"),
            "page, not JSON, in OBS"
        );

        let (s, head, body) = get(srv.addr, "/").await;
        assert_eq!(s, 200);
        assert!(head.contains("frame-ancestors 'none'") && head.contains("x-frame-options: DENY"));
        assert!(
            head.contains("x-content-type-options: nosniff") && head.contains("referrer-policy:")
        );
        assert!(
            body.contains(&srv.token("alice")),
            "landing lists overlay URLs to local clients"
        );
        srv.stop().await;
    });
}

#[test]
fn metrics_exposition_is_valid() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        get(srv.addr, "/health/live").await;
        get(srv.addr, "/nope").await;
        let (s, head, body) = get(srv.addr, "/metrics").await;
        assert_eq!(s, 200);
        assert!(head.contains("text/plain; version=0.0.4"));
        for name in [
            "websocket_connections_current",
            "http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 1",
            "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
            "http_request_duration_seconds_bucket",
            "websocket_connections_rejected_total",
            "broadcaster_slow_clients_evicted_total",
            "vote_processing_total",
            "broadcaster_active_sessions",
            "build_info",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(body.contains(name), "missing {name}");
        }
        promtool_check(&body);
        srv.stop().await;
    });
}

/// Prometheus' own linter on our output (CI installs it; required there).
fn promtool_check(body: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CHATPULSE_TEST_REQUIRE_TOOLS").is_err(),
                "promtool required: {e}"
            );
            eprintln!("SKIPPED promtool check: {e}");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn errors_are_json_with_the_right_status() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let (s, _, body) = get(srv.addr, "/no/such/route").await;
        assert_eq!(s, 404);
        assert_eq!(body, "{\"error\":\"no such route\",\"type\":\"not_found\"}");
        let (s, head, body) =
            http_raw(srv.addr, b"DELETE /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        assert_eq!(s, 405);
        assert!(head.contains("allow: GET, HEAD"), "{head}");
        assert!(body.contains("\"type\":\"method_not_allowed\""));
        let (s, _, body) = get(srv.addr, &format!("/ws/overlay/{}", srv.token("alice"))).await;
        assert_eq!(s, 400, "plain GET on the socket route: {body}");
        let (s, _, _) = http_raw(
            srv.addr,
            b"POST /health/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 405, "route and method are checked first");
        let (s, _, body) = http_raw(
            srv.addr,
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(s, 411, "{body}");
        let (s, _, _) = http_raw(
            srv.addr,
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
        )
        .await
        .unwrap();
        assert_eq!(s, 413);
        srv.stop().await;
    });
}

#[test]
fn keep_alive_and_head() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (st, head, _) = read_response(&mut s).await.unwrap();
        assert_eq!(st, 200);
        assert!(head.contains("connection: keep-alive"));
        s.write_all(b"HEAD /version HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // HEAD: a content-length but no body, so the next response follows directly
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8_lossy(&all);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(text.trim_end().ends_with('}'));
        assert_eq!(
            text.matches("\"version\"").count(),
            1,
            "HEAD has no body: {text}"
        );
        srv.stop().await;
    });
}

#[test]
fn bad_input_never_panics() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start_with(
            "[limits]\nhttp_head_timeout = \"300ms\"\n[[channel]]\nlogin = \"alice\"\n",
            None,
            None,
        )
        .await;
        // oversized head
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        big.extend_from_slice(b"\r\n\r\n");
        let (s, _, body) = http_raw(srv.addr, &big).await.unwrap();
        assert_eq!(s, 431, "{body}");
        // garbage bytes (a TLS hello) and non-HTTP text
        for raw in [
            &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n"[..],
            b"HELLO\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\n\r\n",
        ] {
            let (s, _, _) = http_raw(srv.addr, raw).await.unwrap();
            assert_eq!(s, 400, "{raw:?}");
        }
        // slowloris: a head that never completes is closed after the timeout
        let mut slow = TcpStream::connect(srv.addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = slow.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        assert!(started.elapsed() < Duration::from_secs(10));
        let m = srv.metrics();
        assert!(
            m.contains("http_bad_requests_total{reason=\"head_timeout\"} 1"),
            "{m}"
        );
        assert!(m.contains("http_bad_requests_total{reason=\"head_too_large\"} 1"));
        // a connection that just closes, and one that sends half a head then closes
        drop(TcpStream::connect(srv.addr).await.unwrap());
        let mut half = TcpStream::connect(srv.addr).await.unwrap();
        half.write_all(b"GET /hea").await.unwrap();
        drop(half);
        // still serving
        assert_eq!(get(srv.addr, "/health/live").await.0, 200);
        srv.stop().await;
    });
}
