//! One mesh connection: the handshake, the writer that drains a peer's bounded
//! queue, and the reader that turns bytes into frames.
//!
//! Connections carry data one way. A node writes to a peer only on the connection
//! it dialed and reads only on connections it accepted: two nodes hold two
//! connections, nothing needs a tie-break when both dial at once, and a peer that
//! stops reading stalls only its own queue (which the mesh then drops).
//!
//! Handshake, all tagged with the key from the secret:
//!
//! ```text
//! acceptor → dialer   Challenge { nonce: a }
//! dialer → acceptor   Hello { node, addr, generation, nonce: d, echo: a }
//! acceptor → dialer   Hello { node, addr, generation, nonce: a, echo: d }
//! ```
//!
//! Each side checks length, version, tag, then content, and the echo proves the
//! `Hello` was made for this connection (a recorded one is refused). The dialer
//! speaks only after verifying the challenge, and the acceptor only answers a
//! verified `Hello`: a node without the secret, or of another protocol version,
//! learns nothing but a random nonce. Afterwards frames flow dialer → acceptor,
//! tagged with the connection's session key and their sequence number.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

/// A mesh connection: plain TCP, or mutual TLS (`[mesh] tls_*`) over TCP.
pub(crate) type MeshStream = crate::tls::Stream<futures_rustls::TlsStream<TcpStream>>;

/// The mesh's TLS settings: both sides' configs and the name peers verify.
#[derive(Clone)]
pub struct MeshTls {
    pub server: Arc<futures_rustls::rustls::ServerConfig>,
    pub client: Arc<futures_rustls::rustls::ClientConfig>,
    pub name: rustls_pki_types::ServerName<'static>,
}

use super::counters::MeshCounters;
use super::swim::Ident;
use super::wire::{
    self, Frame, LEN_PREFIX, MAX_FRAME, MAX_HELLO, MeshKey, PROTOCOL_VERSION, WireError,
};

/// A `Hello` is one small frame each way; a peer slower than this is not a peer.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP connect to a member or seed (a LAN answers in milliseconds).
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Senders gossip every 200 ms and probe every second: this much silence on an
/// inbound connection means the sender is gone (a half-open socket).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames coalesced into one write when the queue has several waiting.
const WRITE_BATCH: usize = 64;

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum LinkError {
    Io(io::Error),
    Wire(WireError),
    Timeout(&'static str),
    /// Authentic, decodable, but not what this point of the protocol allows.
    Protocol(String),
    /// The peer is this node (a seed list that names us, or a copied state file).
    SelfDial,
    /// A `Hello` that does not echo this connection's nonce: recorded and replayed.
    Replay,
    /// The mesh TLS handshake failed (no or an untrusted certificate, or TLS
    /// where plain TCP was expected, or the reverse).
    Tls(io::Error),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                write!(f, "peer closed the connection")
            }
            LinkError::Io(e) => write!(f, "{e}"),
            LinkError::Wire(e) => write!(f, "{e}"),
            LinkError::Timeout(what) => write!(f, "timed out {what}"),
            LinkError::Protocol(what) => write!(f, "protocol error: {what}"),
            LinkError::SelfDial => write!(f, "that address is this node"),
            LinkError::Replay => write!(f, "Hello does not answer this connection's challenge"),
            LinkError::Tls(e) => write!(f, "mesh TLS: {e}"),
        }
    }
}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        LinkError::Io(e)
    }
}

impl From<WireError> for LinkError {
    fn from(e: WireError) -> Self {
        LinkError::Wire(e)
    }
}

async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    fut.or(async {
        smol::Timer::after(limit).await;
        Err(LinkError::Timeout(what))
    })
    .await
}

/// Counts and logs a refused or broken inbound connection. `handshake`: it
/// ended before a valid `Hello` (a scanner, or a dialer that could not verify our
/// challenge: wrong secret or version, which that node logs).
pub(crate) fn note_refusal(
    counters: &MeshCounters,
    from: SocketAddr,
    e: &LinkError,
    handshake: bool,
) {
    match e {
        LinkError::Wire(WireError::BadTag) | LinkError::Replay => {
            counters.auth_failures.inc();
            log::warn!("mesh: refused {from}: {e}; check that [mesh] secret matches");
        }
        LinkError::Tls(_) => {
            counters.auth_failures.inc();
            log::warn!(
                "mesh: refused {from}: {e}; check that every node has mesh.tls_* set, with a \
                 certificate from mesh.tls_ca"
            );
        }
        LinkError::Wire(WireError::Version(v)) => {
            counters.version_mismatches.inc();
            log::warn!(
                "mesh: refused {from}: it speaks mesh protocol v{v}, this node speaks \
                 v{PROTOCOL_VERSION}; run the same release on every node"
            );
        }
        LinkError::Wire(_) | LinkError::Protocol(_) | LinkError::Timeout(_) => {
            counters.bad_frames.inc();
            log::warn!("mesh: dropped connection from {from}: {e}");
        }
        LinkError::SelfDial => log::debug!("mesh: {from} is this node"),
        LinkError::Io(_) if handshake => {
            counters.bad_frames.inc();
            log::debug!("mesh: {from} left during the handshake: {e}");
        }
        LinkError::Io(_) => log::debug!("mesh: connection from {from} ended: {e}"),
    }
}

