//! Runtime state that must survive a restart but can be rebuilt, in redb: this node's id,
//! each broadcaster's vote log (bytes encoded by the caller), and small `meta` values
//! such as the mesh peers a node learned.
//!
//! Durable data that people created (streamers, configs, audit) belongs in
//! [`super::sqlite`], never here. Since everything here can be rebuilt, an unreadable file
//! is moved aside to `<name>.corrupt-<unix ms>` (kept for inspection, never deleted) and
//! the node starts empty. redb blocks, so every call runs inside `smol::unblock`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::{debug, error, info};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{StoreError, now_ms, random_failed};

/// Conventional file name inside the data directory.
pub const FILE_NAME: &str = "state.redb";

/// Small named values; `node_id` is reserved.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Broadcaster login → that channel's encoded vote log.
const VOTE_LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("vote_logs");
const NODE_ID: &str = "node_id";

/// Handle to the redb file; clone it freely. The file closes when the last clone drops.
#[derive(Clone)]
pub struct State {
    file: Arc<StateFile>,
    node_id: u64,
}

/// The open database, or none after an I/O error: redb then refuses every call
/// ("previous I/O error") until the file is reopened, which the next call does
/// (redb repairs it if needed), so a disk that was full works again once it
/// has room. Calls take turns; each is short.
struct StateFile {
    path: PathBuf,
    db: Mutex<Option<Database>>,
}

impl StateFile {
    fn with<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let mut slot = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let db = match slot.take() {
            Some(db) => db,
            None => {
                let db = Database::create(&self.path)?;
                debug!("state: reopened {}", self.path.display());
                db
            }
        };
        let result = f(&db);
        match &result {
            Err(e @ (redb::Error::Io(_) | redb::Error::PreviousIo)) => {
                // The caller reports the error; retries come every second while it lasts.
                debug!("state: {e}; closing {} to reopen it", self.path.display());
            }
            _ => *slot = Some(db),
        }
        result
    }
}

impl State {
    /// Opens (or creates) the state file at `path`; see the module doc for what happens
    /// to an unreadable one. A file held open by another process is an error, not corrupt.
    pub async fn open(path: &Path) -> Result<State, StoreError> {
        let path = path.to_path_buf();
        // Drawn up front so opening fails only on redb's errors, which decide recovery.
        let fresh_id = getrandom::u64().map_err(random_failed)?;
        smol::unblock(move || open_or_recover(&path, fresh_id)).await
    }

