//! `chatpulse doctor URL`: the load-balancer troubleshooting guide as a command.
//! Runs its checklist against a deployment (usually the URL viewers use, in
//! front of a proxy) and prints each finding with the fix the guide gives:
//!
//! - `/health/live` and `/health/ready` (404: a wrong path or prefix; 503: which
//!   readiness check fails; 502/504: the proxy reaches no healthy backend);
//! - response latency (median of several `/health/ready`);
//! - the WebSocket upgrade (a probe token must get 101 and close 4404; a 400
//!   "expected a WebSocket upgrade" means a proxy dropped the Upgrade headers);
//! - with `--token`: an overlay held open until two server pings went through
//!   (so a proxy idle timeout shorter than the 30 s ping interval shows), unless
//!   `--quick`;
//! - for `https://`: the certificate chain, its expiry and the TLS version;
//! - with `--token` and several `--backend` URLs: how overlays opened through
//!   the URL spread over the backends (`websocket_connections_current`).
//!
//! Bounded: at most ~70 s for the idle check, a few seconds otherwise. The exit
//! code is non-zero when any check fails.

mod der;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use smol::future::FutureExt;

use futures_rustls::rustls::ClientConfig;

use crate::tls::MaybeTls;
use crate::twitch::http::{HttpClient, Url};

/// Server pings every 30 s (`ws::PING_EVERY`): two pings prove a silence that
/// long survives the path; the first comes at a random offset, so allow 70 s.
const IDLE_LIMIT: Duration = Duration::from_secs(70);
const PINGS_NEEDED: usize = 2;
/// Requests timed for the latency check.
const LATENCY_SAMPLES: usize = 5;
/// Slower than this for a health answer on a LAN or the same box is worth a look.
const SLOW: Duration = Duration::from_millis(300);
/// Overlays per backend opened for the spread check.
const SPREAD_PER_BACKEND: usize = 10;
/// The guide's tolerance for an even spread.
const SPREAD_TOLERANCE: f64 = 0.20;
/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARN_DAYS: i64 = 14;

const FIX_UPGRADE: &str = "the proxy must pass the WebSocket upgrade: nginx `proxy_http_version 1.1; \
proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";` \
(scripts/deploy/nginx/chatpulse.conf); Kubernetes ingress-nginx does this itself, check \
other ingresses' WebSocket support";
const FIX_TIMEOUT: &str = "raise the proxy's idle timeout well above 30 s: nginx \
`proxy_read_timeout 3600s; proxy_send_timeout 3600s;`, AWS ALB `idle_timeout.timeout_seconds = \
3600`, ingress-nginx `nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\"`";
const FIX_NO_BACKEND: &str = "no healthy backend behind the proxy: check each node's \
/health/ready directly, and the proxy's upstream addresses and health checks";
const FIX_PATH: &str = "nothing answers ChatPulse's paths here: check the URL, and that the \
proxy forwards `/` (including /health/ and /ws/) to the nodes without rewriting the path";
const FIX_SPREAD: &str = "use least-connections balancing (nginx `least_conn;`, ALB \
`least_outstanding_requests`) and no session stickiness for /ws/";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub url: String,
    /// Each backend's own URL, for the spread check.
    pub backends: Vec<String>,
    /// A real overlay token (its URL's last part): the idle and spread checks.
    pub token: Option<String>,
    /// Skip the idle-socket check (up to 70 s).
    pub quick: bool,
    /// Extra CA to trust for `https://` (a private CA).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub detail: String,
    pub fix: Option<&'static str>,
}

fn finding(level: Level, check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        level,
        check,
        detail: detail.into(),
        fix: None,
    }
}

fn failing(check: &'static str, detail: impl Into<String>, fix: &'static str) -> Finding {
    Finding {
        fix: Some(fix),
        ..finding(Level::Fail, check, detail)
    }
}

/// The report: one line per finding, its fix below it, then a summary line.
pub fn report(url: &str, findings: &[Finding]) -> String {
    let mut out = format!("chatpulse doctor {url}\n");
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        };
        let _ = writeln!(out, "{tag}  {:<18} {}", f.check, f.detail);
        if let Some(fix) = f.fix {
            let _ = writeln!(out, "      fix: {fix}");
        }
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warned = findings.iter().filter(|f| f.level == Level::Warn).count();
    let _ = match failed {
        0 => writeln!(out, "healthy ({warned} warning(s))"),
        n => writeln!(out, "{n} problem(s), {warned} warning(s)"),
    };
    out
}

