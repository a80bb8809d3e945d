//! Cluster membership and failure detection: SWIM (with suspicion, piggybacked
//! updates and indirect probes) through the `foca` crate, sans-io.
//!
//! Owns the foca instance, the timers it asks for (a heap the mesh loop sleeps
//! on), the translation of foca's notifications into [`MemberEvent`]s, the member
//! table callers see ([`MemberInfo`]), and probe round-trip times. Nothing here
//! touches a socket or a clock: every call takes `now`, and what must be sent
//! comes back in an `Output`, so the whole protocol is tested in memory.
//!
//! Detection bound for a crashed node: it is probed within one round over the
//! members (`probe_period` each), unanswered after `probe_rtt` plus the indirect
//! probes, then suspected for `suspect_after` before it is declared failed:
//! about `members × probe_period + suspect_after` at worst (≈ 6 s for 3 nodes
//! with the defaults).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Foca, Member, Message, NoCustomBroadcast, OwnedNotification};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::swim::{Ident, SwimCodec, peek_header};
use crate::sentiment::NodeId;

/// Gossip updates piggyback on this many messages: enough for clusters of tens.
const MAX_TRANSMISSIONS: NonZeroU8 = NonZeroU8::new(6).unwrap();
/// Members asked to probe on our behalf when a direct probe goes unanswered.
const INDIRECT_PROBES: NonZeroUsize = NonZeroUsize::new(3).unwrap();
/// SWIM datagrams ride in mesh frames, not UDP: no MTU to respect, only a sane cap.
const SWIM_PACKET: NonZeroUsize = NonZeroUsize::new(16 * 1024).unwrap();
/// Extra gossip rounds speed dissemination; cheap on a LAN.
const GOSSIP_EVERY: Duration = Duration::from_millis(200);
/// Ask a random member for its member list now and then (finds missed joins).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
/// Knock on down members' doors: how a healed partition merges back. Every
/// second, so the sides find each other well inside the 2 s convergence budget
/// (BENCHMARKS.md, `chatpulse-bench partition`); it costs two dials a second,
/// and only while some member is down.
const ANNOUNCE_DOWN_EVERY: Duration = Duration::from_secs(1);
/// Forget a down node after this long (identities renew, so it may rejoin sooner).
const REMOVE_DOWN_AFTER: Duration = Duration::from_secs(15 * 60);

/// SWIM's clock. The defaults suit a LAN of Pis; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwimTiming {
    /// One member is probed per period.
    pub probe_period: Duration,
    /// Wait this long for a direct ack before asking others to probe.
    pub probe_rtt: Duration,
    /// A suspected member that does not refute within this is declared failed.
    pub suspect_after: Duration,
}

impl Default for SwimTiming {
    fn default() -> Self {
        SwimTiming {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(400),
            suspect_after: Duration::from_secs(3),
        }
    }
}

/// How this node sees a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    Alive,
    /// Missed a probe; still counted as live (owns keys) until declared down.
    Suspect,
    /// Declared failed by the cluster.
    Down,
    /// Down after announcing a graceful leave.
    Left,
}

impl MemberState {
    /// The `state` label of `mesh_members`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// One row of the member table.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    pub node: NodeId,
    pub addr: SocketAddr,
    pub state: MemberState,
    /// SWIM incarnation: bumped by the member itself to refute a suspicion.
    pub incarnation: u16,
    /// Boot time in ms (+1 per automatic rejoin): tells a restarted node apart.
    pub generation: u64,
    /// Smoothed probe round trip (None for this node or before the first ack).
    pub rtt: Option<Duration>,
}

/// What the application hears about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A node became live, or came back restarted (send it your state).
    Joined { node: NodeId, addr: SocketAddr },
    /// A node announced its leave: its keys move now.
    Left(NodeId),
    /// A node was declared failed by SWIM: its keys move now.
    Failed(NodeId),
    /// A fresh connection to this node is up (first time, or after it was dropped
    /// as slow or broken): frames sent before may be lost, so resync it.
    LinkUp(NodeId),
}

/// What one step of the protocol wants done.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub sends: Vec<(Ident, Vec<u8>)>,
    pub events: Vec<MemberEvent>,
    pub rtt_samples: Vec<Duration>,
}