/// Counts a failed dial as the dialer. True when the cause is worth a warning
/// (the peer is there but refuses us: secret, version, protocol).
pub(crate) fn note_dial_failure(counters: &MeshCounters, e: &LinkError) -> bool {
    counters.dial_failures.inc();
    match e {
        LinkError::Wire(WireError::BadTag) | LinkError::Replay | LinkError::Tls(_) => {
            counters.auth_failures.inc()
        }
        LinkError::Wire(WireError::Version(_)) => counters.version_mismatches.inc(),
        LinkError::Wire(_) | LinkError::Protocol(_) => counters.bad_frames.inc(),
        LinkError::Io(_) | LinkError::Timeout(_) | LinkError::SelfDial => return false,
    }
    true
}

/// Reads the `seq`-th frame of a connection, refusing a length above `limit`
/// before allocating.
pub(crate) async fn read_frame(
    stream: &mut MeshStream,
    key: &MeshKey,
    seq: u64,
    limit: usize,
) -> Result<Frame, LinkError> {
    let mut prefix = [0u8; LEN_PREFIX];
    stream.read_exact(&mut prefix).await?;
    let len = wire::payload_len(prefix, limit)?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok(wire::open(key, seq, &payload)?)
}

async fn write_frame(
    stream: &mut MeshStream,
    key: &MeshKey,
    seq: u64,
    frame: &Frame,
) -> Result<(), LinkError> {
    stream
        .write_all(&wire::seal_frame(key, seq, frame)?)
        .await?;
    Ok(())
}

fn fresh_nonce() -> Result<u128, LinkError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| LinkError::Io(io::Error::other(e.to_string())))?;
    Ok(u128::from_le_bytes(bytes))
}

pub(crate) fn hello(me: &Ident, nonce: u128, echo: u128) -> Frame {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        node: me.node,
        addr: me.addr.to_string().into(),
        generation: me.generation,
        nonce,
        echo,
    }
}

/// The peer's identity and nonce from its `Hello`, which must echo `expected`.
fn check_hello(frame: Frame, expected: u128) -> Result<(Ident, u128), LinkError> {
    let Frame::Hello {
        version,
        node,
        addr,
        generation,
        nonce,
        echo,
    } = frame
    else {
        return Err(LinkError::Protocol(format!(
            "{:?} instead of Hello",
            frame.kind()
        )));
    };
    if version != PROTOCOL_VERSION {
        return Err(LinkError::Wire(WireError::Version(version)));
    }
    if echo != expected {
        return Err(LinkError::Replay);
    }
    let addr = addr
        .parse()
        .map_err(|_| LinkError::Protocol(format!("Hello address {addr:?}")))?;
    let peer = Ident {
        node,
        addr,
        generation,
    };
    Ok((peer, nonce))
}

/// Dials `addr` and completes the handshake: the connection to write to that
/// peer, who it is, and the connection's session key.
pub(crate) async fn dial(
    addr: SocketAddr,
    key: &MeshKey,
    me: &Ident,
    tls: Option<&MeshTls>,
) -> Result<(MeshStream, Ident, MeshKey), LinkError> {
    let tcp = within(DIAL_TIMEOUT, "connecting", async {
        Ok(TcpStream::connect(addr).await?)
    })
    .await?;
    let _ = tcp.set_nodelay(true);
    let mut stream = match tls {
        None => MeshStream::Plain(tcp),
        Some(t) => {
            let connector = futures_rustls::TlsConnector::from(Arc::clone(&t.client));
            let s = within(HANDSHAKE_TIMEOUT, "in the TLS handshake", async {
                let name = t.name.clone();
                connector.connect(name, tcp).await.map_err(LinkError::Tls)
            })
            .await?;
            MeshStream::Tls(Box::new(futures_rustls::TlsStream::Client(s)))
        }
    };
    let (peer, session) = within(HANDSHAKE_TIMEOUT, "in the handshake", async {
        let Frame::Challenge { nonce: theirs } = read_frame(&mut stream, key, 0, MAX_HELLO).await?
        else {
            return Err(LinkError::Protocol("no Challenge".into()));
        };
        let ours = fresh_nonce()?;
        write_frame(&mut stream, key, 0, &hello(me, ours, theirs)).await?;
        let reply = read_frame(&mut stream, key, 1, MAX_HELLO).await?;
        let (peer, _) = check_hello(reply, ours)?;
        Ok((peer, key.session(theirs, ours)))
    })
    .await?;
    if peer.node == me.node {
        return Err(LinkError::SelfDial);
    }
    Ok((stream, peer, session))
}

