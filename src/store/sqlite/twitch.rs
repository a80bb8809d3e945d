//! What the EventSub webhook source keeps in SQLite: the conduit id of each
//! Twitch client id, broadcaster user ids resolved from logins, and the
//! `channel.chat.message` subscriptions as last reconciled with Twitch (or as
//! revoked by it).

use rusqlite::{OptionalExtension, params};

use super::{Db, now_ms};
use crate::store::StoreError;

/// One row of `eventsub_subscriptions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSubscription {
    /// Twitch's subscription id.
    pub id: String,
    pub kind: String,
    pub broadcaster_user_id: String,
    pub login: String,
    pub bot_user_id: String,
    pub conduit_id: String,
    /// `enabled` or `revoked`.
    pub status: String,
    /// Twitch's revocation reason, e.g. `authorization_revoked`.
    pub reason: Option<String>,
}

/// The columns [`subscription_from_row`] reads, in its order.
const SUBSCRIPTION_COLUMNS: &str =
    "id, kind, broadcaster_user_id, login, bot_user_id, conduit_id, status, reason";

fn subscription_from_row(r: &rusqlite::Row) -> rusqlite::Result<StoredSubscription> {
    Ok(StoredSubscription {
        id: r.get(0)?,
        kind: r.get(1)?,
        broadcaster_user_id: r.get(2)?,
        login: r.get(3)?,
        bot_user_id: r.get(4)?,
        conduit_id: r.get(5)?,
        status: r.get(6)?,
        reason: r.get(7)?,
    })
}

/// Inserts or replaces the row with `s.id`, changed at `updated_at` (Unix ms).
fn write_subscription(
    tx: &rusqlite::Transaction,
    s: &StoredSubscription,
    updated_at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO eventsub_subscriptions
         (id, kind, broadcaster_user_id, login, bot_user_id, conduit_id, status, reason,
          updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET kind = ?2, broadcaster_user_id = ?3, login = ?4,
           bot_user_id = ?5, conduit_id = ?6, status = ?7, reason = ?8, updated_at = ?9",
        params![
            s.id,
            s.kind,
            s.broadcaster_user_id,
            s.login,
            s.bot_user_id,
            s.conduit_id,
            s.status,
            s.reason,
            updated_at
        ],
    )?;
    Ok(())
}

