//! The three loops of a running mesh node, all on [`Shared`]:
//!
//! - `accept_loop`: each accepted connection gets the handshake, then its frames
//!   go to their consumer (SWIM datagrams to the membership loop, `Leave` too,
//!   everything else to the application's [`super::MeshHandler`]).
//! - `membership_loop`: the one owner of SWIM state, fed by a bounded channel and
//!   woken by SWIM's own timers; after each step it sends what SWIM asked, then
//!   publishes the member table ([`super::node::View`]) and the events.
//! - `join_loop`: while this node sees no other live member, it knocks on every
//!   seed; any one that answers is enough, SWIM spreads the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::Timer;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt;
use smol::net::{TcpListener, TcpStream};

use super::membership::{MemberEvent, Membership};
use super::node::{Input, Shared};
use super::peer::{self, LinkError};
use super::swim::Ident;
use super::wire::{Blob, Frame};

/// SWIM datagrams waiting for the membership loop; past this they are dropped
/// (SWIM is built for lossy transports).
const SWIM_QUEUE: usize = 1024;
/// While alone, try the seeds this often: a node cut off from every peer (the
/// small side of a partition) is back soon after the network heals. Only a
/// lone node dials, so twice a second costs nothing.
const JOIN_EVERY: Duration = Duration::from_millis(500);

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let ip = crate::http::routes::canonical(from.ip());
                let permit = match shared.handshaking.acquire(Some(ip)) {
                    Ok(permit) => permit,
                    Err(why) => {
                        shared.counters.bad_frames.inc();
                        log::debug!("mesh: {from} refused: too many handshakes ({why})");
                        continue;
                    }
                };
                let s = Arc::clone(&shared);
                shared.spawn(inbound(s, stream, from, permit));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("mesh: accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One accepted connection: handshake, then hand each frame to its consumer.
/// `permit` is a handshake slot, given back as soon as the handshake ends.
async fn inbound(
    shared: Arc<Shared>,
    tcp: TcpStream,
    from: SocketAddr,
    permit: crate::limits::SlotPermit,
) {
    let handshake = async {
        let me = shared
            .me()
            .ok_or_else(|| LinkError::Protocol("not started".into()))?;
        let mut stream = peer::secure(tcp, shared.tls.as_ref()).await?;
        let (peer, session) = peer::accept(&mut stream, &shared.key, &me).await?;
        Ok::<_, LinkError>((stream, peer, session))
    };
    let accepted = handshake.await;
    drop(permit);
    let (stream, peer, session) = match accepted {
        Ok(accepted) => accepted,
        Err(e) => return peer::note_refusal(&shared.counters, from, &e, true),
    };
    shared.counters.connections.inc();
    let result = peer::read_loop(stream, &session, |frame| {
        shared.counters.frame_in(frame.kind());
        dispatch(&shared, &peer, frame)
    })
    .await;
    shared.counters.connections.dec();
    if let Err(e) = result {
        peer::note_refusal(&shared.counters, from, &e, false);
    }
}

fn dispatch(shared: &Shared, peer: &Ident, frame: Frame) -> Result<(), LinkError> {
    match frame {
        Frame::Hello { .. } | Frame::Challenge { .. } => {
            return Err(LinkError::Protocol(
                "handshake frame after the handshake".into(),
            ));
        }
        Frame::Swim(Blob(datagram)) => {
            if shared.swim_tx.try_send(Input::Datagram(datagram)).is_err() {
                shared.counters.swim_dropped.inc();
            }
        }
        // Only a node itself may say it leaves.
        Frame::Leave { node, generation } if node == peer.node => {
            let _ = shared
                .swim_tx
                .try_send(Input::PeerLeft { node, generation });
        }
        Frame::Leave { .. } => return Err(LinkError::Protocol("Leave for another node".into())),
        app => shared.handler.on_frame(peer.node, app),
    }
    Ok(())
}

/// Owns SWIM: feeds it datagrams and timers, carries out what it asks, and
/// publishes the member table.
pub(crate) async fn membership_loop(
    shared: Arc<Shared>,
    mut swim: Membership,
    inputs: Receiver<Input>,
) {
    publish(&shared, &swim);
    loop {
        let deadline = swim.next_deadline();
        // Some(input), or None when the next SWIM timer is due.
        let input = async { Some(inputs.recv().await) }
            .or(async {
                match deadline {
                    Some(at) => Timer::at(at).await,
                    None => Timer::never().await,
                };
                None
            })
            .await;
        let input = match input {
            Some(Ok(input)) => Some(input),
            Some(Err(_)) => return, // every sender is gone: the mesh is stopping
            None => None,
        };
        let now = Instant::now();
        let mut done = None;
        let mut out = match input {
            Some(Input::Datagram(data)) => swim.handle_data(&data, now),
            Some(Input::Announce(seed)) => swim.announce(seed, now),
            Some(Input::PeerLeft { node, generation }) => swim.peer_left(node, generation, now),
            Some(Input::Leave(ack)) => {
                done = Some(ack);
                // Leave frames first: on each link they precede SWIM's own "down"
                // gossip, so peers record a leave, not a failure.
                let me = swim.me();
                let leave = Frame::Leave {
                    node: me.node,
                    generation: me.generation,
                };
                let _ = shared.broadcast(&leave);
                swim.leave(now)
            }
            None => Default::default(),
        };
        // Always, so a steady stream of datagrams cannot starve the probe timers.
        let due = swim.handle_timers(now);
        out.sends.extend(due.sends);
        out.events.extend(due.events);
        for (to, datagram) in out.sends {
            shared.send_swim(&to, datagram);
        }
        for rtt in out.rtt_samples {
            shared.counters.rtt.observe_duration(rtt);
        }
        publish(&shared, &swim);
        for event in out.events {
            log_event(&event);
            if let MemberEvent::Failed(node) | MemberEvent::Left(node) = event {
                shared.abort_link(node);
            }
            shared.handler.on_member(event);
        }
        drop(done);
    }
}

fn publish(shared: &Shared, swim: &Membership) {
    let members = swim.members();
    let live = members
        .iter()
        .filter(|m| m.state.is_live())
        .map(|m| {
            let id = Ident {
                node: m.node,
                addr: m.addr,
                generation: m.generation,
            };
            (m.node, id)
        })
        .collect();
    let mut view = shared.view();
    view.me = Some(swim.me().clone());
    view.members = members;
    view.live = live;
}

fn log_event(event: &MemberEvent) {
    match event {
        MemberEvent::Joined { node, addr } => log::info!("mesh: node {node:016x} at {addr} joined"),
        MemberEvent::Left(node) => log::info!("mesh: node {node:016x} left"),
        MemberEvent::Failed(node) => log::warn!("mesh: node {node:016x} failed"),
        MemberEvent::LinkUp(_) => {}
    }
}

/// While this node sees no other live member, knocks on every seed: any one that
/// answers is enough, SWIM spreads the rest.
pub(crate) async fn join_loop(shared: Arc<Shared>) {
    let mut own: Vec<SocketAddr> = Vec::new();
    let mut warned: Vec<String> = Vec::new();
    loop {
        if shared.view().live.is_empty() {
            for seed in &shared.seeds {
                let addrs = match resolve(seed).await {
                    Ok(addrs) => addrs,
                    Err(e) => {
                        warn_once(&mut warned, seed, &e);
                        continue;
                    }
                };
                for addr in addrs {
                    if own.contains(&addr) {
                        continue;
                    }
                    let Some(me) = shared.me() else { break };
                    match peer::dial(addr, &shared.key, &me, shared.tls.as_ref()).await {
                        Ok((stream, found, session)) => {
                            shared.adopt(found.clone(), stream, session);
                            let _ = shared.swim_tx.send(Input::Announce(found)).await;
                        }
                        Err(LinkError::SelfDial) => own.push(addr),
                        Err(e) => {
                            peer::note_dial_failure(&shared.counters, &e);
                            warn_once(&mut warned, seed, &e.to_string());
                        }
                    }
                }
            }
        }
        Timer::after(JOIN_EVERY).await;
    }
}

/// DNS lookups of a seed name give up after this (the resolver's own retries
/// can take much longer; the loop tries again soon anyway).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A seed's addresses: itself when it is `ip:port`, else what its name resolves to.
async fn resolve(seed: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = seed.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let lookup = async {
        smol::net::resolve(seed)
            .await
            .map_err(|e| format!("cannot resolve: {e}"))
    };
    lookup
        .or(async {
            Timer::after(RESOLVE_TIMEOUT).await;
            Err("DNS lookup timed out".to_string())
        })
        .await
}

/// Warns once per seed (the counters keep counting): a node that cannot join
/// must say why, but not every half second.
fn warn_once(warned: &mut Vec<String>, seed: &str, why: &str) {
    if warned.iter().any(|w| w == seed) {
        log::debug!("mesh: seed {seed}: {why}");
    } else {
        warned.push(seed.to_string());
        log::warn!("mesh: seed {seed}: {why}; retrying every {JOIN_EVERY:?}");
    }
}

/// The bounded channel into the membership loop.
pub(crate) fn swim_channel() -> (Sender<Input>, Receiver<Input>) {
    channel::bounded(SWIM_QUEUE)
}