    /// This node's random id: created on first open, stable afterwards.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub async fn load_vote_logs(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.unblock(|db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(VOTE_LOGS)?;
            let mut logs = Vec::new();
            for entry in table.iter()? {
                let (login, log) = entry?;
                logs.push((login.value().to_owned(), log.value().to_vec()));
            }
            Ok(logs)
        })
        .await
    }

    /// Writes every `(login, log)` in one transaction, replacing those logins' old logs.
    /// Logins not listed are left alone.
    pub async fn save_vote_logs(&self, logs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        self.unblock(move |db| {
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(VOTE_LOGS)?;
                for (login, log) in &logs {
                    table.insert(login.as_str(), log.as_slice())?;
                }
            }
            Ok(tx.commit()?)
        })
        .await
    }

    pub async fn delete_vote_log(&self, login: String) -> Result<(), StoreError> {
        self.unblock(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(VOTE_LOGS)?.remove(login.as_str())?;
            Ok(tx.commit()?)
        })
        .await
    }

    pub async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.unblock(move |db| {
            let tx = db.begin_read()?;
            let value = tx.open_table(META)?.get(key.as_str())?;
            Ok(value.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// Stores a meta value. `node_id` is reserved: it is read once, at open.
    pub async fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.unblock(move |db| {
            let tx = db.begin_write()?;
            tx.open_table(META)?
                .insert(key.as_str(), value.as_slice())?;
            Ok(tx.commit()?)
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.unblock(|db| {
            db.begin_read()?.open_table(META)?;
            Ok(())
        })
        .await
    }

    async fn unblock<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let file = Arc::clone(&self.file);
        Ok(smol::unblock(move || file.with(f)).await?)
    }
}

fn open_or_recover(path: &Path, fresh_id: u64) -> Result<State, StoreError> {
    super::create_private(path)?;
    let (db, node_id) = match init(path, fresh_id) {
        Ok(opened) => opened,
        Err(e) if is_unreadable(&e) => {
            let aside = set_aside(path)?;
            super::create_private(path)?;
            error!(
                "state: {} is unreadable ({e}); moved it to {} and starting empty",
                path.display(),
                aside.display()
            );
            init(path, fresh_id)?
        }
        Err(e) => return Err(e.into()),
    };
    info!("state: opened {} (node id {node_id:016x})", path.display());
    Ok(State {
        file: Arc::new(StateFile {
            path: path.to_path_buf(),
            db: Mutex::new(Some(db)),
        }),
        node_id,
    })
}

/// Opens the file, creates the tables (so read transactions find them) and reads or
/// stores the node id.
fn init(path: &Path, fresh_id: u64) -> Result<(Database, u64), redb::Error> {
    let db = Database::create(path)?;
    let tx = db.begin_write()?;
    let node_id = {
        let mut meta = tx.open_table(META)?;
        let stored = meta.get(NODE_ID)?.map(|v| v.value().to_vec());
        match stored {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_le_bytes)
                .map_err(|_| redb::Error::Corrupted(format!("node_id is {} bytes", bytes.len())))?,
            None => {
                meta.insert(NODE_ID, fresh_id.to_le_bytes().as_slice())?;
                fresh_id
            }
        }
    };
    tx.open_table(VOTE_LOGS)?;
    tx.commit()?;
    Ok((db, node_id))
}

/// Errors that mean this binary cannot use the file's contents (as opposed to a locked
/// file, a permission problem or a full disk, which moving the file would not fix).
fn is_unreadable(e: &redb::Error) -> bool {
    match e {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. } => true,
        redb::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{}", now_ms()));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::super::{TempDir, block_on_deadline};
    use super::*;

    fn logs(entries: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        entries
            .iter()
            .map(|(login, log)| (login.to_string(), log.to_vec()))
            .collect()
    }

    #[test]
    fn node_id_is_stable_across_reopen() {
        let dir = TempDir::new("state-node-id");
        let path = dir.0.join("nested").join(FILE_NAME);
        block_on_deadline(async {
            let first = State::open(&path).await.unwrap().node_id();
            let second = State::open(&path).await.unwrap().node_id();
            assert_eq!(first, second);
        });
    }

    #[test]
    fn vote_logs_round_trip_across_reopen() {
        let dir = TempDir::new("state-logs");
        let path = dir.0.join(FILE_NAME);
        block_on_deadline(async {
            let state = State::open(&path).await.unwrap();
            assert_eq!(state.load_vote_logs().await.unwrap(), vec![]);
            let saved = logs(&[("alice", b"\x01\x02"), ("bob", b""), ("carol", b"c")]);
            state.save_vote_logs(saved).await.unwrap();
            state.save_vote_logs(logs(&[("bob", b"b2")])).await.unwrap();
            state.delete_vote_log("carol".into()).await.unwrap();
            state.set_meta("peers", b"10.0.0.2:7000").await.unwrap();
            drop(state);

            let state = State::open(&path).await.unwrap();
            let expected = logs(&[("alice", b"\x01\x02"), ("bob", b"b2")]);
            assert_eq!(state.load_vote_logs().await.unwrap(), expected);
            let peers = state.get_meta("peers").await.unwrap();
            assert_eq!(peers.as_deref(), Some(&b"10.0.0.2:7000"[..]));
            assert_eq!(state.get_meta("missing").await.unwrap(), None);
            state.ping().await.unwrap();
        });
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_a_fresh_one_works() {
        let dir = TempDir::new("state-corrupt");
        let path = dir.0.join(FILE_NAME);
        let garbage = vec![0x42u8; 9000];
        super::super::create_private(&path).unwrap();
        std::fs::write(&path, &garbage).unwrap();
        block_on_deadline(async {
            let state = State::open(&path).await.unwrap();
            state
                .save_vote_logs(logs(&[("alice", b"a")]))
                .await
                .unwrap();
            assert_eq!(state.load_vote_logs().await.unwrap().len(), 1);
        });
        let aside: Vec<PathBuf> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("state.redb.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
    }

    #[test]
    fn a_file_in_use_is_an_error_and_stays_in_place() {
        let dir = TempDir::new("state-locked");
        let path = dir.0.join(FILE_NAME);
        block_on_deadline(async {
            let state = State::open(&path).await.unwrap();
            assert!(State::open(&path).await.is_err());
            assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
            state.ping().await.unwrap();
        });
    }
}