/// A timer foca asked for, ordered by due time then submission.
struct Scheduled {
    at: Instant,
    seq: u64,
    timer: foca::Timer<Ident>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub(crate) struct Membership {
    foca: Foca<Ident, SwimCodec, SmallRng, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<Ident>,
    timers: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Members foca reported up and not since down.
    up: HashMap<NodeId, Ident>,
    /// Generation each node announced its leave with.
    left: HashMap<NodeId, u64>,
    /// Our pings awaiting an ack, for RTT: (member, probe number) → sent at.
    pings: HashMap<(NodeId, u8), Instant>,
    rtt: HashMap<NodeId, Duration>,
    /// Set by [`Membership::leave`]: from then on nothing is processed, so a
    /// "you are down" reply cannot make a leaving node renew and rejoin.
    leaving: bool,
}

fn foca_config(t: SwimTiming) -> foca::Config {
    let periodic = |frequency, n| {
        Some(foca::PeriodicParams {
            frequency,
            num_members: NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
        })
    };
    foca::Config {
        probe_period: t.probe_period,
        probe_rtt: t.probe_rtt,
        num_indirect_probes: INDIRECT_PROBES,
        max_transmissions: MAX_TRANSMISSIONS,
        suspect_to_down_after: t.suspect_after,
        remove_down_after: Some(REMOVE_DOWN_AFTER),
        max_packet_size: SWIM_PACKET,
        notify_down_members: true,
        periodic_announce: periodic(ANNOUNCE_EVERY, 1),
        periodic_announce_to_down_members: periodic(ANNOUNCE_DOWN_EVERY, 2),
        periodic_gossip: periodic(GOSSIP_EVERY, 3),
    }
}

impl Membership {
    /// `seed` feeds SWIM's member choice (not security-relevant).
    pub fn new(me: Ident, timing: SwimTiming, seed: u64) -> Self {
        let rng = SmallRng::seed_from_u64(seed);
        Membership {
            foca: Foca::new(me, foca_config(timing), rng, SwimCodec),
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            up: HashMap::new(),
            left: HashMap::new(),
            pings: HashMap::new(),
            rtt: HashMap::new(),
            leaving: false,
        }
    }

    /// Our current identity (its generation changes on an automatic rejoin).
    pub fn me(&self) -> &Ident {
        self.foca.identity()
    }

    /// Ask `to` (a seed we just reached) to let us in.
    pub fn announce(&mut self, to: Ident, now: Instant) -> Output {
        if self.leaving {
            return Output::default();
        }
        let result = self.foca.announce(to, &mut self.runtime);
        self.finish(result, now)
    }

    /// One SWIM datagram from a peer.
    pub fn handle_data(&mut self, data: &[u8], now: Instant) -> Output {
        if self.leaving {
            return Output::default();
        }
        let mut samples = Vec::new();
        if let Some(h) = peek_header(data)
            && let Message::Ack(n) = h.message
            && let Some(sent) = self.pings.remove(&(h.src.node, n))
        {
            let sample = now.saturating_duration_since(sent);
            let srtt = self.rtt.entry(h.src.node).or_insert(sample);
            // TCP's smoothing (RFC 6298): one sample moves the estimate by 1/8.
            *srtt = (*srtt * 7 + sample) / 8;
            samples.push(sample);
        }
        let result = self.foca.handle_data(data, &mut self.runtime);
        let mut out = self.finish(result, now);
        out.rtt_samples = samples;
        out
    }

    /// Fires every timer due at `now`.
    pub fn handle_timers(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        if self.leaving {
            return out;
        }
        while self.timers.peek().is_some_and(|t| t.0.at <= now) {
            let Some(Reverse(due)) = self.timers.pop() else {
                break;
            };
            let result = self.foca.handle_timer(due.timer, &mut self.runtime);
            let step = self.finish(result, now);
            out.sends.extend(step.sends);
            out.events.extend(step.events);
        }
        out
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|t| t.0.at)
    }

    /// We are leaving: tell a few members we are down (the mesh has just queued
    /// a `Leave` frame to every member; this covers any it could not reach), then
    /// ignore everything.
    pub fn leave(&mut self, now: Instant) -> Output {
        if self.leaving {
            return Output::default();
        }
        self.leaving = true;
        let result = self.foca.leave_cluster(&mut self.runtime);
        let out = self.finish(result, now);
        // No timer may stay due: the mesh loop sleeps until the next deadline, and
        // one that is never handled would wake it forever.
        self.timers.clear();
        out
    }

