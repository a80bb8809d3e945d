//! The mesh: nodes that list each other under `[mesh]` form one cluster, so an
//! overlay on any node shows the same bar and a vote arriving anywhere counts once.
//!
//! This module is the cluster *core*: membership, transport, ownership and the
//! replicated-state building blocks. What to replicate (vote logs, presence,
//! configs, token rotation, chat-source ownership) is decided by the application
//! through [`MeshHandler`] and [`Mesh::broadcast`] / [`Mesh::send`].
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | [`wire`] | the authenticated envelope, [`Frame`], keys from the secret (pure) |
//! | `fields` | [`Text`], [`Blob`], [`List`]: frame fields that check lengths before allocating |
//! | [`ring`] | rendezvous (HRW) hashing: who owns a key among live members (pure) |
//! | [`lww`] | the last-writer-wins map CRDT and its anti-entropy digest (pure) |
//! | [`swim`] | foca's identity and datagram codec (pure) |
//! | [`membership`] | SWIM via foca, sans-io: member states, events, timers, RTT |
//! | `peer` | one TCP connection: handshake, bounded writer, reader |
//! | `node` | what a running node's tasks share: member table, links, the send path |
//! | `loops` | the accept, membership and join loops |
//! | [`counters`] | the numbers behind the `mesh_*` metrics |
//!
//! # Algorithms
//!
//! SWIM membership and failure detection (foca: probes, indirect probes,
//! suspicion with incarnations, piggybacked gossip); state-based CRDTs for
//! replicated state (`VoteLog::merge`, [`lww::LwwMap`]); digest-based
//! anti-entropy ([`Frame::Digest`]); rendezvous hashing for ownership.
//!
//! # Security and limits
//!
//! Every frame carries an HMAC-SHA256 tag keyed from the shared secret and bound
//! to its connection and position (a challenge-response handshake, then a session
//! key and implicit sequence numbers): a node without the secret is refused at
//! its first frame, learns nothing but a random nonce (not even our node id) and
//! changes nothing, and recorded frames cannot be replayed. Frames are not
//! encrypted unless `[mesh] tls_*` is set: then every connection is mutual TLS
//! 1.3 with certificates from one private CA ([`MeshTls`]), under the same
//! authenticated frames. Frames
//! are capped ([`wire::MAX_FRAME`], and 4 KiB before the handshake, with at most
//! 64 handshakes at once); garbage ends the connection and is counted. Each peer
//! has a bounded queue; a peer that does not keep up is dropped, never waited for.
//!
//! # Using it
//!
//! ```text
//! let mesh = Mesh::start(config, state.node_id(), handler, &executor)?;
//! mesh.owner("alice")                 // who counts alice's votes (HRW over live members)
//! mesh.send(owner, &Frame::ChatForward { .. })   // never waits
//! mesh.broadcast(&Frame::VoteLog { .. })         // never waits
//! handler.on_member(MemberEvent::Joined / Left / Failed / LinkUp)  // resync, move owners
//! mesh.leave().await                  // graceful: owners move at once everywhere
//! ```

pub mod counters;
mod fields;
mod loops;
pub mod lww;
pub mod membership;
mod node;
mod peer;
pub mod ring;
pub mod swim;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smol::Executor;
use smol::net::TcpListener;

pub use counters::MeshCounters;
pub use membership::{MemberEvent, MemberInfo, MemberState, SwimTiming};
pub use peer::MeshTls;
pub use wire::{Blob, Frame, FrameKind, List, MeshKey, PresenceEntry, Text, WireError};

use crate::sentiment::NodeId;
use membership::Membership;
use node::{Input, Shared};
use swim::Ident;

/// A shorter secret could be guessed offline from one captured frame.
pub const MIN_SECRET_LEN: usize = 16;
/// Frames queued per peer before it counts as slow and is dropped: seconds of
/// vote deltas at 20 updates/s for dozens of broadcasters.
pub const DEFAULT_PEER_QUEUE: usize = 1024;
/// The redb meta key the wiring stores learned members under ([`encode_peers`]).
pub const PEERS_META_KEY: &str = "mesh_peers";
/// A graceful leave waits at most this long for its `Leave` frames to go out.
const LEAVE_FLUSH: Duration = Duration::from_secs(1);

