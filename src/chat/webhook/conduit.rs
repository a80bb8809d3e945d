//! The webhook source's control plane, one task ([`conduit_loop`]): an app
//! access token; a conduit (found or created, its id kept in SQLite, never
//! deleted: other instances and restarts share it) whose shard 0 is this
//! deployment's webhook; broadcaster ids for the served logins; and one
//! `channel.chat.message` subscription per channel, reconciled with Twitch's
//! list every round (missing ones created, stale ones deleted, rows stored).
//!
//! The loop does one round, then sleeps: an hour after a good round (Twitch
//! wants tokens validated hourly), sooner if the token comes due or a channel
//! was added (a first Twitch sign-in), and with a growing back-off after a
//! failed one. It ends only when cancelled at shutdown.

/// Subscriptions: reconciled with Twitch's list, stored in SQLite.
mod reconcile;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use smol::Timer;
use smol::future::FutureExt;

use super::CHAT_MESSAGE;
use crate::app::App;
use crate::chat::ChatSource;
use crate::store::StoreError;
use crate::twitch::helix::{Helix, HelixError, ShardUpdate, Transport, with_retry};
use crate::twitch::http::HttpClient;
use crate::twitch::tokens::AppTokens;

/// Twitch: validate tokens "when it starts and on an hourly basis thereafter".
/// The same round re-checks the conduit and the subscriptions.
const ROUND_EVERY: Duration = Duration::from_secs(3600);
/// Rounds never come closer than this, whatever the token says.
const MIN_ROUND_GAP: Duration = Duration::from_secs(1);
/// Wait after the first failed round; doubles per failure up to [`FAILED_ROUND_MAX`].
const FAILED_ROUND_FIRST: Duration = Duration::from_secs(5);
/// Cap of the back-off: a broken credential is retried every five minutes.
const FAILED_ROUND_MAX: Duration = Duration::from_secs(300);
/// This deployment's shard. One deployment, one conduit with one webhook shard.
const SHARD_ID: &str = "0";
/// Shards of a conduit we create.
const SHARD_COUNT: u32 = 1;
const SOURCE: ChatSource = ChatSource::EventSubWebhook;

/// Why a round failed.
#[derive(Debug)]
enum RoundError {
    Token(HelixError),
    Helix(&'static str, HelixError),
    Store(StoreError),
    Shard(String),
}

impl std::fmt::Display for RoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundError::Token(e) => write!(f, "app access token: {e}"),
            RoundError::Helix(what, e) => write!(f, "{what}: {e}"),
            RoundError::Store(e) => write!(f, "store: {e}"),
            RoundError::Shard(e) => write!(f, "conduit shard {SHARD_ID}: {e}"),
        }
    }
}

impl From<StoreError> for RoundError {
    fn from(e: StoreError) -> Self {
        RoundError::Store(e)
    }
}

