//! Twitch OAuth (`/validate`, client-credentials `/token`) and the Helix calls
//! ChatPulse needs: users by login, EventSub subscriptions, conduits and their
//! shards. One method per call, no retries inside; [`with_retry`] wraps a call
//! with the retry policy (transient failures back off 1 s, 2 s, 4 s; 429 waits
//! for `Ratelimit-Reset`). Response JSON is decoded with `nanoserde`, which
//! skips unknown fields; request JSON is built by hand with [`json_str`].

use std::future::Future;
use std::time::Duration;

use nanoserde::DeJson;

use super::http::{HttpClient, HttpError, HttpResponse};

/// Helix takes at most 100 `login` parameters per `GET /users`.
const USERS_PER_CALL: usize = 100;
/// Pages of subscriptions we follow at most (100 each): a runaway cursor must end.
const MAX_PAGES: usize = 100;
/// Waits between attempts of a transient failure; one attempt more than entries.
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// Longest wait for a rate-limit reset (Helix buckets refill within a minute).
const RATE_LIMIT_WAIT_CAP: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum HelixError {
    Http(HttpError),
    /// 401: the token is invalid or expired (message from Twitch).
    Unauthorized(String),
    /// 409: e.g. the subscription already exists.
    Conflict,
    /// 429; `Ratelimit-Reset` (Unix seconds) when Twitch sent it.
    RateLimited {
        reset_unix: Option<u64>,
    },
    /// Any other non-2xx: status and Twitch's message.
    Status(u16, String),
    /// A 2xx whose body we could not read.
    Decode(String),
}

impl HelixError {
    /// Worth another attempt: network trouble, 5xx, 429.
    pub fn is_transient(&self) -> bool {
        match self {
            HelixError::Http(_) | HelixError::RateLimited { .. } => true,
            HelixError::Status(status, _) => *status >= 500,
            _ => false,
        }
    }
}

impl std::fmt::Display for HelixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelixError::Http(e) => write!(f, "http: {e}"),
            HelixError::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            HelixError::Conflict => write!(f, "conflict (already exists)"),
            HelixError::RateLimited { reset_unix } => match reset_unix {
                Some(r) => write!(f, "rate limited until {r}"),
                None => write!(f, "rate limited"),
            },
            HelixError::Status(s, m) => write!(f, "status {s}: {m}"),
            HelixError::Decode(m) => write!(f, "bad response body: {m}"),
        }
    }
}

impl std::error::Error for HelixError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HelixError::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HttpError> for HelixError {
    fn from(e: HttpError) -> Self {
        HelixError::Http(e)
    }
}

/// What `/validate` says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub client_id: String,
    /// Absent for app access tokens.
    pub login: Option<String>,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    /// Seconds left.
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    pub access_token: String,
    pub expires_in: u64,
}

/// Where Twitch delivers a subscription's events (or a conduit shard's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    WebSocket {
        session_id: &'a str,
    },
    /// Subscriptions only; not a shard transport.
    Conduit {
        conduit_id: &'a str,
    },
    Webhook {
        callback: &'a str,
        secret: &'a str,
    },
}

impl Transport<'_> {
    fn to_json(self) -> String {
        match self {
            Transport::WebSocket { session_id } => format!(
                r#"{{"method":"websocket","session_id":{}}}"#,
                json_str(session_id)
            ),
            Transport::Conduit { conduit_id } => format!(
                r#"{{"method":"conduit","conduit_id":{}}}"#,
                json_str(conduit_id)
            ),
            Transport::Webhook { callback, secret } => format!(
                r#"{{"method":"webhook","callback":{},"secret":{}}}"#,
                json_str(callback),
                json_str(secret)
            ),
        }
    }
}

/// A `POST eventsub/subscriptions` with a broadcaster + user condition
/// (`channel.chat.message` and friends).
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionRequest<'a> {
    pub kind: &'a str,
    pub version: &'a str,
    pub broadcaster_user_id: &'a str,
    pub user_id: &'a str,
    pub transport: Transport<'a>,
}

impl SubscriptionRequest<'_> {
    fn to_json(&self) -> String {
        format!(
            r#"{{"type":{},"version":{},"condition":{{"broadcaster_user_id":{},"user_id":{}}},"transport":{}}}"#,
            json_str(self.kind),
            json_str(self.version),
            json_str(self.broadcaster_user_id),
            json_str(self.user_id),
            self.transport.to_json()
        )
    }
}

/// One EventSub subscription as Helix lists it, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    pub kind: String,
    pub broadcaster_user_id: Option<String>,
    pub user_id: Option<String>,
    pub method: String,
    pub session_id: Option<String>,
    pub conduit_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, DeJson)]