/// Runs every check; the findings in order.
pub async fn examine(o: &Options) -> Result<Vec<Finding>, String> {
    let base = o.url.trim_end_matches('/').to_string();
    let url = Url::parse(&base).map_err(|e| e.to_string())?;
    let tls = crate::tls::client_config(o.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let http = HttpClient::new(Arc::clone(&tls));
    let mut out = Vec::new();
    out.push(health(&http, &base, "/health/live").await);
    let ready = health(&http, &base, "/health/ready").await;
    let reachable = ready.level != Level::Fail || ready.detail.starts_with("503");
    out.push(ready);
    if reachable {
        out.push(latency(&http, &base).await);
    }
    if url.tls {
        out.push(tls_check(&url, &tls).await);
    }
    out.push(upgrade(&url, &tls, &random_token()).await);
    match &o.token {
        Some(token) if !o.quick => out.push(idle(&url, &tls, token).await),
        Some(_) => out.push(finding(Level::Skip, "idle socket", "--quick")),
        None => out.push(finding(
            Level::Skip,
            "idle socket",
            "give --token (an overlay URL's last part) to hold an overlay open",
        )),
    }
    if o.backends.len() > 1 {
        out.push(match &o.token {
            Some(token) => spread(&http, &url, &tls, token, &o.backends).await,
            None => finding(Level::Skip, "spread", "needs --token"),
        });
    }
    Ok(out)
}

/// `"key":"value"` from a flat JSON object we wrote ourselves (the node's
/// health answer); no escapes expected.
fn json_text<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

fn random_token() -> String {
    let bytes = crate::auth::encoding::random::<16>().unwrap_or([7; 16]);
    crate::auth::encoding::base64url(&bytes)
}

async fn health(http: &HttpClient, base: &str, path: &'static str) -> Finding {
    let check = path;
    let started = Instant::now();
    let resp = match http
        .request("GET", &format!("{base}{path}"), &[], None)
        .await
    {
        Ok(r) => r,
        Err(e) => return failing(check, format!("no answer: {e}"), FIX_NO_BACKEND),
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let body = resp.text();
    match resp.status {
        200 => finding(
            Level::Ok,
            check,
            format!("200 in {ms:.1} ms {}", body.trim()),
        ),
        404 => failing(check, "404 Not Found".to_string(), FIX_PATH),
        503 => {
            let field = |k: &str| json_text(&body, k).unwrap_or("?");
            let detail = format!(
                "503 not ready: check {:?} says {:?}",
                field("failed_check"),
                field("error")
            );
            Finding {
                fix: Some(
                    "a node that is starting or draining says so for a few seconds; a store \
                     check means the data dir (disk full, permissions); see the node's log",
                ),
                ..finding(Level::Fail, check, detail)
            }
        }
        502 | 504 => failing(
            check,
            format!("{} from the proxy", resp.status),
            FIX_NO_BACKEND,
        ),
        s => failing(check, format!("unexpected {s}: {}", body.trim()), FIX_PATH),
    }
}

async fn latency(http: &HttpClient, base: &str) -> Finding {
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let started = Instant::now();
        if http
            .request("GET", &format!("{base}/health/ready"), &[], None)
            .await
            .is_ok()
        {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    let Some(median) = samples.get(samples.len() / 2) else {
        return finding(Level::Fail, "latency", "no answers");
    };
    let ms = median.as_secs_f64() * 1e3;
    let detail = format!("median {ms:.1} ms over {} requests", samples.len());
    if *median > SLOW {
        Finding {
            fix: Some("slow health answers: check the proxy's and the nodes' load and network"),
            ..finding(Level::Warn, "latency", detail)
        }
    } else {
        finding(Level::Ok, "latency", detail)
    }
}

/// ws(s)://authority/prefix/ws/overlay/<token>.
fn ws_url(url: &Url, token: &str) -> String {
    let scheme = if url.tls { "wss" } else { "ws" };
    let prefix = url.target.trim_end_matches('/');
    format!("{scheme}://{}{prefix}/ws/overlay/{token}", url.authority())
}

type Socket = async_tungstenite::WebSocketStream<MaybeTls>;

/// Opens an overlay socket; `Err` is a finding for `check`.
async fn open(
    url: &Url,
    tls: &Arc<ClientConfig>,
    token: &str,
    check: &'static str,
) -> Result<Socket, Finding> {
    let stream = crate::tls::connect(&url.host, url.port, url.tls.then_some(tls))
        .await
        .map_err(|e| failing(check, format!("cannot connect: {e}"), FIX_NO_BACKEND))?;
    match async_tungstenite::client_async(ws_url(url, token), stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(async_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(match status {
                400 | 426 if body.contains("expected a WebSocket upgrade") || status == 426 => {
                    failing(
                        check,
                        format!("{status}: the node got a plain GET, not an upgrade"),
                        FIX_UPGRADE,
                    )
                }
                404 => failing(check, "404 Not Found".to_string(), FIX_PATH),
                502 | 504 => failing(check, format!("{status} from the proxy"), FIX_NO_BACKEND),
                _ => failing(
                    check,
                    format!("{status} instead of 101: {}", body.trim()),
                    FIX_UPGRADE,
                ),
            })
        }
        Err(e) => Err(failing(
            check,
            format!("handshake failed: {e}"),
            FIX_UPGRADE,
        )),
    }
}

/// A probe token is upgraded, then closed with 4404 by the node itself.
async fn upgrade(url: &Url, tls: &Arc<ClientConfig>, probe: &str) -> Finding {
    let check = "WebSocket upgrade";
    let mut ws = match open(url, tls, probe, check).await {
        Ok(ws) => ws,
        Err(f) => return f,
    };
    let closed = async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Close(frame)) = msg {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    }
    .or(async {
        smol::Timer::after(Duration::from_secs(5)).await;
        None
    })
    .await;
    match closed {
        Some(4404) => finding(
            Level::Ok,
            check,
            "101 Switching Protocols; the node answered a probe token with 4404",
        ),
        other => failing(
            check,
            format!("upgraded, but the node's 4404 close did not come through (got {other:?})"),
            FIX_UPGRADE,
        ),
    }
}

/// Holds a real overlay until two pings passed, or the path cuts it.
async fn idle(url: &Url, tls: &Arc<ClientConfig>, token: &str) -> Finding {
    let check = "idle socket";
    let mut ws = match open(url, tls, token, check).await {
        Ok(ws) => ws,
        Err(f) => return f,
    };
    let started = Instant::now();
    let mut pings = 0;
    let mut last_traffic = Instant::now();
    let mut longest_quiet = Duration::ZERO;
    let outcome = loop {
        let left = IDLE_LIMIT.saturating_sub(started.elapsed());
        let next = async { Some(ws.next().await) }
            .or(async {
                smol::Timer::after(left).await;
                None
            })
            .await;
        match next {
            None => break Err("no ping within 70 s".to_string()),
            Some(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map(|f| u16::from(f.code));
                break Err(format!("closed with {code:?}"));
            }
            Some(None | Some(Err(_))) => break Err("the connection dropped".to_string()),
            Some(Some(Ok(msg))) => {
                longest_quiet = longest_quiet.max(last_traffic.elapsed());
                last_traffic = Instant::now();
                if matches!(msg, Message::Ping(_)) {
                    pings += 1;
                    if pings == PINGS_NEEDED {
                        break Ok(());
                    }
                }
            }
        }
    };
    let quiet = longest_quiet.max(last_traffic.elapsed()).as_secs_f64();
    match outcome {
        Ok(()) => finding(
            Level::Ok,
            check,
            format!(
                "open {:.0} s, {pings} pings answered, quiet for up to {quiet:.0} s",
                started.elapsed().as_secs_f64()
            ),
        ),
        Err(why) => failing(
            check,
            format!(
                "{why} after {:.1} s ({quiet:.1} s without traffic, {pings} ping(s)); the node pings every 30 s, so a proxy idle timeout shorter than that cuts every overlay",
                started.elapsed().as_secs_f64()
            ),
            FIX_TIMEOUT,
        ),
    }
}

/// The certificate the URL's host presents: chain, expiry, protocol.
async fn tls_check(url: &Url, tls: &Arc<ClientConfig>) -> Finding {
    let check = "TLS";
    let stream = match crate::tls::connect(&url.host, url.port, Some(tls)).await {
        Ok(s) => s,
        Err(e) => {
            return failing(
                check,
                format!("handshake failed: {e}"),
                "serve the full chain (leaf first, e.g. certbot's fullchain.pem) for this host name, \
                 not expired; with a private CA, pass it with --ca-file",
            );
        }
    };
    let MaybeTls::Tls(s) = stream else {
        return finding(Level::Fail, check, "no TLS on an https URL");
    };
    let conn = s.get_ref().1;
    let version = conn
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    let certs = conn.peer_certificates().unwrap_or_default();
    let Some(expiry) = certs.first().and_then(|c| der::not_after(c)) else {
        return finding(Level::Warn, check, format!("{version}; expiry unreadable"));
    };
    let days = (expiry - crate::app::now_ms() as i64 / 1000) / 86_400;
    let detail = format!(
        "{version}, chain of {} trusted, certificate valid {days} more day(s)",
        certs.len()
    );
    if days < EXPIRY_WARN_DAYS {
        Finding {
            fix: Some(
                "renew the certificate (certbot renew), then SIGHUP the node or reload the proxy",
            ),
            ..finding(Level::Warn, check, detail)
        }
    } else {
        finding(Level::Ok, check, detail)
    }
}

/// `websocket_connections_current` of a backend.
async fn ws_count(http: &HttpClient, backend: &str) -> Option<i64> {
    let resp = http
        .request(
            "GET",
            &format!("{}/metrics", backend.trim_end_matches('/')),
            &[],
            None,
        )
        .await
        .ok()?;
    resp.text()
        .lines()
        .find_map(|l| l.strip_prefix("websocket_connections_current "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

/// Overlays opened through the URL, counted on each backend.
async fn spread(
    http: &HttpClient,
    url: &Url,
    tls: &Arc<ClientConfig>,
    token: &str,
    backends: &[String],
) -> Finding {
    let check = "spread";
    let mut before = Vec::new();
    for b in backends {
        match ws_count(http, b).await {
            Some(n) => before.push(n),
            None => return finding(Level::Fail, check, format!("no /metrics from {b}")),
        }
    }
    let n = SPREAD_PER_BACKEND * backends.len();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        match open(url, tls, token, check).await {
            Ok(mut ws) => {
                let _ = ws.next().await; // the snapshot: the node has counted it
                held.push(ws);
            }
            Err(f) => return f,
        }
    }
    let mut counts = Vec::new();
    for (b, was) in backends.iter().zip(&before) {
        counts.push(ws_count(http, b).await.unwrap_or(*was) - was);
    }
    drop(held);
    let mean = n as f64 / backends.len() as f64;
    let even = counts
        .iter()
        .all(|&c| ((c as f64) - mean).abs() <= mean * SPREAD_TOLERANCE);
    let shown: Vec<String> = counts.iter().map(i64::to_string).collect();
    let detail = format!(
        "{n} overlays: {} across {} backends",
        shown.join("/"),
        backends.len()
    );
    if even {
        finding(Level::Ok, check, format!("{detail} (within ±20 %)"))
    } else {
        failing(check, format!("{detail}: uneven beyond ±20 %"), FIX_SPREAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls_keep_the_prefix_and_the_scheme() {
        let u = Url::parse("https://example.com/stream/").unwrap();
        assert_eq!(ws_url(&u, "t"), "wss://example.com/stream/ws/overlay/t");
        let u = Url::parse("http://10.0.0.1:8080").unwrap();
        assert_eq!(ws_url(&u, "t"), "ws://10.0.0.1:8080/ws/overlay/t");
    }

    #[test]
    fn the_report_counts_failures_and_shows_fixes() {
        let findings = vec![
            finding(Level::Ok, "/health/live", "200"),
            failing("WebSocket upgrade", "400", FIX_UPGRADE),
            finding(Level::Warn, "latency", "slow"),
        ];
        let r = report("http://x", &findings);
        assert!(r.contains("FAIL  WebSocket upgrade"));
        assert!(r.contains("fix: the proxy must pass the WebSocket upgrade"));
        assert!(r.ends_with("1 problem(s), 1 warning(s)\n"), "{r}");
        assert!(report("http://x", &findings[..1]).ends_with("healthy (0 warning(s))\n"));
    }
}