impl Db {
    /// The conduit this client id uses, if one was created or adopted before.
    pub async fn conduit_id(&self, client_id: &str) -> Result<Option<String>, StoreError> {
        let client_id = client_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT conduit_id FROM twitch_conduits WHERE client_id = ?1",
                    [client_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    pub async fn set_conduit_id(
        &self,
        client_id: &str,
        conduit_id: &str,
    ) -> Result<(), StoreError> {
        let (client_id, conduit_id) = (client_id.to_owned(), conduit_id.to_owned());
        let pg = self.stamp().postgres;
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO twitch_conduits (client_id, conduit_id, updated_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (client_id) DO UPDATE SET conduit_id = ?2, updated_at = ?3",
                params![client_id, conduit_id, now_ms()],
            )?;
            if pg {
                super::queue(&tx, "conduit", &client_id)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Stores the broadcaster user id of `login`. A user id is unique: if another
    /// row held it (the broadcaster renamed), that row lets go of it. False when
    /// no streamer has this login.
    pub async fn set_twitch_user_id(&self, login: &str, user_id: &str) -> Result<bool, StoreError> {
        let (login, user_id, stamp) = (login.to_owned(), user_id.to_owned(), self.stamp());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            tx.execute(
                "UPDATE streamers SET twitch_user_id = NULL, updated_at = ?3
                 WHERE twitch_user_id = ?1 AND login <> ?2",
                params![user_id, login, now],
            )?;
            // A new value is a change other nodes take (the mesh replicates rows).
            let changed: Option<i64> = tx
                .query_row(
                    "SELECT id FROM streamers WHERE login = ?2 AND twitch_user_id IS NOT ?1",
                    params![user_id, login],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = changed {
                super::bump_rev(&tx, id, stamp, super::Part::Identity)?;
            }
            let found = tx.execute(
                "UPDATE streamers SET twitch_user_id = ?1, updated_at = ?3 WHERE login = ?2",
                params![user_id, login, now],
            )?;
            tx.commit()?;
            Ok(found > 0)
        })
        .await
    }

    /// `(login, twitch_user_id)` of every streamer whose id is known.
    pub async fn twitch_user_ids(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare(
                "SELECT login, twitch_user_id FROM streamers
                 WHERE twitch_user_id IS NOT NULL ORDER BY login",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Every stored subscription, ordered by broadcaster login.
    pub async fn eventsub_subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM eventsub_subscriptions ORDER BY login, id"
            ))?;
            let rows = stmt.query_map([], subscription_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Inserts or replaces the row with `sub.id`.
    pub async fn upsert_eventsub_subscription(
        &self,
        sub: &StoredSubscription,
    ) -> Result<(), StoreError> {
        let s = sub.clone();
        let pg = self.stamp().postgres;
        self.call(move |conn| {
            let tx = conn.transaction()?;
            write_subscription(&tx, &s, now_ms())?;
            if pg {
                super::queue(&tx, "subscription", &s.id)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Removes a row; false when there was none.
    pub async fn delete_eventsub_subscription(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let pg = self.stamp().postgres;
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let gone = tx.execute("DELETE FROM eventsub_subscriptions WHERE id = ?1", [&id])? > 0;
            if pg && gone {
                super::queue(&tx, "subscription", &id)?;
            }
            tx.commit()?;
            Ok(gone)
        })
        .await
    }

    /// Marks a subscription revoked by Twitch, with its reason; false when the
    /// id is not stored (revoked before we recorded it, or never ours).
    pub async fn revoke_eventsub_subscription(
        &self,
        id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        let pg = self.stamp().postgres;
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let changed = tx.execute(
                "UPDATE eventsub_subscriptions SET status = 'revoked', reason = ?2, updated_at = ?3
                 WHERE id = ?1",
                params![id, reason, now_ms()],
            )?;
            if pg && changed > 0 {
                super::queue(&tx, "subscription", &id)?;
            }
            tx.commit()?;
            Ok(changed > 0)
        })
        .await
    }

    /// The subscription row with `id` and when it last changed (Unix ms).
    pub async fn eventsub_subscription(
        &self,
        id: &str,
    ) -> Result<Option<(StoredSubscription, i64)>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {SUBSCRIPTION_COLUMNS}, updated_at FROM eventsub_subscriptions WHERE id = ?1"
                    ),
                    [id],
                    |r| Ok((subscription_from_row(r)?, r.get(8)?)),
                )
                .optional()?)
        })
        .await
    }

    /// The conduit row of `client_id` and when it last changed.
    pub async fn conduit_row(&self, client_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        let client_id = client_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT conduit_id, updated_at FROM twitch_conduits WHERE client_id = ?1",
                    [client_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        })
        .await
    }

    /// A subscription row from PostgreSQL (another node's change): kept if newer
    /// than ours; `None` is a deletion. Not queued back.
    pub async fn apply_subscription(
        &self,
        id: &str,
        row: Option<StoredSubscription>,
        updated_ms: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let ours: Option<i64> = tx
                .query_row(
                    "SELECT updated_at FROM eventsub_subscriptions WHERE id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?;
            if ours.is_some_and(|at| at >= updated_ms) {
                return Ok(false);
            }
            let changed = match row {
                None => tx.execute("DELETE FROM eventsub_subscriptions WHERE id = ?1", [&id])? > 0,
                Some(s) => {
                    write_subscription(&tx, &s, updated_ms)?;
                    true
                }
            };
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    /// A conduit row from PostgreSQL: kept if newer than ours. Not queued back.
    pub async fn apply_conduit(
        &self,
        client_id: &str,
        conduit_id: &str,
        updated_ms: i64,
    ) -> Result<bool, StoreError> {
        let (client_id, conduit_id) = (client_id.to_owned(), conduit_id.to_owned());
        self.call(move |conn| {
            Ok(conn.execute(
                "INSERT INTO twitch_conduits (client_id, conduit_id, updated_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (client_id) DO UPDATE SET conduit_id = ?2, updated_at = ?3
                 WHERE twitch_conduits.updated_at < ?3",
                params![client_id, conduit_id, updated_ms],
            )? > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, login: &str) -> StoredSubscription {
        StoredSubscription {
            id: id.into(),
            kind: "channel.chat.message".into(),
            broadcaster_user_id: format!("{login}-id"),
            login: login.into(),
            bot_user_id: "42".into(),
            conduit_id: "c1".into(),
            status: "enabled".into(),
            reason: None,
        }
    }

    #[test]
    fn conduit_ids_users_and_subscriptions() {
        smol::block_on(async {
            let dir = std::env::temp_dir().join(format!("chatpulse-twitch-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let db = Db::open(&dir.join("t.db")).await.unwrap();
            assert_eq!(db.conduit_id("app").await.unwrap(), None);
            db.set_conduit_id("app", "c1").await.unwrap();
            db.set_conduit_id("app", "c2").await.unwrap();
            assert_eq!(db.conduit_id("app").await.unwrap().as_deref(), Some("c2"));

            let seed = crate::channel::OverlayConfig::default();
            db.upsert_seed("alice", &seed, None).await.unwrap();
            db.upsert_seed("bob", &seed, None).await.unwrap();
            assert!(db.set_twitch_user_id("alice", "1").await.unwrap());
            assert!(!db.set_twitch_user_id("nobody", "9").await.unwrap());
            // bob is alice renamed: the id moves.
            assert!(db.set_twitch_user_id("bob", "1").await.unwrap());
            assert_eq!(
                db.twitch_user_ids().await.unwrap(),
                vec![("bob".to_string(), "1".to_string())]
            );

            db.upsert_eventsub_subscription(&row("s1", "alice"))
                .await
                .unwrap();
            db.upsert_eventsub_subscription(&row("s2", "bob"))
                .await
                .unwrap();
            assert!(
                db.revoke_eventsub_subscription("s1", "user_removed")
                    .await
                    .unwrap()
            );
            assert!(!db.revoke_eventsub_subscription("zz", "x").await.unwrap());
            let rows = db.eventsub_subscriptions().await.unwrap();
            assert_eq!(rows[0].status, "revoked");
            assert_eq!(rows[0].reason.as_deref(), Some("user_removed"));
            assert_eq!(rows[1], row("s2", "bob"));
            assert!(db.delete_eventsub_subscription("s1").await.unwrap());
            assert!(!db.delete_eventsub_subscription("s1").await.unwrap());
            assert_eq!(db.eventsub_subscriptions().await.unwrap().len(), 1);
            db.close().await;
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}
