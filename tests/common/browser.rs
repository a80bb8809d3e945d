//! A tiny Chrome DevTools Protocol client: just enough headless Chromium to load the
//! overlay, read its state and take a screenshot.
//!
//! One WebSocket to the browser endpoint; each page is a target attached with
//! `flatten: true`, so page commands go over the same socket tagged with a `sessionId`.
//! Commands are strictly request/reply (one in flight, under a lock); events that
//! arrive in between are skipped because we never ask for any.
//!
//! Chromium comes from `CHATPULSE_TEST_CHROMIUM` or `/usr/bin/chromium`. Drop kills
//! the process and removes its throwaway profile directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use nanoserde::{DeJson, SerJson};
use smol::future::FutureExt;
use smol::lock::Mutex;
use smol::net::TcpStream;

/// Chromium prints its DevTools URL within a second or two; a cold start on a slow
/// CI runner gets more room.
const LAUNCH_DEADLINE: Duration = Duration::from_secs(30);
/// No single CDP command should take this long; a hung browser fails the test instead.
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);
/// Poll interval of [`Page::wait_for`].
const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub struct Browser {
    ws: Mutex<WebSocketStream<TcpStream>>,
    next_id: AtomicU64,
    // Declared last so the socket closes before the process is killed.
    _process: Process,
}

/// One tab, attached through the browser connection.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

/// The parts of a CDP reply we read; everything else (events, unknown fields) is skipped.
#[derive(DeJson)]
struct Reply {
    id: Option<u64>,
    error: Option<ReplyError>,
}

#[derive(DeJson)]
struct ReplyError {
    message: String,
}

#[derive(DeJson)]
struct TargetCreated {
    #[nserde(rename = "targetId")]
    target_id: String,
}

#[derive(DeJson)]
struct Attached {
    #[nserde(rename = "sessionId")]
    session_id: String,
}

#[derive(DeJson)]
struct Evaluated {
    result: RemoteObject,
    #[nserde(rename = "exceptionDetails")]
    exception_details: Option<ExceptionDetails>,
}

#[derive(DeJson)]
struct RemoteObject {
    value: Option<String>,
    description: Option<String>,
}

#[derive(DeJson)]
struct ExceptionDetails {
    text: String,
    exception: Option<RemoteObject>,
}

#[derive(DeJson)]
struct Screenshot {
    data: String,
}

#[derive(DeJson)]
struct ResultOf<T> {
    result: T,
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and connects to its DevTools socket.
    pub async fn launch() -> Result<Browser, String> {
        let exe = std::env::var_os("CHATPULSE_TEST_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        if !exe.exists() {
            return Err(format!(
                "chromium not found at {} (install it, e.g. `apt-get install chromium`, \
                 or set CHATPULSE_TEST_CHROMIUM)",
                exe.display()
            ));
        }
        let profile = fresh_profile_dir()?;
        let spawned = Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut process = match spawned {
            Ok(child) => Process { child, profile },
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(format!("cannot start {}: {e}", exe.display()));
            }
        };

        // A thread owns stderr for the browser's whole life: it hands over the DevTools
        // URL (or, if Chromium dies first, its last words), then keeps draining so
        // Chromium never blocks on a full pipe.
        let stderr = process.child.stderr.take().expect("stderr is piped");
        let (tx, rx) = smol::channel::bounded::<Result<String, String>>(1);
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match line.find("DevTools listening on ws://") {
                    Some(at) => drop(tx.try_send(Ok(line[at + 22..].trim().to_string()))),
                    None if tail.len() < 20 => tail.push(line),
                    None => {}
                }
            }
            let _ = tx.try_send(Err(tail.join("\n")));
        });
        let url = async { rx.recv().await.unwrap_or_else(|_| Err(String::new())) }
            .or(async {
                smol::Timer::after(LAUNCH_DEADLINE).await;
                Err(format!(
                    "no `DevTools listening on ws://…` line within {LAUNCH_DEADLINE:?}"
                ))
            })
            .await
            .map_err(|why| format!("chromium at {} did not start: {why}", exe.display()))?;

        let ws = connect_ws(&url).await?;
        Ok(Browser {
            ws: Mutex::new(ws),
            next_id: AtomicU64::new(1),
            _process: process,
        })
    }

    /// Opens `url` in a new tab and waits until its document has loaded.
    pub async fn open(&self, url: &str) -> Result<Page<'_>, String> {
        let created: TargetCreated = self
            .call_json(
                None,
                "Target.createTarget",
                &format!(r#"{{"url":{}}}"#, url.serialize_json()),
            )
            .await?;
        let attached: Attached = self
            .call_json(
                None,
                "Target.attachToTarget",
                &format!(
                    r#"{{"targetId":{},"flatten":true}}"#,
                    created.target_id.serialize_json()
                ),
            )
            .await?;
        let page = Page {
            browser: self,
            session: attached.session_id,
        };
        let href = page
            .wait_for(
                "document.readyState === 'complete' && location.href !== 'about:blank' && location.href",
                Duration::from_secs(15),
            )
            .await?;
        if href.starts_with("chrome-error:") {
            return Err(format!("could not load {url}"));
        }
        Ok(page)
    }

    async fn call_json<T: DeJson>(
        &self,
        session: Option<&str>,
        method: &str,
        params: &str,
    ) -> Result<T, String> {
        let reply = self.call(session, method, params).await?;
        ResultOf::<T>::deserialize_json(&reply)
            .map(|r| r.result)
            .map_err(|e| format!("{method}: unexpected reply ({e}): {}", clip(&reply)))
    }

    /// Sends one command and returns the whole reply text (`{"id":..,"result":..}`).
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: &str,
    ) -> Result<String, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = session
            .map(|s| format!(r#","sessionId":{}"#, s.serialize_json()))
            .unwrap_or_default();
        let request = format!(
            r#"{{"id":{id},"method":{}{session},"params":{params}}}"#,
            method.serialize_json()
        );
        let exchange = async {
            let mut ws = self.ws.lock().await;
            ws.send(Message::text(request))
                .await
                .map_err(|e| format!("{method}: send: {e}"))?;
            loop {
                let text = match ws.next().await {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(format!("{method}: browser closed the connection"));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("{method}: receive: {e}")),
                };
                // Events carry no id; replies to earlier (timed-out) commands carry another one.
                let Ok(reply) = Reply::deserialize_json(&text) else {
                    continue;
                };
                if reply.id != Some(id) {
                    continue;
                }
                return match reply.error {
                    Some(err) => Err(format!("{method}: {}", err.message)),
                    None => Ok(text),
                };
            }
        };
        exchange
            .or(async {
                smol::Timer::after(COMMAND_DEADLINE).await;
                Err(format!("{method}: no reply within {COMMAND_DEADLINE:?}"))
            })
            .await
    }
}