/// Runs the control plane until cancelled. Config validation guarantees the
/// credentials; without them (or a TLS config) the source logs and stops.
pub async fn conduit_loop(app: Arc<App>) {
    let Some(mut control) = Control::new(&app) else {
        return;
    };
    log::info!(
        "twitch: EventSub webhook source starting (callback {})",
        control.callback
    );
    let mut failures = 0u32;
    let changes = app.channel_changes();
    loop {
        let wait = match control.round().await {
            Ok(()) => {
                failures = 0;
                app.metrics.chat_source_connected.set(SOURCE, 1);
                control.tokens.next_check(ROUND_EVERY).max(MIN_ROUND_GAP)
            }
            Err(e) => {
                failures += 1;
                app.metrics.chat_source_connected.set(SOURCE, 0);
                if let RoundError::Token(_) = e {
                    app.metrics.twitch_token_failures.inc();
                }
                let wait = backoff(failures);
                log::error!("twitch: EventSub setup failed ({e}); retrying in {wait:?}");
                wait
            }
        };
        // A channel added meanwhile (a first Twitch sign-in) is subscribed now, not
        // at the next hourly round.
        let changed = async {
            if changes.recv().await.is_err() {
                std::future::pending::<()>().await;
            }
            true
        };
        let woken = async {
            Timer::after(wait).await;
            false
        }
        .or(changed)
        .await;
        if woken {
            Timer::after(MIN_ROUND_GAP).await;
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FAILED_ROUND_FIRST * 2u32.pow(doublings)).min(FAILED_ROUND_MAX)
}

struct Control {
    app: Arc<App>,
    helix: Helix,
    tokens: AppTokens,
    client_id: String,
    bot_user_id: String,
    callback: String,
    secret: String,
    /// The conduit whose shard this process has pointed at its callback.
    assigned: Option<String>,
}

impl Control {
    fn new(app: &Arc<App>) -> Option<Control> {
        let t = &app.config.twitch;
        let (Some(client_id), Some(client_secret), Some(bot), Some(callback), Some(secret)) = (
            t.client_id.as_deref(),
            t.client_secret.as_deref(),
            t.bot_user_id.as_deref(),
            t.callback_url.as_deref(),
            t.webhook_secret.as_deref(),
        ) else {
            log::error!(
                "twitch: eventsub-webhook needs client_id, client_secret, bot_user_id, callback_url and webhook_secret"
            );
            return None;
        };
        let tls = match crate::tls::client_config(t.ca_file.as_deref()) {
            Ok(tls) => tls,
            Err(e) => {
                log::error!("twitch: EventSub webhook source not started: {e}");
                return None;
            }
        };
        let helix = Helix::new(HttpClient::new(tls), &t.helix_url, &t.auth_url, client_id);
        Some(Control {
            app: Arc::clone(app),
            tokens: AppTokens::new(helix.clone(), client_secret),
            helix,
            client_id: client_id.to_string(),
            bot_user_id: bot.to_string(),
            callback: callback.to_string(),
            secret: secret.to_string(),
            assigned: None,
        })
    }

    /// Token, conduit and shard, broadcaster ids, subscriptions — in that order.
    async fn round(&mut self) -> Result<(), RoundError> {
        let token = self.tokens.validate().await.map_err(RoundError::Token)?;
        let result = self.setup(&token).await;
        if let Err(RoundError::Helix(_, HelixError::Unauthorized(_))) = &result {
            // Revoked between /validate and now: start the next round with a new one.
            self.tokens.invalidate();
        }
        result
    }

    async fn setup(&mut self, token: &str) -> Result<(), RoundError> {
        let conduit = self.ensure_conduit(token).await?;
        let served = self.broadcasters(token).await?;
        self.reconcile(token, &conduit, &served).await
    }

    /// The stored conduit if Twitch still has it; else adopt the first listed
    /// (a fresh database) or create one. Shard 0 is pointed at our callback
    /// once per process and whenever the conduit changes.
    async fn ensure_conduit(&mut self, token: &str) -> Result<String, RoundError> {
        let h = &self.helix;
        let listed = with_retry("list conduits", || h.list_conduits(token))
            .await
            .map_err(|e| RoundError::Helix("list conduits", e))?;
        let stored = self.app.db.conduit_id(&self.client_id).await?;
        let id = match &stored {
            Some(id) if listed.iter().any(|c| &c.id == id) => id.clone(),
            _ => {
                let id = match (listed.first(), &stored) {
                    (Some(c), None) => {
                        log::info!(
                            "twitch: adopting existing conduit {} ({} shards)",
                            c.id,
                            c.shard_count
                        );
                        if c.shard_count > 1 {
                            log::warn!(
                                "twitch: conduit {} has {} shards; this deployment serves shard {SHARD_ID} only",
                                c.id,
                                c.shard_count
                            );
                        }
                        c.id.clone()
                    }
                    _ => {
                        let c =
                            with_retry("create conduit", || h.create_conduit(token, SHARD_COUNT))
                                .await
                                .map_err(|e| RoundError::Helix("create conduit", e))?;
                        log::info!("twitch: created conduit {}", c.id);
                        c.id
                    }
                };
                self.app.db.set_conduit_id(&self.client_id, &id).await?;
                id
            }
        };
        if self.assigned.as_deref() != Some(id.as_str()) {
            self.assign_shard(token, &id).await?;
            self.assigned = Some(id.clone());
        }
        Ok(id)
    }

    async fn assign_shard(&self, token: &str, conduit: &str) -> Result<(), RoundError> {
        let shards = [ShardUpdate {
            id: SHARD_ID,
            transport: Transport::Webhook {
                callback: &self.callback,
                secret: &self.secret,
            },
        }];
        let h = &self.helix;
        let updated = with_retry("update conduit shards", || {
            h.update_shards(token, conduit, &shards)
        })
        .await
        .map_err(|e| RoundError::Helix("update conduit shards", e))?;
        if let Some(e) = updated.errors.iter().find(|e| e.id == SHARD_ID) {
            return Err(RoundError::Shard(format!("{} ({})", e.message, e.code)));
        }
        let status = updated
            .shards
            .iter()
            .find(|s| s.id == SHARD_ID)
            .map_or("unknown", |s| s.status.as_str());
        log::info!(
            "twitch: conduit {conduit} shard {SHARD_ID} → {} ({status})",
            self.callback
        );
        Ok(())
    }

    /// `(login, broadcaster id)` of every served channel Twitch knows; ids are
    /// stored on the streamer rows. Resolved every round: logins can change hands.
    async fn broadcasters(&self, token: &str) -> Result<Vec<(String, String)>, RoundError> {
        let logins: Vec<String> = self
            .app
            .hub
            .streamers()
            .into_iter()
            .map(|s| s.login)
            .collect();
        if logins.is_empty() {
            return Ok(Vec::new());
        }
        let h = &self.helix;
        let found = with_retry("get users", || h.users_by_login(token, &logins))
            .await
            .map_err(|e| RoundError::Helix("get users", e))?;
        let stored: HashMap<String, String> =
            self.app.db.twitch_user_ids().await?.into_iter().collect();
        let mut served = Vec::with_capacity(found.len());
        for (login, id) in found {
            let login = login.to_ascii_lowercase();
            if stored.get(&login) != Some(&id) {
                self.app.db.set_twitch_user_id(&login, &id).await?;
            }
            served.push((login, id));
        }
        for login in logins
            .iter()
            .filter(|l| !served.iter().any(|(s, _)| s == *l))
        {
            log::warn!("twitch: no Twitch user named {login}; its chat cannot be read");
        }
        Ok(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), FAILED_ROUND_FIRST);
        assert_eq!(backoff(2), FAILED_ROUND_FIRST * 2);
        assert_eq!(backoff(7), FAILED_ROUND_MAX);
        assert_eq!(backoff(u32::MAX), FAILED_ROUND_MAX);
    }
}
