//! Durable relational data in SQLite: streamers and their overlay tokens, overlay configs
//! (the current row plus every saved version), the audit log, the EventSub conduit
//! and subscriptions of the webhook chat source (`twitch`), and sign-in data (`auth`:
//! settings such as the admin password hash and session secret, signed-out sessions,
//! encrypted Twitch user tokens, streamers created by a Twitch sign-in).
//!
//! One OS thread owns the [`Connection`]. [`Db`] handles send it jobs over a bounded
//! channel and await each reply on a one-shot channel, so no SQLite call ever runs on an
//! async thread. The thread ends when every handle is dropped or [`Db::close`] is called.
//!
//! The schema is `MIGRATIONS`, tracked in `PRAGMA user_version`; a file written by a
//! newer binary is refused rather than guessed at. How a config becomes columns and JSON
//! (and back) is in `rows`.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use log::{error, info, warn};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use smol::channel::{Receiver, Sender};

use self::rows::{SELECT_CHANNEL, canonical_json, channel_from_row, write_config};
use super::{StoreError, now_ms, try_overlay_token};
use crate::channel::{OverlayConfig, Streamer};

mod auth;
mod replica;
mod rows;
mod twitch;

pub use self::auth::{StoredTokens, TwitchUpsert};
pub use self::replica::{Applied, ChannelRecord, PushedAudit, Queued, Replicated};
use self::replica::{Part, bump_rev, queue};
pub use self::twitch::StoredSubscription;

#[cfg(test)]
mod tests;

/// Conventional file name inside the data directory.
pub const FILE_NAME: &str = "chatpulse.db";

/// Jobs waiting for the SQLite thread. Bounded so a burst (every overlay reconnecting after
/// a restart) waits for the disk instead of queueing without limit.
const JOB_QUEUE: usize = 64;

/// How long a statement waits for a lock held by another process (a backup, `sqlite3`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Audit actors for changes this module makes on its own behalf.
const ACTOR_CONFIG_FILE: &str = "config-file";

/// Schema migrations: entry `i` takes `user_version` from `i` to `i + 1`, in one
/// transaction. Append only; never edit an entry that has shipped.
const MIGRATIONS: &[&str] = &[
    // v1: times are unix ms; trigger lists are JSON arrays of strings.
    "CREATE TABLE streamers (
        id INTEGER PRIMARY KEY,
        login TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        twitch_user_id TEXT UNIQUE,
        overlay_token TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE configs (
        streamer_id INTEGER PRIMARY KEY REFERENCES streamers(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        for_triggers TEXT NOT NULL,
        against_triggers TEXT NOT NULL,
        for_label TEXT NOT NULL,
        against_label TEXT NOT NULL,
        model TEXT NOT NULL CHECK (model IN ('window', 'decay')),
        memory_seconds INTEGER, -- NULL: infinite memory
        decay_speed REAL NOT NULL,
        display_mode TEXT NOT NULL,
        theme TEXT NOT NULL,
        seed TEXT, -- canonical JSON of the config-file seed last applied
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE config_history (
        streamer_id INTEGER NOT NULL REFERENCES streamers(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        saved_at INTEGER NOT NULL,
        snapshot TEXT NOT NULL, -- canonical JSON
        PRIMARY KEY (streamer_id, version)
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        streamer_id INTEGER, -- no foreign key: the log outlives what it describes
        detail TEXT NOT NULL
    );",
    // v2: EventSub through a conduit (see `twitch`). One conduit per Twitch client id,
    // kept across restarts; subscriptions as last reconciled with Twitch.
    "CREATE TABLE twitch_conduits (
        client_id TEXT PRIMARY KEY,
        conduit_id TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE eventsub_subscriptions (
        id TEXT PRIMARY KEY, -- Twitch's subscription id
        kind TEXT NOT NULL,
        broadcaster_user_id TEXT NOT NULL,
        login TEXT NOT NULL, -- broadcaster login when subscribed, for logs
        bot_user_id TEXT NOT NULL,
        conduit_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('enabled', 'revoked')),
        reason TEXT, -- Twitch's revocation reason
        updated_at INTEGER NOT NULL
    );",
    // v3: sign-in. `settings` holds node secrets by name (see `auth`); revoked session
    // ids live until the session would have expired (unix seconds); user tokens are
    // AES-256-GCM ciphertexts (hex), never plaintext.
    "CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE revoked_sessions (
        id TEXT PRIMARY KEY,
        until INTEGER NOT NULL
    );
    CREATE TABLE user_tokens (
        streamer_id INTEGER PRIMARY KEY REFERENCES streamers(id) ON DELETE CASCADE,
        access_enc TEXT NOT NULL,
        refresh_enc TEXT,
        expires_at INTEGER, -- unix ms; NULL: unknown
        updated_at INTEGER NOT NULL
    );",
    // v4: streamers replicated over the mesh (`replica`), one last-writer-wins
    // register per part: the config by (configs.version, config_node), the overlay
    // token by (token_rev, token_node), the rest by (rev, rev_node); `rev` also
    // grows with every change made on this node. Node columns hold mesh node ids.
    "ALTER TABLE streamers ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streamers ADD COLUMN rev_node INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streamers ADD COLUMN config_node INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streamers ADD COLUMN token_rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE streamers ADD COLUMN token_node INTEGER NOT NULL DEFAULT 0;",
    // v5: with PostgreSQL (`store::pg`), every local change of a streamer, an
    // EventSub subscription or a conduit also queues (kind, key) here, in the
    // same transaction; the PostgreSQL task pushes each queued item's current
    // row (a tombstone when it is gone), oldest first, and deletes it after.
    "CREATE TABLE pg_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('streamer', 'subscription', 'conduit')),
        key TEXT NOT NULL,
        queued_at INTEGER NOT NULL
    );",
];