    /// `node` told us it is leaving: declare it down now (and gossip that).
    pub fn peer_left(&mut self, node: NodeId, generation: u64, now: Instant) -> Output {
        if self.leaving {
            return Output::default();
        }
        self.left.insert(node, generation);
        let leaving: Vec<Member<Ident>> = self
            .foca
            .iter_members()
            .filter(|m| m.id().node == node && m.id().generation == generation)
            .map(|m| Member::down(m.id().clone()))
            .collect();
        let result = self
            .foca
            .apply_many(leaving.into_iter(), true, &mut self.runtime);
        self.finish(result, now)
    }

    /// Every member this node knows of, except itself.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.foca
            .iter_membership_state()
            .map(|m| {
                let id = m.id();
                let state = match m.state() {
                    foca::State::Alive => MemberState::Alive,
                    foca::State::Suspect => MemberState::Suspect,
                    foca::State::Down if self.left.get(&id.node) == Some(&id.generation) => {
                        MemberState::Left
                    }
                    foca::State::Down => MemberState::Down,
                };
                MemberInfo {
                    node: id.node,
                    addr: id.addr,
                    state,
                    incarnation: m.incarnation(),
                    generation: id.generation,
                    rtt: self.rtt.get(&id.node).copied(),
                }
            })
            .collect()
    }

    /// Drains what foca queued during one call.
    fn finish(&mut self, result: Result<(), foca::Error>, now: Instant) -> Output {
        if let Err(e) = result {
            // Stale or duplicate datagrams are routine in SWIM; nothing to act on.
            log::debug!("mesh: swim: {e}");
        }
        let mut out = Output::default();
        while let Some((to, data)) = self.runtime.to_send() {
            if let Some(h) = peek_header(&data)
                && let Message::Ping(n) = h.message
            {
                self.note_ping(to.node, n, now);
            }
            out.sends.push((to, data.to_vec()));
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.seq += 1;
            self.timers.push(Reverse(Scheduled {
                at: now + after,
                seq: self.seq,
                timer,
            }));
        }
        while let Some(n) = self.runtime.to_notify() {
            self.notified(n, &mut out.events);
        }
        out
    }

    fn note_ping(&mut self, node: NodeId, probe: u8, now: Instant) {
        // Unanswered pings would pile up for a dead member; a probe number is
        // reused every 256 probes anyway, so anything older than that is noise.
        if self.pings.len() > 1024 {
            self.pings
                .retain(|_, sent| now.saturating_duration_since(*sent) < Duration::from_secs(60));
        }
        self.pings.insert((node, probe), now);
    }

    fn notified(&mut self, n: OwnedNotification<Ident>, events: &mut Vec<MemberEvent>) {
        match n {
            OwnedNotification::MemberUp(id) => {
                if self.left.get(&id.node).is_some_and(|&g| g < id.generation) {
                    self.left.remove(&id.node);
                }
                events.push(MemberEvent::Joined {
                    node: id.node,
                    addr: id.addr,
                });
                self.up.insert(id.node, id);
            }
            OwnedNotification::MemberDown(id) => {
                self.up.remove(&id.node);
                self.rtt.remove(&id.node);
                let left = self.left.get(&id.node) == Some(&id.generation);
                events.push(if left {
                    MemberEvent::Left(id.node)
                } else {
                    MemberEvent::Failed(id.node)
                });
            }
            // A live member restarted (same node id, newer generation): foca sends
            // only a rename, but to us it is a fresh node that needs our state.
            OwnedNotification::Rename(old, new) => {
                if self.up.contains_key(&old.node)
                    && self.foca.iter_members().any(|m| m.id() == &new)
                {
                    events.push(MemberEvent::Joined {
                        node: new.node,
                        addr: new.addr,
                    });
                    self.up.insert(new.node, new);
                }
            }
            OwnedNotification::Rejoin(me) => log::warn!(
                "mesh: the cluster declared this node down; rejoined as generation {}",
                me.generation
            ),
            OwnedNotification::Active => log::info!("mesh: joined the cluster"),
            OwnedNotification::Idle => log::warn!("mesh: no other live member"),
            // Expected after our own leave_cluster (graceful shutdown).
            OwnedNotification::Defunct if self.leaving => {
                log::debug!("mesh: left; SWIM stopped")
            }
            OwnedNotification::Defunct => log::error!("mesh: declared down and cannot rejoin"),
            // Only reachable with foca's `unstable-notifications` feature.
            #[allow(unreachable_patterns)]
            other => log::debug!("mesh: swim: {other:?}"),
        }
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
