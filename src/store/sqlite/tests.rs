//! Tests of [`Db`] against a real SQLite file: migrations, seeding from the config
//! file, saves and conflicts, token rotation, the audit log and shutdown.

use rusqlite::Connection;

use super::super::{TempDir, block_on_deadline};
use super::rows::canonical_json;
use super::*;
use crate::channel::{DisplayMode, Theme};
use crate::sentiment::{Memory, Model};

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
        db.upsert_seed("alice", &seed("For"), None).await.unwrap();
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
    crate::store::create_private(&path).unwrap();
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
        let (streamer, config) = db.upsert_seed("alice", &seed("Yes!"), None).await.unwrap();
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
        let (streamer, _) = db.upsert_seed("alice", &seed("file"), None).await.unwrap();
        let edited = OverlayConfig {
            model: Model::Decay { speed: 0.5 },
            theme: Theme::Light,
            ..seed("dashboard")
        };
        assert_eq!(
            db.save_config(streamer.id, &edited, Some(1), "dashboard")
                .await
                .unwrap(),
            2
        );
        db.close().await;

        // Restart with the same file: the dashboard save survives.
        let db = Db::open(&path).await.unwrap();
        let (again, config) = db.upsert_seed("alice", &seed("file"), None).await.unwrap();
        assert_eq!((again.config_version, config), (2, edited));
        assert_eq!(again.overlay_token, streamer.overlay_token);

        // The file was edited: its config becomes version 3, once.
        let (_, config) = db
            .upsert_seed("alice", &seed("file v2"), None)
            .await
            .unwrap();
        assert_eq!(config, seed("file v2"));
        let (again, _) = db
            .upsert_seed("alice", &seed("file v2"), None)
            .await
            .unwrap();
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
        let (streamer, _) = db.upsert_seed("alice", &seed("For"), None).await.unwrap();
        let token = db.rotate_token(streamer.id, "dashboard").await.unwrap();
        assert_ne!(token, streamer.overlay_token);
        assert_eq!(
            db.streamer_by_token(&streamer.overlay_token).await.unwrap(),
            None
        );
        let (found, _) = db.streamer_by_token(&token).await.unwrap().unwrap();
        assert_eq!(found.id, streamer.id);
        assert_eq!(db.recent_audit(1).await.unwrap()[0].action, "token_rotated");
        assert!(matches!(
            db.rotate_token(999, "dashboard").await,
            Err(StoreError::Sqlite(_))
        ));
    });
}

#[test]
fn save_config_detects_a_conflict_and_keeps_history() {
    let dir = TempDir::new("sqlite-conflict");
    block_on_deadline(async {
        let db = Db::open(&dir.0.join("db")).await.unwrap();
        let (streamer, _) = db.upsert_seed("alice", &seed("For"), None).await.unwrap();
        let infinite = OverlayConfig {
            model: Model::Window(Memory::Infinite),
            display_mode: DisplayMode::Split,
            ..seed("a")
        };
        assert_eq!(
            db.save_config(streamer.id, &infinite, Some(1), "dashboard")
                .await
                .unwrap(),
            2
        );
        let stale = db
            .save_config(streamer.id, &seed("b"), Some(1), "dashboard")
            .await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { current: 2 })),
            "{stale:?}"
        );
        assert_eq!(
            db.save_config(streamer.id, &seed("c"), None, "dashboard")
                .await
                .unwrap(),
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
        let (_, seeded) = db.upsert_seed("alice", &seed("For"), None).await.unwrap();
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
