//! Nothing leaks: a node holding known secrets (client, webhook, mesh and
//! session secrets, the admin password, a live session) gets a battery of
//! hostile requests; no answer carries a secret, an overlay token it was not
//! sent, a path of the data dir, a panic or SQL, and every error is catalogue-shaped.

use std::time::Duration;

use chatpulse::app::now_ms;

use super::ROOMY;
use super::dashboard::{PASSWORD, sign_in, start_home};
use super::http::UPGRADE;
use super::sources::{WEBHOOK_SECRET, signed};
use crate::common::fake_helix::{CLIENT_SECRET, FakeHelix, rfc3339};
use crate::common::web::Web;
use crate::common::{http_raw, run};

const SESSION_SECRET: &str = "catalogue-session-secret-0123456789abcdef";
const MESH_SECRET: &str = "catalogue-mesh-secret-0123";
/// An internet client behind the trusted proxy (a hostile entry on its left).
const FORWARDED: &str = "' OR 1=1 --, 198.51.100.23";

/// A request from [`FORWARDED`] with `headers` and `body`.
fn hostile(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: chatpulse.example\r\nConnection: close\r\n\
         X-Forwarded-For: {FORWARDED}\r\n"
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    let mut out = (head + "\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// What an error answer may look like: the catalogue's JSON or one of our pages.
fn catalogue_shaped(status: u16, head: &str, body: &str) -> bool {
    let head = head.to_ascii_lowercase();
    if head.contains("content-type: application/json") {
        const TYPES: &[&str] = &[
            "not_found",
            "method_not_allowed",
            "head_too_large",
            "body_too_large",
            "length_required",
            "bad_request",
            "forbidden",
            "rate_limited",
            "unavailable",
            "internal",
            "unauthorized",
            "csrf",
            "validation",
            "conflict",
        ];
        let Some(rest) = body.strip_prefix("{\"error\":\"") else {
            return false;
        };
        return TYPES.iter().any(|t| {
            let kind = format!("\",\"type\":\"{t}\"");
            rest.contains(&kind)
                && (rest.ends_with(&format!("{kind}}}")) || matches!(*t, "validation" | "conflict"))
        });
    }
    let page = head.contains("content-type: text/html") && body.contains("<html");
    page && (status == 404 || body.contains("id=\"message\"") || body.contains("role=\"alert\""))
}

#[test]
fn nothing_leaks() {
    run(Duration::from_secs(120), async {
        let fake = FakeHelix::start().await;
        fake.add_user("streamer", "1971641");
        let toml = format!(
            "{ROOMY}\n[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[auth]\n\
             session_secret = \"{SESSION_SECRET}\"\n\n[mesh]\nlisten = \"127.0.0.1:0\"\n\
             secret = \"{MESH_SECRET}\"\n\n{}",
            fake.webhook_toml(WEBHOOK_SECRET, "2914196", &["streamer"])
        );
        let srv = start_home(&toml).await;
        let a = srv.addr;
        let token = srv.token("streamer");
        let (web, csrf) = sign_in(a).await;
        let session = web.cookie("chatpulse_session").expect("a session");
        let data_dir = srv.data_dir.display().to_string();
        let secrets = [
            CLIENT_SECRET,
            WEBHOOK_SECRET,
            MESH_SECRET,
            SESSION_SECRET,
            PASSWORD,
            session.as_str(),
        ];

        let signed_in = format!("chatpulse_session={session}");
        let forged = format!("chatpulse_session={}x", &session[..session.len() - 1]);
        let fat_cookie = format!("chatpulse_session={}", "A".repeat(7000));
        let api = "/api/config?channel=streamer";
        let json = [("Content-Type", "application/json")];
        let me = [
            ("Cookie", signed_in.as_str()),
            ("X-CSRF-Token", csrf.as_str()),
        ];
        let me_json = [me[0], me[1], json[0]];
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let bearer = |s: &str| format!("Bearer {s}");
        let (b_mesh, b_client) = (bearer(MESH_SECRET), bearer(CLIENT_SECRET));
        let deep = format!("{{\"for_label\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        let many_triggers = format!("{{\"for_triggers\":[{}\"x\"]}}", "\"a\",".repeat(2000));
        let sig = format!("sha256={WEBHOOK_SECRET}");
        let webhook = signed(
            "wrong-secret-0123",
            "leak-1",
            &rfc3339(now_ms()),
            "notification",
            "channel.chat.message",
            "{}",
        );
        let webhook: Vec<(&str, &str)> = webhook
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut with_secret_sig = webhook.clone();
        with_secret_sig[2].1 = &sig;
        let login_secret = format!("password={WEBHOOK_SECRET}&csrf_token={SESSION_SECRET}");
        let secret_query = format!(
            "/nope?client_secret={CLIENT_SECRET}&webhook_secret={WEBHOOK_SECRET}&s={session}"
        );

        let mut battery: Vec<Vec<u8>> = vec![
            // Heads no parser should like.
            [b"GET / HTTP/1.1\r\nX-Big: ".as_slice(), &[b'a'; 9000], b"\r\n\r\n"].concat(),
            format!("GET / HTTP/1.1\r\n{}\r\n", "X-N: 1\r\n".repeat(60)).into_bytes(),
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            b"GET /\x00 HTTP/1.1\r\n\r\n".to_vec(),
            format!("GET / HTTP/1.1\nHost: x\nX-Forwarded-For: {FORWARDED}\n\n").into_bytes(),
            b"GET / HTTP/1.1\r\nX-Bad: \xff\r\n\r\n".to_vec(),
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"CONNECT chatpulse.example:443 HTTP/1.1\r\n\r\n".to_vec(),
            b"GET /health/live HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
            b"POST /login HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            hostile("TRACE", "/", &[], b""),
            hostile("FOO", "/api/config", &[], b""),
            // Paths: traversal, SQL, the data dir, bad escapes.
            hostile("GET", "/../../etc/passwd", &[], b""),
            hostile("GET", "/%2e%2e/%2e%2e/chatpulse.sqlite", &[], b""),
            hostile("GET", "/overlay/..%2f..%2fstate.redb", &[], b""),
            hostile("GET", "/overlay/'%20UNION%20SELECT%20overlay_token%20FROM%20streamers--", &[], b""),
            hostile("GET", "/ws/overlay/%ff%fe", &[], b""),
            hostile("GET", "/api/config?channel=streamer'%20OR%20'1'='1", &[me[0]], b""),
            hostile("GET", "/api/config?channel=%27%3B%20DROP%20TABLE%20streamers%3B--", &[me[0]], b""),
            hostile("GET", &format!("/overlay/{}", "A".repeat(7000)), &[], b""),
            hostile("GET", "/", &[], b""),
            // Sessions and CSRF.
            hostile("GET", "/api/channels", &[("Cookie", &forged)], b""),
            hostile("GET", "/api/channels", &[("Cookie", &fat_cookie)], b""),
            hostile("GET", "/api/channels", &[("Cookie", "chatpulse_session=\"; chatpulse_session=%00")], b""),
            hostile("GET", "/api/channels", &[("Cookie", &format!("chatpulse_session={SESSION_SECRET}"))], b""),
            hostile("GET", "/dashboard", &[("Cookie", &forged)], b""),
            hostile("POST", "/api/reset?channel=streamer", &[me[0], ("X-CSRF-Token", SESSION_SECRET)], b""),
            hostile("POST", "/api/reset?channel=streamer", &[me[0], ("X-CSRF-Token", &session)], b""),
            hostile("POST", "/api/rotate?channel=streamer", &[me[0]], b""),
            hostile("POST", "/auth/logout", &[me[0], form[0]], b"csrf_token=' OR 1=1 --"),
            hostile("POST", "/dashboard/config", &[me[0], form[0]], b"csrf_token=%00&theme=light"),
            // Bodies the dashboard API must refuse calmly.
            hostile("POST", api, &me_json, b"not json"),
            hostile("POST", api, &me_json, b"{\"theme\":\"'); DROP TABLE streamers; --\"}"),
            hostile("POST", api, &me_json, b"{\"memory_seconds\":1e309,\"decay_speed\":\"NaN\"}"),
            hostile("POST", api, &me_json, b"{\"version\":-1}"),
            hostile("POST", api, &me_json, b"{\"for_triggers\":\"\\u0000\"}"),
            hostile("POST", api, &me_json, b"\xff\xfe{\"theme\":\"dark\"}"),
            hostile("POST", api, &me_json, deep.as_bytes()),
            hostile("POST", api, &me_json, many_triggers.as_bytes()),
            hostile("POST", api, &me_json, &[b'{'; 16 * 1024 + 1]),
            hostile("POST", "/api/test-vote?channel=streamer&side=%27", &me, b""),
            hostile("POST", "/dashboard/config?channel=streamer", &[me[0], form[0]],
                format!("csrf_token={csrf}&memory_seconds=' OR 1=1").as_bytes()),
            hostile("POST", "/login", &form, b"password=' OR '1'='1&csrf_token=x"),
            hostile("POST", "/login", &[form[0], ("Cookie", "chatpulse_csrf=AAAAAAAAAAAAAAAAAAAAAA")],
                login_secret.as_bytes()),
            // The server's own secrets, sent back at it.
            hostile("GET", &secret_query, &[], b""),
            hostile("GET", &format!("/overlay/{WEBHOOK_SECRET}"), &[("X-Secret", MESH_SECRET)], b""),
            hostile("GET", &format!("/ws/overlay/{MESH_SECRET}"), &UPGRADE, b""),
            hostile("GET", "/api/mesh", &[("Authorization", &b_mesh)], b""),
            hostile("GET", "/api/mesh", &[("Authorization", &b_client)], b""),
            hostile("GET", &format!("/api/channels?chatpulse_session={session}"), &[], b""),
            hostile("POST", "/api/reset", &form, format!("chatpulse_session={session}").as_bytes()),
            hostile("GET", &format!("/auth/callback?error=x&error_description={CLIENT_SECRET}"), &[], b""),
            hostile("GET", &format!("/api/config?channel={token}"), &[], b""),
            hostile("GET", &format!("/overlay/{token}"), &[], b""),
            hostile("GET", "/api/overlay-url?channel=streamer", &[], b""),
            // The webhook: the wrong secret, and the right one in the wrong places.
            hostile("POST", "/webhooks/eventsub", &webhook, b"{}"),
            hostile("POST", "/webhooks/eventsub", &with_secret_sig, b"{}"),
            hostile("POST", &format!("/webhooks/eventsub?secret={WEBHOOK_SECRET}"), &webhook,
                format!("{{\"challenge\":\"{WEBHOOK_SECRET}\"}}").as_bytes()),
            hostile("GET", "/webhooks/eventsub", &[("Twitch-Eventsub-Message-Signature", &sig)], b""),
        ];
        // A verification is answered with its challenge, but only once the signature holds.
        battery.push(hostile(
            "POST",
            "/webhooks/eventsub",
            &webhook,
            b"{\"challenge\":\"x\"}",
        ));

        for req in &battery {
            let shown = String::from_utf8_lossy(&req[..req.len().min(300)]).to_string();
            let Some((status, head, body)) = http_raw(a, req).await else {
                continue; // closed without an answer
            };
            let text = format!("{head}\r\n\r\n{body}");
            let lower = text.to_ascii_lowercase();
            for needle in ["panicked", "backtrace", "sqlite", "sql", "redb"] {
                assert!(
                    !lower.contains(needle),
                    "{needle:?} in the answer to {shown}:\n{text}"
                );
            }
            for secret in secrets.iter().chain([&data_dir.as_str()]) {
                assert!(
                    !text.contains(secret),
                    "a secret in the answer to {shown}:\n{text}"
                );
            }
            let asked = String::from_utf8_lossy(req).contains(&token);
            assert!(
                asked || !text.contains(&token),
                "the overlay token in the answer to {shown}"
            );
            assert_ne!(status, 500, "{shown}:\n{text}");
            if status >= 400 {
                assert!(catalogue_shaped(status, &head, &body), "{shown}:\n{text}");
            }
        }
        assert_eq!(Web::new(a).get("/health/live").await.status, 200);
        srv.stop().await;
    });
}
