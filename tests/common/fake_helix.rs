//! An in-process fake of Twitch OAuth (`/oauth2/validate`, `/oauth2/token`
//! client credentials, and a streamer's sign-in: `/oauth2/authorize`, the
//! authorization-code `/oauth2/token`) and Helix (`users`, `eventsub/subscriptions`,
//! `eventsub/conduits`, `eventsub/conduits/shards`): a real HTTP/1.1 server on
//! `127.0.0.1:0` answering with Twitch's JSON shapes and status codes (401 for
//! bad tokens, 409 for duplicate subscriptions, 202 for creations).
//!
//! Knobs: fail the next request to a path with a status (429 carries
//! `Ratelimit-Reset`), short token lifetimes, invalidating every token; the
//! test can read the subscriptions, conduits and shards, and the requests made.
//! A webhook shard PATCH makes the fake POST a signed challenge the way Twitch
//! does, to the address given by [`FakeHelix::deliver_challenges_to`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

/// The endpoints: OAuth and Helix.
#[path = "fake_helix_api.rs"]
mod api;
/// A streamer's sign-in: authorize, code exchange, the token's own user.
#[path = "fake_helix_oauth.rs"]
mod oauth;
/// What Twitch sends to callbacks: signed challenges.
#[path = "fake_helix_push.rs"]
mod push;

pub use oauth::Consent;
pub use push::rfc3339;

