//! What sign-in keeps in SQLite: node settings by name (the admin password hash,
//! the generated session secret), signed-out sessions until they would have
//! expired, Twitch user tokens (ciphertext only; `crate::auth::crypto`), and the
//! streamer a Twitch sign-in creates or refreshes.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::rows::{SELECT_CHANNEL, channel_from_row, write_config};
use super::{Db, audit_row, now_ms, try_overlay_token};
use crate::channel::{OverlayConfig, Streamer};
use crate::store::StoreError;

/// `settings` keys.
const ADMIN_PASSWORD: &str = "admin_password";
const SESSION_SECRET: &str = "session_secret";

/// Encrypted Twitch user tokens of one streamer, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTokens {
    pub access_enc: String,
    pub refresh_enc: Option<String>,
    /// Unix ms; None when Twitch did not say.
    pub expires_at: Option<i64>,
}

/// What a Twitch sign-in did to the streamers table.
#[derive(Clone, Debug, PartialEq)]
// Made once per sign-in and matched at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum TwitchUpsert {
    /// The streamer (created now when `created`) and their current config.
    Ready {
        streamer: Streamer,
        config: OverlayConfig,
        created: bool,
    },
    /// Another Twitch account's channel holds this login (a rename we have not
    /// seen yet); nothing was changed.
    LoginTaken,
}

impl Db {
    /// The admin password hash (`crate::auth::password` format), if one was set.
    pub async fn admin_password_hash(&self) -> Result<Option<String>, StoreError> {
        self.call(|conn| setting(&conn.transaction()?, ADMIN_PASSWORD))
            .await
    }

