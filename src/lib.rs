//! ChatPulse: a Twitch chat vote bar for OBS, as one self-contained binary.
//!
//! Chat arrives from a source, is matched against the streamer's triggers,
//! counted in a per-broadcaster vote log, and pushed to every overlay page
//! connected over WebSocket. Durable data lives in SQLite, runtime state in
//! redb; nothing else is needed to run.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | command line → a command to run; signal handling; `mesh status` (`cli/mesh_status.rs`) |
//! | [`doctor`] | `chatpulse doctor URL`: the load-balancer guide's checklist against a deployment, with fixes |
//! | [`config`] | TOML file + `CHATPULSE_*` env → validated [`config::Config`] |
//! | [`logger`] | the `log` backend (text or JSON lines on stderr) |
//! | [`malloc`] | the allocator: one glibc arena, free pages returned once a minute (flat RSS under a steady load), heap bytes for `/metrics` |
//! | [`server`] | a node's lifecycle: startup story, loops, graceful shutdown; `server/cluster.rs`: joining the mesh, presence, the PostgreSQL thread |
//! | [`app`] | the services of one node, shared by `Arc<App>` |
//! | [`write_faults`] | failed writes per store: readiness until a write succeeds; the log told once, reminded once a minute, told of the end |
//! | [`clock`] | wall-clock milliseconds that never run backwards (clock steps back: half speed until caught up) |
//! | [`bench`] | the load tool behind `chatpulse-bench` (IRC feed, overlay clients, report; `partition`: nodes in network namespaces of its own (`netlab`), split or killed and healed; `floor`: one loopback write's cost; `soak`: 10 000 sockets × 2 000 votes/s for 10 min, RSS and fds sampled) |
//! | [`http`] | HTTP/1.1: head parsing (pure), responses, the route table; sign-in and dashboard handlers |
//! | [`auth`] | dashboard sign-in: admin password, Twitch OAuth, signed sessions, CSRF, per-IP request limits, token encryption |
//! | [`frame`] | the overlay's JSON frame, encoded by hand (pure) |
//! | [`ws`] | one overlay WebSocket: outbox writer, pings, close codes |
//! | [`rng`] | xorshift64 for jitter, demo chatters and property tests (no security role) |
//! | [`outbox`] | the small bounded queue between the hub and one overlay's writer |
//! | [`hub`] | broadcasters, their overlays and fan-out; the chat entry point [`hub::Hub::chat`]; in a cluster (`hub/cluster.rs`): vote forwarding to owners (acknowledged, `hub/forward.rs`), vote-log replication, presence |
//! | [`sentiment`] | votes: trigger match, vote-log CRDT, window and decay views, debounce, token bucket (pure) |
//! | [`channel`] | a streamer's overlay settings and their validation |
//! | [`limits`] | admission: overlay WebSockets (per-IP rate, global and per-IP caps), open HTTP connections and mesh handshakes (overall and per-address slots) |
//! | [`chat`] | chat sources (demo, IRC, EventSub WebSocket, EventSub webhooks), all feeding [`hub::Hub::chat`] |
//! | [`store`] | `sqlite` (streamers, configs, audit; `sqlite/replica.rs`: rows as mesh LWW records) and `state` (redb: vote logs, node id) |
//! | [`replica`] | streamers and configs across the mesh: LWW records, digests on link-up, seed tokens from the mesh secret |
//! | [`mesh`] | the cluster core: SWIM membership (foca), authenticated frames, rendezvous ownership, LWW CRDT; started by [`server`] when `[mesh] listen` is set |
//! | [`metrics`] | counters, histograms and the Prometheus text writer |
//! | [`tls`] | rustls (ring) on smol: client/server configs, the reloadable server certificate, plain-or-TLS streams |
//! | [`twitch`] | Twitch's HTTP APIs (OAuth, Helix) over a small HTTP/1.1 client |
//!
//! Assets (`assets/overlay.html`, `landing.html`, `login.html`, `dashboard.html`,
//! `error.html`) are embedded with `include_str!`.

pub mod app;
pub mod auth;
pub mod bench;
pub mod channel;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod frame;
pub mod http;
pub mod hub;
pub mod limits;
pub mod logger;
pub mod malloc;
pub mod mesh;
pub mod metrics;
pub mod outbox;
pub mod replica;
pub mod rng;
pub mod sentiment;
pub mod server;
pub mod store;
pub mod tls;
pub mod twitch;
pub mod write_faults;
pub mod ws;

pub use chat::ChatMessage;
pub use server::{Mode, Server};

/// Version facts baked in at build time (`/version`, `build_info`).
pub const BUILD: metrics::BuildInfo = metrics::BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: match option_env!("BUILD_GIT_COMMIT") {
        Some(c) => c,
        None => "unknown",
    },
    rustc: match option_env!("BUILD_RUSTC") {
        Some(c) => c,
        None => "unknown",
    },
};

/// Anything that stops a node from starting or running.
#[derive(Debug)]
pub enum Error {
    Config(config::ConfigError),
    Store(store::StoreError),
    /// A store file that could not be opened: the message names it.
    StoreFile(std::path::PathBuf, store::StoreError),
    Io(String, std::io::Error),
    Auth(auth::AuthError),
    Usage(String),
    /// A check command (`doctor`) found problems: exit non-zero, no more to say.
    Check(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "store: {e}"),
            Error::StoreFile(path, e) => write!(f, "opening {}: {e}", path.display()),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Auth(e) => write!(f, "auth: {e}"),
            Error::Usage(msg) | Error::Check(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Store(e) | Error::StoreFile(_, e) => Some(e),
            Error::Io(_, e) => Some(e),
            Error::Auth(e) => Some(e),
            Error::Usage(_) | Error::Check(_) => None,
        }
    }
}

impl From<config::ConfigError> for Error {
    fn from(e: config::ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<auth::AuthError> for Error {
    fn from(e: auth::AuthError) -> Self {
        Error::Auth(e)
    }
}

impl From<store::StoreError> for Error {
    fn from(e: store::StoreError) -> Self {
        Error::Store(e)
    }
}