/// `[mesh]` as the core needs it.
#[derive(Clone)]
pub struct MeshConfig {
    pub listen: SocketAddr,
    /// The address other nodes dial; defaults to `listen`, required when that is 0.0.0.0.
    pub advertise: Option<SocketAddr>,
    /// Any one live seed is enough to join: `ip:port`, or `name:port` resolved
    /// at each attempt (every address it stands for is tried). Include learned
    /// members from redb.
    pub seeds: Vec<String>,
    pub secret: String,
    pub timing: SwimTiming,
    /// Frames queued per peer ([`DEFAULT_PEER_QUEUE`]).
    pub peer_queue: usize,
    /// Mutual TLS on every mesh connection (`[mesh] tls_*`); `None`: plain TCP.
    pub tls: Option<MeshTls>,
}

impl MeshConfig {
    pub fn new(
        listen: SocketAddr,
        seeds: impl IntoIterator<Item = impl ToString>,
        secret: impl Into<String>,
    ) -> Self {
        MeshConfig {
            listen,
            advertise: None,
            seeds: seeds.into_iter().map(|s| s.to_string()).collect(),
            secret: secret.into(),
            timing: SwimTiming::default(),
            peer_queue: DEFAULT_PEER_QUEUE,
            tls: None,
        }
    }
}

impl std::fmt::Debug for MeshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConfig")
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("secret", &"<redacted>")
            .field("timing", &self.timing)
            .field("peer_queue", &self.peer_queue)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The application's side of the mesh. Both methods run on mesh tasks (a peer's
/// reader, the membership loop): they must return quickly and never block, e.g.
/// take a short lock or `try_send` into the application's own bounded queue.
pub trait MeshHandler: Send + Sync + 'static {
    /// An application frame (never `Hello`, `Swim` or `Leave`) from node `from`.
    fn on_frame(&self, from: NodeId, frame: Frame);
    /// Membership changed, or a link came up and its peer wants a resync.
    fn on_member(&self, event: MemberEvent);
}

/// Why [`Mesh::send`] did not queue a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Not a live member.
    Unknown,
    /// Its connection is down and will be redialed shortly; the frame is dropped.
    Unreachable,
    /// Its queue was full: the peer was dropped and will resync on reconnect.
    Full,
    /// The frame is over [`wire::MAX_FRAME`].
    TooBig(WireError),
}

