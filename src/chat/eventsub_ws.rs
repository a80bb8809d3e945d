//! The EventSub WebSocket chat source (`[twitch] source = "eventsub-ws"`): a
//! user token with `user:read:chat` reads chat with no public URL.
//!
//! This file owns the outer policy ([`eventsub_ws_loop`]): validate the token
//! at start and hourly (Twitch requires both), resolve the hub's channel logins
//! to user ids, spread the channels over at most [`MAX_SOCKETS`] sockets of
//! [`SUBS_PER_SOCKET`] subscriptions each, and start over with backoff when the
//! token fails or the channel list changes. One socket's reconnect loop and
//! close codes are in `socket`; one session (welcome, keepalive, reconnect
//! hand-over, chat to the hub) in `session`; creating subscriptions in `subscribe`. Everything runs inside the one
//! source task, so cancelling it at shutdown drops every socket.

mod session;
mod socket;
mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_rustls::rustls::ClientConfig;
use futures_util::future::select_all;
use smol::Timer;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use crate::app::App;
use crate::chat::ChatSource;
use crate::twitch::helix::{Helix, HelixError, TokenInfo, with_retry};
use crate::twitch::http::HttpClient;

/// Twitch: at most 300 enabled subscriptions per WebSocket connection.
pub const SUBS_PER_SOCKET: usize = 300;
/// Twitch: at most 3 WebSocket connections with enabled subscriptions per user token.
pub const MAX_SOCKETS: usize = 3;
/// The scope `channel.chat.message` needs from the reading user.
const SCOPE: &str = "user:read:chat";
/// Twitch: validate "when it starts and on an hourly basis thereafter".
const VALIDATE_EVERY: Duration = Duration::from_secs(3600);
/// After a validation that failed for network reasons, try again this soon.
const VALIDATE_RETRY: Duration = Duration::from_secs(60);
/// How often the channels this node reads ([`App::chat_channels`]) are
/// compared with the subscribed ones: a channel added at runtime, or handed to
/// this node when a cluster member joined or failed, gets its chat within this
/// long. Only a set comparison when nothing changed.
const CHANNEL_SYNC_EVERY: Duration = Duration::from_secs(2);
/// A bad token or missing scope needs a person; retry slowly.
const AUTH_BACKOFF: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(1800));
/// A run that lasted this long worked: the next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(600);

/// How channels are spread over sockets; tests shrink it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub subs_per_socket: usize,
    pub max_sockets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            subs_per_socket: SUBS_PER_SOCKET,
            max_sockets: MAX_SOCKETS,
        }
    }
}

/// A channel we read: Twitch login and user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Channel {
    pub login: String,
    pub id: String,
}

/// What every socket of one run shares.
pub(crate) struct Ctx {
    pub app: Arc<App>,
    pub helix: Helix,
    pub token: String,
    /// The token's user: `condition.user_id` of every subscription.
    pub user_id: String,
    pub tls: Arc<ClientConfig>,
    /// One flag per socket; `chat_source_connected` is 1 only when all are up.
    connected: Vec<AtomicBool>,
    /// Wakes the validation early (a revocation may mean the token was revoked).
    revalidate: Sender<()>,
}

impl Ctx {
    pub fn set_connected(&self, socket: usize, up: bool) {
        self.connected[socket].store(up, Ordering::SeqCst);
        let all = self.connected.iter().all(|c| c.load(Ordering::SeqCst));
        self.app
            .metrics
            .chat_source_connected
            .set(ChatSource::EventSubWs, i64::from(all));
    }

    pub fn revalidate_soon(&self) {
        let _ = self.revalidate.try_send(());
    }
}

/// Why a run of the sockets stopped.
enum Stop {
    /// The token is invalid, lacks the scope, or Helix refused it.
    Auth(String),
    /// Helix could not be reached for setup (users, validation).
    Helix(String),
    /// The hub's channels changed; start over at once.
    ChannelsChanged,
}