pub struct Conduit {
    pub id: String,
    pub shard_count: u64,
}

/// One shard's new transport for [`Helix::update_shards`].
#[derive(Debug, Clone, Copy)]
pub struct ShardUpdate<'a> {
    pub id: &'a str,
    pub transport: Transport<'a>,
}

/// A shard Twitch accepted: `status` is `enabled` or
/// `webhook_callback_verification_pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    pub status: String,
    pub method: String,
    pub callback: Option<String>,
    pub session_id: Option<String>,
}

/// A shard Twitch refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, DeJson)]
pub struct ShardError {
    pub id: String,
    pub message: String,
    pub code: String,
}

/// Result of a shard update: accepted and refused shards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardsUpdated {
    pub shards: Vec<Shard>,
    pub errors: Vec<ShardError>,
}

/// Twitch OAuth + Helix for one client id. Cheap to clone.
#[derive(Clone)]
pub struct Helix {
    http: HttpClient,
    helix: String,
    auth: String,
    client_id: String,
}

impl Helix {
    pub fn new(http: HttpClient, helix_url: &str, auth_url: &str, client_id: &str) -> Helix {
        Helix {
            http,
            helix: helix_url.trim_end_matches('/').to_string(),
            auth: auth_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `GET {auth}/validate`; a 401 means the token is no longer valid.
    pub async fn validate(&self, token: &str) -> Result<TokenInfo, HelixError> {
        let auth = format!("OAuth {token}");
        let url = format!("{}/validate", self.auth);
        let resp = self
            .http
            .request("GET", &url, &[("Authorization", &auth)], None)
            .await?;
        let raw: wire::Validate = decode(check(resp)?.body.as_slice())?;
        Ok(TokenInfo {
            client_id: raw.client_id,
            login: raw.login,
            user_id: raw.user_id,
            scopes: raw.scopes.unwrap_or_default(),
            expires_in: raw.expires_in,
        })
    }

    /// `POST {auth}/token` with `grant_type=client_credentials`: an app access token.
    pub async fn app_token(&self, client_secret: &str) -> Result<AppToken, HelixError> {
        let form = format!(
            "client_id={}&client_secret={}&grant_type=client_credentials",
            url_encode(&self.client_id),
            url_encode(client_secret)
        );
        let url = format!("{}/token", self.auth);
        let body = Some(("application/x-www-form-urlencoded", form.as_bytes()));
        let resp = self.http.request("POST", &url, &[], body).await?;
        let raw: wire::Token = decode(check(resp)?.body.as_slice())?;
        Ok(AppToken {
            access_token: raw.access_token,
            expires_in: raw.expires_in,
        })
    }

    /// `(login, id)` for each login Twitch knows (unknown ones are left out),
    /// in batches of [`USERS_PER_CALL`].
    pub async fn users_by_login(
        &self,
        token: &str,
        logins: &[String],
    ) -> Result<Vec<(String, String)>, HelixError> {
        let mut found = Vec::with_capacity(logins.len());
        for batch in logins.chunks(USERS_PER_CALL) {
            let query: Vec<String> = batch
                .iter()
                .map(|l| format!("login={}", url_encode(l)))
                .collect();
            let path = format!("users?{}", query.join("&"));
            let resp = self.call(token, "GET", &path, None).await?;
            let page: wire::Data<wire::User> = decode(&resp.body)?;
            found.extend(page.data.into_iter().map(|u| (u.login, u.id)));
        }
        Ok(found)
    }

    /// `POST eventsub/subscriptions`; the new subscription's id. An existing
    /// identical subscription answers [`HelixError::Conflict`].
    pub async fn create_subscription(
        &self,
        token: &str,
        req: &SubscriptionRequest<'_>,
    ) -> Result<String, HelixError> {
        let body = req.to_json();
        let resp = self
            .call(token, "POST", "eventsub/subscriptions", Some(&body))
            .await?;
        let page: wire::Data<wire::Subscription> = decode(&resp.body)?;
        page.data
            .into_iter()
            .next()
            .map(|s| s.id)
            .ok_or_else(|| HelixError::Decode("no subscription in response".into()))
    }

    /// Every subscription of this client id (optionally of one `type`),
    /// following the pagination cursor.
    pub async fn list_subscriptions(
        &self,
        token: &str,
        kind: Option<&str>,
    ) -> Result<Vec<Subscription>, HelixError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = Vec::new();
            if let Some(kind) = kind {
                query.push(format!("type={}", url_encode(kind)));
            }
            if let Some(c) = &cursor {
                query.push(format!("after={}", url_encode(c)));
            }
            let mut path = "eventsub/subscriptions".to_string();
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let resp = self.call(token, "GET", &path, None).await?;
            let page: wire::SubscriptionPage = decode(&resp.body)?;
            all.extend(page.data.into_iter().map(wire::Subscription::flatten));
            cursor = page
                .pagination
                .and_then(|p| p.cursor)
                .filter(|c| !c.is_empty());
            if cursor.is_none() {
                return Ok(all);
            }
        }
        Err(HelixError::Decode(format!(
            "more than {MAX_PAGES} pages of subscriptions"
        )))
    }

