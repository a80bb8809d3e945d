//! The app access token (OAuth client credentials) of one client id: acquired
//! on first use, validated with `/validate` when asked (Twitch requires it at
//! start and hourly), re-acquired when invalid or close to expiry. Owned by one
//! task (the conduit loop), so plain `&mut self`, no lock.

use std::time::{Duration, Instant};

use super::helix::{Helix, HelixError, with_retry};

/// Refresh at most this long before expiry. Twitch app tokens live ~60 days;
/// a day of margin leaves many hourly rounds to get a new one.
const REFRESH_BEFORE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
struct Held {
    token: String,
    lifetime: Duration,
    expires_at: Instant,
}

pub struct AppTokens {
    helix: Helix,
    client_secret: String,
    held: Option<Held>,
    acquired: u64,
}

impl AppTokens {
    pub fn new(helix: Helix, client_secret: &str) -> AppTokens {
        AppTokens {
            helix,
            client_secret: client_secret.to_string(),
            held: None,
            acquired: 0,
        }
    }

    /// How many tokens were acquired so far (logs and tests).
    pub fn acquired(&self) -> u64 {
        self.acquired
    }

    /// The current token, acquiring one if none is held or it is due for refresh.
    pub async fn token(&mut self) -> Result<String, HelixError> {
        match &self.held {
            Some(h) if !due(h, Instant::now()) => Ok(h.token.clone()),
            _ => self.acquire().await,
        }
    }

    /// Forgets the token (after a 401): the next [`AppTokens::token`] gets a new one.
    pub fn invalidate(&mut self) {
        self.held = None;
    }

    /// Asks Twitch whether the held token (a new one if none is held) is still
    /// good, then refreshes it if invalid or close to expiry. Returns the token
    /// to use.
    pub async fn validate(&mut self) -> Result<String, HelixError> {
        if self.held.is_none() {
            self.acquire().await?;
        }
        let Some(held) = self.held.clone() else {
            return self.acquire().await;
        };
        let checked = with_retry("validate app token", || self.helix.validate(&held.token)).await;
        match checked {
            Ok(info) => {
                let left = Duration::from_secs(info.expires_in);
                let h = self.held.as_mut().expect("held above");
                h.expires_at = Instant::now() + left;
                if due(h, Instant::now()) {
                    log::info!("twitch: app token expires in {left:?}; refreshing");
                    return self.acquire().await;
                }
                Ok(held.token)
            }
            Err(HelixError::Unauthorized(why)) => {
                log::warn!("twitch: app token no longer valid ({why}); acquiring a new one");
                self.held = None;
                self.acquire().await
            }
            Err(e) => Err(e),
        }
    }

    /// When the next check should happen at the latest: when the token comes
    /// due for refresh (never later than `cap`).
    pub fn next_check(&self, cap: Duration) -> Duration {
        match &self.held {
            Some(h) => {
                let due_at = h.expires_at.checked_sub(margin(h)).unwrap_or(h.expires_at);
                due_at.saturating_duration_since(Instant::now()).min(cap)
            }
            None => Duration::ZERO,
        }
    }

    async fn acquire(&mut self) -> Result<String, HelixError> {
        let secret = self.client_secret.clone();
        let got = with_retry("get app token", || self.helix.app_token(&secret)).await?;
        let lifetime = Duration::from_secs(got.expires_in);
        self.held = Some(Held {
            token: got.access_token.clone(),
            lifetime,
            expires_at: Instant::now() + lifetime,
        });
        self.acquired += 1;
        log::info!("twitch: app access token acquired (valid {lifetime:?})");
        Ok(got.access_token)
    }
}

/// Refresh margin: [`REFRESH_BEFORE`], or half the lifetime for short-lived
/// tokens (so a token is never refreshed the moment it arrives).
fn margin(h: &Held) -> Duration {
    REFRESH_BEFORE.min(h.lifetime / 2)
}

fn due(h: &Held, now: Instant) -> bool {
    h.expires_at.saturating_duration_since(now) <= margin(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin() {
        let now = Instant::now();
        let long = Held {
            token: "t".into(),
            lifetime: Duration::from_secs(60 * 86_400),
            expires_at: now + Duration::from_secs(60 * 86_400),
        };
        assert_eq!(margin(&long), REFRESH_BEFORE);
        assert!(!due(&long, now));
        assert!(due(&long, now + Duration::from_secs(59 * 86_400)));
        let short = Held {
            lifetime: Duration::from_secs(4),
            expires_at: now + Duration::from_secs(4),
            ..long
        };
        assert_eq!(margin(&short), Duration::from_secs(2));
        assert!(!due(&short, now));
        assert!(due(&short, now + Duration::from_secs(2)));
    }
}
