//! `chatpulse doctor` (the real binary) against real nginx in front of three
//! nodes, with the shipped site file and with deliberately broken variants it
//! must diagnose: no Upgrade headers, and an idle timeout shorter than the
//! nodes' 30 s ping. Also a path that is not ChatPulse's, and a node serving
//! TLS itself. Skipped loudly without nginx unless CHATPULSE_TEST_REQUIRE_TOOLS=1.

use std::net::SocketAddr;
use std::process::{Command, Output};

use crate::common::fake_irc::{cert_path, private_key_path};
use crate::common::{ONE_CHANNEL, TEST_TIMEOUT, TestServer, run};
use crate::nginx::{Nginx, addrs, three_nodes};

fn doctor(args: &[String]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .arg("doctor")
        .args(args)
        .env("CHATPULSE_LOG_LEVEL", "off")
        .output()
        .expect("run chatpulse doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn args(url: String, token: &str, backends: &[SocketAddr], quick: bool) -> Vec<String> {
    let mut a = vec![url, "--token".into(), token.into()];
    for b in backends {
        a.push("--backend".into());
        a.push(format!("http://{b}"));
    }
    if quick {
        a.push("--quick".into());
    }
    a
}

#[test]
fn doctor_finds_the_shipped_nginx_setup_healthy_and_evenly_spread() {
    run(TEST_TIMEOUT, async {
        let (nodes, token) = three_nodes().await;
        let Some(nginx) = Nginx::start(&addrs(&nodes)).await else {
            return;
        };
        let url = format!("http://{}", nginx.addr);
        let (out, text) = doctor(&args(url, &token, &addrs(&nodes), true));
        assert!(out.status.success(), "{text}");
        for line in [
            "ok    /health/live",
            "ok    /health/ready",
            "ok    latency",
            "ok    WebSocket upgrade",
            "skip  idle socket",
            "ok    spread             30 overlays: 10/10/10",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        drop(nginx);
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn doctor_diagnoses_a_proxy_that_drops_the_upgrade_headers() {
    run(TEST_TIMEOUT, async {
        let (nodes, token) = three_nodes().await;
        let strip = |conf: String| {
            conf.replace("        proxy_set_header Upgrade $http_upgrade;\n", "")
                .replace("        proxy_set_header Connection \"upgrade\";\n", "")
        };
        let Some(nginx) = Nginx::start_edited(&addrs(&nodes), strip).await else {
            return;
        };
        let (out, text) = doctor(&args(format!("http://{}", nginx.addr), &token, &[], true));
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("ok    /health/ready"), "{text}");
        assert!(
            text.contains("FAIL  WebSocket upgrade  400: the node got a plain GET"),
            "{text}"
        );
        assert!(
            text.contains("proxy_set_header Upgrade $http_upgrade"),
            "{text}"
        );
        drop(nginx);
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn doctor_diagnoses_an_idle_timeout_shorter_than_the_ping_interval() {
    run(TEST_TIMEOUT, async {
        let (nodes, token) = three_nodes().await;
        let short = |conf: String| {
            assert!(conf.contains("proxy_read_timeout 3600s;"));
            conf.replace("proxy_read_timeout 3600s;", "proxy_read_timeout 4s;")
        };
        let Some(nginx) = Nginx::start_edited(&addrs(&nodes), short).await else {
            return;
        };
        // Bounded: nginx cuts the overlay at the first 4 s gap between pings.
        let (out, text) = doctor(&args(format!("http://{}", nginx.addr), &token, &[], false));
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("ok    WebSocket upgrade"), "{text}");
        assert!(text.contains("FAIL  idle socket"), "{text}");
        assert!(text.contains("proxy_read_timeout 3600s"), "{text}");
        drop(nginx);
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn doctor_says_when_the_path_is_wrong_and_checks_a_node_serving_tls() {
    run(TEST_TIMEOUT, async {
        let toml = format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n{ONE_CHANNEL}",
            cert_path("cert.pem"),
            private_key_path()
        );
        let node = TestServer::start_with(&toml, None, None).await;
        let base = format!("https://{}", node.addr);
        let ca = cert_path("ca.pem");
        let (out, text) = doctor(&[
            base.clone(),
            "--ca-file".into(),
            ca.clone(),
            "--quick".into(),
        ]);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("ok    TLS                TLSv1_3"), "{text}");
        assert!(text.contains("more day(s)"), "{text}");
        // Without the private CA the chain is not trusted.
        let (out, text) = doctor(&[base.clone(), "--quick".into()]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("FAIL  TLS"), "{text}");
        // A prefix nothing serves.
        let (out, text) = doctor(&[
            format!("{base}/chatpulse"),
            "--ca-file".into(),
            ca,
            "--quick".into(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("FAIL  /health/live       404"), "{text}");
        node.stop().await;
    });
}