/// An accepted socket, after the mesh TLS handshake when `tls` is set (bounded
/// like the rest of the handshake).
pub(crate) async fn secure(tcp: TcpStream, tls: Option<&MeshTls>) -> Result<MeshStream, LinkError> {
    let _ = tcp.set_nodelay(true);
    let Some(t) = tls else {
        return Ok(MeshStream::Plain(tcp));
    };
    let acceptor = futures_rustls::TlsAcceptor::from(Arc::clone(&t.server));
    let s = within(HANDSHAKE_TIMEOUT, "in the TLS handshake", async {
        acceptor.accept(tcp).await.map_err(LinkError::Tls)
    })
    .await?;
    Ok(MeshStream::Tls(Box::new(
        futures_rustls::TlsStream::Server(s),
    )))
}

/// Runs the acceptor's side of the handshake: the peer that will send on this
/// connection, and the connection's session key.
pub(crate) async fn accept(
    stream: &mut MeshStream,
    key: &MeshKey,
    me: &Ident,
) -> Result<(Ident, MeshKey), LinkError> {
    within(HANDSHAKE_TIMEOUT, "waiting for Hello", async {
        let ours = fresh_nonce()?;
        write_frame(stream, key, 0, &Frame::Challenge { nonce: ours }).await?;
        let frame = read_frame(stream, key, 0, MAX_HELLO).await?;
        let (peer, theirs) = check_hello(frame, ours)?;
        // Answered even when it is ourselves, so the dialer learns to skip that seed.
        write_frame(stream, key, 1, &hello(me, ours, theirs)).await?;
        if peer.node == me.node {
            return Err(LinkError::SelfDial);
        }
        Ok((peer, key.session(ours, theirs)))
    })
    .await
}

/// Writes queued frames until the queue closes (the mesh dropped this link) or the
/// peer goes away. Several waiting frames go out in one write.
/// The queue holds encoded frames ([`wire::encode`]); each is sealed here with the
/// session key and its sequence number. `written` counts down as frames reach
/// the socket.
pub(crate) async fn write_loop(
    stream: MeshStream,
    session: MeshKey,
    queue: Receiver<Arc<[u8]>>,
    written: Arc<AtomicUsize>,
) -> Result<(), LinkError> {
    let (mut reader, mut writer) = smol::io::split(stream);
    let write = async {
        let mut batch = Vec::new();
        let mut seq = 0u64;
        while let Ok(first) = queue.recv().await {
            batch.clear();
            wire::seal(&session, seq, &first, &mut batch);
            seq += 1;
            let mut frames = 1;
            while frames < WRITE_BATCH {
                match queue.try_recv() {
                    Ok(more) => wire::seal(&session, seq, &more, &mut batch),
                    Err(_) => break,
                }
                seq += 1;
                frames += 1;
            }
            writer.write_all(&batch).await?;
            writer.flush().await?;
            written.fetch_sub(frames, Ordering::SeqCst);
        }
        Ok(())
    };
    // Nothing may arrive on a connection we dialed; reading only notices its end.
    let watch = async {
        let mut byte = [0u8; 1];
        match reader.read(&mut byte).await? {
            0 => Err(LinkError::Io(io::ErrorKind::UnexpectedEof.into())),
            _ => Err(LinkError::Protocol("data on a dialed connection".into())),
        }
    };
    write.or(watch).await
}

/// Reads frames (tagged with the session key, numbered from 0) until the peer
/// leaves or misbehaves; `on_frame` may end the connection by returning an error.
pub(crate) async fn read_loop(
    mut stream: MeshStream,
    session: &MeshKey,
    mut on_frame: impl FnMut(Frame) -> Result<(), LinkError>,
) -> Result<(), LinkError> {
    for seq in 0u64.. {
        let frame = within(IDLE_TIMEOUT, "waiting for a frame", async {
            read_frame(&mut stream, session, seq, MAX_FRAME).await
        })
        .await?;
        on_frame(frame)?;
    }
    Ok(())
}