/// The source task: runs until cancelled at shutdown.
pub async fn eventsub_ws_loop(app: Arc<App>) {
    eventsub_ws_loop_with(app, Limits::default()).await
}

/// [`eventsub_ws_loop`] with other socket limits (tests shard a few channels).
pub async fn eventsub_ws_loop_with(app: Arc<App>, limits: Limits) {
    let twitch = &app.config.twitch;
    let tls = match crate::tls::client_config(twitch.ca_file.as_deref()) {
        Ok(tls) => tls,
        Err(e) => {
            log::error!("twitch eventsub-ws: cannot start: {e}");
            return;
        }
    };
    // The config check makes both present for this source.
    let (Some(client_id), Some(token)) = (&twitch.client_id, &twitch.user_token) else {
        log::error!("twitch eventsub-ws: twitch.client_id and twitch.user_token are required");
        return;
    };
    let http = HttpClient::new(Arc::clone(&tls));
    let helix = Helix::new(http, &twitch.helix_url, &twitch.auth_url, client_id);
    let mut backoff = Backoff::new(AUTH_BACKOFF.0, AUTH_BACKOFF.1);
    loop {
        let started = Instant::now();
        let stop = run(&app, &helix, token, &tls, limits).await;
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        app.metrics
            .chat_source_connected
            .set(ChatSource::EventSubWs, 0);
        let delay = match stop {
            Stop::ChannelsChanged => {
                log::info!("twitch eventsub-ws: channel list changed; reconnecting");
                continue;
            }
            Stop::Auth(why) => {
                app.metrics.twitch_token_failures.inc();
                let delay = backoff.next();
                log::error!("twitch eventsub-ws: {why}; chat stopped, retrying in {delay:?}");
                delay
            }
            Stop::Helix(why) => {
                let delay = backoff.next();
                log::warn!("twitch eventsub-ws: {why}; retrying in {delay:?}");
                delay
            }
        };
        Timer::after(delay).await;
    }
}

/// One run: validate, resolve, then the sockets, the hourly validation and the
/// channel watch side by side until one of them stops.
async fn run(
    app: &Arc<App>,
    helix: &Helix,
    token: &str,
    tls: &Arc<ClientConfig>,
    limits: Limits,
) -> Stop {
    let info = match validate(helix, token).await {
        Ok(info) => info,
        Err(stop) => return stop,
    };
    let Some(user_id) = info.user_id.clone() else {
        return Stop::Auth("twitch.user_token is an app token; a user token is needed".into());
    };
    let logins = channel_logins(app);
    let list: Vec<String> = logins.iter().cloned().collect();
    let users = match with_retry("users by login", || helix.users_by_login(token, &list)).await {
        Ok(users) => users,
        Err(HelixError::Unauthorized(m)) => {
            return Stop::Auth(format!("Helix refused the token: {m}"));
        }
        Err(e) => return Stop::Helix(format!("resolving channel ids: {e}")),
    };
    let channels = resolve(&list, users);
    let (shards, left_out) = shard(channels, limits);
    for ch in &left_out {
        log::error!(
            "twitch eventsub-ws: no room for {} ({} sockets × {} subscriptions per token); its chat is not read",
            ch.login,
            limits.max_sockets,
            limits.subs_per_socket
        );
    }
    let (revalidate, wake) = smol::channel::bounded(1);
    let ctx = Ctx {
        app: Arc::clone(app),
        helix: helix.clone(),
        token: token.to_string(),
        user_id,
        tls: Arc::clone(tls),
        connected: shards.iter().map(|_| AtomicBool::new(false)).collect(),
        revalidate,
    };
    log::info!(
        "twitch eventsub-ws: reading {} channel(s) as {} over {} socket(s)",
        shards.iter().map(Vec::len).sum::<usize>(),
        info.login.as_deref().unwrap_or("?"),
        shards.len()
    );
    let sockets = async {
        if shards.is_empty() {
            return std::future::pending().await;
        }
        let loops = shards
            .iter()
            .enumerate()
            .map(|(i, chans)| Box::pin(socket::socket_loop(&ctx, i, chans)));
        select_all(loops).await.0
    };
    sockets
        .or(validate_loop(helix, token, wake))
        .or(watch_channels(app, logins))
        .await
}

