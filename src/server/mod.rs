//! A node's lifecycle. [`Server::start`] reads as the startup story (stores,
//! channels, listener, loops); [`Server::shutdown`] begins the reverse:
//! readiness 503 at once → leave the mesh (owners move at once) → `shutdown.drain_delay` → stop accepting → overlays
//! get 1001 → in-flight requests finish within `shutdown.timeout` → vote logs
//! flushed → done. Tests start it on `127.0.0.1:0` in-process.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::{Async, Executor, Timer};

use crate::app::{App, now_ms};
use crate::config::Config;
use crate::config::ConfigError;
use crate::hub::{Hub, HubSettings};
use crate::metrics::Metrics;
use crate::sentiment::VoteLog;
use crate::store::sqlite::Db;
use crate::store::state::State;
use crate::tls::{TlsFileError, TlsSlot};
use crate::{BUILD, Error};

mod cluster;
#[cfg(feature = "postgres")]
use cluster::start_postgres;
use cluster::{peers_loop, presence_loop, require_postgres_support, start_mesh};

/// Coalescing and 1 s refresh granularity of the hub (20 updates/s max).
const TICK_EVERY: Duration = Duration::from_millis(50);
/// Vote logs reach redb at least this often (the "flushed every second").
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Store health is re-checked this often for `/health/ready`.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Free heap pages go back to the kernel this often ([`crate::malloc::trim`]).
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// Poll interval while waiting for in-flight work at shutdown.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What the node runs besides serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    /// Serve plus synthetic chat (no Twitch needed).
    Demo,
}

/// Triggers a node's graceful shutdown from anywhere.
pub struct Stopper {
    app: Arc<App>,
    tx: Sender<()>,
}

impl Stopper {
    /// Readiness turns 503 before this returns; the rest follows in the node.
    pub fn stop(&self) {
        self.app.start_draining();
        self.tx.close();
    }
}

pub struct Server {
    app: Arc<App>,
    addr: SocketAddr,
    redirect_addr: Option<SocketAddr>,
    stop_tx: Sender<()>,
    done_rx: Receiver<Result<(), Error>>,
    threads: Vec<JoinHandle<Option<()>>>,
}