impl Page<'_> {
    /// Sets the viewport (CSS pixels, scale 1), as an OBS browser source of that size would.
    pub async fn set_viewport(&self, width: u32, height: u32) -> Result<(), String> {
        let params = format!(
            r#"{{"width":{width},"height":{height},"deviceScaleFactor":1,"mobile":false}}"#
        );
        self.call("Emulation.setDeviceMetricsOverride", &params)
            .await
            .map(drop)
    }

    async fn call(&self, method: &str, params: &str) -> Result<String, String> {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Evaluates a JS expression (promises are awaited). Strings come back as-is,
    /// everything else JSON-stringified (`undefined` → "undefined"); a throw is an Err.
    pub async fn eval(&self, js: &str) -> Result<String, String> {
        let wrapped = format!(
            "Promise.resolve((\n{}\n)).then(v => typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v)))",
            js.trim().trim_end_matches(';')
        );
        let params = format!(
            r#"{{"expression":{},"returnByValue":true,"awaitPromise":true}}"#,
            wrapped.serialize_json()
        );
        let done: Evaluated = self
            .browser
            .call_json(Some(&self.session), "Runtime.evaluate", &params)
            .await?;
        if let Some(ex) = done.exception_details {
            let detail = ex.exception.and_then(|e| e.description).unwrap_or(ex.text);
            return Err(format!("`{}` threw: {detail}", clip(js)));
        }
        Ok(done
            .result
            .value
            .or(done.result.description)
            .unwrap_or_default())
    }

    /// Polls `condition` every 50 ms until it is truthy; returns its (stringified) value.
    /// On timeout the error names the condition and its last value or error.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) -> Result<String, String> {
        const FALSY: &str = "\u{1}falsy";
        let probe = format!(
            "((v) => v ? v : '{}')(\n{}\n)",
            FALSY,
            condition.trim().trim_end_matches(';')
        );
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.eval(&probe).await {
                Ok(v) if v != FALSY => return Ok(v),
                Ok(_) => last = "falsy".into(),
                // A page mid-navigation has no context for a moment; keep polling.
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for `{condition}` (last: {last})"
                ));
            }
            smol::Timer::after(POLL_INTERVAL).await;
        }
    }

    /// Captures the viewport as PNG into `path` (parent directories are created).
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        let shot: Screenshot = self
            .browser
            .call_json(
                Some(&self.session),
                "Page.captureScreenshot",
                r#"{"format":"png"}"#,
            )
            .await?;
        let png = base64_decode(&shot.data)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("write {}: {e}", path.display()))
    }
}

/// The Chromium process and its profile directory; dropping it kills the one and
/// removes the other (also on the early returns of `launch`).
struct Process {
    child: Child,
    profile: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first: Chromium then shuts down its helper processes and reaps them.
        // A plain SIGKILL orphans them, and in a container without an init they linger
        // as zombies. std has no SIGTERM, hence the `kill` binary.
        let pid = self.child.id().to_string();
        let termed = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while termed.is_ok() && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Helper processes may still be flushing into the profile for a moment.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn fresh_profile_dir() -> Result<PathBuf, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "chatpulse-chromium-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

async fn connect_ws(url: &str) -> Result<WebSocketStream<TcpStream>, String> {
    let host = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("unexpected DevTools URL {url}"))?;
    let tcp = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    let (ws, _) = async_tungstenite::client_async(url, tcp)
        .await
        .map_err(|e| format!("DevTools handshake with {url}: {e}"))?;
    Ok(ws)
}

/// Standard base64 (with padding, whitespace ignored), as CDP returns binary data.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.as_bytes() {
        if c == b'=' {
            break;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = sextet(c).ok_or_else(|| format!("invalid base64 byte {c:#04x}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(300) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// Launches Chromium, or — when it is missing and `CHATPULSE_TEST_REQUIRE_BROWSER`
/// is not `1` (CI sets it) — prints a loud skip line for `what` and returns None.
pub async fn launch_or_skip(what: &str) -> Option<Browser> {
    match Browser::launch().await {
        Ok(b) => Some(b),
        Err(e) if std::env::var("CHATPULSE_TEST_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("CHATPULSE_TEST_REQUIRE_BROWSER=1 but the browser is unavailable: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n!!!!! SKIPPED {what}: {e} (set CHATPULSE_TEST_REQUIRE_BROWSER=1 to fail instead) !!!!!\n"
            );
            None
        }
    }
}
