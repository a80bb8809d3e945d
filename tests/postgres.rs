//! PostgreSQL as the shared store (cargo feature `postgres`), against a real
//! PostgreSQL 15 started by the test ([`crate::common::pg`]): migrations racing
//! from several nodes, two nodes seeing each other's saves through it, saves
//! while it is down kept in the outbox and replayed, and one storage suite run
//! with SQLite alone and with SQLite + PostgreSQL.

use std::time::{Duration, Instant};

use chatpulse::channel::OverlayConfig;

use crate::common::pg::Postgres;
use crate::common::{ONE_CHANNEL, Overlay, TEST_TIMEOUT, TestServer, eventually, run};

const SYNC: Duration = Duration::from_secs(20);

fn labeled(label: &str) -> OverlayConfig {
    OverlayConfig {
        for_label: label.into(),
        ..OverlayConfig::default()
    }
}

fn toml(pg: &Postgres, channels: &str) -> String {
    format!("[postgres]\nurl = \"{}\"\n\n{channels}", pg.url())
}

fn label(t: &TestServer, login: &str) -> Option<String> {
    t.server.app().hub.config_of(login).map(|c| c.for_label)
}

/// A `postgres_*` value from the node's `/metrics` page (those families are
/// rendered by the route, next to the node's own metrics).
async fn metric(t: &TestServer, name: &str) -> Option<f64> {
    let (_, _, page) = crate::common::get(t.addr, "/metrics").await;
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `check` (async) until it holds, or fails after `limit`.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        smol::Timer::after(Duration::from_millis(20)).await;
    }
}

#[test]
fn migrations_race_between_nodes_starting_at_once() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let tls = chatpulse::tls::client_config(None).unwrap();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (url, tls) = (pg.url(), tls.clone());
            std::thread::spawn(move || {
                let mut c = chatpulse::store::pg::connect(&url, &tls).expect("connect");
                chatpulse::store::pg::migrate(&mut c).expect("migrate")
            })
        })
        .collect();
    let versions: Vec<i64> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        versions.iter().all(|&v| v == versions[0] && v >= 1),
        "{versions:?}"
    );
    let mut c = chatpulse::store::pg::connect(&pg.url(), &tls).unwrap();
    let v: i32 = c
        .query_one("SELECT version FROM chatpulse_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(i64::from(v), versions[0]);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM chatpulse_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "one version row, however many nodes migrated");
}

#[test]
fn two_nodes_share_one_postgres_and_see_each_others_saves() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    run(TEST_TIMEOUT, async {
        let a = TestServer::start_with(&toml(&pg, ONE_CHANNEL), None, None).await;
        // B knows no channel of its own: alice comes from PostgreSQL.
        let b = TestServer::start_with(&toml(&pg, ""), None, None).await;
        eventually("alice reaches B", SYNC, || {
            (label(&b, "alice").is_some()).then_some(())
        })
        .await;
        assert_eq!(b.token("alice"), a.token("alice"));
        let mut on_b = Overlay::connect(b.addr, &b.token("alice")).await.unwrap();
        on_b.frame().await;
        let started = Instant::now();
        a.server
            .app()
            .save_config("alice", labeled("via postgres"), "test")
            .await
            .unwrap();
        on_b.frame_where("A's save on B's overlay", |f| f.for_label == "via postgres")
            .await;
        eprintln!("save on A → overlay on B: {:?}", started.elapsed());
        // And back: a rotation on B closes A's overlays of the old URL.
        let old = a.token("alice");
        let mut on_a = Overlay::connect(a.addr, &old).await.unwrap();
        on_a.frame().await;
        let new = b.server.app().rotate_token("alice", "test").await.unwrap();
        assert_eq!(on_a.closed().await, Some(4404));
        eventually("A has B's token", SYNC, || {
            (a.token("alice") == new).then_some(())
        })
        .await;
        let (_, _, ready) = crate::common::get(a.addr, "/health/ready").await;
        assert!(
            ready.contains("\"postgres\":{\"up\":true,\"outbox\":0"),
            "{ready}"
        );
        assert_eq!(metric(&a, "postgres_up").await, Some(1.0));
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn saves_while_postgres_is_down_wait_in_the_outbox_and_replay() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    run(Duration::from_secs(120), async {
        let a = TestServer::start_with(&toml(&pg, ONE_CHANNEL), None, None).await;
        let b = TestServer::start_with(&toml(&pg, ""), None, None).await;
        eventually("alice reaches B", SYNC, || {
            (label(&b, "alice").is_some()).then_some(())
        })
        .await;
        pg.stop();
        until("A sees PostgreSQL down", SYNC, || async {
            metric(&a, "postgres_up").await == Some(0.0)
        })
        .await;
        // Acknowledged to the user while PostgreSQL is away.
        let app = a.server.app();
        app.save_config("alice", labeled("one"), "test")
            .await
            .unwrap();
        let v = app
            .save_config("alice", labeled("two"), "test")
            .await
            .unwrap();
        assert_eq!(label(&a, "alice").as_deref(), Some("two"));
        assert!(app.db.outbox_depth().await.unwrap() >= 2);
        let (status, _, ready) = crate::common::get(a.addr, "/health/ready").await;
        assert_eq!(status, 200, "still serving: {ready}");
        assert!(ready.contains("\"up\":false"), "{ready}");

        pg.restart();
        until("A's outbox drained", SYNC, || async {
            metric(&a, "postgres_up").await == Some(1.0)
                && metric(&a, "postgres_outbox_depth").await == Some(0.0)
        })
        .await;
        eventually("B converged on A's last save", SYNC, || {
            (label(&b, "alice").as_deref() == Some("two")).then_some(())
        })
        .await;
        let s = b.server.app().hub.streamers();
        assert_eq!(
            s.iter()
                .find(|s| s.login == "alice")
                .unwrap()
                .config_version,
            v
        );
        a.stop().await;
        b.stop().await;
    });
}

/// The same storage behaviour with or without PostgreSQL: a channel is created,
/// saved, rotated, and all of it is there after a restart.
async fn storage_suite(pg: Option<&Postgres>) {
    let conf = match pg {
        Some(pg) => toml(pg, ONE_CHANNEL),
        None => ONE_CHANNEL.to_string(),
    };
    let a = TestServer::start_with(&conf, None, None).await;
    let app = a.server.app();
    let v = app
        .save_config("alice", labeled("kept"), "test")
        .await
        .unwrap();
    assert_eq!(v, 2);
    let conflict = app
        .save_config_if("alice", labeled("stale"), Some(1), "test")
        .await;
    assert!(
        conflict.is_err(),
        "optimistic locking refuses a stale version"
    );
    let token = app.rotate_token("alice", "test").await.unwrap();
    let dir = a.stop().await;
    let a = TestServer::start_with(&conf, Some(dir), None).await;
    assert_eq!(label(&a, "alice").as_deref(), Some("kept"));
    assert_eq!(a.token("alice"), token);
    let audit = a.server.app().db.recent_audit(10).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "token_rotated"));
    if pg.is_some() {
        until("pushed to PostgreSQL", SYNC, || async {
            metric(&a, "postgres_outbox_depth").await == Some(0.0)
                && metric(&a, "postgres_up").await == Some(1.0)
        })
        .await;
    }
    a.stop().await;
}

