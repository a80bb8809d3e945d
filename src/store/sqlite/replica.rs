//! Streamers and their configs as the mesh replicates them (without PostgreSQL).
//! Each streamer row is a record keyed by login, made of three last-writer-wins
//! registers, so changes to different parts made at the same time on two nodes
//! both survive:
//!
//! - the config, versioned by its own `(version, config_node)`;
//! - the overlay token, by `(token_rev, token_node)` (a rotation bumps it);
//! - the rest (display name, Twitch user id), by `(rev, rev_node)`.
//!
//! `(rev, rev_node)` also grows with every change made here, so it tells whether
//! anything is new. [`Db::apply_record`] merges a record from another node part
//! by part (ties broken by the values, so every node picks the same winner): the
//! merge is commutative, associative and idempotent, and every node ends with the
//! same row whatever order records arrive in. What travels is [`ChannelRecord`];
//! local row ids, history, audit and Twitch tokens stay local.

use std::sync::atomic::Ordering;

use nanoserde::{DeBin, SerBin};
use rusqlite::{OptionalExtension, Transaction, params};

use super::rows::{SELECT_CHANNEL, canonical_json, channel_from_row, config_from_canonical};
use super::{Db, StoreError, audit_row, now_ms, write_config};
use crate::channel::{OverlayConfig, Streamer};

/// One streamer as it travels between nodes (`Frame::Lww` value).
#[derive(Debug, Clone, PartialEq, SerBin, DeBin)]
pub struct ChannelRecord {
    pub login: String,
    pub display_name: String,
    /// Empty when not known yet.
    pub twitch_user_id: String,
    pub overlay_token: String,
    pub token_rev: u64,
    pub token_node: u64,
    pub config_version: i64,
    pub config_node: u64,
    /// The config's canonical JSON (as in `config_history`).
    pub config: String,
}

impl ChannelRecord {
    fn config_key(&self) -> (i64, u64, &str) {
        (self.config_version, self.config_node, &self.config)
    }

    fn token_key(&self) -> (u64, u64, &str) {
        (self.token_rev, self.token_node, &self.overlay_token)
    }
}

/// A record with its overall version.
#[derive(Debug, Clone, PartialEq)]
pub struct Replicated {
    pub rev: u64,
    pub node: u64,
    pub record: ChannelRecord,
}

/// What [`Db::apply_record`] changed (`None` from it: nothing was newer).
#[derive(Debug)]
pub struct Applied {
    pub streamer: Streamer,
    pub config: OverlayConfig,
    pub created: bool,
    pub token_changed: bool,
    pub config_changed: bool,
}

/// The part of a record a local change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Identity,
    /// The config row was just written with its next version.
    Config,
    /// The token was just replaced.
    Token,
}

/// Stamps a local change of `streamer_id` with this node: the record's next
/// `rev`, and the touched part's own version. `node` carries the "queue for
/// PostgreSQL" flag in its [`Stamp`].
pub(super) fn bump_rev(
    tx: &Transaction,
    streamer_id: i64,
    stamp: Stamp,
    part: Part,
) -> Result<(), StoreError> {
    let Stamp { node, postgres } = stamp;
    let sql = match part {
        Part::Identity => "UPDATE streamers SET rev = rev + 1, rev_node = ?2 WHERE id = ?1",
        Part::Config => {
            "UPDATE streamers SET rev = rev + 1, rev_node = ?2, config_node = ?2 WHERE id = ?1"
        }
        Part::Token => {
            "UPDATE streamers SET rev = rev + 1, rev_node = ?2, token_rev = token_rev + 1,
                 token_node = ?2 WHERE id = ?1"
        }
    };
    tx.execute(sql, params![streamer_id, node as i64])?;
    if postgres {
        tx.execute(
            "INSERT INTO pg_outbox (kind, key, queued_at)
             SELECT 'streamer', login, ?2 FROM streamers WHERE id = ?1",
            params![streamer_id, now_ms()],
        )?;
    }
    Ok(())
}

