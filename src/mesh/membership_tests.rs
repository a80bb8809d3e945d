//! SWIM in memory: a few `Membership`s, a simulated clock and a lossless network
//! that can cut nodes off.

use super::*;

const STEP: Duration = Duration::from_millis(50);

fn timing() -> SwimTiming {
    SwimTiming {
        probe_period: Duration::from_millis(500),
        probe_rtt: Duration::from_millis(200),
        suspect_after: Duration::from_millis(1500),
    }
}

fn ident(node: NodeId, generation: u64) -> Ident {
    Ident {
        node,
        addr: SocketAddr::from(([127, 0, 0, 1], 7000 + node as u16)),
        generation,
    }
}

struct Sim {
    now: Instant,
    nodes: Vec<Membership>,
    /// Nodes that neither send nor receive (crashed or partitioned away).
    cut: Vec<bool>,
    queue: Vec<(Ident, Vec<u8>)>,
    events: Vec<Vec<MemberEvent>>,
}

impl Sim {
    fn new(n: usize) -> Sim {
        let nodes = (0..n)
            .map(|i| Membership::new(ident(i as u64 + 1, 1), timing(), i as u64))
            .collect();
        Sim {
            now: Instant::now(),
            nodes,
            cut: vec![false; n],
            queue: Vec::new(),
            events: vec![Vec::new(); n],
        }
    }

    fn index(&self, node: NodeId) -> Option<usize> {
        self.nodes.iter().position(|m| m.me().node == node)
    }

    fn absorb(&mut self, i: usize, out: Output) {
        if !self.cut[i] {
            self.queue.extend(out.sends);
        }
        self.events[i].extend(out.events);
    }

    /// Delivers everything in flight, then advances the clock one step.
    fn step(&mut self) {
        for _ in 0..10 {
            let batch = std::mem::take(&mut self.queue);
            if batch.is_empty() {
                break;
            }
            for (to, data) in batch {
                let Some(i) = self.index(to.node) else {
                    continue;
                };
                if self.cut[i] {
                    continue;
                }
                let out = self.nodes[i].handle_data(&data, self.now);
                self.absorb(i, out);
            }
        }
        self.now += STEP;
        for i in 0..self.nodes.len() {
            let out = self.nodes[i].handle_timers(self.now);
            self.absorb(i, out);
        }
    }

    /// Steps until `done` holds; returns the simulated time it took.
    fn until(&mut self, limit: Duration, done: impl Fn(&Sim) -> bool) -> Duration {
        let start = self.now;
        while !done(self) {
            assert!(self.now - start < limit, "not within {limit:?}");
            self.step();
        }
        self.now - start
    }

    fn live_seen_by(&self, i: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.nodes[i]
            .members()
            .into_iter()
            .filter(|m| m.state.is_live())
            .map(|m| m.node)
            .collect();
        v.sort_unstable();
        v
    }

    fn join_all_through_first(&mut self) {
        let seed = self.nodes[0].me().clone();
        for i in 1..self.nodes.len() {
            let out = self.nodes[i].announce(seed.clone(), self.now);
            self.absorb(i, out);
        }
        let n = self.nodes.len();
        self.until(Duration::from_secs(10), |s| {
            (0..n).all(|i| s.live_seen_by(i).len() == n - 1)
        });
    }
}

#[test]
fn nodes_join_through_one_seed_and_see_each_other() {
    let mut sim = Sim::new(4);
    sim.join_all_through_first();
    assert_eq!(sim.live_seen_by(3), vec![1, 2, 3]);
    for events in &sim.events {
        let joined = events
            .iter()
            .filter(|e| matches!(e, MemberEvent::Joined { .. }))
            .count();
        assert_eq!(joined, 3, "{events:?}");
    }
    // Probes were acked, so round trips were measured.
    sim.until(Duration::from_secs(10), |s| {
        s.nodes[0].members().iter().all(|m| m.rtt.is_some())
    });
}

#[test]
fn a_crashed_node_is_declared_failed_within_the_bound() {
    let mut sim = Sim::new(3);
    sim.join_all_through_first();
    sim.cut[2] = true;
    let t = timing();
    // Bound from the module doc: members × probe_period + suspect_after, plus slack.
    let bound = t.probe_period * 3 + t.suspect_after + t.probe_period * 2;
    let took = sim.until(bound, |s| {
        s.events[0].contains(&MemberEvent::Failed(3))
            && s.events[1].contains(&MemberEvent::Failed(3))
    });
    assert!(
        took >= t.suspect_after,
        "declared after {took:?}: no suspicion phase?"
    );
    assert_eq!(sim.live_seen_by(0), vec![2]);
    let down = sim.nodes[0]
        .members()
        .into_iter()
        .find(|m| m.node == 3)
        .unwrap();
    assert_eq!(down.state, MemberState::Down);
}

#[test]
fn a_leave_is_seen_as_left_at_once() {
    let mut sim = Sim::new(3);
    sim.join_all_through_first();
    // What the mesh does: a Leave frame to each member, then foca's own leave.
    for i in 0..2 {
        let out = sim.nodes[i].peer_left(3, 1, sim.now);
        sim.absorb(i, out);
    }
    let out = sim.nodes[2].leave(sim.now);
    sim.absorb(2, out);
    sim.cut[2] = true;
    assert!(sim.events[0].contains(&MemberEvent::Left(3)));
    assert!(sim.events[1].contains(&MemberEvent::Left(3)));
    assert!(!sim.events[0].contains(&MemberEvent::Failed(3)));
    let gone = sim.nodes[1]
        .members()
        .into_iter()
        .find(|m| m.node == 3)
        .unwrap();
    assert_eq!(gone.state, MemberState::Left);
    // Nothing changes its mind later.
    for _ in 0..100 {
        sim.step();
    }
    assert!(!sim.events[0].contains(&MemberEvent::Failed(3)));
    assert_eq!(sim.live_seen_by(0), vec![2]);
    // The leaver has nothing left to wake up for.
    assert_eq!(sim.nodes[2].next_deadline(), None);
}

#[test]
fn a_restarted_node_rejoins_with_a_new_generation() {
    let mut sim = Sim::new(3);
    sim.join_all_through_first();
    // Node 3 crashes and comes back at once with the same id, a newer generation.
    sim.nodes[2] = Membership::new(ident(3, 2), timing(), 99);
    sim.events[0].clear();
    let seed = sim.nodes[0].me().clone();
    let out = sim.nodes[2].announce(seed, sim.now);
    sim.absorb(2, out);
    sim.until(Duration::from_secs(10), |s| {
        s.events[0]
            .iter()
            .any(|e| matches!(e, MemberEvent::Joined { node: 3, .. }))
            && s.live_seen_by(2) == vec![1, 2]
    });
    let seen = sim.nodes[0]
        .members()
        .into_iter()
        .find(|m| m.node == 3)
        .unwrap();
    assert_eq!((seen.generation, seen.state), (2, MemberState::Alive));
}

#[test]
fn a_healed_partition_merges_back() {
    let mut sim = Sim::new(3);
    sim.join_all_through_first();
    sim.cut[2] = true;
    sim.until(Duration::from_secs(10), |s| s.live_seen_by(0) == vec![2]);
    sim.cut[2] = false;
    // Announcing to down members (every 10 s) finds it; it renews and rejoins.
    sim.until(Duration::from_secs(40), |s| {
        (0..3).all(|i| s.live_seen_by(i).len() == 2)
    });
}
