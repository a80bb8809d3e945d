//! The state one running mesh node shares between its tasks ([`Shared`]): the
//! member table the membership loop publishes ([`View`]), and the outbound links.
//!
//! Owns the send path, which never waits: a frame is encoded once and
//! `try_send`-ed into each peer's bounded queue (each link tags it with its own
//! session key); a full queue drops that peer's link (counted) and the next send
//! redials it, after which the application hears `LinkUp` and resyncs it.
//!
//! Every task is spawned through [`Shared::spawn`] and stops when the mesh's
//! shutdown channel closes (dropping [`super::Mesh`]); a link's task also stops
//! when its entry leaves the table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use smol::Executor;
use smol::channel::{self, Receiver, Sender, TrySendError};
use smol::future::FutureExt;
use smol::net::TcpStream;

use super::counters::MeshCounters;
use super::membership::{MemberEvent, MemberInfo};
use super::peer::{self, MeshStream, MeshTls};
use super::swim::Ident;
use super::wire::{self, Blob, Frame, MeshKey};
use super::{MeshHandler, SendError};
use crate::sentiment::NodeId;

/// Connections still in their handshake at once; past this new ones are closed
/// at once (and counted), so a flood of idle sockets cannot pin memory or tasks.
const MAX_HANDSHAKES: u32 = 64;
/// The same from one address: a flood from one host leaves room for real peers.
const MAX_HANDSHAKES_PER_IP: u32 = 8;
/// A link whose connection failed is not redialed sooner than this: frames for it
/// are dropped meanwhile, so an unreachable member costs at most 4 dials a second.
const REDIAL_GAP: Duration = Duration::from_millis(250);

/// What the membership loop is asked to do.
pub(crate) enum Input {
    Datagram(Vec<u8>),
    Announce(Ident),
    PeerLeft { node: NodeId, generation: u64 },
    Leave(Sender<()>),
}

/// The member table as last published by the membership loop.
#[derive(Default)]
pub(crate) struct View {
    pub me: Option<Ident>,
    pub members: Vec<MemberInfo>,
    /// Alive or suspect members other than this node, by id.
    pub live: HashMap<NodeId, Ident>,
}

/// One outbound connection: dropping it stops its task.
struct Link {
    addr: SocketAddr,
    queue: Sender<Arc<[u8]>>,
    /// Frames queued but not yet written to the socket.
    pending: Arc<AtomicUsize>,
    started: Instant,
    /// The connected socket (a clone), once the handshake is done: lets
    /// [`Shared::abort_link`] reset it instead of closing it politely.
    socket: Arc<Mutex<Option<TcpStream>>>,
    _stop: Sender<()>,
}

pub(crate) struct Shared {
    pub node: NodeId,
    pub key: MeshKey,
    pub seeds: Vec<String>,
    pub queue_len: usize,
    pub handler: Arc<dyn MeshHandler>,
    pub counters: Arc<MeshCounters>,
    /// Mutual TLS on every connection when `[mesh] tls_*` is set.
    pub tls: Option<MeshTls>,
    pub ex: Weak<Executor<'static>>,
    pub view: Mutex<View>,
    links: Mutex<HashMap<NodeId, Link>>,
    /// Accepted connections still in their handshake, overall and per address.
    pub handshaking: Arc<crate::limits::AddrSlots>,
    pub swim_tx: Sender<Input>,
    /// Never sent on; closed once when the mesh stops.
    pub shutdown: (Sender<()>, Receiver<()>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeId,
        key: MeshKey,
        seeds: Vec<String>,
        queue_len: usize,
        handler: Arc<dyn MeshHandler>,
        tls: Option<MeshTls>,
        ex: &Arc<Executor<'static>>,
        swim_tx: Sender<Input>,
    ) -> Shared {
        Shared {
            node,
            key,
            seeds,
            queue_len: queue_len.max(2),
            handler,
            counters: Arc::new(MeshCounters::new()),
            tls,
            ex: Arc::downgrade(ex),
            view: Mutex::new(View::default()),
            links: Mutex::new(HashMap::new()),
            handshaking: crate::limits::AddrSlots::new(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_IP),
            swim_tx,
            shutdown: channel::bounded(1),
        }
    }

