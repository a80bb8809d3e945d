//! PostgreSQL as the shared source of truth of larger deployments (cargo feature
//! `postgres`, `[postgres] url`). Each node keeps its SQLite as a local replica:
//! reads never wait on the network and the node keeps serving when PostgreSQL is
//! down.
//!
//! - **Schema**: numbered migrations in `chatpulse_schema`, run under the
//!   reference's advisory lock (`0x636861747075`, "chatpu"), so nodes can start
//!   at once. `chatpulse_streamers` holds the same records the mesh replicates
//!   ([`crate::store::sqlite::Replicated`]); `chatpulse_audit` the changes.
//! - **Writes**: a local change queues its login in SQLite's `pg_outbox` in the
//!   same transaction (durable: nothing acknowledged to a user is lost). This
//!   task pushes the queued logins' current rows in order, merging part by part
//!   in SQL exactly as [`crate::store::sqlite::Db::apply_record`] does (config by
//!   version, token by rotation count: concurrent saves settle the same way
//!   everywhere), then `NOTIFY chatpulse_streamers`. PostgreSQL down: the outbox
//!   waits and is replayed when it returns.
//! - **Reads**: `LISTEN chatpulse_streamers` brings another node's change here
//!   within a poll tick (well under a second); every [`RECONCILE_EVERY`] all rows
//!   are read again, so a missed notification heals itself.
//!
//! One blocking client on a thread of its own (like SQLite's), reconnecting with
//! backoff; its state is in [`PgStatus`] for `/health/ready` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Row};

use crate::app::{App, now_ms};
use crate::store::sqlite::{ChannelRecord, Queued, Replicated, StoredSubscription};

/// The reference's advisory lock key ("chatpu").
pub const MIGRATION_LOCK: i64 = 0x6368_6174_7075;
/// How often queued changes are pushed and notifications collected.
const TICK: Duration = Duration::from_millis(100);
/// Every row read again this often: a missed NOTIFY heals within it.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(10);
/// Reconnect backoff: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(10));
/// Queued logins pushed per round.
const PUSH_BATCH: u32 = 100;
const CHANNEL: &str = "chatpulse_streamers";
/// Notified after a subscription or conduit row changed.
const TWITCH_CHANNEL: &str = "chatpulse_twitch";

/// Append only; each runs in its own transaction.
const MIGRATIONS: &[&str] = &[
    // v1: streamer records (the mesh's LWW record, one column per field) and the
    // shared audit log. Node ids are u64 stored as bigint (same bits).
    "CREATE TABLE chatpulse_streamers (
        login text PRIMARY KEY,
        display_name text NOT NULL,
        twitch_user_id text,
        overlay_token text NOT NULL,
        token_rev bigint NOT NULL,
        token_node bigint NOT NULL,
        config_version bigint NOT NULL,
        config_node bigint NOT NULL,
        config text NOT NULL,
        rev bigint NOT NULL,
        rev_node bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE chatpulse_audit (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        node bigint NOT NULL,
        local_id bigint NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        login text,
        detail text NOT NULL,
        UNIQUE (node, local_id)
    );",
    // v2: the EventSub webhook source's state (Twitch stays the real authority;
    // every node sees what the others reconciled). Last writer by updated_ms;
    // a deleted subscription stays as a tombstone so the deletion spreads.
    "CREATE TABLE chatpulse_conduits (
        client_id text PRIMARY KEY,
        conduit_id text NOT NULL,
        updated_ms bigint NOT NULL
    );
    CREATE TABLE chatpulse_subscriptions (
        id text PRIMARY KEY,
        kind text NOT NULL,
        broadcaster_user_id text NOT NULL,
        login text NOT NULL,
        bot_user_id text NOT NULL,
        conduit_id text NOT NULL,
        status text NOT NULL,
        reason text,
        deleted boolean NOT NULL,
        updated_ms bigint NOT NULL
    );",
];