    /// `DELETE eventsub/subscriptions?id=…`; a 404 is [`HelixError::Status`].
    pub async fn delete_subscription(&self, token: &str, id: &str) -> Result<(), HelixError> {
        let path = format!("eventsub/subscriptions?id={}", url_encode(id));
        self.call(token, "DELETE", &path, None).await?;
        Ok(())
    }

    /// `GET eventsub/conduits` (app token): this client id's conduits.
    pub async fn list_conduits(&self, token: &str) -> Result<Vec<Conduit>, HelixError> {
        let resp = self.call(token, "GET", "eventsub/conduits", None).await?;
        let page: wire::Data<Conduit> = decode(&resp.body)?;
        Ok(page.data)
    }

    /// `POST eventsub/conduits` (app token) with `shard_count` shards (ids from "0").
    pub async fn create_conduit(
        &self,
        token: &str,
        shard_count: u32,
    ) -> Result<Conduit, HelixError> {
        let body = format!(r#"{{"shard_count":{shard_count}}}"#);
        let resp = self
            .call(token, "POST", "eventsub/conduits", Some(&body))
            .await?;
        let page: wire::Data<Conduit> = decode(&resp.body)?;
        page.data
            .into_iter()
            .next()
            .ok_or_else(|| HelixError::Decode("no conduit in response".into()))
    }

    /// `PATCH eventsub/conduits/shards` (app token). Webhook shards come back
    /// `webhook_callback_verification_pending` until the callback answers the challenge.
    pub async fn update_shards(
        &self,
        token: &str,
        conduit_id: &str,
        shards: &[ShardUpdate<'_>],
    ) -> Result<ShardsUpdated, HelixError> {
        let items: Vec<String> = shards
            .iter()
            .map(|s| {
                format!(
                    r#"{{"id":{},"transport":{}}}"#,
                    json_str(s.id),
                    s.transport.to_json()
                )
            })
            .collect();
        let body = format!(
            r#"{{"conduit_id":{},"shards":[{}]}}"#,
            json_str(conduit_id),
            items.join(",")
        );
        let resp = self
            .call(token, "PATCH", "eventsub/conduits/shards", Some(&body))
            .await?;
        let raw: wire::ShardsResponse = decode(&resp.body)?;
        Ok(ShardsUpdated {
            shards: raw.data.into_iter().map(wire::Shard::flatten).collect(),
            errors: raw.errors.unwrap_or_default(),
        })
    }

    /// One Helix request with `Client-Id` and the bearer token; non-2xx → error.
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> Result<HttpResponse, HelixError> {
        let url = format!("{}/{path}", self.helix);
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Client-Id", self.client_id.as_str()),
            ("Authorization", bearer.as_str()),
        ];
        let body = json.map(|j| ("application/json", j.as_bytes()));
        let resp = self.http.request(method, &url, &headers, body).await?;
        check(resp)
    }
}

/// Maps a non-2xx response to its [`HelixError`].
fn check(resp: HttpResponse) -> Result<HttpResponse, HelixError> {
    if (200..300).contains(&resp.status) {
        return Ok(resp);
    }
    let message = || {
        decode::<wire::ErrorBody>(&resp.body)
            .ok()
            .and_then(|e| e.message.or(e.error))
            .unwrap_or_else(|| resp.text().chars().take(200).collect())
    };
    Err(match resp.status {
        401 => HelixError::Unauthorized(message()),
        409 => HelixError::Conflict,
        429 => HelixError::RateLimited {
            reset_unix: resp.header("ratelimit-reset").and_then(|v| v.parse().ok()),
        },
        status => HelixError::Status(status, message()),
    })
}

/// Decodes a JSON body. nanoserde panics (`unimplemented!`) on some malformed
/// input instead of erring; a remote body must never take our task down, so
/// a panic becomes [`HelixError::Decode`].
pub(crate) fn decode<T: DeJson>(body: &[u8]) -> Result<T, HelixError> {
    let text = std::str::from_utf8(body).map_err(|e| HelixError::Decode(e.to_string()))?;
    match std::panic::catch_unwind(|| T::deserialize_json(text)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(HelixError::Decode(e.to_string())),
        Err(_) => Err(HelixError::Decode("malformed JSON".into())),
    }
}

/// Runs `f` until it succeeds or fails for good. Transient failures
/// ([`HelixError::is_transient`]) are retried after 1 s, 2 s, 4 s; a 429 waits
/// until its `Ratelimit-Reset` (at most [`RATE_LIMIT_WAIT_CAP`]) instead.
/// 401, 409 and other 4xx are returned at once.
pub async fn with_retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, HelixError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HelixError>>,
{
    let mut attempt = 0;
    loop {
        let err = match f().await {
            Ok(v) => return Ok(v),
            Err(e) if !e.is_transient() || attempt >= BACKOFF.len() => return Err(e),
            Err(e) => e,
        };
        let wait = match &err {
            HelixError::RateLimited {
                reset_unix: Some(reset),
            } => rate_limit_wait(*reset, crate::app::now_ms()),
            _ => BACKOFF[attempt],
        };
        log::warn!("twitch: {what} failed ({err}); retrying in {wait:?}");
        smol::Timer::after(wait).await;
        attempt += 1;
    }
}

/// Time until `reset_unix` (seconds), capped; zero when it has passed.
fn rate_limit_wait(reset_unix: u64, now_ms: u64) -> Duration {
    let wait = Duration::from_millis(reset_unix.saturating_mul(1000).saturating_sub(now_ms));
    wait.min(RATE_LIMIT_WAIT_CAP)
}

/// A JSON string literal (quotes included) with the required escapes.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Response shapes as Twitch sends them; unknown fields are skipped.
mod wire {
    use nanoserde::DeJson;