/// A running mesh node. Dropping it stops every task and closes every socket
/// at once (a crash, as far as peers can tell); [`Mesh::leave`] is the polite way.
pub struct Mesh {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    advertised: SocketAddr,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Mesh {
    /// Binds `config.listen` and starts the loops on `ex`. `node` is the id from
    /// redb (`State::node_id`). Returns once listening; joining happens in the
    /// background (watch [`Mesh::members`] or [`MemberEvent::Joined`]).
    pub fn start(
        config: MeshConfig,
        node: NodeId,
        handler: Arc<dyn MeshHandler>,
        ex: &Arc<Executor<'static>>,
    ) -> io::Result<Mesh> {
        if config.secret.len() < MIN_SECRET_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mesh secret must be at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        let listener = std::net::TcpListener::bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        let advertised = config.advertise.unwrap_or(local_addr);
        if advertised.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mesh listens on {local_addr}: set an advertise address other nodes can dial"
                ),
            ));
        }
        let listener = TcpListener::try_from(listener)?;
        let me = Ident {
            node,
            addr: advertised,
            generation: unix_ms(),
        };
        let swim = Membership::new(me.clone(), config.timing, node ^ me.generation);
        let (swim_tx, swim_rx) = loops::swim_channel();
        let key = MeshKey::derive(&config.secret);
        let shared = Arc::new(Shared::new(
            node,
            key,
            config.seeds.clone(),
            config.peer_queue,
            handler,
            config.tls.clone(),
            ex,
            swim_tx,
        ));
        shared.view().me = Some(me);
        shared.spawn(loops::accept_loop(Arc::clone(&shared), listener));
        shared.spawn(loops::membership_loop(Arc::clone(&shared), swim, swim_rx));
        shared.spawn(loops::join_loop(Arc::clone(&shared)));
        log::info!(
            "mesh: node {node:016x} listening on {local_addr} (advertised as {advertised}), {} seeds",
            config.seeds.len()
        );
        Ok(Mesh {
            shared,
            local_addr,
            advertised,
        })
    }

    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// The bound address (the real port when `listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    pub fn counters(&self) -> &Arc<MeshCounters> {
        &self.shared.counters
    }

    /// Every known member, this node first (always alive, no RTT).
    pub fn members(&self) -> Vec<MemberInfo> {
        let view = self.shared.view();
        let me = view.me.as_ref().map(|me| MemberInfo {
            node: me.node,
            addr: me.addr,
            state: MemberState::Alive,
            incarnation: 0,
            generation: me.generation,
            rtt: None,
        });
        me.into_iter().chain(view.members.iter().cloned()).collect()
    }

    /// Live members (alive or suspect), this node included, sorted by id.
    pub fn live(&self) -> Vec<NodeId> {
        let mut live: Vec<NodeId> = self.shared.view().live.keys().copied().collect();
        live.push(self.shared.node);
        live.sort_unstable();
        live
    }

    /// The live member that owns `key` (rendezvous hashing; this node when alone).
    pub fn owner(&self, key: &str) -> NodeId {
        ring::owner(key, &self.live()).unwrap_or(self.shared.node)
    }

    /// Queues `frame` for every live member; returns how many took it. Never waits:
    /// a member whose queue is full is dropped (and counted) instead.
    pub fn broadcast(&self, frame: &Frame) -> Result<usize, WireError> {
        self.shared.broadcast(frame)
    }

    /// Queues `frame` for one live member. Never waits.
    pub fn send(&self, node: NodeId, frame: &Frame) -> Result<(), SendError> {
        let peer = self.shared.view().live.get(&node).cloned();
        let peer = peer.ok_or(SendError::Unknown)?;
        let bytes = wire::encode(frame).map_err(SendError::TooBig)?;
        self.shared.enqueue(&peer, bytes.into())?;
        self.shared.counters.frame_out(frame.kind());
        Ok(())
    }

    /// Addresses of the live members: what the wiring persists (under
    /// [`PEERS_META_KEY`], via [`encode_peers`]) so a rebooted node can rejoin
    /// even if its configured seeds are down.
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.shared.view().live.values().map(|i| i.addr).collect();
        addrs.sort_unstable();
        addrs
    }

    /// Leaves gracefully: every member hears `Leave` (so owners move at once, not
    /// after failure detection), SWIM gossips it too, the frames are flushed (for
    /// at most a second), then everything stops.
    pub async fn leave(self) {
        self.depart().await;
    }

    /// [`Mesh::leave`] through a shared handle (the application keeps the mesh
    /// in an `Arc`): afterwards every task is stopped and every socket closed;
    /// later sends fail as `Unknown`/`Unreachable`. Idempotent.
    pub async fn depart(&self) {
        let (ack, done) = smol::channel::bounded(1);
        if self.shared.swim_tx.send(Input::Leave(ack)).await.is_ok() {
            let _ = done.recv().await;
        }
        self.flush(LEAVE_FLUSH).await;
        self.shared.shutdown.0.close();
        self.shared.close_links();
        log::info!("mesh: node {:016x} left the cluster", self.shared.node);
    }

    /// Waits until every link has written what it was given, or `limit`.
    async fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.shared.links_drained() && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.shared.shutdown.0.close();
        self.shared.close_links();
    }
}

/// Learned members as stored in redb: one address per line.
pub fn encode_peers(addrs: &[SocketAddr]) -> Vec<u8> {
    addrs
        .iter()
        .map(|a| format!("{a}\n"))
        .collect::<String>()
        .into_bytes()
}

/// The inverse of [`encode_peers`]; unreadable lines are skipped (it is a cache).
pub fn decode_peers(bytes: &[u8]) -> Vec<SocketAddr> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_peers_round_trip_and_junk_is_skipped() {
        let addrs: Vec<SocketAddr> = vec![
            "10.0.0.2:7946".parse().unwrap(),
            "[::1]:7000".parse().unwrap(),
        ];
        assert_eq!(decode_peers(&encode_peers(&addrs)), addrs);
        assert_eq!(
            decode_peers(b"nonsense\n10.0.0.3:1\n\xff\n"),
            vec!["10.0.0.3:1".parse().unwrap()]
        );
        assert!(decode_peers(b"").is_empty());
    }

    #[test]
    fn the_secret_is_never_printed() {
        let c = MeshConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            Vec::<String>::new(),
            "hunter2hunter2hunter2",
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