/// One item of the PostgreSQL outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub seq: i64,
    /// `streamer` (key: login), `subscription` (key: Twitch's id) or
    /// `conduit` (key: client id).
    pub kind: String,
    pub key: String,
    pub queued_at: i64,
}

/// Queues `(kind, key)` for PostgreSQL inside the caller's transaction.
pub(super) fn queue(tx: &Transaction, kind: &str, key: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO pg_outbox (kind, key, queued_at) VALUES (?1, ?2, ?3)",
        params![kind, key, now_ms()],
    )?;
    Ok(())
}

/// One local audit row on its way to PostgreSQL's shared audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedAudit {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub login: Option<String>,
    pub detail: String,
}

/// Who makes a local change, and whether it must also reach PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stamp {
    pub node: u64,
    pub postgres: bool,
}

fn replicated_from_row(row: &rusqlite::Row) -> rusqlite::Result<Replicated> {
    let (streamer, config) = channel_from_row(row)?;
    let u = |column: &str| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(column)? as u64) };
    Ok(Replicated {
        rev: u("rev")?,
        node: u("rev_node")?,
        record: ChannelRecord {
            login: streamer.login,
            display_name: streamer.display_name,
            twitch_user_id: streamer.twitch_user_id.unwrap_or_default(),
            overlay_token: streamer.overlay_token,
            token_rev: u("token_rev")?,
            token_node: u("token_node")?,
            config_version: streamer.config_version,
            config_node: u("config_node")?,
            config: canonical_json(&config),
        },
    })
}

impl Db {
    /// The node id written by local changes (the mesh node id).
    pub fn set_node_id(&self, node: u64) {
        self.node.store(node, Ordering::SeqCst);
    }

    /// How local changes are stamped (node id, queue for PostgreSQL or not).
    pub(super) fn stamp(&self) -> Stamp {
        Stamp {
            node: self.node.load(Ordering::SeqCst),
            postgres: self.pg.load(Ordering::SeqCst),
        }
    }

    /// From now on every local change of a streamer is queued for PostgreSQL
    /// in the same transaction ([`Db::outbox`]).
    pub fn queue_for_postgres(&self) {
        self.pg.store(true, Ordering::SeqCst);
    }

