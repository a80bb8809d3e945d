//! [`HelixError`], how a response maps to it, and the retry policy
//! ([`with_retry`]): transient failures back off 1 s, 2 s, 4 s; a 429 waits
//! for its `Ratelimit-Reset`; 401, 409 and other 4xx are final.

use std::future::Future;
use std::time::Duration;

use super::wire;
use crate::twitch::http::{HttpError, HttpResponse};

/// Waits between attempts of a transient failure; one attempt more than entries.
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// Longest wait for a rate-limit reset (Helix buckets refill within a minute).
pub(super) const RATE_LIMIT_WAIT_CAP: Duration = Duration::from_secs(60);

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

/// Maps a non-2xx response to its [`HelixError`].
pub(super) fn check(resp: HttpResponse) -> Result<HttpResponse, HelixError> {
    if (200..300).contains(&resp.status) {
        return Ok(resp);
    }
    let message = || {
        wire::decode::<wire::ErrorBody>(&resp.body)
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
pub(super) fn rate_limit_wait(reset_unix: u64, now_ms: u64) -> Duration {
    let wait = Duration::from_millis(reset_unix.saturating_mul(1000).saturating_sub(now_ms));
    wait.min(RATE_LIMIT_WAIT_CAP)
}