    #[derive(DeJson)]
    pub struct Data<T> {
        pub data: Vec<T>,
    }

    #[derive(DeJson)]
    pub struct ErrorBody {
        pub error: Option<String>,
        pub message: Option<String>,
    }

    #[derive(DeJson)]
    pub struct Validate {
        pub client_id: String,
        pub login: Option<String>,
        pub user_id: Option<String>,
        pub scopes: Option<Vec<String>>,
        pub expires_in: u64,
    }

    #[derive(DeJson)]
    pub struct Token {
        pub access_token: String,
        pub expires_in: u64,
    }

    #[derive(DeJson)]
    pub struct User {
        pub id: String,
        pub login: String,
    }

    #[derive(DeJson)]
    pub struct Condition {
        pub broadcaster_user_id: Option<String>,
        pub user_id: Option<String>,
    }

    #[derive(DeJson)]
    pub struct Transport {
        pub method: String,
        pub callback: Option<String>,
        pub session_id: Option<String>,
        pub conduit_id: Option<String>,
    }

    #[derive(DeJson)]
    pub struct Subscription {
        pub id: String,
        pub status: String,
        #[nserde(rename = "type")]
        pub kind: String,
        pub condition: Option<Condition>,
        pub transport: Transport,
    }

    impl Subscription {
        pub fn flatten(self) -> super::Subscription {
            let (broadcaster_user_id, user_id) = match self.condition {
                Some(c) => (c.broadcaster_user_id, c.user_id),
                None => (None, None),
            };
            super::Subscription {
                id: self.id,
                status: self.status,
                kind: self.kind,
                broadcaster_user_id,
                user_id,
                method: self.transport.method,
                session_id: self.transport.session_id,
                conduit_id: self.transport.conduit_id,
            }
        }
    }

    #[derive(DeJson)]
    pub struct Pagination {
        pub cursor: Option<String>,
    }

    #[derive(DeJson)]
    pub struct SubscriptionPage {
        pub data: Vec<Subscription>,
        pub pagination: Option<Pagination>,
    }

    #[derive(DeJson)]
    pub struct Shard {
        pub id: String,
        pub status: String,
        pub transport: Transport,
    }

    impl Shard {
        pub fn flatten(self) -> super::Shard {
            super::Shard {
                id: self.id,
                status: self.status,
                method: self.transport.method,
                callback: self.transport.callback,
                session_id: self.transport.session_id,
            }
        }
    }

    #[derive(DeJson)]
    pub struct ShardsResponse {
        pub data: Vec<Shard>,
        pub errors: Option<Vec<super::ShardError>>,
    }
}

#[cfg(test)]
#[path = "helix_tests.rs"]
mod tests;