/// `/validate`, with the checks ChatPulse needs: a user token carrying [`SCOPE`].
async fn validate(helix: &Helix, token: &str) -> Result<TokenInfo, Stop> {
    let info = match with_retry("token validation", || helix.validate(token)).await {
        Ok(info) => info,
        Err(HelixError::Unauthorized(m)) => {
            return Err(Stop::Auth(format!(
                "twitch.user_token is invalid or expired ({m}); create a new one"
            )));
        }
        Err(e) => return Err(Stop::Helix(format!("token validation failed: {e}"))),
    };
    if !info.scopes.iter().any(|s| s == SCOPE) {
        return Err(Stop::Auth(format!(
            "twitch.user_token lacks the {SCOPE} scope (it has: {}); create one with it",
            info.scopes.join(" ")
        )));
    }
    if info.client_id != helix.client_id() {
        log::warn!(
            "twitch eventsub-ws: the token belongs to client id {}, not twitch.client_id",
            info.client_id
        );
    }
    Ok(info)
}

/// Validates every [`VALIDATE_EVERY`], or at once when a session asks; returns
/// only when the token stopped being usable.
async fn validate_loop(helix: &Helix, token: &str, wake: Receiver<()>) -> Stop {
    let mut wait = VALIDATE_EVERY;
    loop {
        let _ = async { wake.recv().await.ok() }
            .or(async {
                Timer::after(wait).await;
                None
            })
            .await;
        match validate(helix, token).await {
            Ok(_) => wait = VALIDATE_EVERY,
            Err(Stop::Helix(why)) => {
                log::warn!("twitch eventsub-ws: {why}; trying again in {VALIDATE_RETRY:?}");
                wait = VALIDATE_RETRY;
            }
            Err(stop) => return stop,
        }
    }
}

/// Returns when the hub's channel logins differ from `current`.
async fn watch_channels(app: &App, current: BTreeSet<String>) -> Stop {
    loop {
        Timer::after(CHANNEL_SYNC_EVERY).await;
        if channel_logins(app) != current {
            return Stop::ChannelsChanged;
        }
    }
}

fn channel_logins(app: &App) -> BTreeSet<String> {
    app.chat_channels()
}

/// Pairs logins with the ids Helix returned, in login order; logs the unknown.
fn resolve(logins: &[String], users: Vec<(String, String)>) -> Vec<Channel> {
    logins
        .iter()
        .filter_map(|login| {
            let found = users.iter().find(|(l, _)| l.eq_ignore_ascii_case(login));
            if found.is_none() {
                log::warn!("twitch eventsub-ws: Twitch knows no user {login}; skipped");
            }
            found.map(|(_, id)| Channel {
                login: login.clone(),
                id: id.clone(),
            })
        })
        .collect()
}

/// Splits channels into sockets of at most `subs_per_socket`, at most
/// `max_sockets` of them; returns the sockets and the channels left out.
fn shard(mut channels: Vec<Channel>, limits: Limits) -> (Vec<Vec<Channel>>, Vec<Channel>) {
    let per = limits.subs_per_socket.max(1);
    let room = per.saturating_mul(limits.max_sockets);
    let left_out = channels.split_off(room.min(channels.len()));
    let shards = channels.chunks(per).map(<[Channel]>::to_vec).collect();
    (shards, left_out)
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of
/// `first × 2^n` (capped at `max`), so sockets dropped together do not all
/// come back in the same instant.
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next(&mut self) -> Duration {
        let random = getrandom::u64().unwrap_or_else(|_| crate::app::now_ms());
        self.next_with(random)
    }

    fn next_with(&mut self, random: u64) -> Duration {
        let full = self
            .first
            .saturating_mul(1 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        let extra = half.as_millis() as u64;
        half + Duration::from_millis(if extra == 0 { 0 } else { random % (extra + 1) })
    }
}
