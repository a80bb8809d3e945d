//! The services of one node, shared by every task through `Arc<App>`: config,
//! stores, the hub, limits, sign-in state, metrics, and the node's lifecycle flags
//! (started, draining, shutdown signal). Nothing here is global, so several nodes can
//! live in one test process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use smol::channel::{Receiver, Sender};

use crate::config::Config;
use crate::hub::Hub;
use crate::limits::{AddrSlots, ConnLimits};
use crate::metrics::Metrics;
use crate::store::sqlite::Db;
use crate::store::state::State;

/// Milliseconds since the Unix epoch that never run backwards ([`crate::clock`]).
pub fn now_ms() -> u64 {
    crate::clock::now_ms()
}

pub struct App {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub db: Db,
    pub state: State,
    pub hub: Hub,
    pub limits: Arc<ConnLimits>,
    /// Open connections that are not overlays, capped on accept.
    pub http_slots: Arc<AddrSlots>,
    /// Sessions, CSRF, request limits of the dashboard, Twitch sign-in.
    pub auth: crate::auth::Auth,
    /// The HTTPS certificate when `[tls]` is set; read per accept, swapped on reload.
    pub tls: Option<crate::tls::TlsSlot>,
    /// PostgreSQL's state when `[postgres] url` is set (`store::pg`).
    pub pg_status: crate::store::PgStatus,
    pub started: Instant,
    startup_done: AtomicBool,
    draining: AtomicBool,
    /// Never sent on; closed once at shutdown so every waiter wakes.
    shutdown_tx: Sender<()>,
    shutdown_rx: Receiver<()>,
    inflight: Arc<AtomicUsize>,
    /// First failing store check, refreshed by the health loop.
    store_fault: Mutex<Option<(&'static str, String)>>,
    /// Stores whose last write failed (a full or read-only disk), each until a
    /// write to it succeeds: a flush, a save, or the health loop's probe.
    write_faults: Mutex<crate::write_faults::WriteFaults>,
    /// EventSub webhook message ids seen in the last 10+ minutes (Twitch delivers
    /// at least once; a resend must not count twice).
    pub(crate) webhook_seen: Mutex<crate::chat::webhook::SeenIds>,
    /// The node's executor; weak, so the executor and the app do not keep each other alive.
    executor: OnceLock<Weak<smol::Executor<'static>>>,
    /// Capacity 1: "the channel list changed" for sources that otherwise re-read it
    /// only hourly (the webhook conduit); several changes make one wake-up.
    channels_changed_tx: Sender<()>,
    channels_changed_rx: Receiver<()>,
}

/// Counts a request in progress for the graceful-shutdown wait.
pub struct InflightGuard(Arc<AtomicUsize>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl App {
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        db: Db,
        state: State,
        hub: Hub,
        auth: crate::auth::Auth,
        tls: Option<crate::tls::TlsSlot>,
    ) -> Self {
        let l = &config.limits;
        let limits = ConnLimits::new(crate::limits::LimitSettings {
            max_connections: l.max_connections,
            max_per_ip: l.max_connections_per_ip,
            rate_per_ip: l.connection_rate_per_ip,
            burst_per_ip: l.connection_burst_per_ip,
        });
        let http_slots = AddrSlots::new(l.max_http_connections, l.max_http_connections_per_ip);
        let (shutdown_tx, shutdown_rx) = smol::channel::bounded(1);
        let (channels_changed_tx, channels_changed_rx) = smol::channel::bounded(1);
        App {
            config,
            metrics,
            db,
            state,
            hub,
            limits,
            http_slots,
            auth,
            tls,
            pg_status: Default::default(),
            started: Instant::now(),
            startup_done: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            shutdown_tx,
            shutdown_rx,
            inflight: Arc::new(AtomicUsize::new(0)),
            store_fault: Mutex::new(None),
            write_faults: Mutex::new(Default::default()),
            webhook_seen: Mutex::new(Default::default()),
            executor: OnceLock::new(),
            channels_changed_tx,
            channels_changed_rx,
        }
    }

    /// `https` when `[tls]` serves HTTPS directly, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Re-reads `[tls]` cert and key (SIGHUP). New connections get the new
    /// certificate; open ones keep theirs. On an error the old one stays.
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsFileError> {
        let Some(slot) = &self.tls else {
            log::info!("tls: not configured; nothing to reload");
            return Ok(());
        };
        match slot.reload() {
            Ok(()) => {
                log::info!("tls: certificate reloaded");
                Ok(())
            }
            Err(e) => {
                log::error!(
                    "tls: reload failed, keeping the old certificate: {} {}: {}",
                    e.key,
                    e.path.display(),
                    e.message
                );
                Err(e)
            }
        }
    }

    /// Serves a streamer who is not served yet (a first Twitch sign-in) and tells
    /// the chat source. A streamer already served is left alone: re-adding would
    /// drop its overlays and votes.
    pub fn serve_streamer(
        &self,
        streamer: crate::channel::Streamer,
        config: crate::channel::OverlayConfig,
    ) {
        if self.hub.config_of(&streamer.login).is_some() {
            return;
        }
        log::info!("now serving channel {}", streamer.login);
        self.hub.add_channel(streamer, config, None, now_ms());
        let _ = self.channels_changed_tx.try_send(());
    }

    /// The channels whose chat this node reads from an IRC or EventSub WebSocket
    /// source: all of them alone; in a cluster, those it owns (rendezvous hashing
    /// over the live members, as for counting), so each channel is read by one
    /// node and moves to another within seconds when its reader leaves or fails.
    pub fn chat_channels(&self) -> std::collections::BTreeSet<String> {
        let mesh = self.mesh();
        self.hub
            .streamers()
            .into_iter()
            .map(|s| s.login)
            .filter(|login| mesh.as_ref().is_none_or(|m| m.owner(login) == m.node()))
            .collect()
    }

    /// Receives a message after the channel list changed (see [`App::serve_streamer`]).
    pub fn channel_changes(&self) -> Receiver<()> {
        self.channels_changed_rx.clone()
    }

    pub(crate) fn set_executor(&self, ex: &Arc<smol::Executor<'static>>) {
        let _ = self.executor.set(Arc::downgrade(ex));
    }

    /// Runs `fut` as its own task on the node's executor (dropped if the node is gone).
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(ex) = self.executor.get().and_then(Weak::upgrade) {
            ex.spawn(fut).detach();
        }
    }

