//! Twitch chat over IRC (`source = "irc"`), the zero-credential home mode: it
//! reads public chat anonymously (`NICK justinfan<digits>`, no password), so a
//! streamer needs nothing but a channel name.
//!
//! This file owns the reconnect policy ([`irc_loop`]: backoff with jitter,
//! `RECONNECT`, login failures) and the source-status metrics; `client` runs
//! one session (connect, register, join, read, hand PRIVMSGs to the hub);
//! [`parse`] is the pure byte layer (line framing, message parsing).
//!
//! With `twitch.user_token` set, the session sends `PASS oauth:<token>` and
//! `NICK <login>`, the login being the token's user as `/oauth2/validate`
//! reports it (Twitch expects the two to match). If validation cannot be done
//! the session still logs in with the token and a `justinfan` NICK.

mod client;
pub mod parse;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use smol::Timer;

use self::client::{End, Login};
use crate::app::App;
use crate::metrics::{ChatSource, Metrics};
use crate::rng::XorShift;

pub use self::parse::parse_line;

/// First reconnect delay; doubled after each failed session.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest reconnect delay: a down Twitch is retried once a minute, not hammered.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A session that stayed logged in this long was healthy, so the next failure
/// starts the backoff from [`BACKOFF_FIRST`] again.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// Reads chat for every channel of the hub, reconnecting forever. Ends only
/// when the server cancels the task at shutdown; every await point is safe to
/// cancel at (the socket is dropped and the status gauge reset).
pub async fn irc_loop(app: Arc<App>) {
    let _status = StatusGuard(&app.metrics);
    let twitch = &app.config.twitch;
    let mut rng = XorShift::seeded();
    let anonymous = format!("justinfan{}", 10_000 + rng.next_u64() % 90_000);
    let nick = match &twitch.user_token {
        Some(token) => token_login(&app, token).await.unwrap_or(anonymous),
        None => anonymous,
    };
    let login = Login {
        nick,
        token: twitch.user_token.clone(),
    };
    log::info!(
        "irc: reading chat from {} ({}, {})",
        twitch.irc_addr,
        if twitch.irc_tls { "TLS" } else { "plain TCP" },
        match login.token {
            Some(_) => "logged in with twitch.user_token",
            None => "anonymous",
        }
    );
    let mut tls = None;
    let mut backoff = Backoff::new();
    loop {
        let report = client::session(&app, &login, &mut tls).await;
        app.metrics.chat_source_connected.set(ChatSource::Irc, 0);
        if report.logged_in_for >= HEALTHY_SESSION {
            backoff.reset();
        }
        let delay = match &report.end {
            End::Reconnect => {
                log::info!("irc: Twitch asked us to reconnect; reconnecting now");
                Duration::ZERO
            }
            End::LoginFailed(text) => {
                let delay = backoff.next_delay(rng.next_u64());
                log::error!(
                    "irc: Twitch refused the login ({text}); check twitch.user_token \
                     (it needs the chat:read scope) or leave it empty to read anonymously; \
                     retrying in {delay:?}"
                );
                delay
            }
            end => {
                let delay = backoff.next_delay(rng.next_u64());
                log::warn!("irc: {end}; reconnecting in {delay:?}");
                delay
            }
        };
        Timer::after(delay).await;
        app.metrics.chat_source_reconnects.inc(ChatSource::Irc);
    }
}

/// The login of the token's user (`/oauth2/validate`), for the NICK line.
async fn token_login(app: &App, token: &str) -> Option<String> {
    let twitch = &app.config.twitch;
    let tls = match crate::tls::client_config(twitch.ca_file.as_deref()) {
        Ok(tls) => tls,
        Err(e) => {
            log::error!("irc: TLS setup for token validation failed: {e}");
            return None;
        }
    };
    let http = crate::twitch::http::HttpClient::new(tls);
    let client_id = twitch.client_id.as_deref().unwrap_or("");
    let helix =
        crate::twitch::helix::Helix::new(http, &twitch.helix_url, &twitch.auth_url, client_id);
    match helix.validate(token).await {
        Ok(info) => info.login,
        Err(e) => {
            log::warn!(
                "irc: could not validate twitch.user_token ({e}); logging in with it under a justinfan nick"
            );
            None
        }
    }
}

/// Leaves `chat_source_connected{source="irc"}` at 0 however the loop ends.
struct StatusGuard<'a>(&'a Metrics);

impl Drop for StatusGuard<'_> {
    fn drop(&mut self) {
        self.0.chat_source_connected.set(ChatSource::Irc, 0);
    }
}

/// Exponential reconnect delay, [`BACKOFF_FIRST`] doubling to [`BACKOFF_MAX`],
/// each draw jittered into its upper half so many nodes restarted together do
/// not reconnect in step.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    /// The delay to wait now (in `[d/2, d]`, `random` picking the point).
    fn next_delay(&mut self, random: u64) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        d / 2 + (d / 2).mul_f64(unit)
    }
}