#[test]
fn storage_suite_with_sqlite_alone() {
    run(TEST_TIMEOUT, storage_suite(None));
}

#[test]
fn storage_suite_with_sqlite_and_postgres() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    run(TEST_TIMEOUT, storage_suite(Some(&pg)));
    // What PostgreSQL holds is the node's last state.
    let tls = chatpulse::tls::client_config(None).unwrap();
    let mut c = chatpulse::store::pg::connect(&pg.url(), &tls).unwrap();
    let rows = chatpulse::store::pg::read(&mut c, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record.config_version, 2);
    assert!(rows[0].record.config.contains("kept"));
    // The shared audit log has who did what, once each.
    let audit: Vec<(String, String)> = c
        .query("SELECT actor, action FROM chatpulse_audit ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (actor, action) in [
        ("config-file", "channel_created"),
        ("test", "config_saved"),
        ("test", "token_rotated"),
    ] {
        let n = audit
            .iter()
            .filter(|(a, b)| a == actor && b == action)
            .count();
        assert_eq!(n, 1, "{actor} {action} in {audit:?}");
    }
}

#[test]
fn production_refuses_an_unencrypted_postgres_url() {
    let err = chatpulse::config::from_toml_str(
        "environment = \"production\"\n[postgres]\nurl = \"postgres://u:pw@db/chatpulse?sslmode=disable\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("postgres.url") && err.contains("production"),
        "{err}"
    );
    assert!(!err.contains("pw@"), "{err}");
}

#[test]
fn eventsub_subscriptions_and_conduits_are_shared_through_postgres() {
    use chatpulse::store::sqlite::StoredSubscription;
    let Some(pg) = Postgres::start() else {
        return;
    };
    run(TEST_TIMEOUT, async {
        let a = TestServer::start_with(&toml(&pg, ONE_CHANNEL), None, None).await;
        let b = TestServer::start_with(&toml(&pg, ""), None, None).await;
        let (da, db) = (&a.server.app().db, &b.server.app().db);
        let sub = StoredSubscription {
            id: "sub-1".into(),
            kind: "channel.chat.message".into(),
            broadcaster_user_id: "42".into(),
            login: "alice".into(),
            bot_user_id: "7".into(),
            conduit_id: "conduit-1".into(),
            status: "enabled".into(),
            reason: None,
        };
        da.set_conduit_id("app", "conduit-1").await.unwrap();
        da.upsert_eventsub_subscription(&sub).await.unwrap();
        until("B has A's subscription and conduit", SYNC, || async {
            db.eventsub_subscriptions().await.unwrap() == vec![sub.clone()]
                && db.conduit_id("app").await.unwrap().as_deref() == Some("conduit-1")
        })
        .await;
        // A revocation on B reaches A; then a deletion on A reaches B.
        assert!(
            db.revoke_eventsub_subscription("sub-1", "authorization_revoked")
                .await
                .unwrap()
        );
        until("A sees the revocation", SYNC, || async {
            da.eventsub_subscriptions().await.unwrap()[0].status == "revoked"
        })
        .await;
        assert!(da.delete_eventsub_subscription("sub-1").await.unwrap());
        until("B sees the deletion", SYNC, || async {
            db.eventsub_subscriptions().await.unwrap().is_empty()
        })
        .await;
        a.stop().await;
        b.stop().await;
    });
}