    pub fn view(&self) -> MutexGuard<'_, View> {
        lock(&self.view)
    }

    pub fn me(&self) -> Option<Ident> {
        self.view().me.clone()
    }

    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(ex) = self.ex.upgrade() {
            let stop = self.shutdown.1.clone();
            ex.spawn(fut.or(async move {
                let _ = stop.recv().await;
            }))
            .detach();
        }
    }

    /// Queues an encoded frame ([`wire::encode`]) for `peer`, dialing it first if
    /// there is no live link. Never waits.
    pub fn enqueue(self: &Arc<Self>, peer: &Ident, encoded: Arc<[u8]>) -> Result<(), SendError> {
        let mut links = lock(&self.links);
        let reusable = links.get(&peer.node).is_some_and(|l| {
            l.addr == peer.addr && (!l.queue.is_closed() || l.started.elapsed() < REDIAL_GAP)
        });
        if !reusable {
            let link = self.open_link(peer.clone(), None);
            links.insert(peer.node, link);
        }
        let Some(link) = links.get(&peer.node) else {
            return Err(SendError::Unknown);
        };
        // Counted before the writer can see it, so the count never goes below zero.
        link.pending.fetch_add(1, Ordering::SeqCst);
        let sent = link.queue.try_send(encoded);
        if sent.is_err() {
            link.pending.fetch_sub(1, Ordering::SeqCst);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => {
                self.counters.frames_dropped.inc();
                Err(SendError::Unreachable)
            }
            Err(TrySendError::Full(_)) => {
                links.remove(&peer.node);
                self.counters.slow_peer_drops.inc();
                log::warn!(
                    "mesh: dropped node {:016x}: {} frames queued, it is not reading; it will be redialed and resynced",
                    peer.node,
                    self.queue_len
                );
                Err(SendError::Full)
            }
        }
    }

    /// A new outbound link; `connected` is a stream already past the handshake
    /// and its session key (a seed we just dialed), else the task dials `peer.addr`.
    fn open_link(self: &Arc<Self>, peer: Ident, connected: Option<(MeshStream, MeshKey)>) -> Link {
        let (queue, rx) = channel::bounded(self.queue_len);
        let (stop, stopped) = channel::bounded::<()>(1);
        let pending = Arc::new(AtomicUsize::new(0));
        let shared = Arc::clone(self);
        let addr = peer.addr;
        let written = Arc::clone(&pending);
        let socket = Arc::new(Mutex::new(None));
        let held = Arc::clone(&socket);
        self.spawn(async move {
            let run = outbound(Arc::clone(&shared), peer, connected, rx, written, held);
            run.or(async move {
                let _ = stopped.recv().await;
            })
            .await;
        });
        Link {
            addr,
            queue,
            pending,
            started: Instant::now(),
            socket,
            _stop: stop,
        }
    }

    /// Drops the link to a member that failed or left, abortively: a reset
    /// discards whatever it still had queued in the kernel, so after a partition
    /// heals no stale frame (a chat line this node has since counted elsewhere)
    /// can reach it. The next send dials afresh.
    pub fn abort_link(&self, node: NodeId) {
        let Some(link) = lock(&self.links).remove(&node) else {
            return;
        };
        if let Some(stream) = lock(&link.socket).take() {
            let fd = std::os::fd::AsFd::as_fd(&stream);
            if let Err(e) = rustix::net::sockopt::set_socket_linger(fd, Some(Duration::ZERO)) {
                log::debug!("mesh: SO_LINGER on the link to {node:016x}: {e}");
            }
        }
    }

    /// Installs a connection to a seed that already completed its handshake.
    pub fn adopt(self: &Arc<Self>, peer: Ident, stream: MeshStream, session: MeshKey) {
        let link = self.open_link(peer.clone(), Some((stream, session)));
        lock(&self.links).insert(peer.node, link);
    }

    /// Stops every link (their tasks end, their sockets close).
    pub fn close_links(&self) {
        lock(&self.links).clear();
    }

    /// True once every working link has written all it was given (graceful leave).
    pub fn links_drained(&self) -> bool {
        lock(&self.links)
            .values()
            .all(|l| l.queue.is_closed() || l.pending.load(Ordering::SeqCst) == 0)
    }

    /// Encodes `frame` once and queues it for every live member. Returns how many took it.
    pub fn broadcast(self: &Arc<Self>, frame: &Frame) -> Result<usize, wire::WireError> {
        let bytes: Arc<[u8]> = wire::encode(frame)?.into();
        let peers: Vec<Ident> = self.view().live.values().cloned().collect();
        let mut sent = 0;
        for peer in &peers {
            if self.enqueue(peer, Arc::clone(&bytes)).is_ok() {
                self.counters.frame_out(frame.kind());
                sent += 1;
            }
        }
        Ok(sent)
    }

    pub fn send_swim(self: &Arc<Self>, to: &Ident, datagram: Vec<u8>) {
        let frame = Frame::Swim(Blob(datagram));
        match wire::encode(&frame) {
            Ok(bytes) => {
                if self.enqueue(to, bytes.into()).is_ok() {
                    self.counters.frame_out(frame.kind());
                }
            }
            Err(e) => log::warn!("mesh: swim datagram not sent: {e}"),
        }
    }
}

/// Dial (unless already connected), handshake, then write the queue.
async fn outbound(
    shared: Arc<Shared>,
    peer: Ident,
    connected: Option<(MeshStream, MeshKey)>,
    queue: Receiver<Arc<[u8]>>,
    written: Arc<AtomicUsize>,
    held: Arc<Mutex<Option<TcpStream>>>,
) {
    let (stream, session) = match connected {
        Some(connected) => connected,
        None => {
            let Some(me) = shared.me() else { return };
            match peer::dial(peer.addr, &shared.key, &me, shared.tls.as_ref()).await {
                Ok((stream, found, session)) if found.node == peer.node => (stream, session),
                Ok((_, found, _)) => {
                    shared.counters.dial_failures.inc();
                    log::warn!(
                        "mesh: {} answered as node {:016x}, expected {:016x}",
                        peer.addr,
                        found.node,
                        peer.node
                    );
                    return;
                }
                Err(e) => {
                    let (node, addr) = (peer.node, peer.addr);
                    if peer::note_dial_failure(&shared.counters, &e) {
                        log::warn!("mesh: dialing {node:016x} at {addr} failed: {e}");
                    } else {
                        log::debug!("mesh: dialing {node:016x} at {addr} failed: {e}");
                    }
                    return;
                }
            }
        }
    };
    *lock(&held) = Some(stream.tcp().clone());
    shared.counters.connections.inc();
    shared.handler.on_member(MemberEvent::LinkUp(peer.node));
    if let Err(e) = peer::write_loop(stream, session, queue, written).await {
        log::debug!("mesh: link to {:016x} ended: {e}", peer.node);
    }
    shared.counters.connections.dec();
}