/// Connects (TLS through rustls when the URL's sslmode asks for it).
pub fn connect(url: &str, tls: &Arc<rustls::ClientConfig>) -> Result<Client, postgres::Error> {
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
    Client::connect(url, connector)
}

/// Brings the schema up to date under the advisory lock; returns its version.
pub fn migrate(client: &mut Client) -> Result<i64, postgres::Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = (|| {
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS chatpulse_schema (version integer NOT NULL);
             INSERT INTO chatpulse_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM chatpulse_schema);",
        )?;
        let found: i32 = client
            .query_one("SELECT version FROM chatpulse_schema", &[])?
            .get(0);
        for (done, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute(
                "UPDATE chatpulse_schema SET version = $1",
                &[&(done as i32 + 1)],
            )?;
            tx.commit()?;
            log::info!("postgres: migrated schema to v{}", done + 1);
        }
        Ok(MIGRATIONS.len() as i64)
    })();
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let version = result?;
    unlock?;
    Ok(version)
}

const COLUMNS: &str = "login, display_name, twitch_user_id, overlay_token, token_rev, token_node, \
                       config_version, config_node, config, rev, rev_node";

fn record_of(row: &Row) -> Replicated {
    let u = |i: usize| row.get::<_, i64>(i) as u64;
    Replicated {
        rev: u(9),
        node: u(10),
        record: ChannelRecord {
            login: row.get(0),
            display_name: row.get(1),
            twitch_user_id: row.get::<_, Option<String>>(2).unwrap_or_default(),
            overlay_token: row.get(3),
            token_rev: u(4),
            token_node: u(5),
            config_version: row.get(6),
            config_node: u(7),
            config: row.get(8),
        },
    }
}

/// Every row, or the rows of `logins`.
pub fn read(
    client: &mut Client,
    logins: Option<&[String]>,
) -> Result<Vec<Replicated>, postgres::Error> {
    let rows = match logins {
        None => client.query(&format!("SELECT {COLUMNS} FROM chatpulse_streamers"), &[])?,
        Some(l) => client.query(
            &format!("SELECT {COLUMNS} FROM chatpulse_streamers WHERE login = ANY($1)"),
            &[&l],
        )?,
    };
    Ok(rows.iter().map(record_of).collect())
}

