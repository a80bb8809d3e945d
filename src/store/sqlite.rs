//! Durable relational data in SQLite: streamers and their overlay tokens, overlay configs
//! (the current row plus every saved version), and the audit log.
//!
//! One OS thread owns the [`Connection`]. [`Db`] handles send it jobs over a bounded
//! channel and await each reply on a one-shot channel, so no SQLite call ever runs on an
//! async thread. The thread ends when every handle is dropped or [`Db::close`] is called.
//!
//! The schema is `MIGRATIONS`, tracked in `PRAGMA user_version`; a file written by a
//! newer binary is refused rather than guessed at.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use log::{error, info, warn};
use nanoserde::{DeJson, SerJson};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use smol::channel::{Receiver, Sender};

use super::{StoreError, now_ms, try_overlay_token};
use crate::channel::{DisplayMode, OverlayConfig, Streamer, Theme};
use crate::sentiment::{Memory, Model};

/// Conventional file name inside the data directory.
pub const FILE_NAME: &str = "chatpulse.db";

/// Jobs waiting for the SQLite thread. Bounded so a burst (every overlay reconnecting after
/// a restart) waits for the disk instead of queueing without limit.
const JOB_QUEUE: usize = 64;

/// How long a statement waits for a lock held by another process (a backup, `sqlite3`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Audit actors for changes this module makes on its own behalf.
const ACTOR_CONFIG_FILE: &str = "config-file";
const ACTOR_DASHBOARD: &str = "dashboard";

