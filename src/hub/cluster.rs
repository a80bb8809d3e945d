//! The hub in a cluster: who counts a broadcaster's votes, and how every node's
//! overlays see the same bar.
//!
//! - **Votes**: the owner of a broadcaster (rendezvous hashing of its login over the
//!   live members, [`Mesh::owner`]) counts its votes. Any other node hands a chat
//!   line to the owner ([`Frame::ChatForward`]) and counts it nowhere itself. After
//!   each publish (so at most every [`super::MIN_PUBLISH_GAP_MS`]) the owner
//!   broadcasts the channel's whole [`VoteLog`]; receivers merge it (a state-based
//!   CRDT: merging twice, late or out of order never counts a vote twice), so when
//!   ownership moves the new owner continues from the merged log.
//! - **Presence**: each node broadcasts its overlay counts ([`Frame::Presence`]) on
//!   change and every [`PRESENCE_EVERY`]; a node's counts are dropped when it
//!   leaves or fails, or after [`PRESENCE_TTL`] without news. "Nobody watches,
//!   skip the vote" and [`super::Hub::viewers`] use the cluster total.
//! - **Resync**: when a link to a node comes up, it gets our presence and every
//!   non-empty log (frames sent before may have been lost).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{Channel, Hub};
use crate::app::{App, now_ms};
use crate::chat::{ChatMessage, MAX_TEXT_BYTES};
use crate::mesh::{Blob, Frame, List, MemberEvent, Mesh, MeshHandler, PresenceEntry, Text};
use crate::metrics::{ChatSource, VoteResult};
use crate::sentiment::{NodeId, VoteLog};

/// A node re-announces its overlays this often even when nothing changed: the
/// keep-alive behind [`PRESENCE_TTL`].
pub const PRESENCE_EVERY: Duration = Duration::from_secs(2);
/// A node's presence older than this is ignored (three missed announcements).
pub const PRESENCE_TTL: Duration = Duration::from_secs(6);

/// Overlay counts of the other nodes, per broadcaster.
#[derive(Default)]
pub(super) struct Presence {
    nodes: HashMap<NodeId, (Instant, HashMap<String, u32>)>,
}

impl Presence {
    /// Overlays of `login` on the other nodes (fresh announcements only).
    pub(super) fn viewers(&self, login: &str) -> usize {
        self.nodes
            .values()
            .filter(|(at, _)| at.elapsed() < PRESENCE_TTL)
            .filter_map(|(_, counts)| counts.get(login))
            .map(|&n| n as usize)
            .sum()
    }
}

impl Hub {
    /// Joins the hub to a cluster: from now on votes go to their owners.
    pub fn attach_mesh(&self, mesh: Arc<Mesh>) {
        *self.mesh.write().unwrap_or_else(|e| e.into_inner()) = Some(mesh);
    }

    /// Leaves the cluster (shutdown): the hub counts alone again. Returns the mesh.
    pub fn detach_mesh(&self) -> Option<Arc<Mesh>> {
        let mesh = self.mesh.write().unwrap_or_else(|e| e.into_inner()).take();
        self.lock().presence.nodes.clear();
        mesh
    }

