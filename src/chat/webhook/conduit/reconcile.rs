//! The subscription half of a conduit round: make Twitch's
//! `channel.chat.message` subscriptions on our conduit match the served
//! channels (create missing, delete stale, 409 = already there), then make
//! the stored rows match what is subscribed.

use std::collections::HashMap;

use super::{CHAT_MESSAGE, Control, RoundError};
use crate::store::sqlite::StoredSubscription;
use crate::twitch::helix::{HelixError, Subscription, SubscriptionRequest, Transport, with_retry};

impl Control {
    /// Makes Twitch's chat subscriptions on our conduit match `served`, then the
    /// stored rows match what is subscribed.
    pub(super) async fn reconcile(
        &self,
        token: &str,
        conduit: &str,
        served: &[(String, String)],
    ) -> Result<(), RoundError> {
        let h = &self.helix;
        let listed = with_retry("list subscriptions", || {
            h.list_subscriptions(token, Some(CHAT_MESSAGE))
        })
        .await
        .map_err(|e| RoundError::Helix("list subscriptions", e))?;
        let login_of: HashMap<&str, &str> = served
            .iter()
            .map(|(l, id)| (id.as_str(), l.as_str()))
            .collect();
        let mut kept: HashMap<String, String> = HashMap::new(); // broadcaster id → subscription id
        for sub in listed
            .iter()
            .filter(|s| s.conduit_id.as_deref() == Some(conduit))
        {
            let broadcaster = sub.broadcaster_user_id.as_deref().unwrap_or("");
            let wanted = sub.user_id.as_deref() == Some(self.bot_user_id.as_str())
                && login_of.contains_key(broadcaster)
                && (sub.status == "enabled" || sub.status.ends_with("_pending"))
                && !kept.contains_key(broadcaster);
            if wanted {
                kept.insert(broadcaster.to_string(), sub.id.clone());
            } else {
                self.drop_subscription(token, sub).await?;
            }
        }
        for (login, broadcaster) in served {
            if kept.contains_key(broadcaster) {
                continue;
            }
            if let Some(id) = self
                .subscribe(token, conduit, login, broadcaster, &listed)
                .await?
            {
                kept.insert(broadcaster.clone(), id);
            }
        }
        self.store_rows(conduit, &kept, &login_of).await
    }

    /// Creates one channel's subscription. A 409 means it exists: fine. Other
    /// refusals (e.g. 403: the broadcaster has not granted `channel:bot`) are
    /// logged and leave this channel alone until the next round.
    async fn subscribe(
        &self,
        token: &str,
        conduit: &str,
        login: &str,
        broadcaster: &str,
        listed: &[Subscription],
    ) -> Result<Option<String>, RoundError> {
        let req = SubscriptionRequest {
            kind: CHAT_MESSAGE,
            version: "1",
            broadcaster_user_id: broadcaster,
            user_id: &self.bot_user_id,
            transport: Transport::Conduit {
                conduit_id: conduit,
            },
        };
        let h = &self.helix;
        match with_retry("create subscription", || h.create_subscription(token, &req)).await {
            Ok(id) => {
                log::info!("twitch: subscribed to chat of {login} ({broadcaster})");
                Ok(Some(id))
            }
            Err(HelixError::Conflict) => {
                let existing = listed.iter().find(|s| {
                    s.broadcaster_user_id.as_deref() == Some(broadcaster)
                        && s.user_id.as_deref() == Some(self.bot_user_id.as_str())
                });
                match existing {
                    Some(s) if s.conduit_id.as_deref() != Some(conduit) => {
                        log::warn!(
                            "twitch: chat of {login} is subscribed through another {} ({}); \
                             it will not arrive here until that subscription is deleted",
                            s.method,
                            s.conduit_id
                                .as_deref()
                                .or(s.session_id.as_deref())
                                .unwrap_or("?")
                        );
                        Ok(None)
                    }
                    _ => {
                        log::info!("twitch: chat of {login} is already subscribed");
                        Ok(existing.map(|s| s.id.clone()))
                    }
                }
            }
            Err(e @ HelixError::Unauthorized(_)) => {
                Err(RoundError::Helix("create subscription", e))
            }
            Err(e) => {
                log::warn!("twitch: cannot subscribe to chat of {login} ({broadcaster}): {e}");
                Ok(None)
            }
        }
    }

    async fn drop_subscription(&self, token: &str, sub: &Subscription) -> Result<(), RoundError> {
        let h = &self.helix;
        log::info!(
            "twitch: deleting stale subscription {} (broadcaster {:?}, status {})",
            sub.id,
            sub.broadcaster_user_id,
            sub.status
        );
        match with_retry("delete subscription", || {
            h.delete_subscription(token, &sub.id)
        })
        .await
        {
            Ok(()) | Err(HelixError::Status(404, _)) => Ok(()),
            Err(e) => Err(RoundError::Helix("delete subscription", e)),
        }
    }

    /// Rows for what is subscribed now. Other rows are removed, except a
    /// revocation of a served channel not yet replaced (it says why chat is missing).
    async fn store_rows(
        &self,
        conduit: &str,
        kept: &HashMap<String, String>,
        login_of: &HashMap<&str, &str>,
    ) -> Result<(), RoundError> {
        let db = &self.app.db;
        for row in db.eventsub_subscriptions().await? {
            let unreplaced_revocation = row.status == "revoked"
                && login_of.contains_key(row.broadcaster_user_id.as_str())
                && !kept.contains_key(&row.broadcaster_user_id);
            if kept.get(&row.broadcaster_user_id) != Some(&row.id) && !unreplaced_revocation {
                log::debug!(
                    "twitch: forgetting subscription row {} ({})",
                    row.id,
                    row.login
                );
                db.delete_eventsub_subscription(&row.id).await?;
            }
        }
        for (broadcaster, id) in kept {
            let row = StoredSubscription {
                id: id.clone(),
                kind: CHAT_MESSAGE.to_string(),
                broadcaster_user_id: broadcaster.clone(),
                login: login_of
                    .get(broadcaster.as_str())
                    .unwrap_or(&"")
                    .to_string(),
                bot_user_id: self.bot_user_id.clone(),
                conduit_id: conduit.to_string(),
                status: "enabled".to_string(),
                reason: None,
            };
            db.upsert_eventsub_subscription(&row).await?;
        }
        Ok(())
    }
}