pub const CLIENT_ID: &str = "fakeclientid";
pub const CLIENT_SECRET: &str = "fakeclientsecret";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSub {
    pub id: String,
    pub status: String,
    pub kind: String,
    pub broadcaster_user_id: String,
    pub user_id: String,
    pub method: String,
    pub conduit_id: Option<String>,
    pub session_id: Option<String>,
    pub callback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeShard {
    pub id: String,
    pub status: String,
    pub method: String,
    pub callback: Option<String>,
    pub secret: Option<String>,
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConduit {
    pub id: String,
    pub shard_count: usize,
    pub shards: Vec<FakeShard>,
}

struct Token {
    value: String,
    /// None for app tokens.
    user: Option<(String, String)>,
    scopes: Vec<String>,
    expires: Instant,
}

struct Failure {
    method: String,
    path: String,
    status: u16,
    reset_unix: Option<u64>,
}

struct State {
    tokens: Vec<Token>,
    token_lifetime: u64,
    tokens_issued: u64,
    users: Vec<(String, String)>,
    subs: Vec<FakeSub>,
    conduits: Vec<FakeConduit>,
    failures: Vec<Failure>,
    requests: Vec<String>,
    page_size: usize,
    deliver_to: Option<SocketAddr>,
    challenges: Vec<(u16, String)>,
    next_id: u64,
    /// Who approves at `/oauth2/authorize` (None: nobody is signed in at Twitch).
    consent: Option<Consent>,
    /// `/oauth2/authorize` answers `error=access_denied`.
    deny_consent: bool,
    codes: Vec<oauth::Code>,
    /// (user id, display name) of users who signed in.
    display_names: Vec<(String, String)>,
}

type Shared = Arc<Mutex<State>>;

pub struct FakeHelix {
    pub addr: SocketAddr,
    state: Shared,
    _accept: smol::Task<()>,
}

/// A reply: status, extra headers, JSON body.
type Reply = (u16, Vec<(String, String)>, String);

impl FakeHelix {
    pub async fn start() -> FakeHelix {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake helix");
        let addr = listener.local_addr().expect("fake helix addr");
        let state = Arc::new(Mutex::new(State {
            tokens: Vec::new(),
            token_lifetime: 5_000_000,
            tokens_issued: 0,
            users: Vec::new(),
            subs: Vec::new(),
            conduits: Vec::new(),
            failures: Vec::new(),
            requests: Vec::new(),
            page_size: 100,
            deliver_to: None,
            challenges: Vec::new(),
            next_id: 1,
            consent: None,
            deny_consent: false,
            codes: Vec::new(),
            display_names: Vec::new(),
        }));
        let accept = smol::spawn(accept_loop(listener, Arc::clone(&state)));
        FakeHelix {
            addr,
            state,
            _accept: accept,
        }
    }

    pub fn helix_url(&self) -> String {
        format!("http://{}/helix", self.addr)
    }

    pub fn auth_url(&self) -> String {
        format!("http://{}/oauth2", self.addr)
    }

    /// A `[twitch]` section for the webhook source against this fake, plus channels.
    pub fn webhook_toml(&self, secret: &str, bot_user_id: &str, channels: &[&str]) -> String {
        let mut toml = format!(
            "[twitch]\nsource = \"eventsub-webhook\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\nbot_user_id = \"{bot_user_id}\"\n\
             webhook_secret = \"{secret}\"\n\
             callback_url = \"https://example.invalid/webhooks/eventsub\"\n\
             helix_url = \"{}\"\nauth_url = \"{}\"\n",
            self.helix_url(),
            self.auth_url()
        );
        for login in channels {
            toml += &format!("\n[[channel]]\nlogin = \"{login}\"\n");
        }
        toml
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_user(&self, login: &str, id: &str) {
        self.lock().users.push((id.into(), login.into()));
    }

    /// A user access token `/validate` and Helix accept.
    pub fn add_user_token(&self, token: &str, user_id: &str, login: &str, scopes: &[&str]) {
        let lifetime = Duration::from_secs(self.lock().token_lifetime);
        self.lock().tokens.push(Token {
            value: token.into(),
            user: Some((user_id.into(), login.into())),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires: Instant::now() + lifetime,
        });
    }

    /// The account that approves at `/oauth2/authorize` from now on.
    pub fn consent_as(&self, id: &str, login: &str, display_name: &str) {
        let mut s = self.lock();
        s.deny_consent = false;
        s.consent = Some(Consent {
            id: id.into(),
            login: login.into(),
            display_name: display_name.into(),
        });
    }

    /// `/oauth2/authorize` sends `error=access_denied` back, as when the streamer
    /// clicks "Cancel" on Twitch's consent page.
    pub fn deny_consent(&self) {
        self.lock().deny_consent = true;
    }

    /// The next `method path` request (path without query) gets `status`.
    pub fn fail_next(&self, method: &str, path: &str, status: u16) {
        self.fail(method, path, status, None);
    }

    /// The next `method path` request gets a 429 with `Ratelimit-Reset: reset_unix`.
    pub fn rate_limit_next(&self, method: &str, path: &str, reset_unix: u64) {
        self.fail(method, path, 429, Some(reset_unix));
    }

    fn fail(&self, method: &str, path: &str, status: u16, reset_unix: Option<u64>) {
        self.lock().failures.push(Failure {
            method: method.into(),
            path: path.into(),
            status,
            reset_unix,
        });
    }

    /// Lifetime (`expires_in`) of tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.lock().token_lifetime = secs;
    }

    /// Every token stops working (as if revoked).
    pub fn invalidate_tokens(&self) {
        self.lock().tokens.clear();
    }

    pub fn tokens_issued(&self) -> u64 {
        self.lock().tokens_issued
    }

    pub fn set_page_size(&self, n: usize) {
        self.lock().page_size = n.max(1);
    }

    pub fn subscriptions(&self) -> Vec<FakeSub> {
        self.lock().subs.clone()
    }

    pub fn add_subscription(&self, sub: FakeSub) {
        self.lock().subs.push(sub);
    }

    pub fn conduits(&self) -> Vec<FakeConduit> {
        self.lock().conduits.clone()
    }

    pub fn add_conduit(&self, id: &str, shard_count: usize) {
        self.lock()
            .conduits
            .push(new_conduit(id.into(), shard_count));
    }

    /// `"METHOD /path?query"` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Webhook shard challenges are POSTed to this address (the callback's host
    /// is ignored: tests use `example.invalid`): those pending now, and those of
    /// later shard updates.
    pub async fn deliver_challenges_to(&self, addr: SocketAddr) {
        self.lock().deliver_to = Some(addr);
        push::deliver_challenges(addr, &self.state).await;
    }

    /// (status, body) of each challenge delivered.
    pub fn challenges(&self) -> Vec<(u16, String)> {
        self.lock().challenges.clone()
    }
}

fn new_conduit(id: String, shard_count: usize) -> FakeConduit {
    let shards = (0..shard_count)
        .map(|i| FakeShard {
            id: i.to_string(),
            status: "disabled".into(),
            method: String::new(),
            callback: None,
            secret: None,
            session_id: None,
        })
        .collect();
    FakeConduit {
        id,
        shard_count,
        shards,
    }
}

async fn accept_loop(listener: TcpListener, state: Shared) {
    while let Ok((stream, _)) = listener.accept().await {
        smol::spawn(serve(stream, Arc::clone(&state))).detach();
    }
}

/// One request per connection, like our client sends them.
async fn serve(mut stream: TcpStream, state: Shared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (method, target, headers, body_start, len) = loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut hs);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0usize);
            break (
                req.method.unwrap_or("").to_string(),
                req.path.unwrap_or("/").to_string(),
                headers,
                head,
                len,
            );
        }
    };
    while buf.len() < body_start + len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned();
    let (status, extra, json) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.requests.push(format!("{method} {target}"));
        api::route(&mut s, &method, &target, &headers, &body)
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        json.len()
    );
    if !json.is_empty() {
        out += "Content-Type: application/json\r\n";
    }
    for (k, v) in extra {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    out += &json;
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.flush().await;
    let deliver = state.lock().unwrap_or_else(|e| e.into_inner()).deliver_to;
    if let (Some(addr), true) = (deliver, method == "PATCH" && status == 202) {
        push::deliver_challenges(addr, &state).await;
    }
}

fn error(status: u16, message: &str) -> Reply {
    let name = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    (
        status,
        vec![],
        format!(r#"{{"error":"{name}","status":{status},"message":"{message}"}}"#),
    )
}

/// Ids the fake hands out.
fn next_id(s: &mut State, prefix: &str) -> String {
    s.next_id += 1;
    format!("{prefix}-{:04}", s.next_id)
}