    /// Replaces the admin password hash; audited as `password_set`.
    pub async fn set_admin_password_hash(&self, hash: &str, actor: &str) -> Result<(), StoreError> {
        let (hash, actor) = (hash.to_owned(), actor.to_owned());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            put_setting(&tx, ADMIN_PASSWORD, &hash, now)?;
            audit_row(&tx, &actor, "password_set", None, "", now)?;
            Ok(tx.commit()?)
        })
        .await
    }

    /// The stored session secret; stores `fresh` first if there is none, so
    /// every later start (and restart) signs with the same key.
    pub async fn session_secret_or(&self, fresh: &str) -> Result<String, StoreError> {
        let fresh = fresh.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = match setting(&tx, SESSION_SECRET)? {
                Some(v) => v,
                None => {
                    put_setting(&tx, SESSION_SECRET, &fresh, now_ms())?;
                    fresh
                }
            };
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    /// Records a signed-out session until `until` (unix s); forgets expired ones.
    pub async fn revoke_session(&self, id: &str, until: u64, now: u64) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM revoked_sessions WHERE until <= ?1",
                [now as i64],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO revoked_sessions (id, until) VALUES (?1, ?2)",
                params![id, until as i64],
            )?;
            Ok(tx.commit()?)
        })
        .await
    }

    /// Signed-out sessions that have not expired yet: (id, until unix s).
    pub async fn revoked_sessions(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM revoked_sessions WHERE until <= ?1",
                [now as i64],
            )?;
            let mut stmt = conn.prepare("SELECT id, until FROM revoked_sessions")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Stores (replaces) a streamer's encrypted Twitch tokens.
    pub async fn store_user_tokens(
        &self,
        streamer_id: i64,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        let t = tokens.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO user_tokens (streamer_id, access_enc, refresh_enc, expires_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (streamer_id) DO UPDATE SET access_enc = ?2, refresh_enc = ?3,
                     expires_at = ?4, updated_at = ?5",
                params![streamer_id, t.access_enc, t.refresh_enc, t.expires_at, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn user_tokens(&self, streamer_id: i64) -> Result<Option<StoredTokens>, StoreError> {
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT access_enc, refresh_enc, expires_at FROM user_tokens
                     WHERE streamer_id = ?1",
                    [streamer_id],
                    |r| {
                        Ok(StoredTokens {
                            access_enc: r.get(0)?,
                            refresh_enc: r.get(1)?,
                            expires_at: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// The streamer behind a Twitch sign-in, in one transaction: found by Twitch
    /// user id (login and display name refreshed; overlay token and config kept),
    /// else the config-file channel of that login is adopted, else a new streamer
    /// with a fresh overlay token and the default config (version 1) is created.
    pub async fn upsert_twitch_streamer(
        &self,
        twitch_user_id: &str,
        login: &str,
        display_name: &str,
    ) -> Result<TwitchUpsert, StoreError> {
        let (id, login, name) = (
            twitch_user_id.to_owned(),
            login.to_owned(),
            display_name.to_owned(),
        );
        let node = self.stamp();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((row, created)) = upsert_twitch(&tx, &id, &login, &name)? else {
                return Ok(TwitchUpsert::LoginTaken);
            };
            // Login, name or id may have changed: other nodes take the new record.
            super::bump_rev(&tx, row, node, super::Part::Identity)?;
            let sql = format!("{SELECT_CHANNEL} WHERE s.id = ?1");
            let (streamer, config) = tx.query_row(&sql, [row], channel_from_row)?;
            tx.commit()?;
            Ok(TwitchUpsert::Ready {
                streamer,
                config,
                created,
            })
        })
        .await
    }
}

/// `Some((row id, created))`, or None when another account's row holds `login`.
fn upsert_twitch(
    tx: &Transaction,
    twitch_id: &str,
    login: &str,
    name: &str,
) -> Result<Option<(i64, bool)>, StoreError> {
    let now = now_ms();
    let by_id: Option<i64> = tx
        .query_row(
            "SELECT id FROM streamers WHERE twitch_user_id = ?1",
            [twitch_id],
            |r| r.get(0),
        )
        .optional()?;
    let by_login: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT id, twitch_user_id FROM streamers WHERE login = ?1",
            [login],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let row = match (by_id, by_login) {
        // Known account; a login held by another row means that row is stale.
        (Some(row), Some((other, _))) if other != row => return Ok(None),
        (Some(row), _) => row,
        // A config-file channel (no Twitch id yet, or this one): its owner signed in.
        (None, Some((row, None))) => row,
        (None, Some((_, Some(_)))) => return Ok(None),
        (None, None) => {
            tx.execute(
                "INSERT INTO streamers
                 (login, display_name, twitch_user_id, overlay_token, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![login, name, twitch_id, try_overlay_token()?, now],
            )?;
            let row = tx.last_insert_rowid();
            write_config(tx, row, 1, &OverlayConfig::default(), None, now)?;
            let actor = format!("twitch:{login}");
            audit_row(tx, &actor, "channel_created", Some(row), login, now)?;
            log::info!("sqlite: created channel {login} at its first Twitch sign-in");
            return Ok(Some((row, true)));
        }
    };
    tx.execute(
        "UPDATE streamers SET login = ?1, display_name = ?2, twitch_user_id = ?3,
             updated_at = ?4 WHERE id = ?5",
        params![login, name, twitch_id, now, row],
    )?;
    Ok(Some((row, false)))
}

fn setting(tx: &Transaction, key: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

fn put_setting(tx: &Transaction, key: &str, value: &str, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3",
        params![key, value, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::{TempDir, block_on_deadline};
    use super::*;

    #[test]
    fn settings_secret_and_password() {
        let dir = TempDir::new("sqlite-auth-settings");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            assert_eq!(db.session_secret_or("first").await.unwrap(), "first");
            assert_eq!(db.session_secret_or("second").await.unwrap(), "first");
            assert_eq!(db.admin_password_hash().await.unwrap(), None);
            db.set_admin_password_hash("h1", "cli").await.unwrap();
            db.set_admin_password_hash("h2", "cli").await.unwrap();
            assert_eq!(
                db.admin_password_hash().await.unwrap().as_deref(),
                Some("h2")
            );
            let audit = db.recent_audit(1).await.unwrap();
            assert_eq!(
                (audit[0].actor.as_str(), audit[0].action.as_str()),
                ("cli", "password_set")
            );
        });
    }

    #[test]
    fn revoked_sessions_expire() {
        let dir = TempDir::new("sqlite-auth-revoked");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            db.revoke_session("a", 100, 10).await.unwrap();
            db.revoke_session("b", 200, 10).await.unwrap();
            let mut found = db.revoked_sessions(50).await.unwrap();
            found.sort();
            assert_eq!(found, [("a".to_string(), 100), ("b".to_string(), 200)]);
            assert_eq!(
                db.revoked_sessions(150).await.unwrap(),
                [("b".to_string(), 200)]
            );
        });
    }

    #[test]
    fn twitch_sign_in_creates_then_refreshes_and_keeps_the_token() {
        let dir = TempDir::new("sqlite-auth-twitch");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let TwitchUpsert::Ready {
                streamer,
                config,
                created,
            } = db
                .upsert_twitch_streamer("42", "alice", "Alice")
                .await
                .unwrap()
            else {
                panic!("login taken")
            };
            assert!(created);
            assert_eq!(
                (streamer.login.as_str(), streamer.display_name.as_str()),
                ("alice", "Alice")
            );
            assert_eq!(streamer.twitch_user_id.as_deref(), Some("42"));
            assert_eq!(
                (config, streamer.config_version),
                (OverlayConfig::default(), 1)
            );

            // Renamed on Twitch: same row, same overlay token.
            let TwitchUpsert::Ready {
                streamer: again,
                created,
                ..
            } = db
                .upsert_twitch_streamer("42", "alice2", "ALICE2")
                .await
                .unwrap()
            else {
                panic!("login taken")
            };
            assert!(!created);
            assert_eq!((again.id, again.login.as_str()), (streamer.id, "alice2"));
            assert_eq!(again.overlay_token, streamer.overlay_token);

            // Another account may not take over a row that has a Twitch id.
            db.upsert_seed("bob", &OverlayConfig::default(), None)
                .await
                .unwrap();
            db.set_twitch_user_id("bob", "7").await.unwrap();
            assert_eq!(
                db.upsert_twitch_streamer("8", "bob", "Bob").await.unwrap(),
                TwitchUpsert::LoginTaken
            );
            // The owner of a config-file channel adopts it.
            db.upsert_seed("carol", &OverlayConfig::default(), None)
                .await
                .unwrap();
            let TwitchUpsert::Ready {
                streamer: carol,
                created,
                ..
            } = db
                .upsert_twitch_streamer("9", "carol", "Carol")
                .await
                .unwrap()
            else {
                panic!("login taken")
            };
            assert!(!created);
            assert_eq!(carol.twitch_user_id.as_deref(), Some("9"));
            assert_eq!(db.streamers().await.unwrap().len(), 3);
        });
    }

    #[test]
    fn user_tokens_replace() {
        let dir = TempDir::new("sqlite-auth-tokens");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let TwitchUpsert::Ready { streamer, .. } = db
                .upsert_twitch_streamer("42", "alice", "Alice")
                .await
                .unwrap()
            else {
                panic!("login taken")
            };
            assert_eq!(db.user_tokens(streamer.id).await.unwrap(), None);
            for access in ["enc1", "enc2"] {
                let t = StoredTokens {
                    access_enc: access.into(),
                    refresh_enc: None,
                    expires_at: Some(5),
                };
                db.store_user_tokens(streamer.id, &t).await.unwrap();
                assert_eq!(db.user_tokens(streamer.id).await.unwrap(), Some(t));
            }
        });
    }
}