/// Merges `r` into its row part by part (the same rule as SQLite's
/// `apply_record`: larger versions win, ties go to the larger value, compared
/// byte-wise) and notifies every node.
pub fn push(client: &mut Client, r: &Replicated) -> Result<(), postgres::Error> {
    let c = &r.record;
    let user_id = Some(c.twitch_user_id.as_str()).filter(|u| !u.is_empty());
    let i = |v: u64| v as i64;
    let mut tx = client.transaction()?;
    tx.execute(
        "INSERT INTO chatpulse_streamers AS s (login, display_name, twitch_user_id, overlay_token,
             token_rev, token_node, config_version, config_node, config, rev, rev_node)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (login) DO UPDATE SET
           display_name = CASE WHEN (EXCLUDED.rev, EXCLUDED.rev_node) > (s.rev, s.rev_node)
               THEN EXCLUDED.display_name ELSE s.display_name END,
           twitch_user_id = CASE WHEN (EXCLUDED.rev, EXCLUDED.rev_node) > (s.rev, s.rev_node)
               THEN COALESCE(EXCLUDED.twitch_user_id, s.twitch_user_id) ELSE s.twitch_user_id END,
           overlay_token = CASE WHEN (EXCLUDED.token_rev, EXCLUDED.token_node, EXCLUDED.overlay_token COLLATE \"C\")
               > (s.token_rev, s.token_node, s.overlay_token COLLATE \"C\")
               THEN EXCLUDED.overlay_token ELSE s.overlay_token END,
           token_node = CASE WHEN (EXCLUDED.token_rev, EXCLUDED.token_node, EXCLUDED.overlay_token COLLATE \"C\")
               > (s.token_rev, s.token_node, s.overlay_token COLLATE \"C\")
               THEN EXCLUDED.token_node ELSE s.token_node END,
           token_rev = GREATEST(EXCLUDED.token_rev, s.token_rev),
           config = CASE WHEN (EXCLUDED.config_version, EXCLUDED.config_node, EXCLUDED.config COLLATE \"C\")
               > (s.config_version, s.config_node, s.config COLLATE \"C\")
               THEN EXCLUDED.config ELSE s.config END,
           config_node = CASE WHEN (EXCLUDED.config_version, EXCLUDED.config_node, EXCLUDED.config COLLATE \"C\")
               > (s.config_version, s.config_node, s.config COLLATE \"C\")
               THEN EXCLUDED.config_node ELSE s.config_node END,
           config_version = GREATEST(EXCLUDED.config_version, s.config_version),
           rev_node = CASE WHEN (EXCLUDED.rev, EXCLUDED.rev_node) > (s.rev, s.rev_node)
               THEN EXCLUDED.rev_node ELSE s.rev_node END,
           rev = GREATEST(EXCLUDED.rev, s.rev),
           updated_at = now()",
        &[
            &c.login,
            &c.display_name,
            &user_id,
            &c.overlay_token,
            &i(c.token_rev),
            &i(c.token_node),
            &c.config_version,
            &i(c.config_node),
            &c.config,
            &i(r.rev),
            &i(r.node),
        ],
    )?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &c.login])?;
    tx.commit()
}

/// This node's audit rows into the shared log (once each: `(node, local_id)`).
pub fn push_audit(
    client: &mut Client,
    rows: &[crate::store::sqlite::PushedAudit],
    node: u64,
) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    for a in rows {
        tx.execute(
            "INSERT INTO chatpulse_audit (at, node, local_id, actor, action, login, detail)
             VALUES (to_timestamp($1::double precision / 1000), $2, $3, $4, $5, $6, $7)
             ON CONFLICT (node, local_id) DO NOTHING",
            &[
                &(a.at_ms as f64),
                &(node as i64),
                &a.id,
                &a.actor,
                &a.action,
                &a.login,
                &a.detail,
            ],
        )?;
    }
    tx.commit()
}

/// Starts the PostgreSQL thread: it runs until the node shuts down.
pub fn start(app: Arc<App>, url: String, tls: Arc<rustls::ClientConfig>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("postgres".into())
        .spawn(move || sync_loop(&app, &url, &tls))?;
    Ok(())
}

fn sync_loop(app: &Arc<App>, url: &str, tls: &Arc<rustls::ClientConfig>) {
    let status = &app.pg_status;
    let mut backoff = BACKOFF.0;
    while !app.is_draining() {
        match session(app, url, tls) {
            Ok(()) => return,
            Err(e) => {
                let first =
                    status.errors.load(Ordering::SeqCst) == 0 || status.up.load(Ordering::SeqCst);
                status.failed(&e);
                if first {
                    log::warn!("postgres: {e}; changes wait in the outbox, retrying");
                } else {
                    log::debug!("postgres: {e}");
                }
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// One connection's life: migrate, listen, then push and pull until an error
/// (reconnect) or shutdown (`Ok`).
fn session(app: &Arc<App>, url: &str, tls: &Arc<rustls::ClientConfig>) -> Result<(), String> {
    let status = &app.pg_status;
    let mut client = connect(url, tls).map_err(|e| format!("connecting: {e}"))?;
    let version = migrate(&mut client).map_err(|e| format!("migrating: {e}"))?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {TWITCH_CHANNEL}"))
        .map_err(|e| format!("LISTEN: {e}"))?;
    let node = app.state.node_id();
    // Every local row once per connection: rows from before PostgreSQL was
    // configured, or written while it was away, merge in (idempotently).
    let local = smol::block_on(app.db.records()).map_err(|e| format!("reading SQLite: {e}"))?;
    for r in &local {
        push(&mut client, r).map_err(|e| format!("pushing {}: {e}", r.record.login))?;
    }
    if !status.up.swap(true, Ordering::SeqCst) {
        log::info!(
            "postgres: connected (schema v{version}), {} local rows merged",
            local.len()
        );
    }
    let mut last_full: Option<Instant> = None;
    loop {
        if app.is_draining() {
            return Ok(());
        }
        push_outbox(app, &mut client)?;
        push_audit_log(app, &mut client, node)?;
        let due = last_full.is_none_or(|t| t.elapsed() >= RECONCILE_EVERY);
        let (logins, twitch) = if due {
            (None, true)
        } else {
            let (l, t) = notified(&mut client)?;
            (Some(l), t)
        };
        if twitch {
            pull_twitch(app, &mut client)?;
        }
        if let Some(l) = &logins
            && l.is_empty()
        {
            continue;
        }
        let rows = read(&mut client, logins.as_deref()).map_err(|e| format!("reading: {e}"))?;
        for r in rows {
            let from = r.node;
            smol::block_on(crate::replica::apply_record(app, from, r));
        }
        if due {
            last_full = Some(Instant::now());
            status.last_sync_ms.store(now_ms() as i64, Ordering::SeqCst);
        }
    }
}

/// Logins other nodes changed, and whether subscriptions or conduits did,
/// waiting at most one tick.
fn notified(client: &mut Client) -> Result<(Vec<String>, bool), String> {
    let mut logins = Vec::new();
    let mut twitch = false;
    let mut n = client.notifications();
    let mut it = n.timeout_iter(TICK);
    while let Some(note) = it.next().map_err(|e| format!("LISTEN: {e}"))? {
        if note.channel() == TWITCH_CHANNEL {
            twitch = true;
        } else if note.channel() == CHANNEL && !logins.iter().any(|l| l == note.payload()) {
            logins.push(note.payload().to_string());
        }
        // Drain what else arrived without waiting again.
        if logins.len() >= PUSH_BATCH as usize {
            break;
        }
    }
    Ok((logins, twitch))
}

/// This node's new audit rows into PostgreSQL's shared log.
fn push_audit_log(app: &App, client: &mut Client, node: u64) -> Result<(), String> {
    loop {
        let rows =
            smol::block_on(app.db.audit_to_push(PUSH_BATCH)).map_err(|e| format!("audit: {e}"))?;
        let Some(last) = rows.last().map(|a| a.id) else {
            return Ok(());
        };
        push_audit(client, &rows, node).map_err(|e| format!("pushing the audit log: {e}"))?;
        smol::block_on(app.db.audit_pushed(last)).map_err(|e| format!("audit: {e}"))?;
    }
}

/// Pushes the queued items' current rows in order; forgets them once stored.
fn push_outbox(app: &App, client: &mut Client) -> Result<(), String> {
    let status = &app.pg_status;
    loop {
        let queued =
            smol::block_on(app.db.outbox(PUSH_BATCH)).map_err(|e| format!("outbox: {e}"))?;
        let Some(last) = queued.last().map(|q| q.seq) else {
            status.outbox.store(0, Ordering::SeqCst);
            return Ok(());
        };
        status.outbox.store(queued.len() as u64, Ordering::SeqCst);
        for q in &queued {
            push_queued(app, client, q)
                .map_err(|e| format!("pushing {} {}: {e}", q.kind, q.key))?;
        }
        smol::block_on(app.db.outbox_done(last)).map_err(|e| format!("outbox: {e}"))?;
    }
}

/// One outbox item: the current local row of what it names (a tombstone for
/// a deleted subscription).
fn push_queued(app: &App, client: &mut Client, q: &Queued) -> Result<(), String> {
    let db = &app.db;
    match q.kind.as_str() {
        "streamer" => {
            if let Some(r) = smol::block_on(db.record(&q.key)).map_err(|e| e.to_string())? {
                push(client, &r).map_err(|e| e.to_string())?;
            }
        }
        "subscription" => {
            let row =
                smol::block_on(db.eventsub_subscription(&q.key)).map_err(|e| e.to_string())?;
            push_subscription(client, &q.key, row, q.queued_at).map_err(|e| e.to_string())?;
        }
        "conduit" => {
            if let Some((conduit, at)) =
                smol::block_on(db.conduit_row(&q.key)).map_err(|e| e.to_string())?
            {
                client
                    .execute(
                        "INSERT INTO chatpulse_conduits (client_id, conduit_id, updated_ms)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (client_id) DO UPDATE SET conduit_id = EXCLUDED.conduit_id,
                           updated_ms = EXCLUDED.updated_ms
                         WHERE chatpulse_conduits.updated_ms < EXCLUDED.updated_ms",
                        &[&q.key, &conduit, &at],
                    )
                    .map_err(|e| e.to_string())?;
                notify_twitch(client).map_err(|e| e.to_string())?;
            }
        }
        other => log::warn!("postgres: unknown outbox kind {other:?} skipped"),
    }
    Ok(())
}

/// A subscription row (or, `None`, its tombstone) if newer than PostgreSQL's.
pub fn push_subscription(
    client: &mut Client,
    id: &str,
    row: Option<(StoredSubscription, i64)>,
    deleted_at: i64,
) -> Result<(), postgres::Error> {
    let (s, deleted, at) = match row {
        Some((s, at)) => (s, false, at),
        None => (
            StoredSubscription {
                id: id.to_string(),
                kind: String::new(),
                broadcaster_user_id: String::new(),
                login: String::new(),
                bot_user_id: String::new(),
                conduit_id: String::new(),
                status: "deleted".into(),
                reason: None,
            },
            true,
            deleted_at,
        ),
    };
    client.execute(
        "INSERT INTO chatpulse_subscriptions (id, kind, broadcaster_user_id, login, bot_user_id,
             conduit_id, status, reason, deleted, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind,
           broadcaster_user_id = EXCLUDED.broadcaster_user_id, login = EXCLUDED.login,
           bot_user_id = EXCLUDED.bot_user_id, conduit_id = EXCLUDED.conduit_id,
           status = EXCLUDED.status, reason = EXCLUDED.reason, deleted = EXCLUDED.deleted,
           updated_ms = EXCLUDED.updated_ms
         WHERE chatpulse_subscriptions.updated_ms < EXCLUDED.updated_ms",
        &[
            &id,
            &s.kind,
            &s.broadcaster_user_id,
            &s.login,
            &s.bot_user_id,
            &s.conduit_id,
            &s.status,
            &s.reason,
            &deleted,
            &at,
        ],
    )?;
    notify_twitch(client)
}

fn notify_twitch(client: &mut Client) -> Result<(), postgres::Error> {
    client.execute("SELECT pg_notify($1, '')", &[&TWITCH_CHANNEL])?;
    Ok(())
}

/// Every subscription and conduit row into SQLite where newer than ours.
fn pull_twitch(app: &App, client: &mut Client) -> Result<(), String> {
    let db = &app.db;
    let subs = client
        .query(
            "SELECT id, kind, broadcaster_user_id, login, bot_user_id, conduit_id, status, reason,
                    deleted, updated_ms FROM chatpulse_subscriptions",
            &[],
        )
        .map_err(|e| format!("reading subscriptions: {e}"))?;
    for r in &subs {
        let id: String = r.get(0);
        let deleted: bool = r.get(8);
        let row = (!deleted).then(|| StoredSubscription {
            id: id.clone(),
            kind: r.get(1),
            broadcaster_user_id: r.get(2),
            login: r.get(3),
            bot_user_id: r.get(4),
            conduit_id: r.get(5),
            status: r.get(6),
            reason: r.get(7),
        });
        smol::block_on(db.apply_subscription(&id, row, r.get(9))).map_err(|e| e.to_string())?;
    }
    let conduits = client
        .query(
            "SELECT client_id, conduit_id, updated_ms FROM chatpulse_conduits",
            &[],
        )
        .map_err(|e| format!("reading conduits: {e}"))?;
    for r in &conduits {
        let (client_id, conduit): (String, String) = (r.get(0), r.get(1));
        smol::block_on(db.apply_conduit(&client_id, &conduit, r.get(2)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