/// One row of the audit log.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub streamer_id: Option<i64>,
    pub detail: String,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the SQLite thread; clone it freely.
#[derive(Clone)]
pub struct Db {
    jobs: Sender<Job>,
    /// The mesh node id local changes are stamped with ([`Db::set_node_id`]).
    node: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Local changes go to `pg_outbox` too ([`Db::queue_for_postgres`]).
    pg: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Never sent on: it disconnects when the thread ends, which is what `close` awaits.
    done: Receiver<()>,
}

impl Db {
    /// Opens (or creates) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Db, StoreError> {
        let path = path.to_path_buf();
        let (jobs, queue) = smol::channel::bounded::<Job>(JOB_QUEUE);
        let (opened_tx, opened) = smol::channel::bounded(1);
        let (done_tx, done) = smol::channel::bounded::<()>(1);
        std::thread::Builder::new()
            .name("sqlite".into())
            .spawn(move || {
                let _done = done_tx;
                match open_connection(&path) {
                    Ok(mut conn) => {
                        let _ = opened_tx.send_blocking(Ok(()));
                        serve(&mut conn, &queue);
                    }
                    Err(e) => {
                        let _ = opened_tx.send_blocking(Err(e));
                    }
                }
            })?;
        opened.recv().await.map_err(|_| StoreError::Closed)??;
        Ok(Db {
            jobs,
            node: Default::default(),
            pg: Default::default(),
            done,
        })
    }

    /// Stops the SQLite thread for every handle: queued jobs still run, later calls get
    /// [`StoreError::Closed`]. Returns once the connection is closed.
    pub async fn close(self) {
        self.jobs.close();
        let _ = self.done.recv().await;
    }

    /// Runs `f` on the SQLite thread. Dropping the returned future does not cancel a job
    /// that was already queued.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = smol::channel::bounded(1);
        let job: Job = Box::new(move |conn| {
            let _ = reply.try_send(f(conn));
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        result.recv().await.map_err(|_| StoreError::Closed)?
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// Commits a transaction that rewrites the schema version in place: fails
    /// while the disk is full or read-only, like any save would.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        self.call(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            tx.pragma_update(None, "user_version", version)?;
            Ok(tx.commit()?)
        })
        .await
    }

    /// Creates or refreshes a home-mode channel from the config file, in one transaction.
    ///
    /// A new login gets a streamer row, a fresh overlay token and config version 1. For a
    /// known login the seed is applied as a new version only when it differs from the seed
    /// applied last time (the file was edited); otherwise the stored config wins, so
    /// dashboard edits survive restarts. Returns the current streamer and config.
    /// `new_token`: the overlay token of a channel created here (in a cluster,
    /// every node derives the same one from the mesh secret); `None`: a random one.
    pub async fn upsert_seed(
        &self,
        login: &str,
        seed: &OverlayConfig,
        new_token: Option<String>,
    ) -> Result<(Streamer, OverlayConfig), StoreError> {
        let (login, seed, node) = (login.to_owned(), seed.clone(), self.stamp());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            apply_seed(&tx, &login, &seed, new_token, node)?;
            let sql = format!("{SELECT_CHANNEL} WHERE s.login = ?1");
            let channel = tx.query_row(&sql, [&login], channel_from_row)?;
            tx.commit()?;
            Ok(channel)
        })
        .await
    }

    /// Every streamer with its current config, ordered by login.
    pub async fn streamers(&self) -> Result<Vec<(Streamer, OverlayConfig)>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare(&format!("{SELECT_CHANNEL} ORDER BY s.login"))?;
            let rows = stmt.query_map([], channel_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn streamer_by_token(
        &self,
        token: &str,
    ) -> Result<Option<(Streamer, OverlayConfig)>, StoreError> {
        let token = token.to_owned();
        self.call(move |conn| {
            let sql = format!("{SELECT_CHANNEL} WHERE s.overlay_token = ?1");
            Ok(conn.query_row(&sql, [token], channel_from_row).optional()?)
        })
        .await
    }

    /// Stores `config` as the next version and returns that version number. With
    /// `expected_version`, refuses ([`StoreError::Conflict`]) if someone saved meanwhile.
    /// An unknown `streamer_id` gives `Sqlite(QueryReturnedNoRows)`.
    pub async fn save_config(
        &self,
        streamer_id: i64,
        config: &OverlayConfig,
        expected_version: Option<i64>,
        actor: &str,
    ) -> Result<i64, StoreError> {
        let (config, actor, node) = (config.clone(), actor.to_owned(), self.stamp());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: i64 = tx.query_row(
                "SELECT version FROM configs WHERE streamer_id = ?1",
                [streamer_id],
                |r| r.get(0),
            )?;
            if let Some(expected) = expected_version
                && expected != current
            {
                return Err(StoreError::Conflict { current });
            }
            let (version, now) = (current + 1, now_ms());
            write_config(&tx, streamer_id, version, &config, None, now)?;
            bump_rev(&tx, streamer_id, node, Part::Config)?;
            let detail = format!("version {version}");
            audit_row(&tx, &actor, "config_saved", Some(streamer_id), &detail, now)?;
            tx.commit()?;
            Ok(version)
        })
        .await
    }

    /// Replaces the overlay token; the old one stops resolving at once.
    pub async fn rotate_token(&self, streamer_id: i64, actor: &str) -> Result<String, StoreError> {
        let (actor, node) = (actor.to_owned(), self.stamp());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let (token, now) = (try_overlay_token()?, now_ms());
            let changed = tx.execute(
                "UPDATE streamers SET overlay_token = ?1, updated_at = ?2 WHERE id = ?3",
                params![token, now, streamer_id],
            )?;
            if changed == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows.into());
            }
            bump_rev(&tx, streamer_id, node, Part::Token)?;
            audit_row(&tx, &actor, "token_rotated", Some(streamer_id), "", now)?;
            tx.commit()?;
            Ok(token)
        })
        .await
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        streamer_id: Option<i64>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (actor, action, detail) = (actor.to_owned(), action.to_owned(), detail.to_owned());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            audit_row(&tx, &actor, &action, streamer_id, &detail, now_ms())?;
            Ok(tx.commit()?)
        })
        .await
    }

    /// The newest `limit` audit rows, newest first.
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, at, actor, action, streamer_id, detail FROM audit_log
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    streamer_id: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}