impl Server {
    pub fn start(config: Config, mode: Mode) -> Result<Server, Error> {
        log::info!(
            "chatpulse {} starting (commit {})",
            BUILD.version,
            BUILD.commit
        );
        // Private to the node's user: the stores hold overlay tokens and secrets.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|e| {
                Error::Io(
                    format!("creating data dir {}", config.data_dir.display()),
                    e,
                )
            })?;
        let metrics = Arc::new(Metrics::new(BUILD));
        let (db, state) = smol::block_on(async {
            let path = config.data_dir.join(crate::store::sqlite::FILE_NAME);
            let db = Db::open(&path)
                .await
                .map_err(|e| Error::StoreFile(path, e))?;
            let path = config.data_dir.join(crate::store::state::FILE_NAME);
            let state = State::open(&path)
                .await
                .map_err(|e| Error::StoreFile(path, e))?;
            Ok::<_, Error>((db, state))
        })?;
        log::info!(
            "stores open in {} (node {:016x})",
            config.data_dir.display(),
            state.node_id()
        );
        let hub = Hub::new(state.node_id(), hub_settings(&config), Arc::clone(&metrics));
        let tls = load_tls(&config)?;
        let (listener, addr) = bind(config.server.listen)?;
        let redirect = config.tls.redirect_listen.map(bind).transpose()?;
        let auth = smol::block_on(crate::auth::Auth::load(&config, &db))?;
        let app = Arc::new(App::new(config, metrics, db, state, hub, auth, tls));
        require_postgres_support(&app.config)?;
        if app.config.postgres.url.is_some() {
            // Before the seeds: every local change from now on reaches PostgreSQL.
            app.db.queue_for_postgres();
        }
        smol::block_on(load_channels(&app))?;
        log::info!("listening on {}://{addr}", app.scheme());
        if let Some((_, redirect_addr)) = &redirect {
            log::info!("redirecting http://{redirect_addr} to https (health endpoints answered)");
        }
        for s in app.hub.streamers() {
            log::info!(
                "overlay for {}: {}",
                s.login,
                app.overlay_url(&s.overlay_token, Some(&host_for(addr)))
            );
        }

        let ex = Arc::new(Executor::new());
        app.set_executor(&ex);
        let peers_changed = start_mesh(&app, &ex)?;
        #[cfg(feature = "postgres")]
        start_postgres(&app)?;
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let (done_tx, done_rx) = smol::channel::bounded(1);
        let (exit_tx, exit_rx) = smol::channel::bounded::<()>(1);
        let threads = (0..worker_threads(app.config.server.workers))
            .map(|i| {
                let ex = Arc::clone(&ex);
                let exit_rx = exit_rx.clone();
                std::thread::Builder::new()
                    .name(format!("chatpulse-{i}"))
                    .spawn(move || smol::block_on(ex.run(async { exit_rx.recv().await.ok() })))
                    .map_err(|e| Error::Io("spawning worker".into(), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let redirect_addr = redirect.as_ref().map(|(_, a)| *a);
        let listeners = Listeners {
            main: listener,
            https_port: addr.port(),
            redirect: redirect.map(|(l, _)| l),
        };
        let run = run(
            Arc::clone(&ex),
            Arc::clone(&app),
            listeners,
            stop_rx,
            mode,
            peers_changed,
        );
        ex.spawn(async move {
            let result = run.await;
            let _ = done_tx.send(result).await;
            exit_tx.close();
        })
        .detach();
        app.mark_started();
        log::info!("ready");
        Ok(Server {
            app,
            addr,
            redirect_addr,
            stop_tx,
            done_rx,
            threads,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Where `tls.redirect_listen` is bound, when set.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// Re-reads the `[tls]` certificate and key (what SIGHUP does). New
    /// connections get the new certificate; open ones keep theirs. On an error
    /// (logged) the old certificate stays in use.
    pub fn reload_tls(&self) -> Result<(), Error> {
        self.app.reload_tls().map_err(tls_error)
    }

    /// Begins graceful shutdown; returns at once. Idempotent.
    pub fn shutdown(&self) {
        self.stopper().stop();
    }

    /// A handle that can trigger shutdown from another thread (signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            app: Arc::clone(&self.app),
            tx: self.stop_tx.clone(),
        }
    }

    /// Waits until the node has stopped (after [`Server::shutdown`]).
    pub async fn stopped(&self) -> Result<(), Error> {
        self.done_rx.recv().await.unwrap_or(Ok(()))
    }

    /// Blocks until the node has stopped and its threads have ended.
    pub fn wait(self) -> Result<(), Error> {
        let result = smol::block_on(self.stopped());
        for t in self.threads {
            let _ = t.join();
        }
        result
    }
}

fn bind(addr: SocketAddr) -> Result<(Async<TcpListener>, SocketAddr), Error> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::Io(format!("binding {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Io("local_addr".into(), e))?;
    let listener = Async::new(listener).map_err(|e| Error::Io("listener".into(), e))?;
    Ok((listener, bound))
}

/// The `[tls]` certificate, checked before anything listens: a missing or bad
/// file stops the start with the key and path named.
fn load_tls(config: &Config) -> Result<Option<TlsSlot>, Error> {
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        return Ok(None);
    };
    let slot = TlsSlot::load(cert, key).map_err(tls_error)?;
    log::info!("tls: certificate {} loaded", cert.display());
    Ok(Some(slot))
}

fn tls_error(e: TlsFileError) -> Error {
    Error::Config(ConfigError::File {
        key: e.key.to_string(),
        path: e.path,
        message: e.message,
    })
}

fn host_for(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// `server.workers`, or when 0: one worker on boxes with up to 2 cores (the
/// fan-out is I/O-bound and cross-thread wake-ups cost more than they save:
/// BENCHMARKS.md), else half the cores, at most 4.
fn worker_threads(configured: u32) -> usize {
    match configured {
        0 => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if cores <= 2 { 1 } else { (cores / 2).min(4) }
        }
        n => n as usize,
    }
}

fn hub_settings(config: &Config) -> HubSettings {
    HubSettings {
        debounce_ms: config.votes.debounce.as_millis() as u64,
        bucket_capacity: config.votes.bucket_capacity as f64,
        bucket_refill_per_minute: config.votes.bucket_refill_per_minute as f64,
        max_per_broadcaster: config.limits.max_overlays_per_broadcaster as usize,
        outbox: config.limits.outbox_messages as usize,
    }
}

/// Seeds home-mode channels from the config file, then loads every streamer
/// with the vote log it had before the restart.
async fn load_channels(app: &App) -> Result<(), Error> {
    app.db.set_node_id(app.state.node_id());
    // In a cluster every node creates a config-file channel with the same token.
    let secret = app
        .config
        .mesh
        .listen
        .and(app.config.mesh.secret.as_deref());
    for seed in &app.config.channels {
        let token = secret.map(|s| crate::replica::seed_token(s, &seed.login));
        app.db.upsert_seed(&seed.login, &seed.config, token).await?;
    }
    let mut logs: std::collections::HashMap<String, Vec<u8>> =
        app.state.load_vote_logs().await?.into_iter().collect();
    let now = now_ms();
    for (streamer, config) in app.db.streamers().await? {
        let log = logs
            .remove(&streamer.login)
            .and_then(|bytes| match VoteLog::decode(&bytes) {
                Ok(log) => Some(log),
                Err(e) => {
                    log::warn!(
                        "vote log of {} unreadable ({e}); starting it empty",
                        streamer.login
                    );
                    None
                }
            });
        app.hub.add_channel(streamer, config, log, now);
    }
    Ok(())
}

/// What [`run`] accepts on: `server.listen`, and the plain-HTTP redirect
/// listener of `tls.redirect_listen`.
struct Listeners {
    main: Async<TcpListener>,
    https_port: u16,
    redirect: Option<Async<TcpListener>>,
}

async fn run(
    ex: Arc<Executor<'static>>,
    app: Arc<App>,
    listeners: Listeners,
    stop: Receiver<()>,
    mode: Mode,
    peers_changed: Option<Receiver<()>>,
) -> Result<(), Error> {
    let cluster = peers_changed.map(|rx| {
        (
            ex.spawn(presence_loop(Arc::clone(&app))),
            ex.spawn(peers_loop(Arc::clone(&app), rx)),
        )
    });
    let accept = ex.spawn(accept_loop(
        Arc::clone(&ex),
        Arc::clone(&app),
        listeners.main,
    ));
    let redirect = listeners.redirect.map(|l| {
        let port = listeners.https_port;
        ex.spawn(redirect_loop(Arc::clone(&ex), Arc::clone(&app), l, port))
    });
    let tick = ex.spawn(tick_loop(Arc::clone(&app)));
    let flush = ex.spawn(flush_loop(Arc::clone(&app)));
    let health = ex.spawn(health_loop(Arc::clone(&app)));
    let demo =
        (mode == Mode::Demo).then(|| ex.spawn(crate::chat::demo::demo_loop(Arc::clone(&app))));
    let source = crate::chat::spawn_source(&ex, &app);

    let _ = stop.recv().await;
    log::info!("shutdown: readiness now 503");
    app.start_draining();
    if let Some(mesh) = app.hub.detach_mesh() {
        mesh.depart().await;
    }
    if let Some((presence, peers)) = cluster {
        presence.cancel().await;
        peers.cancel().await;
    }
    let cfg = &app.config.shutdown;
    if !cfg.drain_delay.is_zero() {
        log::info!(
            "shutdown: waiting drain_delay {:?} for load balancers",
            cfg.drain_delay
        );
        Timer::after(cfg.drain_delay).await;
    }
    accept.cancel().await;
    if let Some(redirect) = redirect {
        redirect.cancel().await;
    }
    if let Some(demo) = demo {
        demo.cancel().await;
    }
    if let Some(source) = source {
        source.cancel().await;
    }
    log::info!("shutdown: listener closed; closing overlays with 1001");
    app.close_connections();
    app.hub.close_all(1001, "server shutting down");
    let deadline = Instant::now() + cfg.timeout;
    while (app.inflight() > 0 || app.metrics.ws_connections_current.get() > 0)
        && Instant::now() < deadline
    {
        Timer::after(DRAIN_POLL).await;
    }
    if app.inflight() > 0 {
        log::warn!(
            "shutdown: {} requests still in flight after {:?}",
            app.inflight(),
            cfg.timeout
        );
    }
    tick.cancel().await;
    health.cancel().await;
    flush.cancel().await;
    flush_once(&app).await;
    log::info!("shutdown: stores flushed; bye");
    Ok(())
}

async fn accept_loop(ex: Arc<Executor<'static>>, app: Arc<App>, listener: Async<TcpListener>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let plain = app.tls.is_none();
                let Some(permit) = crate::http::admit(&app, &stream, peer, plain) else {
                    continue;
                };
                let _ = stream.get_ref().set_nodelay(true);
                let stream = smol::net::TcpStream::from(stream);
                ex.spawn(crate::http::serve_accepted(
                    Arc::clone(&app),
                    stream,
                    peer,
                    permit,
                ))
                .detach();
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                log::warn!("accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The plain-HTTP listener of `tls.redirect_listen`: 301 to HTTPS.
async fn redirect_loop(
    ex: Arc<Executor<'static>>,
    app: Arc<App>,
    listener: Async<TcpListener>,
    https_port: u16,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(permit) = crate::http::admit(&app, &stream, peer, true) else {
                    continue;
                };
                let stream = smol::net::TcpStream::from(stream);
                let serve = crate::http::redirect::serve_redirect(
                    Arc::clone(&app),
                    stream,
                    peer,
                    https_port,
                );
                ex.spawn(async move {
                    serve.await;
                    drop(permit);
                })
                .detach();
            }
            Err(e) => {
                log::warn!("accept (redirect listener) failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn tick_loop(app: Arc<App>) {
    loop {
        app.hub.tick(now_ms());
        app.hub.forward_tick();
        Timer::after(TICK_EVERY).await;
    }
}

async fn flush_loop(app: Arc<App>) {
    loop {
        Timer::after(FLUSH_EVERY).await;
        flush_once(&app).await;
    }
}

async fn flush_once(app: &App) {
    let logs = app.hub.take_dirty_logs();
    if logs.is_empty() {
        return;
    }
    let started = Instant::now();
    let logins: Vec<String> = logs.iter().map(|(l, _)| l.clone()).collect();
    let result = app.state.save_vote_logs(logs).await;
    app.metrics
        .observe_store_flush(result.is_ok(), started.elapsed().as_secs_f64());
    // Logs that failed stay dirty, so the next round retries (and clears the
    // fault). The log hears of it through `note_write`: once, not every second.
    if result.is_err() {
        app.hub.mark_dirty(&logins);
    }
    app.note_write("state", result.map_err(|e| e.to_string()));
}

/// Store health every `HEALTH_EVERY`; the allocator's trim every `TRIM_EVERY`.
async fn health_loop(app: Arc<App>) {
    let mut trimmed = Instant::now();
    loop {
        let sqlite = app.db.ping().await.map_err(|e| ("sqlite", e.to_string()));
        let state = app.state.ping().await.map_err(|e| ("state", e.to_string()));
        app.set_store_fault(sqlite.and(state).err());
        // A failed save is not retried: a probe write finds out when SQLite writes again.
        if app.write_failed("sqlite") {
            let probe = app.db.probe_write().await.map_err(|e| e.to_string());
            app.note_write("sqlite", probe);
        }
        if trimmed.elapsed() >= TRIM_EVERY {
            // Off the executor thread: it holds the allocator's lock for milliseconds.
            smol::unblock(crate::malloc::trim).await;
            trimmed = Instant::now();
        }
        Timer::after(HEALTH_EVERY).await;
    }
}