    /// The cluster this node is in (`[mesh]`), until it leaves at shutdown.
    pub fn mesh(&self) -> Option<Arc<crate::mesh::Mesh>> {
        self.hub.mesh()
    }

    pub fn shutdown_signal(&self) -> Receiver<()> {
        self.shutdown_rx.clone()
    }

    pub(crate) fn close_connections(&self) {
        self.shutdown_tx.close();
    }

    pub fn inflight_guard(&self) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(Arc::clone(&self.inflight))
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    pub fn is_started(&self) -> bool {
        self.startup_done.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_started(&self) {
        self.startup_done.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Sets or clears the fault `/health/ready` reports. The probe shows only a
    /// fixed sentence, so the detail is logged here, once per change.
    pub(crate) fn set_store_fault(&self, fault: Option<(&'static str, String)>) {
        let mut slot = self.store_fault.lock().unwrap_or_else(|e| e.into_inner());
        if *slot != fault {
            match &fault {
                Some((check, detail)) => log::error!("health: {check} check failed: {detail}"),
                None => log::info!("health: the stores answer again"),
            }
        }
        *slot = fault;
    }

    /// Records how a write to `store` ("sqlite" or "state") went. A failure keeps
    /// the node unready until that store writes again; the health loop's checks
    /// do not clear it.
    pub(crate) fn note_write(&self, store: &'static str, result: Result<(), String>) {
        let tell = self
            .write_faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(store, result, Instant::now());
        tell.log(store);
    }

    /// Whether the last write to `store` failed.
    pub(crate) fn write_failed(&self, store: &str) -> bool {
        let faults = self.write_faults.lock().unwrap_or_else(|e| e.into_inner());
        faults.failing(store)
    }

    /// `Ok` when this node should receive traffic; else the failed check.
    pub fn readiness(&self) -> Result<(), (&'static str, String)> {
        if !self.is_started() {
            return Err(("startup", "still starting".into()));
        }
        if self.is_draining() {
            return Err(("draining", "node is shutting down".into()));
        }
        if let Some(fault) = &*self.store_fault.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(fault.clone());
        }
        match self
            .write_faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
        {
            Some(fault) => Err(fault),
            None => Ok(()),
        }
    }

    /// The URL a streamer pastes into OBS. Uses `server.public_url` when set,
    /// else the Host the request came in on, else the listen address.
    pub fn overlay_url(&self, token: &str, host: Option<&str>) -> String {
        let scheme = self.scheme();
        let base = match (&self.config.server.public_url, host) {
            (Some(public), _) => public.trim_end_matches('/').to_string(),
            (None, Some(host)) => format!("{scheme}://{host}"),
            (None, None) => format!("{scheme}://{}", self.config.server.listen),
        };
        format!("{base}/overlay/{token}")
    }
}

/// Why a streamer-facing action failed.
#[derive(Debug)]
pub enum ActionError {
    UnknownChannel,
    Invalid(crate::channel::FieldError),
    /// The stored config is at this version, not the expected one.
    Conflict(i64),
    Store(crate::store::StoreError),
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionError::UnknownChannel => write!(f, "unknown channel"),
            ActionError::Invalid(e) => write!(f, "{e}"),
            ActionError::Conflict(v) => {
                write!(f, "the config was changed meanwhile (now version {v})")
            }
            ActionError::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for ActionError {}

impl App {
    fn streamer_id(&self, login: &str) -> Result<i64, ActionError> {
        self.hub
            .streamers()
            .into_iter()
            .find(|s| s.login == login)
            .map(|s| s.id)
            .ok_or(ActionError::UnknownChannel)
    }

    /// Validates, stores a new config version, and pushes it to every overlay.
    pub async fn save_config(
        &self,
        login: &str,
        config: crate::channel::OverlayConfig,
        actor: &str,
    ) -> Result<i64, ActionError> {
        self.save_config_if(login, config, None, actor).await
    }

    /// [`App::save_config`], refused with [`ActionError::Conflict`] unless the stored
    /// version is `expected_version` (when given): two dashboards cannot silently
    /// overwrite each other.
    pub async fn save_config_if(
        &self,
        login: &str,
        mut config: crate::channel::OverlayConfig,
        expected_version: Option<i64>,
        actor: &str,
    ) -> Result<i64, ActionError> {
        config.normalize();
        config.validate().map_err(ActionError::Invalid)?;
        let id = self.streamer_id(login)?;
        let saved = self
            .db
            .save_config(id, &config, expected_version, actor)
            .await;
        let version = match saved {
            Ok(version) => version,
            Err(crate::store::StoreError::Conflict { current }) => {
                return Err(ActionError::Conflict(current));
            }
            Err(e) => {
                self.note_write("sqlite", Err(e.to_string()));
                return Err(ActionError::Store(e));
            }
        };
        self.note_write("sqlite", Ok(()));
        self.hub.update_config(login, config, version, now_ms());
        log::info!("config of {login} saved by {actor} (version {version})");
        crate::replica::publish(self, login).await;
        Ok(version)
    }

    /// Clears the vote log and pushes the centered bar at once.
    pub async fn reset(&self, login: &str, actor: &str) -> Result<(), ActionError> {
        let id = self.streamer_id(login)?;
        self.hub.reset(login, now_ms());
        self.db
            .audit(actor, "reset", Some(id), "")
            .await
            .map_err(ActionError::Store)?;
        log::info!("votes of {login} reset by {actor}");
        Ok(())
    }

    /// A new overlay token; the old URL's live overlays are closed with 4404.
    pub async fn rotate_token(&self, login: &str, actor: &str) -> Result<String, ActionError> {
        let id = self.streamer_id(login)?;
        let token = self
            .db
            .rotate_token(id, actor)
            .await
            .map_err(ActionError::Store)?;
        self.hub.rotate_token(login, token.clone());
        log::info!("overlay URL of {login} rotated by {actor}");
        crate::replica::publish(self, login).await;
        Ok(token)
    }
}
