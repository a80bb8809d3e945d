//! Chat lines handed to their owner stay here until the owner acknowledges
//! them, so a line is neither lost nor counted twice when a link breaks:
//!
//! - each forwarded line gets a sequence number and waits in `unacked`;
//! - the owner counts a number once (`seen`), and acknowledges every number it
//!   handled in batches ([`Frame::ForwardAck`], every hub tick);
//! - unacknowledged lines are sent again when the link to the owner comes back
//!   up, or after [`RESEND_AFTER`] (the owner counts a repeat once);
//! - when the owner fails or leaves, the mesh resets the link to it (nothing
//!   queued there can arrive later) and its unacknowledged lines are handled
//!   again here: forwarded to the new owner or counted locally.
//!
//! What is left: lines the owner counted whose acknowledgement was lost in the
//! instant a link was cut (at most one tick's worth) are counted again by the
//! new owner. Lines in flight are never lost.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::chat::ChatMessage;
use crate::sentiment::NodeId;

/// Lines waiting for acknowledgements; past this a line is counted where it
/// arrived instead of forwarded (still counted once: vote logs add up per node).
pub const MAX_UNACKED: usize = 20_000;
/// An unacknowledged line is sent again after this (the owner is alive but the
/// frame or its acknowledgement was lost, e.g. with a dropped slow link).
pub const RESEND_AFTER: Duration = Duration::from_secs(2);
/// Numbers an owner remembers per forwarder: re-sends come within seconds.
const SEEN_TTL: Duration = Duration::from_secs(120);
const SEEN_MAX: usize = 200_000;
/// Numbers per acknowledgement frame (8 bytes each, well under the frame cap).
pub const ACKS_PER_FRAME: usize = 4096;

pub(super) struct Pending {
    pub owner: NodeId,
    pub msg: ChatMessage,
    pub sent: Instant,
}

/// Numbers recently counted from one forwarder.
#[derive(Default)]
struct Seen {
    set: HashSet<u64>,
    order: VecDeque<(u64, Instant)>,
}

impl Seen {
    /// True the first time `seq` is offered.
    fn first(&mut self, seq: u64, now: Instant) -> bool {
        while let Some(&(old, at)) = self.order.front() {
            if now.saturating_duration_since(at) < SEEN_TTL && self.order.len() < SEEN_MAX {
                break;
            }
            self.set.remove(&old);
            self.order.pop_front();
        }
        let first = self.set.insert(seq);
        if first {
            self.order.push_back((seq, now));
        }
        first
    }
}

pub(super) struct Forwards {
    next_seq: u64,
    unacked: BTreeMap<u64, Pending>,
    seen: HashMap<NodeId, Seen>,
    acks: HashMap<NodeId, Vec<u64>>,
}

impl Default for Forwards {
    fn default() -> Self {
        // Numbers start at this process's start in µs: a restarted node never
        // reuses one an owner may still remember (that would take more than a
        // million forwarded lines per second).
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Forwards {
            next_seq: start,
            unacked: BTreeMap::new(),
            seen: HashMap::new(),
            acks: HashMap::new(),
        }
    }
}

impl Forwards {
    /// Numbers `msg` and keeps it until `owner` acknowledges it; `None` when
    /// too many lines wait already (the caller counts it where it arrived).
    pub fn track(&mut self, owner: NodeId, msg: &ChatMessage, now: Instant) -> Option<u64> {
        if self.unacked.len() >= MAX_UNACKED {
            return None;
        }
        self.next_seq += 1;
        let pending = Pending {
            owner,
            msg: msg.clone(),
            sent: now,
        };
        self.unacked.insert(self.next_seq, pending);
        Some(self.next_seq)
    }

    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// As owner: whether to count line `seq` from `from` (false: a repeat).
    /// Either way it is acknowledged at the next tick.
    pub fn receive(&mut self, from: NodeId, seq: u64, now: Instant) -> bool {
        self.acks.entry(from).or_default().push(seq);
        self.seen.entry(from).or_default().first(seq, now)
    }

    /// `owner` acknowledged `seqs`.
    pub fn acked(&mut self, owner: NodeId, seqs: &[u64]) {
        for seq in seqs {
            if self.unacked.get(seq).is_some_and(|p| p.owner == owner) {
                self.unacked.remove(seq);
            }
        }
    }