/// `decay_speed` is NOT NULL but unused while the model is a window; this keeps the column
/// a valid speed (0.1..=2.0) should the model be switched by hand.
const IDLE_DECAY_SPEED: f64 = 1.0;

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
        Ok(Db { jobs, done })
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

    /// Creates or refreshes a home-mode channel from the config file, in one transaction.
    ///
    /// A new login gets a streamer row, a fresh overlay token and config version 1. For a
    /// known login the seed is applied as a new version only when it differs from the seed
    /// applied last time (the file was edited); otherwise the stored config wins, so
    /// dashboard edits survive restarts. Returns the current streamer and config.
    pub async fn upsert_seed(
        &self,
        login: &str,
        seed: &OverlayConfig,
    ) -> Result<(Streamer, OverlayConfig), StoreError> {
        let (login, seed) = (login.to_owned(), seed.clone());
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            apply_seed(&tx, &login, &seed)?;
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
    ) -> Result<i64, StoreError> {
        let config = config.clone();
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
            let detail = format!("version {version}");
            audit_row(
                &tx,
                ACTOR_DASHBOARD,
                "config_saved",
                Some(streamer_id),
                &detail,
                now,
            )?;
            tx.commit()?;
            Ok(version)
        })
        .await
    }

    /// Replaces the overlay token; the old one stops resolving at once.
    pub async fn rotate_token(&self, streamer_id: i64) -> Result<String, StoreError> {
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
            audit_row(
                &tx,
                ACTOR_DASHBOARD,
                "token_rotated",
                Some(streamer_id),
                "",
                now,
            )?;
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
fn apply_seed(tx: &Transaction, login: &str, seed: &OverlayConfig) -> Result<(), StoreError> {
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
                params![login, try_overlay_token()?, now],
            )?;
            let id = tx.last_insert_rowid();
            write_config(tx, id, 1, seed, Some(&json), now)?;
            let (actor, action) = (ACTOR_CONFIG_FILE, "channel_created");
            audit_row(tx, actor, action, Some(id), login, now)?;
            info!("sqlite: created channel {login} from the config file");
        }
        Some((id, version, stored)) if stored.as_deref() != Some(json.as_str()) => {
            let version = version.unwrap_or(0) + 1;
            write_config(tx, id, version, seed, Some(&json), now)?;
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
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

/// The canonical JSON of a config: the `seed` column and history snapshots. Field order
/// is fixed, so equal configs give equal text. Changing this shape makes every home
/// channel re-apply its file config once (dropping dashboard edits): do it knowingly.
#[derive(SerJson)]
struct ConfigJson {
    for_triggers: Vec<String>,
    against_triggers: Vec<String>,
    for_label: String,
    against_label: String,
    model: String,
    memory_seconds: Option<u32>,
    decay_speed: Option<f64>,
    display_mode: String,
    theme: String,
}

fn canonical_json(config: &OverlayConfig) -> String {
    let (model, memory_seconds, speed) = model_columns(&config.model);
    ConfigJson {
        for_triggers: config.for_triggers.clone(),
        against_triggers: config.against_triggers.clone(),
        for_label: config.for_label.clone(),
        against_label: config.against_label.clone(),
        model: model.to_owned(),
        memory_seconds,
        decay_speed: matches!(config.model, Model::Decay { .. }).then_some(speed),
        display_mode: config.display_mode.as_str().to_owned(),
        theme: config.theme.as_str().to_owned(),
    }
    .serialize_json()
}

/// `(model, memory_seconds, decay_speed)` columns.
fn model_columns(model: &Model) -> (&'static str, Option<u32>, f64) {
    match *model {
        Model::Window(Memory::Seconds(s)) => ("window", Some(s), IDLE_DECAY_SPEED),
        Model::Window(Memory::Infinite) => ("window", None, IDLE_DECAY_SPEED),
        Model::Decay { speed } => ("decay", None, speed),
    }
}

/// Writes `config` as the current row (keeping the stored `seed` when `seed` is None)
/// and appends it to the history.
fn write_config(
    tx: &Transaction,
    streamer_id: i64,
    version: i64,
    config: &OverlayConfig,
    seed: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let (model, memory_seconds, decay_speed) = model_columns(&config.model);
    tx.execute(
        "INSERT INTO configs (streamer_id, version, for_triggers, against_triggers,
             for_label, against_label, model, memory_seconds, decay_speed, display_mode,
             theme, seed, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (streamer_id) DO UPDATE SET version = excluded.version,
             for_triggers = excluded.for_triggers, against_triggers = excluded.against_triggers,
             for_label = excluded.for_label, against_label = excluded.against_label,
             model = excluded.model, memory_seconds = excluded.memory_seconds,
             decay_speed = excluded.decay_speed, display_mode = excluded.display_mode,
             theme = excluded.theme, seed = COALESCE(excluded.seed, configs.seed),
             updated_at = excluded.updated_at",
        params![
            streamer_id,
            version,
            config.for_triggers.serialize_json(),
            config.against_triggers.serialize_json(),
            config.for_label,
            config.against_label,
            model,
            memory_seconds,
            decay_speed,
            config.display_mode.as_str(),
            config.theme.as_str(),
            seed,
            now,
        ],
    )?;
    tx.execute(
        "INSERT INTO config_history (streamer_id, version, saved_at, snapshot)
         VALUES (?1, ?2, ?3, ?4)",
        params![streamer_id, version, now, canonical_json(config)],
    )?;
    Ok(())
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

/// A streamer joined with its current config; `channel_from_row` reads it. Add filters.
const SELECT_CHANNEL: &str = "SELECT s.id, s.login, s.display_name, s.twitch_user_id,
        s.overlay_token, c.version, c.for_triggers, c.against_triggers, c.for_label,
        c.against_label, c.model, c.memory_seconds, c.decay_speed, c.display_mode, c.theme
    FROM streamers s JOIN configs c ON c.streamer_id = s.id";

fn channel_from_row(row: &Row) -> rusqlite::Result<(Streamer, OverlayConfig)> {
    let streamer = Streamer {
        id: row.get("id")?,
        login: row.get("login")?,
        display_name: row.get("display_name")?,
        twitch_user_id: row.get("twitch_user_id")?,
        overlay_token: row.get("overlay_token")?,
        config_version: row.get("version")?,
    };
    let config = config_from_row(row, &streamer.login)?;
    Ok((streamer, config))
}

/// Unknown or undecodable values fall back to the default with a warning: one bad row
/// must not keep a node from starting, and the next save rewrites it.
fn config_from_row(row: &Row, login: &str) -> rusqlite::Result<OverlayConfig> {
    let default = OverlayConfig::default();
    let triggers = |column: &str, default: Vec<String>| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(column)?;
        Ok(Vec::<String>::deserialize_json(&text)
            .unwrap_or_else(|_| fallback(login, column, &text, default)))
    };
    let model: String = row.get("model")?;
    let memory: Option<i64> = row.get("memory_seconds")?;
    let model = match (model.as_str(), memory.map(u32::try_from)) {
        ("window", None) => Model::Window(Memory::Infinite),
        ("window", Some(Ok(seconds))) => Model::Window(Memory::Seconds(seconds)),
        ("decay", _) => Model::Decay {
            speed: row.get("decay_speed")?,
        },
        _ => fallback(
            login,
            "model",
            &format!("{model}/{memory:?}"),
            default.model,
        ),
    };
    let display_mode: String = row.get("display_mode")?;
    let theme: String = row.get("theme")?;
    Ok(OverlayConfig {
        for_triggers: triggers("for_triggers", default.for_triggers)?,
        against_triggers: triggers("against_triggers", default.against_triggers)?,
        for_label: row.get("for_label")?,
        against_label: row.get("against_label")?,
        model,
        display_mode: DisplayMode::parse(&display_mode).unwrap_or_else(|| {
            fallback(login, "display_mode", &display_mode, default.display_mode)
        }),
        theme: Theme::parse(&theme)
            .unwrap_or_else(|| fallback(login, "theme", &theme, default.theme)),
    })
}

fn fallback<T>(login: &str, column: &str, found: &str, default: T) -> T {
    warn!("sqlite: channel {login}: unreadable {column} {found:?}; using the default");
    default
}

#[cfg(test)]
mod tests {
    use super::super::{TempDir, block_on_deadline};
    use super::*;

    fn seed(label: &str) -> OverlayConfig {
        OverlayConfig {
            for_label: label.into(),
            ..OverlayConfig::default()
        }
    }

    async fn user_version(db: &Db) -> i64 {
        db.call(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    #[test]
    fn migrates_from_empty_and_reopens_idempotently() {
        let dir = TempDir::new("sqlite-migrate");
        let path = dir.0.join("nested/db.sqlite3");
        block_on_deadline(async {
            let db = Db::open(&path).await.unwrap();
            assert_eq!(user_version(&db).await, MIGRATIONS.len() as i64);
            let mode: String = db
                .call(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            db.upsert_seed("alice", &seed("For")).await.unwrap();
            db.close().await;

            let db = Db::open(&path).await.unwrap();
            assert_eq!(user_version(&db).await, MIGRATIONS.len() as i64);
            assert_eq!(db.streamers().await.unwrap().len(), 1);
            db.ping().await.unwrap();
        });
    }

    #[test]
    fn refuses_a_schema_newer_than_the_binary() {
        let dir = TempDir::new("sqlite-newer");
        let path = dir.0.join("db.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = block_on_deadline(Db::open(&path))
            .err()
            .expect("must refuse");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, supported } if supported == MIGRATIONS.len() as i64),
            "{err}"
        );
        assert!(err.to_string().contains("newer ChatPulse"), "{err}");
    }

    #[test]
    fn upsert_seed_creates_a_channel() {
        let dir = TempDir::new("sqlite-create");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let (streamer, config) = db.upsert_seed("alice", &seed("Yes!")).await.unwrap();
            assert_eq!(streamer.login, "alice");
            assert_eq!(streamer.display_name, "alice");
            assert_eq!(streamer.twitch_user_id, None);
            assert_eq!(streamer.overlay_token.len(), 22);
            assert_eq!(streamer.config_version, 1);
            assert_eq!(config, seed("Yes!"));

            let found = db.streamer_by_token(&streamer.overlay_token).await.unwrap();
            assert_eq!(found, Some((streamer.clone(), config)));
            let audit = db.recent_audit(10).await.unwrap();
            assert_eq!(audit[0].action, "channel_created");
            assert_eq!(audit[0].streamer_id, Some(streamer.id));
        });
    }

    #[test]
    fn an_unchanged_file_keeps_dashboard_edits_and_an_edited_one_wins() {
        let dir = TempDir::new("sqlite-seed");
        let path = dir.0.join("db");
        block_on_deadline(async {
            let db = Db::open(&path).await.unwrap();
            let (streamer, _) = db.upsert_seed("alice", &seed("file")).await.unwrap();
            let edited = OverlayConfig {
                model: Model::Decay { speed: 0.5 },
                theme: Theme::Light,
                ..seed("dashboard")
            };
            assert_eq!(
                db.save_config(streamer.id, &edited, Some(1)).await.unwrap(),
                2
            );
            db.close().await;

            // Restart with the same file: the dashboard save survives.
            let db = Db::open(&path).await.unwrap();
            let (again, config) = db.upsert_seed("alice", &seed("file")).await.unwrap();
            assert_eq!((again.config_version, config), (2, edited));
            assert_eq!(again.overlay_token, streamer.overlay_token);

            // The file was edited: its config becomes version 3, once.
            let (_, config) = db.upsert_seed("alice", &seed("file v2")).await.unwrap();
            assert_eq!(config, seed("file v2"));
            let (again, _) = db.upsert_seed("alice", &seed("file v2")).await.unwrap();
            assert_eq!(again.config_version, 3);
            let actions: Vec<String> = db
                .recent_audit(10)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.action)
                .collect();
            assert_eq!(
                actions,
                ["config_seeded", "config_saved", "channel_created"]
            );
        });
    }

    #[test]
    fn rotating_the_token_revokes_the_old_one() {
        let dir = TempDir::new("sqlite-rotate");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let (streamer, _) = db.upsert_seed("alice", &seed("For")).await.unwrap();
            let token = db.rotate_token(streamer.id).await.unwrap();
            assert_ne!(token, streamer.overlay_token);
            assert_eq!(
                db.streamer_by_token(&streamer.overlay_token).await.unwrap(),
                None
            );
            let (found, _) = db.streamer_by_token(&token).await.unwrap().unwrap();
            assert_eq!(found.id, streamer.id);
            assert_eq!(db.recent_audit(1).await.unwrap()[0].action, "token_rotated");
            assert!(matches!(
                db.rotate_token(999).await,
                Err(StoreError::Sqlite(_))
            ));
        });
    }

    #[test]
    fn save_config_detects_a_conflict_and_keeps_history() {
        let dir = TempDir::new("sqlite-conflict");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let (streamer, _) = db.upsert_seed("alice", &seed("For")).await.unwrap();
            let infinite = OverlayConfig {
                model: Model::Window(Memory::Infinite),
                display_mode: DisplayMode::Split,
                ..seed("a")
            };
            assert_eq!(
                db.save_config(streamer.id, &infinite, Some(1))
                    .await
                    .unwrap(),
                2
            );
            let stale = db.save_config(streamer.id, &seed("b"), Some(1)).await;
            assert!(
                matches!(stale, Err(StoreError::Conflict { current: 2 })),
                "{stale:?}"
            );
            assert_eq!(
                db.save_config(streamer.id, &seed("c"), None).await.unwrap(),
                3
            );

            let (_, config) = db.streamers().await.unwrap().remove(0);
            assert_eq!(config, seed("c"));
            let history: Vec<(i64, String)> = db
                .call(|c| {
                    let mut stmt =
                        c.prepare("SELECT version, snapshot FROM config_history ORDER BY version")?;
                    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    Ok(rows.collect::<Result<_, _>>()?)
                })
                .await
                .unwrap();
            assert_eq!(history.len(), 3);
            assert_eq!(history[1].1, canonical_json(&infinite));
        });
    }

    #[test]
    fn audit_rows_come_back_newest_first() {
        let dir = TempDir::new("sqlite-audit");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            db.audit("admin", "login", None, "from 127.0.0.1")
                .await
                .unwrap();
            db.audit("admin", "logout", Some(7), "").await.unwrap();
            let rows = db.recent_audit(1).await.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(
                (rows[0].action.as_str(), rows[0].streamer_id),
                ("logout", Some(7))
            );
            let rows = db.recent_audit(10).await.unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[1].actor, "admin");
            assert_eq!(rows[1].detail, "from 127.0.0.1");
            assert!(rows[1].at_ms > 0 && rows[1].id < rows[0].id);
        });
    }

    #[test]
    fn unknown_stored_values_fall_back_to_defaults() {
        let dir = TempDir::new("sqlite-fallback");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let (_, seeded) = db.upsert_seed("alice", &seed("For")).await.unwrap();
            db.call(|c| {
                c.execute(
                    "UPDATE configs SET theme = 'neon', display_mode = 'stacked',
                     for_triggers = 'not json', memory_seconds = -5",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap();
            let (_, config) = db.streamers().await.unwrap().remove(0);
            let default = OverlayConfig::default();
            assert_eq!(config.theme, default.theme);
            assert_eq!(config.display_mode, default.display_mode);
            assert_eq!(config.for_triggers, default.for_triggers);
            assert_eq!(config.model, default.model);
            assert_eq!(config.for_label, seeded.for_label);
        });
    }

    #[test]
    fn the_thread_ends_when_the_store_is_dropped_or_closed() {
        let dir = TempDir::new("sqlite-close");
        block_on_deadline(async {
            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let (other, done) = (db.clone(), db.done.clone());
            drop(db);
            other.ping().await.unwrap();
            drop(other);
            assert!(done.recv().await.is_err(), "thread ended");

            let db = Db::open(&dir.0.join("db")).await.unwrap();
            let other = db.clone();
            db.close().await;
            assert!(matches!(other.ping().await, Err(StoreError::Closed)));
        });
    }
}