/// The seed half of [`Db::upsert_seed`]: creates the channel or, when the file changed,
/// writes the seed as a new version.
fn apply_seed(
    tx: &Transaction,
    login: &str,
    seed: &OverlayConfig,
    new_token: Option<String>,
    node: replica::Stamp,
) -> Result<(), StoreError> {
    let (json, now) = (canonical_json(seed), now_ms());
    let known: Option<(i64, Option<i64>, Option<String>)> = tx
        .query_row(
            "SELECT s.id, c.version, c.seed FROM streamers s
             LEFT JOIN configs c ON c.streamer_id = s.id WHERE s.login = ?1",
            [login],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match known {
        None => {
            tx.execute(
                "INSERT INTO streamers
                 (login, display_name, overlay_token, created_at, updated_at)
                 VALUES (?1, ?1, ?2, ?3, ?3)",
                params![login, new_token.map_or_else(try_overlay_token, Ok)?, now],
            )?;
            let id = tx.last_insert_rowid();
            write_config(tx, id, 1, seed, Some(&json), now)?;
            bump_rev(tx, id, node, Part::Config)?;
            let (actor, action) = (ACTOR_CONFIG_FILE, "channel_created");
            audit_row(tx, actor, action, Some(id), login, now)?;
            info!("sqlite: created channel {login} from the config file");
        }
        Some((id, version, stored)) if stored.as_deref() != Some(json.as_str()) => {
            let version = version.unwrap_or(0) + 1;
            write_config(tx, id, version, seed, Some(&json), now)?;
            bump_rev(tx, id, node, Part::Config)?;
            let detail = format!("version {version}");
            let (actor, action) = (ACTOR_CONFIG_FILE, "config_seeded");
            audit_row(tx, actor, action, Some(id), &detail, now)?;
            info!("sqlite: channel {login}: config file changed, now version {version}");
        }
        Some(_) => {}
    }
    Ok(())
}

/// Runs jobs until every handle is dropped or `close` closes the queue.
fn serve(conn: &mut Connection, queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv_blocking() {
        // A panicking job must not take the store down for everyone; its caller sees
        // `Closed` (the reply sender is dropped) and any open transaction rolls back.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))).is_err() {
            error!("sqlite: a store job panicked; continuing");
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    super::create_private(path)?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        warn!("sqlite: {} stays in journal mode {mode}", path.display());
    }
    // NORMAL with WAL: a power cut may lose the last commits, never corrupt the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version = migrate(&mut conn)?;
    info!("sqlite: opened {} (schema v{version})", path.display());
    Ok(conn)
}

/// Applies the migrations this file has not seen yet; returns the schema version.
fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let supported = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    if found < 0 {
        return Err(StoreError::Corrupt(format!("sqlite user_version {found}")));
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", done as i64 + 1)?;
        tx.commit()?;
        info!("sqlite: migrated schema to v{}", done + 1);
    }
    Ok(supported)
}

fn audit_row(
    tx: &Transaction,
    actor: &str,
    action: &str,
    streamer_id: Option<i64>,
    detail: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit_log (at, actor, action, streamer_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, actor, action, streamer_id, detail],
    )?;
    Ok(())
}
