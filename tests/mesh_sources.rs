//! Chat-source ownership in a cluster: three in-process nodes with the IRC
//! source, all connected to one fake Twitch IRC server. Each channel is JOINed
//! by exactly one node (its owner), so a line is read once; when that node
//! leaves, its channels are JOINed by the survivors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::fake_irc::FakeIrc;
use crate::common::{TEST_TIMEOUT, TestServer, eventually, run};

const SECRET: &str = "sources-test-secret-0123456789";
/// Twitch's JOIN pace (a batch per ~11 s) bounds a handover; SWIM adds seconds.
const HANDOVER: Duration = Duration::from_secs(40);
const CHANNELS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

fn toml(irc: &FakeIrc, seeds: &[SocketAddr]) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[mesh]\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\nsecret = \"{SECRET}\"\n\n{}",
        seeds.join(", "),
        irc.toml(&CHANNELS)
    )
}

/// What each open connection has joined (JOINs minus PARTs, in order).
fn joined(irc: &FakeIrc) -> BTreeMap<usize, BTreeSet<String>> {
    let open = irc.open_conns();
    let mut sets: BTreeMap<usize, BTreeSet<String>> =
        open.iter().map(|&c| (c, BTreeSet::new())).collect();
    for r in irc.received() {
        let Some(set) = sets.get_mut(&r.conn) else {
            continue;
        };
        let (join, list) = match (r.line.strip_prefix("JOIN "), r.line.strip_prefix("PART ")) {
            (Some(list), _) => (true, list),
            (_, Some(list)) => (false, list),
            _ => continue,
        };
        for c in list.split(',').map(|c| c.trim().trim_start_matches('#')) {
            if join {
                set.insert(c.to_string());
            } else {
                set.remove(c);
            }
        }
    }
    sets
}

/// `Some` once `readers` connections are open and every channel is joined by
/// exactly one of them.
fn read_once(irc: &FakeIrc, readers: usize) -> Option<BTreeMap<usize, BTreeSet<String>>> {
    let sets = joined(irc);
    let once = CHANNELS
        .iter()
        .all(|c| sets.values().filter(|s| s.contains(*c)).count() == 1);
    (sets.len() == readers && once).then_some(sets)
}

#[test]
fn each_channel_is_read_by_one_node_and_moves_when_it_leaves() {
    run(TEST_TIMEOUT, async {
        let irc = FakeIrc::start(false).await;
        let a = TestServer::start_with(&toml(&irc, &[]), None, None).await;
        let seed = a.mesh().local_addr();
        let b = TestServer::start_with(&toml(&irc, &[seed]), None, None).await;
        let c = TestServer::start_with(&toml(&irc, &[seed]), None, None).await;
        let mut nodes = vec![a, b, c];
        eventually("three live members", HANDOVER, || {
            nodes
                .iter()
                .all(|n| n.mesh().live().len() == 3)
                .then_some(())
        })
        .await;
        let sets = eventually("each channel read by one node", HANDOVER, || {
            read_once(&irc, 3)
        })
        .await;
        // Rendezvous hashing spreads six channels over more than one reader.
        assert!(
            sets.values().filter(|s| !s.is_empty()).count() > 1,
            "{sets:?}"
        );
        // The reader of alice leaves; a survivor takes its channels over.
        let owner = nodes[0].mesh().owner("alice");
        let i = nodes.iter().position(|n| n.mesh().node() == owner).unwrap();
        nodes.remove(i).stop().await;
        eventually("the survivors read every channel once", HANDOVER, || {
            read_once(&irc, 2)
        })
        .await;
        for n in nodes {
            n.stop().await;
        }
    });
}
