//! `chatpulse-bench partition`: convergence of a mesh after a network partition
//! heals. K nodes run in their own network namespaces ([`super::netlab`]);
//! votes enter the first node (IRC feed A) and the last (IRC feed C) while the
//! mesh is split into {first .. K-1} | {last}; then the split heals and the tool
//! times how long until every overlay on every node shows the same totals, equal
//! to the votes sent (nothing lost, nothing counted twice). Repeated for several
//! rounds; needs root (namespaces, veths and bridges are the tool's own, and are
//! removed when it ends).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;

use super::feed::Feed;
use super::netlab::Lab;
use super::stats::json_u64;
use super::{MeshOpts, Node, NodeSpec, Options, spawn_node};

/// The mesh port every lab node listens on (each has its own namespace).
const MESH_PORT: u16 = 7946;
/// A round that has not converged this long after the heal is reported as such.
const CONVERGE_LIMIT: Duration = Duration::from_secs(20);
/// How often the tool compares the overlays' totals.
const POLL: Duration = Duration::from_millis(5);

/// What happens to the last node each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Its mesh link is cut (packets dropped) while both sides take votes.
    Split,
    /// It is killed with SIGKILL while the others take votes, then restarted
    /// on its own data.
    Kill,
}

#[derive(Debug, Clone)]
pub struct PartitionOptions {
    pub fault: Fault,
    pub server_bin: std::path::PathBuf,
    pub nodes: usize,
    pub broadcasters: usize,
    pub votes_per_sec: f64,
    /// How long each partition lasts (votes flow on both sides meanwhile).
    pub split: Duration,
    pub rounds: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Round {
    pub votes_sent: u64,
    /// Votes sent since the start, all rounds.
    pub votes_sent_total: u64,
    /// Frames the overlays on each side received during the split.
    pub frames_majority: u64,
    pub frames_minority: u64,
    /// Heal → every overlay on every node agrees with the votes sent.
    pub converged: Option<Duration>,
    /// Heal → the nodes first agree with each other (whatever the total).
    pub agreed: Option<Duration>,
    /// Per node: overlays' total minus votes sent when the round ended.
    pub off_by: Vec<i64>,
    /// Per node: what its overlays showed, in all, the moment the split healed.
    pub at_heal: Vec<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct PartitionReport {
    pub fault: Option<Fault>,
    pub nodes: usize,
    pub broadcasters: usize,
    pub split_s: f64,
    pub rounds: Vec<Round>,
}

impl PartitionReport {
    fn converged(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self.rounds.iter().filter_map(|r| r.converged).collect();
        v.sort();
        v
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let (n, b, t) = (self.nodes, self.broadcasters, self.split_s);
        let _ = match self.fault {
            Some(Fault::Kill) => writeln!(
                s,
                "{n} nodes in namespaces, {b} broadcasters; node {n} killed (SIGKILL) for {t:.1} s per round while votes go into node 1, then restarted (\"heal\" = restarted, its overlays reconnected)"
            ),
            _ => writeln!(
                s,
                "{n} nodes in namespaces, {b} broadcasters; split {{1..{}}} | {{{n}}} for {t:.1} s per round, 2/3 of the votes into node 1, 1/3 into the last",
                n - 1
            ),
        };
        for (i, r) in self.rounds.iter().enumerate() {
            let ms = |d: Option<Duration>, none: &str| {
                d.map_or(none.to_string(), |d| {
                    format!("{:.0} ms", d.as_secs_f64() * 1e3)
                })
            };
            let _ = writeln!(
                s,
                "round {}: votes {} (sum {})  frames during split {} | {}  totals at heal {:?}  after heal: nodes agree {}, exact {}  off by {:?}",
                i + 1,
                r.votes_sent,
                r.votes_sent_total,
                r.frames_majority,
                r.frames_minority,
                r.at_heal,
                ms(r.agreed, "never"),
                ms(r.converged, "NEVER"),
                r.off_by
            );
        }
        let c = self.converged();
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        if let (Some(first), Some(last)) = (c.first(), c.last()) {
            let _ = writeln!(
                s,
                "convergence ms   median {:.0}  min {:.0}  max {:.0}  ({} of {} rounds converged)",
                ms(&c[c.len() / 2]),
                ms(first),
                ms(last),
                c.len(),
                self.rounds.len()
            );
        }
        s
    }

    pub fn json(&self) -> String {
        let c = self.converged();
        let ms = |d: Option<&Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1e3);
        let rounds: Vec<String> = self
            .rounds
            .iter()
            .map(|r| {
                format!(
                    "{{\"votes_sent\":{},\"frames_majority\":{},\"frames_minority\":{},\"converged_ms\":{:.1},\"agreed_ms\":{:.1},\"off_by\":{:?},\"at_heal\":{:?}}}",
                    r.votes_sent,
                    r.frames_majority,
                    r.frames_minority,
                    ms(r.converged.as_ref()),
                    ms(r.agreed.as_ref()),
                    r.off_by,
                    r.at_heal
                )
            })
            .collect();
        format!(
            "{{\"nodes\":{},\"broadcasters\":{},\"split_s\":{:.1},\"converged_rounds\":{},\"median_ms\":{:.1},\"max_ms\":{:.1},\"rounds\":[{}]}}",
            self.nodes,
            self.broadcasters,
            self.split_s,
            c.len(),
            ms(c.get(c.len() / 2)),
            ms(c.last()),
            rounds.join(",")
        )
    }
}

/// Latest `totalVotes` per (node, broadcaster), and frames per node.
#[derive(Default)]
struct Totals {
    latest: HashMap<(usize, usize), u64>,
    frames: Vec<u64>,
}

pub async fn run(o: &PartitionOptions) -> Result<PartitionReport, String> {
    if !(2..=5).contains(&o.nodes) || o.broadcasters == 0 || o.broadcasters > 200 {
        return Err("refusing: 2..=5 nodes, 1..=200 broadcasters".into());
    }
    if o.rounds == 0 || o.rounds > 20 || o.split > Duration::from_secs(120) {
        return Err("refusing: 1..=20 rounds of at most 120 s".into());
    }
    if !super::netlab::available() {
        return Err("needs root and iproute2 (it builds its own network namespaces)".into());
    }
    let mut lab = Lab::create(o.nodes)?;
    let last = o.nodes - 1;
    let feed_a = Feed::start_on(lab.tool_ip().into(), "a")
        .await
        .map_err(|e| e.to_string())?;
    let feed_c = Feed::start_on(lab.tool_ip().into(), "c")
        .await
        .map_err(|e| e.to_string())?;
    let mut nodes = start_nodes(o, &lab, &feed_a, &feed_c).await?;
    let totals = Arc::new(Mutex::new(Totals {
        frames: vec![0; nodes.len()],
        ..Default::default()
    }));
    let mut overlays = Vec::with_capacity(nodes.len());
    for (n, node) in nodes.iter().enumerate() {
        overlays.push(watch_node(n, node, &totals).await?);
    }
    let channels: Vec<String> = (0..o.broadcasters).map(|i| format!("b{i:06}")).collect();
    let mut sent = 0u64;
    let mut rounds = Vec::with_capacity(o.rounds);
    for _ in 0..o.rounds {
        let frames_before = lock(&totals).frames.clone();
        let round_sent = match o.fault {
            Fault::Split => {
                let majority: Vec<usize> = (0..last).collect();
                lab.partition(&[&majority, &[last]])?;
                // Two thirds on the larger side: the sides' totals differ at the heal.
                let rate = o.votes_per_sec / 3.0;
                let (a, c) = futures_util::future::join(
                    feed_a.send_votes(&channels, 2.0 * rate, o.split),
                    feed_c.send_votes(&channels, rate, o.split),
                )
                .await;
                lab.heal()?;
                a + c
            }
            Fault::Kill => {
                nodes[last].kill9();
                overlays[last].clear();
                let a = feed_a.send_votes(&channels, o.votes_per_sec, o.split).await;
                nodes[last].restart(lab.command(last, &o.server_bin))?;
                overlays[last] = watch_node(last, &nodes[last], &totals).await?;
                a
            }
        };
        sent += round_sent;
        let healed = Instant::now();
        let (frames_at_heal, at_heal) = {
            let t = lock(&totals);
            let sums = (0..nodes.len())
                .map(|n| sum_of(&t, n, o.broadcasters))
                .collect();
            (t.frames.clone(), sums)
        };
        let mut first_agreement = None;
        let converged = loop {
            let (agreeing, total) = {
                let t = lock(&totals);
                let agreeing = agree(&t, nodes.len(), o.broadcasters);
                (agreeing, sum_of(&t, 0, o.broadcasters))
            };
            if agreeing && first_agreement.is_none() {
                first_agreement = Some(healed.elapsed());
            }
            if agreeing && total == sent {
                break Some(healed.elapsed());
            }
            if healed.elapsed() > CONVERGE_LIMIT {
                break None;
            }
            smol::Timer::after(POLL).await;
        };
        let during: Vec<u64> = frames_at_heal
            .iter()
            .zip(&frames_before)
            .map(|(now, before)| now - before)
            .collect();
        let off_by = {
            let t = lock(&totals);
            (0..nodes.len())
                .map(|n| sum_of(&t, n, o.broadcasters) as i64 - sent as i64)
                .collect()
        };
        rounds.push(Round {
            votes_sent: round_sent,
            votes_sent_total: sent,
            frames_majority: during[..last].iter().sum(),
            frames_minority: during[last],
            converged,
            agreed: first_agreement,
            off_by,
            at_heal,
        });
        // Let SWIM settle (suspects confirmed alive) before the next split.
        smol::Timer::after(Duration::from_secs(2)).await;
    }
    drop(nodes);
    Ok(PartitionReport {
        fault: Some(o.fault),
        nodes: o.nodes,
        broadcasters: o.broadcasters,
        split_s: o.split.as_secs_f64(),
        rounds,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sum_of(t: &Totals, node: usize, broadcasters: usize) -> u64 {
    (0..broadcasters)
        .map(|b| t.latest.get(&(node, b)).copied().unwrap_or(0))
        .sum()
}

/// Every node's overlays agree channel by channel.
fn agree(t: &Totals, nodes: usize, broadcasters: usize) -> bool {
    (0..broadcasters).all(|b| {
        let first = t.latest.get(&(0, b));
        (1..nodes).all(|n| t.latest.get(&(n, b)) == first)
    })
}

/// Node 0 reads feed A, the last node feed C, the others no chat; every node
/// keeps every vote (`memory_seconds = "infinite"`) so totals are comparable.
async fn start_nodes(
    o: &PartitionOptions,
    lab: &Lab,
    feed_a: &Feed,
    feed_c: &Feed,
) -> Result<Vec<Node>, String> {
    let opts = Options {
        server_bin: o.server_bin.clone(),
        sockets: 0,
        broadcasters: o.broadcasters,
        votes_per_sec: o.votes_per_sec,
        duration: o.split,
        warmup: Duration::ZERO,
        connect_rate: 0.0,
        nodes: o.nodes,
    };
    let seed = SocketAddr::new(lab.mesh_ip(0).into(), MESH_PORT);
    let mut nodes = Vec::with_capacity(o.nodes);
    for i in 0..o.nodes {
        let feed = match i {
            0 => Some(feed_a.addr),
            i if i == o.nodes - 1 => Some(feed_c.addr),
            _ => None,
        };
        let spec = NodeSpec {
            http_ip: lab.client_ip(i).into(),
            feed,
            mesh: Some(MeshOpts {
                listen: SocketAddr::new(lab.mesh_ip(i).into(), MESH_PORT),
                seed: (i > 0).then_some(seed),
            }),
            channel_extra: "memory_seconds = \"infinite\"\n",
        };
        nodes.push(spawn_node(&opts, spec, lab.command(i, &o.server_bin))?);
    }
    super::await_alive(&nodes, Duration::from_secs(60)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while feed_a.joined() == 0 || feed_c.joined() == 0 {
        if Instant::now() > deadline {
            return Err("the nodes never logged in to the feeds".into());
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    Ok(nodes)
}

/// One overlay per broadcaster on node `n`, recording the latest `totalVotes`.
async fn watch_node(
    n: usize,
    node: &Node,
    totals: &Arc<Mutex<Totals>>,
) -> Result<Vec<smol::Task<()>>, String> {
    let mut tasks = Vec::new();
    for (b, token) in node.tokens.iter().enumerate() {
        let url = format!("ws://{}/ws/overlay/{token}", node.addr);
        let tcp = smol::net::TcpStream::connect(node.addr)
            .await
            .map_err(|e| format!("overlay on node {n}: {e}"))?;
        let (mut ws, _) = async_tungstenite::client_async(url, tcp)
            .await
            .map_err(|e| format!("overlay on node {n}: {e}"))?;
        let totals = Arc::clone(totals);
        tasks.push(smol::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                if let Some(total) = json_u64(&text, "totalVotes") {
                    let mut t = lock(&totals);
                    t.latest.insert((n, b), total);
                    t.frames[n] += 1;
                }
            }
        }));
    }
    Ok(tasks)
}