    /// Acknowledgements to send, per forwarder, at most [`ACKS_PER_FRAME`] each.
    pub fn take_acks(&mut self) -> Vec<(NodeId, Vec<u64>)> {
        let mut out = Vec::new();
        for (node, seqs) in self.acks.drain() {
            for chunk in seqs.chunks(ACKS_PER_FRAME) {
                out.push((node, chunk.to_vec()));
            }
        }
        out
    }

    /// Every line still waiting for `owner` (it failed or left): the caller
    /// handles them again.
    pub fn take_for(&mut self, owner: NodeId) -> Vec<ChatMessage> {
        let seqs: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, p)| p.owner == owner)
            .map(|(&s, _)| s)
            .collect();
        seqs.into_iter()
            .filter_map(|s| self.unacked.remove(&s))
            .map(|p| p.msg)
            .collect()
    }

    /// Lines for `owner` to send again (its link came back), oldest first;
    /// `older_than` limits it to lines sent at least that long ago.
    pub fn resend_for(
        &mut self,
        owner: Option<NodeId>,
        older_than: Duration,
        now: Instant,
    ) -> Vec<(u64, NodeId, ChatMessage)> {
        let mut out = Vec::new();
        for (&seq, p) in self.unacked.iter_mut() {
            let due = now.saturating_duration_since(p.sent) >= older_than;
            if due && owner.is_none_or(|o| o == p.owner) {
                p.sent = now;
                out.push((seq, p.owner, p.msg.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ChatSource;

    fn line(chatter: &str) -> ChatMessage {
        ChatMessage {
            source: ChatSource::Test,
            channel: "alice".into(),
            chatter_id: chatter.into(),
            text: "yes".into(),
            message_id: None,
            sent_ms: None,
        }
    }

    #[test]
    fn an_owner_counts_a_number_once_and_acknowledges_every_offer() {
        let mut f = Forwards::default();
        let now = Instant::now();
        assert!(f.receive(7, 100, now));
        assert!(!f.receive(7, 100, now), "a re-send is not counted again");
        assert!(f.receive(8, 100, now), "numbers are per forwarder");
        let mut acks = f.take_acks();
        acks.sort();
        assert_eq!(acks, vec![(7, vec![100, 100]), (8, vec![100])]);
        assert!(f.take_acks().is_empty());
    }

    #[test]
    fn acknowledged_lines_are_forgotten_and_the_rest_return_when_the_owner_fails() {
        let mut f = Forwards::default();
        let now = Instant::now();
        let a = f.track(1, &line("x"), now).unwrap();
        let b = f.track(1, &line("y"), now).unwrap();
        let c = f.track(2, &line("z"), now).unwrap();
        assert!(a < b && b < c);
        f.acked(2, &[a]); // not its line: ignored
        f.acked(1, &[a]);
        assert_eq!(f.unacked(), 2);
        let back = f.take_for(1);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].chatter_id, "y");
        assert_eq!(f.unacked(), 1);
    }

    #[test]
    fn resends_are_due_by_age_or_by_owner() {
        let mut f = Forwards::default();
        let t0 = Instant::now();
        let a = f.track(1, &line("x"), t0).unwrap();
        assert!(f.resend_for(None, RESEND_AFTER, t0).is_empty());
        let later = t0 + RESEND_AFTER;
        let again = f.resend_for(None, RESEND_AFTER, later);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].0, again[0].1), (a, 1));
        // Re-armed: not due again at once.
        assert!(f.resend_for(None, RESEND_AFTER, later).is_empty());
        assert_eq!(f.resend_for(Some(1), Duration::ZERO, later).len(), 1);
        assert!(f.resend_for(Some(2), Duration::ZERO, later).is_empty());
    }

    #[test]
    fn too_many_waiting_lines_refuse_a_number() {
        let mut f = Forwards::default();
        let now = Instant::now();
        for _ in 0..MAX_UNACKED {
            f.track(1, &line("x"), now).unwrap();
        }
        assert_eq!(f.track(1, &line("x"), now), None);
    }

    #[test]
    fn the_seen_window_is_bounded() {
        let mut s = Seen::default();
        let t0 = Instant::now();
        assert!(s.first(1, t0));
        assert!(!s.first(1, t0 + Duration::from_secs(1)));
        // Past the TTL the number is forgotten (a re-send never comes this late).
        assert!(s.first(2, t0 + SEEN_TTL + Duration::from_secs(1)));
        assert!(s.first(1, t0 + SEEN_TTL + Duration::from_secs(1)));
    }
}
