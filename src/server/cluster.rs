//! The node's cluster-facing parts: joining the mesh (`[mesh]`, learned peers,
//! mesh TLS), the presence and learned-peers loops, and the PostgreSQL sync
//! thread (`[postgres]`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::channel::Receiver;
use smol::{Executor, Timer};

use super::tls_error;
use crate::Error;
use crate::app::App;
use crate::config::{Config, ConfigError};
use crate::hub::ClusterHandler;
use crate::mesh::{Mesh, MeshConfig, PEERS_META_KEY, decode_peers, encode_peers};
use crate::metrics::MeshMemberState;

/// `[postgres] url` needs a binary built with the `postgres` feature.
pub(super) fn require_postgres_support(config: &Config) -> Result<(), Error> {
    if config.postgres.url.is_some() && !cfg!(feature = "postgres") {
        return Err(Error::Config(ConfigError::Invalid {
            key: "postgres.url".into(),
            value: "(set)".into(),
            expected: "a binary built with PostgreSQL support \
                       (cargo build --release --features postgres), or no postgres.url"
                .into(),
        }));
    }
    Ok(())
}

/// Starts the PostgreSQL sync thread when `[postgres] url` is set.
#[cfg(feature = "postgres")]
pub(super) fn start_postgres(app: &Arc<App>) -> Result<(), Error> {
    let Some(url) = app.config.postgres.url.clone() else {
        return Ok(());
    };
    let tls = crate::tls::client_config(app.config.twitch.ca_file.as_deref()).map_err(|e| {
        Error::Io(
            "PostgreSQL TLS".into(),
            std::io::Error::other(e.to_string()),
        )
    })?;
    crate::store::pg::start(Arc::clone(app), url, tls)
        .map_err(|e| Error::Io("starting the PostgreSQL thread".into(), e))?;
    log::info!("postgres: syncing streamers and configs (SQLite stays the local replica)");
    Ok(())
}

/// Joins the cluster when `[mesh] listen` is set: seeds are the configured ones
/// plus the members learned before a restart (redb). Returns the "membership
/// changed" signal the peers loop persists on.
pub(super) fn start_mesh(
    app: &Arc<App>,
    ex: &Arc<Executor<'static>>,
) -> Result<Option<Receiver<()>>, Error> {
    let cfg = &app.config.mesh;
    let (Some(listen), Some(secret)) = (cfg.listen, &cfg.secret) else {
        return Ok(None);
    };
    let learned = smol::block_on(app.state.get_meta(PEERS_META_KEY))?;
    let mut seeds = cfg.seeds.clone();
    for addr in learned.as_deref().map(decode_peers).unwrap_or_default() {
        if !seeds.contains(&addr.to_string()) && Some(addr) != cfg.advertise {
            seeds.push(addr.to_string());
        }
    }
    let mut mesh_config = MeshConfig::new(listen, seeds, secret.clone());
    mesh_config.advertise = cfg.advertise;
    mesh_config.tls = mesh_tls(cfg)?;
    let (tx, rx) = smol::channel::bounded(1);
    let handler = Arc::new(ClusterHandler::new(app, tx));
    let mesh = Mesh::start(mesh_config, app.state.node_id(), handler, ex)
        .map_err(|e| Error::Io(format!("starting the mesh on {listen}"), e))?;
    let _ = app.metrics.mesh.set(Arc::clone(mesh.counters()));
    log::info!(
        "mesh: listening on {} for cluster members",
        mesh.local_addr()
    );
    app.hub.attach_mesh(Arc::new(mesh));
    Ok(Some(rx))
}

/// `[mesh] tls_*` as the mesh needs it (checked at start: a bad file stops the
/// node with the key at fault, like `[tls]`).
fn mesh_tls(cfg: &crate::config::MeshSection) -> Result<Option<crate::mesh::MeshTls>, Error> {
    let (Some(cert), Some(key), Some(ca)) = (&cfg.tls_cert, &cfg.tls_key, &cfg.tls_ca) else {
        return Ok(None);
    };
    let (server, client) = crate::tls::mesh_configs(cert, key, ca).map_err(tls_error)?;
    let name = rustls_pki_types::ServerName::try_from(cfg.tls_name.clone()).map_err(|e| {
        Error::Config(ConfigError::File {
            key: "mesh.tls_name".into(),
            path: cert.clone(),
            message: e.to_string(),
        })
    })?;
    log::info!("mesh: mutual TLS, peers verified as {}", cfg.tls_name);
    Ok(Some(crate::mesh::MeshTls {
        server,
        client,
        name,
    }))
}

/// How often this node's overlay counts are compared with the last announced
/// ones: a change reaches the other nodes within this (the presence debounce).
const PRESENCE_CHECK: Duration = Duration::from_millis(250);

/// Announces this node's overlays on change and every `PRESENCE_EVERY`; refreshes
/// `mesh_members`.
pub(super) async fn presence_loop(app: Arc<App>) {
    let mut last: Option<(Vec<(String, u32)>, Instant)> = None;
    loop {
        if let Some(mesh) = app.hub.mesh() {
            let counts = app.hub.local_presence();
            let stale = last.as_ref().is_none_or(|(sent, at)| {
                *sent != counts || at.elapsed() >= crate::hub::PRESENCE_EVERY
            });
            if stale {
                let _ = mesh.broadcast(&app.hub.presence_frame(&counts));
                last = Some((counts, Instant::now()));
            }
            let members = mesh.members();
            for state in MeshMemberState::ALL {
                let n = members
                    .iter()
                    .filter(|m| m.state.as_str() == state.as_str())
                    .count();
                app.metrics.mesh_members.set(*state, n as i64);
            }
        }
        Timer::after(PRESENCE_CHECK).await;
    }
}

/// Remembers the live members in redb after each membership change, so a
/// restarted node can rejoin through them. An empty view is not saved: a node
/// that lost every peer keeps the addresses to knock on later.
pub(super) async fn peers_loop(app: Arc<App>, changed: Receiver<()>) {
    while changed.recv().await.is_ok() {
        let Some(mesh) = app.hub.mesh() else {
            return;
        };
        let addrs = mesh.peer_addrs();
        if addrs.is_empty() {
            continue;
        }
        if let Err(e) = app
            .state
            .set_meta(PEERS_META_KEY, &encode_peers(&addrs))
            .await
        {
            log::warn!("mesh: saving learned members failed: {e}");
        }
    }
}