    /// Up to `limit` queued items, oldest first.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<Queued>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare("SELECT seq, kind, key, queued_at FROM pg_outbox ORDER BY seq LIMIT ?1")?;
            let rows = stmt.query_map([limit], |r| {
                Ok(Queued {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    queued_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Forgets queued items up to and including `seq` (they reached PostgreSQL).
    pub async fn outbox_done(&self, seq: i64) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute("DELETE FROM pg_outbox WHERE seq <= ?1", [seq])?;
            Ok(())
        })
        .await
    }

    /// Audit rows of changes made here (not those recording another node's
    /// change) not yet in PostgreSQL, oldest first, with the streamer's login.
    pub async fn audit_to_push(&self, limit: u32) -> Result<Vec<PushedAudit>, StoreError> {
        self.call(move |conn| {
            let after: i64 = conn
                .query_row(
                    "SELECT value FROM settings WHERE key = 'pg_audit_pushed'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut stmt = conn.prepare(
                "SELECT a.id, a.at, a.actor, a.action, s.login, a.detail FROM audit_log a
                 LEFT JOIN streamers s ON s.id = a.streamer_id
                 WHERE a.id > ?1 AND a.actor NOT LIKE 'mesh:%' ORDER BY a.id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                Ok(PushedAudit {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    login: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Audit rows up to `id` are in PostgreSQL.
    pub async fn audit_pushed(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES ('pg_audit_pushed', ?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?1, updated_at = ?2",
                params![id.to_string(), now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Logins waiting for PostgreSQL.
    pub async fn outbox_depth(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            Ok(
                conn.query_row("SELECT COUNT(*) FROM pg_outbox", [], |r| r.get::<_, i64>(0))?
                    as u64,
            )
        })
        .await
    }

    /// Every streamer as a replicated record, ordered by login.
    pub async fn records(&self) -> Result<Vec<Replicated>, StoreError> {
        self.call(|conn| {
            let sql = format!("{SELECT_CHANNEL} ORDER BY s.login");
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], replicated_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn record(&self, login: &str) -> Result<Option<Replicated>, StoreError> {
        let login = login.to_owned();
        self.call(move |conn| {
            let sql = format!("{SELECT_CHANNEL} WHERE s.login = ?1");
            Ok(conn
                .query_row(&sql, [login], replicated_from_row)
                .optional()?)
        })
        .await
    }

    /// Merges `incoming` from node `from` into the stored row, part by part. A
    /// record whose config does not read as a valid config is refused (`Corrupt`).
    pub async fn apply_record(
        &self,
        incoming: Replicated,
        from: u64,
    ) -> Result<Option<Applied>, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let applied = apply(&tx, &incoming, from)?;
            tx.commit()?;
            Ok(applied)
        })
        .await
    }
}

fn apply(
    tx: &Transaction,
    incoming: &Replicated,
    from: u64,
) -> Result<Option<Applied>, StoreError> {
    let rec = &incoming.record;
    let config = config_from_canonical(&rec.config)
        .ok_or_else(|| StoreError::Corrupt(format!("replicated config of {}", rec.login)))?;
    let sql = format!("{SELECT_CHANNEL} WHERE s.login = ?1");
    let local = tx
        .query_row(&sql, [&rec.login], |r| {
            Ok((replicated_from_row(r)?, r.get::<_, i64>("id")?))
        })
        .optional()?;
    let now = now_ms();
    let actor = format!("mesh:{from:016x}");
    let (id, created, token_changed, config_changed) = match &local {
        None => {
            release_user_id(tx, rec)?;
            tx.execute(
                "INSERT INTO streamers (login, display_name, twitch_user_id, overlay_token,
                     created_at, updated_at, rev, rev_node, config_node, token_rev, token_node)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    rec.login,
                    rec.display_name,
                    Some(rec.twitch_user_id.as_str()).filter(|u| !u.is_empty()),
                    rec.overlay_token,
                    now,
                    incoming.rev as i64,
                    incoming.node as i64,
                    rec.config_node as i64,
                    rec.token_rev as i64,
                    rec.token_node as i64,
                ],
            )?;
            let id = tx.last_insert_rowid();
            write_config(tx, id, rec.config_version, &config, None, now)?;
            audit_row(tx, &actor, "channel_replicated", Some(id), &rec.login, now)?;
            (id, true, false, true)
        }
        Some((l, id)) => {
            let newer = (incoming.rev, incoming.node) > (l.rev, l.node);
            let config_changed = rec.config_key() > l.record.config_key();
            let token_changed = rec.token_key() > l.record.token_key();
            if !newer && !config_changed && !token_changed {
                return Ok(None);
            }
            if newer {
                release_user_id(tx, rec)?;
                tx.execute(
                    "UPDATE streamers SET display_name = ?2,
                         twitch_user_id = COALESCE(?3, twitch_user_id), rev = ?4, rev_node = ?5
                     WHERE id = ?1",
                    params![
                        id,
                        rec.display_name,
                        Some(rec.twitch_user_id.as_str()).filter(|u| !u.is_empty()),
                        incoming.rev as i64,
                        incoming.node as i64
                    ],
                )?;
            }
            if token_changed {
                tx.execute(
                    "UPDATE streamers SET overlay_token = ?2, token_rev = ?3, token_node = ?4
                     WHERE id = ?1",
                    params![
                        id,
                        rec.overlay_token,
                        rec.token_rev as i64,
                        rec.token_node as i64
                    ],
                )?;
                audit_row(tx, &actor, "token_replicated", Some(*id), "", now)?;
            }
            if config_changed {
                write_config(tx, *id, rec.config_version, &config, None, now)?;
                tx.execute(
                    "UPDATE streamers SET config_node = ?2 WHERE id = ?1",
                    params![id, rec.config_node as i64],
                )?;
                let detail = format!("version {}", rec.config_version);
                audit_row(tx, &actor, "config_replicated", Some(*id), &detail, now)?;
            }
            tx.execute(
                "UPDATE streamers SET updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            (*id, false, token_changed, config_changed)
        }
    };
    let (streamer, config) = tx.query_row(
        &format!("{SELECT_CHANNEL} WHERE s.id = ?1"),
        [id],
        channel_from_row,
    )?;
    Ok(Some(Applied {
        streamer,
        config,
        created,
        token_changed,
        config_changed,
    }))
}

/// A user id is unique: a row that held it belongs to a renamed broadcaster.
fn release_user_id(tx: &Transaction, rec: &ChannelRecord) -> Result<(), StoreError> {
    if !rec.twitch_user_id.is_empty() {
        tx.execute(
            "UPDATE streamers SET twitch_user_id = NULL WHERE twitch_user_id = ?1 AND login <> ?2",
            params![rec.twitch_user_id, rec.login],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::{TempDir, block_on_deadline};
    use super::*;

    fn labeled(label: &str) -> OverlayConfig {
        OverlayConfig {
            for_label: label.into(),
            ..OverlayConfig::default()
        }
    }

    async fn open(dir: &TempDir, name: &str, node: u64) -> Db {
        let db = Db::open(&dir.0.join(name)).await.unwrap();
        db.set_node_id(node);
        db
    }

    #[test]
    fn local_changes_bump_the_version_and_carry_this_node() {
        let dir = TempDir::new("replica-bump");
        block_on_deadline(async {
            let db = open(&dir, "a.db", 7).await;
            let (s, _) = db.upsert_seed("alice", &labeled("A"), None).await.unwrap();
            let r = db.record("alice").await.unwrap().unwrap();
            assert_eq!((r.rev, r.node), (1, 7));
            db.save_config(s.id, &labeled("B"), None, "t")
                .await
                .unwrap();
            db.rotate_token(s.id, "t").await.unwrap();
            let r = db.record("alice").await.unwrap().unwrap();
            assert_eq!((r.rev, r.node, r.record.config_version), (3, 7, 2));
            // Unchanged file seed: no new version.
            db.upsert_seed("alice", &labeled("A"), None).await.unwrap();
            assert_eq!(db.record("alice").await.unwrap().unwrap().rev, 3);
            assert_eq!(db.records().await.unwrap().len(), 1);
        });
    }

    #[test]
    fn newer_records_win_older_ones_change_nothing() {
        let dir = TempDir::new("replica-lww");
        block_on_deadline(async {
            let a = open(&dir, "a.db", 1).await;
            let b = open(&dir, "b.db", 2).await;
            let (sa, _) = a.upsert_seed("alice", &labeled("A"), None).await.unwrap();
            a.save_config(sa.id, &labeled("A2"), None, "t")
                .await
                .unwrap();
            let ra = a.record("alice").await.unwrap().unwrap();

            // New on B: created, with A's token, config and version.
            match b.apply_record(ra.clone(), 1).await.unwrap() {
                Some(Applied {
                    streamer,
                    config,
                    created,
                    ..
                }) => {
                    assert!(created);
                    assert_eq!(streamer.overlay_token, ra.record.overlay_token);
                    assert_eq!(
                        (streamer.config_version, config.for_label.as_str()),
                        (2, "A2")
                    );
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(b.record("alice").await.unwrap().unwrap(), ra);
            // The same again, or anything older: nothing happens.
            assert!(b.apply_record(ra.clone(), 1).await.unwrap().is_none());
            let mut older = ra.clone();
            older.rev -= 1;
            older.record.config_version = 1;
            older.record.config = canonical_json(&labeled("A"));
            assert!(b.apply_record(older, 1).await.unwrap().is_none());

            // B rotates: A takes it as a token change, config untouched.
            let sb = b.streamers().await.unwrap().remove(0).0;
            b.rotate_token(sb.id, "t").await.unwrap();
            let rb = b.record("alice").await.unwrap().unwrap();
            assert_eq!((rb.rev, rb.node), (ra.rev + 1, 2));
            match a.apply_record(rb.clone(), 2).await.unwrap() {
                Some(Applied {
                    token_changed,
                    config_changed,
                    created,
                    ..
                }) => assert_eq!(
                    (token_changed, config_changed, created),
                    (true, false, false)
                ),
                other => panic!("{other:?}"),
            }
            assert_eq!(a.record("alice").await.unwrap().unwrap(), rb);
            // Same rev from a larger node id wins the tie, everywhere.
            let mut tie = rb.clone();
            tie.node = 3;
            tie.record.config_node = 3;
            tie.record.config = canonical_json(&labeled("Tie"));
            assert!(matches!(
                a.apply_record(tie, 3).await.unwrap(),
                Some(Applied {
                    config_changed: true,
                    token_changed: false,
                    ..
                })
            ));
            let audit = a.recent_audit(10).await.unwrap();
            assert!(
                audit
                    .iter()
                    .any(|e| e.action == "token_replicated" && e.actor == "mesh:0000000000000002")
            );
        });
    }

    #[test]
    fn a_record_without_a_valid_config_is_refused() {
        let dir = TempDir::new("replica-bad");
        block_on_deadline(async {
            let db = open(&dir, "a.db", 1).await;
            let mut bad = Replicated {
                rev: 5,
                node: 9,
                record: ChannelRecord {
                    login: "mallory".into(),
                    display_name: "m".into(),
                    twitch_user_id: String::new(),
                    overlay_token: "t".repeat(22),
                    token_rev: 0,
                    token_node: 0,
                    config_version: 1,
                    config_node: 9,
                    config: "{\"for_triggers\":".into(),
                },
            };
            assert!(matches!(
                db.apply_record(bad.clone(), 9).await,
                Err(StoreError::Corrupt(_))
            ));
            // Well-formed JSON with an invalid config (no triggers) is refused too.
            let mut empty = labeled("x");
            empty.for_triggers.clear();
            bad.record.config = canonical_json(&empty);
            assert!(matches!(
                db.apply_record(bad, 9).await,
                Err(StoreError::Corrupt(_))
            ));
            assert!(db.records().await.unwrap().is_empty());
        });
    }

    #[test]
    fn changes_to_different_parts_on_two_nodes_both_survive() {
        let dir = TempDir::new("replica-parts");
        block_on_deadline(async {
            let a = open(&dir, "a.db", 1).await;
            let b = open(&dir, "b.db", 2).await;
            let (sa, _) = a
                .upsert_seed("alice", &labeled("base"), None)
                .await
                .unwrap();
            let base = a.record("alice").await.unwrap().unwrap();
            b.apply_record(base, 1).await.unwrap();
            let sb = b.streamers().await.unwrap().remove(0).0;
            // At the same time: A saves a config, B rotates the token.
            a.save_config(sa.id, &labeled("from A"), None, "t")
                .await
                .unwrap();
            let token = b.rotate_token(sb.id, "t").await.unwrap();
            let (ra, rb) = (
                a.record("alice").await.unwrap().unwrap(),
                b.record("alice").await.unwrap().unwrap(),
            );
            assert_eq!((ra.rev, rb.rev), (2, 2), "the same overall version");
            a.apply_record(rb, 2).await.unwrap();
            b.apply_record(ra, 1).await.unwrap();
            let (ma, mb) = (
                a.record("alice").await.unwrap().unwrap(),
                b.record("alice").await.unwrap().unwrap(),
            );
            assert_eq!(ma, mb, "both nodes hold the same row");
            assert_eq!(ma.record.overlay_token, token);
            assert_eq!(ma.record.config, canonical_json(&labeled("from A")));
            assert_eq!((ma.rev, ma.node), (2, 2));
        });
    }
}
