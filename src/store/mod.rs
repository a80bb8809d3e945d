//! Storage: two embedded stores with distinct jobs.
//!
//! - [`sqlite`] holds durable relational data that people created and expect to keep:
//!   streamers and their overlay tokens, overlay configs with every saved version, and the
//!   audit log. It is the source of truth; back it up. Schema changes are numbered
//!   migrations, and a database from a newer binary is refused.
//! - [`state`] (redb) holds runtime state that should survive a restart but can be rebuilt:
//!   vote logs, this node's id, later the mesh peers it learned. An unreadable file is moved
//!   aside and the node starts empty rather than refusing to run.
//!
//! Both libraries block, so no call runs on an async thread: SQLite lives on one dedicated
//! thread fed by a bounded channel, redb calls go through `smol::unblock`.

#[cfg(feature = "postgres")]
pub mod pg;
pub mod sqlite;
pub mod state;

use crate::auth::encoding::base64url as base64_url;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What `/health/ready` and `/metrics` show of PostgreSQL.
#[derive(Default)]
pub struct PgStatus {
    pub up: AtomicBool,
    /// Logins waiting in the SQLite outbox (as of the last round).
    pub outbox: AtomicU64,
    /// Unix ms of the last completed read of every row (0: never).
    pub last_sync_ms: AtomicI64,
    pub errors: AtomicU64,
    pub last_error: Mutex<String>,
}

impl PgStatus {
    /// Seconds since every row was last read (how stale this replica may be).
    pub fn lag_seconds(&self) -> f64 {
        match self.last_sync_ms.load(Ordering::SeqCst) {
            0 => f64::INFINITY,
            at => (now_ms() - at).max(0) as f64 / 1000.0,
        }
    }

    /// The `postgres_*` families in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let lag = self.lag_seconds();
        let lag = if lag.is_finite() { lag } else { -1.0 };
        for (name, kind, help, value) in [
            (
                "postgres_up",
                "gauge",
                "1 while the connection to PostgreSQL works.",
                f64::from(u8::from(self.up.load(Ordering::SeqCst))),
            ),
            (
                "postgres_outbox_depth",
                "gauge",
                "Streamer changes waiting in SQLite for PostgreSQL.",
                self.outbox.load(Ordering::SeqCst) as f64,
            ),
            (
                "postgres_sync_lag_seconds",
                "gauge",
                "Seconds since every row was last read from PostgreSQL (-1: never).",
                lag,
            ),
            (
                "postgres_errors_total",
                "counter",
                "Failed PostgreSQL sessions (connect, migrate, push, read).",
                self.errors.load(Ordering::SeqCst) as f64,
            ),
        ] {
            out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        }
        out
    }

    pub fn failed(&self, e: &str) {
        self.up.store(false, Ordering::SeqCst);
        self.errors.fetch_add(1, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
    }
}

/// Everything that can go wrong in either store.
#[derive(Debug)]
pub enum StoreError {
    Sqlite(rusqlite::Error),
    /// redb's error, as text: its error types are many and none is needed by callers.
    Redb(String),
    Io(std::io::Error),
    /// The store was closed (shutdown) or its thread is gone.
    Closed,
    /// Stored bytes that cannot be decoded.
    Corrupt(String),
    /// The SQLite file was written by a newer ChatPulse; opening it could lose data.
    SchemaTooNew {
        found: i64,
        supported: i64,
    },
    /// `save_config` was based on an older version than the one stored.
    Conflict {
        current: i64,
    },
    /// A store file every user may read: it holds overlay tokens and sign-in secrets.
    Exposed(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "sqlite: {e}"),
            StoreError::Redb(e) => write!(f, "redb: {e}"),
            StoreError::Io(e) => write!(f, "store i/o: {e}"),
            StoreError::Closed => f.write_str("the store is closed"),
            StoreError::Corrupt(what) => write!(f, "corrupt stored data: {what}"),
            StoreError::SchemaTooNew { found, supported } => write!(
                f,
                "the database has schema version {found} but this binary knows up to \
                 {supported}; run a newer ChatPulse or restore a backup"
            ),
            StoreError::Exposed(hint) => write!(f, "{hint}"),
            StoreError::Conflict { current } => {
                write!(
                    f,
                    "the config was changed meanwhile (now version {current})"
                )
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite(e) => Some(e),
            StoreError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Redb(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

/// A fresh secret overlay token: 128 random bits, URL-safe base64 without padding
/// (22 chars), so it can sit in an OBS browser-source URL as is.
///
/// # Panics
/// If the OS random source fails; the stores use [`try_overlay_token`] instead.
/// Creates `path` (and its directory, 0700) readable by the node's user only,
/// unless it exists; refuses an existing store file open to every user. SQLite's
/// `-wal`/`-shm` files take the database file's mode, so they stay private too.
pub fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut names = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        names.push(name.into());
    }
    for name in &names {
        if let Some(mode) = crate::config::perms::world_access(name) {
            return Err(StoreError::Exposed(format!(
                "{} holds overlay tokens and sign-in secrets but {}",
                name.display(),
                crate::config::perms::chmod_hint(name, mode)
            )));
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    Ok(())
}

pub fn new_overlay_token() -> String {
    try_overlay_token().expect("the OS random source failed")
}

fn try_overlay_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(random_failed)?;
    Ok(base64_url(&bytes))
}

fn random_failed(e: getrandom::Error) -> StoreError {
    StoreError::Io(std::io::Error::other(format!(
        "the OS random source failed: {e}"
    )))
}

/// Wall-clock unix milliseconds, the unit of every stored timestamp.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A fresh directory under the system temp dir, removed on drop.
#[cfg(test)]
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

#[cfg(test)]
impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("chatpulse-{tag}-{}-{}-{n}", std::process::id(), now_ms());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `smol::block_on` under an overall deadline, so a hung store fails the test.
#[cfg(test)]
fn block_on_deadline<T>(fut: impl Future<Output = T>) -> T {
    use smol::future::FutureExt;
    smol::block_on(fut.or(async {
        smol::Timer::after(std::time::Duration::from_secs(30)).await;
        panic!("test did not finish within 30 s")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_tokens_are_22_url_safe_chars_and_differ() {
        let a = new_overlay_token();
        let b = new_overlay_token();
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn store_files_are_private_and_exposed_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("perms");
        let path = dir.0.join("sub").join(sqlite::FILE_NAME);
        let db = block_on_deadline(sqlite::Db::open(&path)).unwrap();
        drop(db);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let wal = dir.0.join("sub").join(format!("{}-wal", sqlite::FILE_NAME));
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = block_on_deadline(sqlite::Db::open(&path))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("mode 0644") && err.contains("chmod o-rwx"),
            "{err}"
        );
        let state = dir.0.join(state::FILE_NAME);
        std::fs::write(&state, b"").unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o604)).unwrap();
        let err = block_on_deadline(state::State::open(&state))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("readable by every user"), "{err}");
    }
}