    pub fn mesh(&self) -> Option<Arc<Mesh>> {
        self.mesh.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `Some` when the line was handled without counting here: handed to the owner
    /// (`Forwarded`), or refused. `None`: count it here (we own the channel, there
    /// is no mesh, or the owner cannot be reached right now: counting here then is
    /// safe, as merges add up per node).
    pub(super) fn forward(&self, msg: &ChatMessage) -> Option<VoteResult> {
        let mesh = self.mesh()?;
        let owner = mesh.owner(&msg.channel);
        if owner == self.node {
            return None;
        }
        if msg.text.len() > MAX_TEXT_BYTES || msg.chatter_id.is_empty() {
            return Some(VoteResult::Invalid);
        }
        {
            let inner = self.lock();
            let ch = inner.channels.get(msg.channel.as_str());
            let Some(ch) = ch else {
                return Some(VoteResult::UnknownChannel);
            };
            if ch.subs.is_empty() && inner.presence.viewers(&msg.channel) == 0 {
                return Some(VoteResult::NoViewers);
            }
        }
        // Recorded before sending, so an acknowledgement can never come first.
        let seq = self.forwards().track(owner, msg, Instant::now())?;
        match mesh.send(owner, &forward_frame(msg, seq)) {
            Ok(()) => Some(VoteResult::Forwarded),
            Err(e) => {
                self.forwards().acked(owner, &[seq]);
                log::debug!(
                    "mesh: owner {owner:016x} of {} unreachable ({e:?}); counting here",
                    msg.channel
                );
                None
            }
        }
    }

    fn forwards(&self) -> std::sync::MutexGuard<'_, super::forward::Forwards> {
        self.forwards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lines forwarded to an owner that failed or left: handled again, by the
    /// new owner or here.
    fn reroute(&self, owner: NodeId) {
        let lines = self.forwards().take_for(owner);
        if lines.is_empty() {
            return;
        }
        log::info!(
            "mesh: {} chat lines sent to {owner:016x} were not acknowledged; handling them again",
            lines.len()
        );
        for msg in &lines {
            if self.forward(msg).is_none() {
                let result = self.process(msg, now_ms());
                self.metrics.observe_vote(result, 0.0);
            }
        }
    }

    /// Every hub tick in a cluster: acknowledge the lines counted for other
    /// nodes, and send again the ones of ours that waited too long.
    pub fn forward_tick(&self) {
        let Some(mesh) = self.mesh() else {
            return;
        };
        self.flush_acks(&mesh);
        let due = self
            .forwards()
            .resend_for(None, super::forward::RESEND_AFTER, Instant::now());
        self.resend(&mesh, due);
        self.metrics
            .mesh_forwards_unacked
            .set(self.forwards().unacked() as i64);
    }

    fn resend(&self, mesh: &Mesh, lines: Vec<(u64, NodeId, ChatMessage)>) {
        let mut gone = Vec::new();
        for (seq, owner, msg) in lines {
            if let Err(crate::mesh::SendError::Unknown) =
                mesh.send(owner, &forward_frame(&msg, seq))
            {
                gone.push(owner);
            }
        }
        gone.dedup();
        for owner in gone {
            self.reroute(owner);
        }
    }

    /// Broadcasts the channel's log after a local change (called from `publish`).
    pub(super) fn replicate(&self, ch: &Channel) {
        let Some(mesh) = self.mesh() else {
            return;
        };
        let frame = vote_log_frame(ch);
        if let Err(e) = mesh.broadcast(&frame) {
            log::warn!("mesh: vote log of {} not sent: {e}", ch.streamer.login);
        }
        // After the log: a forwarder that hears "counted" can rely on the count
        // being on its way to every node (a crash between the two loses lines
        // rather than counting them twice).
        self.flush_acks(&mesh);
    }

    /// Acknowledges the forwarded lines handled since the last flush.
    fn flush_acks(&self, mesh: &Mesh) {
        let acks = self.forwards().take_acks();
        for (node, seqs) in acks {
            let _ = mesh.send(node, &Frame::ForwardAck { seqs: List(seqs) });
        }
    }

    /// Merges a log from another node and shows the result to this node's overlays.
    fn merge_remote(&self, login: &str, accepted_ms: u64, bytes: &[u8], now_ms: u64) {
        let log = match VoteLog::decode(bytes) {
            Ok(log) => log,
            Err(e) => {
                log::warn!("mesh: unreadable vote log of {login}: {e}");
                return;
            }
        };
        let mut inner = self.lock();
        let Some(ch) = inner.channels.get_mut(login) else {
            return;
        };
        if accepted_ms > ch.newest_vote_ms {
            let ms = now_ms.saturating_sub(accepted_ms);
            self.metrics.mesh_convergence.observe(ms as f64 / 1000.0);
            ch.newest_vote_ms = accepted_ms;
        }
        ch.log.merge(&log);
        ch.dirty = true;
        if now_ms.saturating_sub(ch.last_publish_ms) >= super::MIN_PUBLISH_GAP_MS {
            self.publish(ch, now_ms);
        } else {
            ch.pending = true;
        }
    }

    /// This node's overlay counts, per broadcaster with at least one.
    pub fn local_presence(&self) -> Vec<(String, u32)> {
        let inner = self.lock();
        let mut v: Vec<(String, u32)> = inner
            .channels
            .iter()
            .filter(|(_, c)| !c.subs.is_empty())
            .map(|(login, c)| (login.to_string(), c.subs.len() as u32))
            .collect();
        v.sort();
        v
    }

    /// The presence frame for `counts` ([`Hub::local_presence`]).
    pub fn presence_frame(&self, counts: &[(String, u32)]) -> Frame {
        let entries = counts
            .iter()
            .map(|(login, n)| PresenceEntry {
                broadcaster: login.as_str().into(),
                overlays: *n,
            })
            .collect();
        Frame::Presence {
            node: self.node,
            entries: List(entries),
        }
    }

    /// A link to `node` came up: send it what it may have missed.
    fn resync(&self, node: NodeId) {
        let Some(mesh) = self.mesh() else {
            return;
        };
        let _ = mesh.send(node, &self.presence_frame(&self.local_presence()));
        let logs: Vec<Frame> = {
            let inner = self.lock();
            let live = inner.channels.values().filter(|c| !c.log.is_empty());
            live.map(vote_log_frame).collect()
        };
        for frame in logs {
            let _ = mesh.send(node, &frame);
        }
    }

    /// A frame from another node.
    pub fn on_mesh_frame(&self, from: NodeId, frame: Frame) {
        let now = now_ms();
        match frame {
            Frame::VoteLog {
                broadcaster,
                bytes,
                accepted_ms,
                ..
            } => self.merge_remote(&broadcaster, accepted_ms, &bytes, now),
            Frame::ChatForward {
                broadcaster,
                chatter,
                text,
                message_id,
                sent_ms,
                source,
                seq,
            } => {
                if !self.forwards().receive(from, seq, Instant::now()) {
                    self.metrics.observe_vote(VoteResult::Duplicate, 0.0);
                    return;
                }
                let msg = ChatMessage {
                    source: ChatSource::ALL
                        .iter()
                        .copied()
                        .find(|s| s.as_str() == source.0)
                        .unwrap_or(ChatSource::Test),
                    channel: broadcaster.0,
                    chatter_id: chatter.0,
                    text: text.0,
                    message_id: Some(message_id.0).filter(|m| !m.is_empty()),
                    sent_ms: Some(sent_ms).filter(|&ms| ms > 0),
                };
                // Counted here even if our view of the owner differs for a moment:
                // a line is forwarded at most once, so it can never loop.
                let started = Instant::now();
                let result = self.process(&msg, now);
                self.metrics
                    .observe_vote(result, started.elapsed().as_secs_f64());
            }
            Frame::Presence { node, entries } if node == from => {
                let counts = entries
                    .0
                    .into_iter()
                    .map(|e| (e.broadcaster.0, e.overlays))
                    .collect();
                self.lock()
                    .presence
                    .nodes
                    .insert(node, (Instant::now(), counts));
            }
            Frame::ForwardAck { seqs } => self.forwards().acked(from, &seqs),
            other => log::debug!("mesh: {:?} frame from {from:016x} ignored", other.kind()),
        }
    }

    /// Membership changed.
    pub fn on_member_event(&self, event: &MemberEvent) {
        match *event {
            MemberEvent::Left(node) | MemberEvent::Failed(node) => {
                self.lock().presence.nodes.remove(&node);
                self.reroute(node);
            }
            MemberEvent::Joined { node, .. } | MemberEvent::LinkUp(node) => {
                self.resync(node);
                if let Some(mesh) = self.mesh() {
                    let lines =
                        self.forwards()
                            .resend_for(Some(node), Duration::ZERO, Instant::now());
                    self.resend(&mesh, lines);
                }
            }
        }
    }
}

fn forward_frame(msg: &ChatMessage, seq: u64) -> Frame {
    Frame::ChatForward {
        broadcaster: msg.channel.as_str().into(),
        chatter: msg.chatter_id.as_str().into(),
        text: msg.text.as_str().into(),
        message_id: msg.message_id.as_deref().unwrap_or("").into(),
        sent_ms: msg.sent_ms.unwrap_or(0),
        source: msg.source.as_str().into(),
        seq,
    }
}

fn vote_log_frame(ch: &Channel) -> Frame {
    Frame::VoteLog {
        broadcaster: Text(ch.streamer.login.clone()),
        epoch: ch.log.epoch_ms(),
        bytes: Blob(ch.log.encode()),
        accepted_ms: ch.newest_vote_ms,
    }
}

/// The application's [`MeshHandler`]: frames go to the hub; membership changes go
/// to the hub and wake the task that persists learned peers. Weak, so the mesh
/// (owned by the hub) and the app do not keep each other alive.
pub struct ClusterHandler {
    app: Weak<App>,
    peers_changed: smol::channel::Sender<()>,
}

impl ClusterHandler {
    /// `peers_changed` should have capacity 1: several changes make one wake-up.
    pub fn new(app: &Arc<App>, peers_changed: smol::channel::Sender<()>) -> Self {
        ClusterHandler {
            app: Arc::downgrade(app),
            peers_changed,
        }
    }
}

impl MeshHandler for ClusterHandler {
    fn on_frame(&self, from: NodeId, frame: Frame) {
        let Some(app) = self.app.upgrade() else {
            return;
        };
        match frame {
            // Streamer records touch SQLite: their own task, never this reader.
            Frame::Lww { .. } | Frame::Digest { .. } | Frame::DigestRequest { .. } => {
                let task = crate::replica::on_frame(Arc::clone(&app), from, frame);
                app.spawn(task);
            }
            frame => app.hub.on_mesh_frame(from, frame),
        }
    }

    fn on_member(&self, event: MemberEvent) {
        if let Some(app) = self.app.upgrade() {
            app.hub.on_member_event(&event);
            if let MemberEvent::Joined { node, .. } | MemberEvent::LinkUp(node) = event {
                app.spawn(crate::replica::sync_with(Arc::clone(&app), node));
            }
        }
        if !matches!(event, MemberEvent::LinkUp(_)) {
            let _ = self.peers_changed.try_send(());
        }
    }
}
