//! Whole nodes in a cluster: three in-process `TestServer`s with `[mesh]` on
//! 127.0.0.1:0 (A first, then B and C seeded with A's mesh address) serving the
//! same channel. Votes injected anywhere show once on an overlay anywhere; the
//! owner's graceful leave hands its channels over; a stranger cannot join.

use std::net::SocketAddr;
use std::time::Duration;

use chatpulse::metrics::VoteResult;

use crate::common::{ONE_CHANNEL, Overlay, TEST_TIMEOUT, TestServer, eventually, run, sample};

const SECRET: &str = "cluster-test-secret-0123456789";
/// Generous: the machine is shared and SWIM works in whole probe periods.
const CONVERGE: Duration = Duration::from_secs(20);

fn mesh_toml(seeds: &[SocketAddr], secret: &str) -> String {
    crate::common::mesh_toml(seeds, secret, ONE_CHANNEL)
}

/// A, then B and C seeded with A; returns once all three see each other.
async fn trio() -> Vec<TestServer> {
    crate::common::mesh_trio(SECRET, ONE_CHANNEL, ONE_CHANNEL).await
}

/// Every node counts `n` overlays of alice (presence has spread).
async fn viewers_everywhere(nodes: &[&TestServer], n: usize) {
    eventually("presence on every node", CONVERGE, || {
        nodes
            .iter()
            .all(|t| t.server.app().hub.viewers("alice") == n)
            .then_some(())
    })
    .await;
}

fn counted(r: VoteResult) -> bool {
    matches!(r, VoteResult::Applied | VoteResult::Forwarded)
}

#[test]
fn votes_on_any_node_show_once_on_every_overlay() {
    run(TEST_TIMEOUT, async {
        let nodes = trio().await;
        let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
        let mut overlay = Overlay::connect(c.addr, &c.token("alice")).await.unwrap();
        assert_eq!(overlay.frame().await.total_votes, 0);
        viewers_everywhere(&[a, b, c], 1).await;

        for i in 0..5 {
            assert!(counted(a.chat("alice", &format!("a{i}"), "yes").await));
        }
        for i in 0..3 {
            assert!(counted(b.chat("alice", &format!("b{i}"), "no").await));
        }
        let f = overlay
            .frame_where("all 8 votes", |f| f.total_votes == 8)
            .await;
        assert_eq!((f.for_votes, f.against_votes), (5, 3));

        // Counted exactly once, by the owner; the others forwarded.
        let owner = a.mesh().owner("alice");
        let sum = |label: &str| -> u64 {
            nodes
                .iter()
                .map(|n| {
                    sample(
                        &n.metrics(),
                        &format!("vote_processing_total{{result=\"{label}\"}}"),
                    )
                })
                .sum()
        };
        assert_eq!(sum("applied"), 8);
        let forwarded_expected = [(a, 5), (b, 3)]
            .iter()
            .filter(|(n, _)| n.mesh().node() != owner)
            .map(|(_, k)| *k)
            .sum::<u64>();
        assert_eq!(sum("forwarded"), forwarded_expected);
        // Every node's copy of the log converged to the same bar.
        eventually("every node merged the log", CONVERGE, || {
            nodes
                .iter()
                .all(|n| {
                    let m = n.metrics();
                    sample(&m, "mesh_members{state=\"alive\"}") == 3
                        && (n.mesh().node() == owner
                            || sample(&m, "mesh_convergence_seconds_count") > 0)
                })
                .then_some(())
        })
        .await;
        assert!(
            c.metrics()
                .contains("mesh_frames_total{kind=\"vote_log\",dir=\"in\"}")
        );
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn the_owner_leaving_hands_its_channels_over() {
    run(TEST_TIMEOUT, async {
        let mut nodes = trio().await;
        let owner = nodes[0].mesh().owner("alice");
        let oi = nodes.iter().position(|n| n.mesh().node() == owner).unwrap();
        let old_owner = nodes.remove(oi);
        let (v, i) = (&nodes[0], &nodes[1]);
        let mut overlay = Overlay::connect(v.addr, &v.token("alice")).await.unwrap();
        overlay.frame().await;
        viewers_everywhere(&[v, i, &old_owner], 1).await;

        for k in 0..3 {
            assert_eq!(
                i.chat("alice", &format!("x{k}"), "yes").await,
                VoteResult::Forwarded
            );
        }
        overlay.frame_where("3 votes", |f| f.total_votes == 3).await;

        old_owner.stop().await;
        eventually("the survivors agree on a new owner", CONVERGE, || {
            let (mv, mi) = (v.mesh(), i.mesh());
            (mv.live().len() == 2 && mi.live().len() == 2 && mv.owner("alice") == mi.owner("alice"))
                .then_some(())
        })
        .await;
        for k in 0..3 {
            assert!(counted(i.chat("alice", &format!("y{k}"), "no").await));
        }
        assert!(counted(v.chat("alice", "z", "no").await));
        let f = overlay
            .frame_where("all 7 votes", |f| f.total_votes == 7)
            .await;
        assert_eq!((f.for_votes, f.against_votes), (3, 4));
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn a_node_without_the_secret_cannot_join_and_changes_nothing() {
    run(TEST_TIMEOUT, async {
        let a = TestServer::start_with(&mesh_toml(&[], SECRET), None, None).await;
        let seed = a.mesh().local_addr();
        let stranger_toml = mesh_toml(&[seed], "some-other-secret-0123456789");
        let d = TestServer::start_with(&stranger_toml, None, None).await;
        let mut overlay = Overlay::connect(a.addr, &a.token("alice")).await.unwrap();
        overlay.frame().await;
        let mut theirs = Overlay::connect(d.addr, &d.token("alice")).await.unwrap();
        theirs.frame().await;

        // The stranger dials A, cannot verify A's challenge and gives up.
        eventually("the stranger refused", CONVERGE, || {
            (sample(&d.metrics(), "mesh_auth_failures_total") > 0).then_some(())
        })
        .await;
        assert_eq!(a.mesh().live().len(), 1);
        assert_eq!(d.mesh().live().len(), 1);
        // The stranger counts alone; nothing of it reaches A.
        assert_eq!(d.chat("alice", "s", "no").await, VoteResult::Applied);
        assert_eq!(a.chat("alice", "m", "yes").await, VoteResult::Applied);
        let f = overlay
            .frame_where("A's vote", |f| f.total_votes >= 1)
            .await;
        assert_eq!((f.for_votes, f.against_votes), (1, 0));
        assert_eq!(a.server.app().hub.viewers("alice"), 1);
        a.stop().await;
        d.stop().await;
    });
}

#[test]
fn mesh_status_on_the_command_line_lists_every_member() {
    run(TEST_TIMEOUT, async {
        let nodes = trio().await;
        let a = &nodes[0];
        let status = |dir: &std::path::Path| {
            std::process::Command::new(env!("CARGO_BIN_EXE_chatpulse"))
                .args(["mesh", "status", "--listen", &a.addr.to_string()])
                .arg("--data-dir")
                .arg(dir)
                .env("CHATPULSE_LOG_LEVEL", "error")
                .output()
                .expect("run chatpulse mesh status")
        };
        let out = status(&a.data_dir);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{table}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(table.contains("3 members, 3 alive"), "{table}");
        for n in &nodes {
            let id = format!("{:016x}", n.mesh().node());
            assert!(table.contains(&id), "{id} missing:\n{table}");
        }
        assert!(table.contains("(this node)"), "{table}");

        // Without the node's token file: refused, with a reason.
        let elsewhere = crate::common::temp_dir("no-token");
        let out = status(&elsewhere);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cli.token"));
        // A wrong token is not an admin session.
        let (code, _, _) = crate::common::http_raw(
            a.addr,
            b"GET /api/mesh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("answer");
        assert_eq!(code, 401);
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn readiness_shows_the_mesh_and_a_lone_node_stays_ready() {
    run(TEST_TIMEOUT, async {
        let mut nodes = trio().await;
        let (status, _, body) = crate::common::get(nodes[0].addr, "/health/ready").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("\"mesh\":{\"members\":3,\"live\":3}"),
            "{body}"
        );
        let a = nodes.remove(0);
        for n in nodes {
            n.stop().await;
        }
        eventually("A alone", CONVERGE, || {
            (a.mesh().live().len() == 1).then_some(())
        })
        .await;
        let (status, _, body) = crate::common::get(a.addr, "/health/ready").await;
        assert_eq!(status, 200, "a lone node still serves: {body}");
        assert!(body.contains("\"live\":1"), "{body}");
        a.stop().await;
    });
}

#[test]
fn a_seed_given_by_name_is_resolved_at_each_attempt() {
    run(TEST_TIMEOUT, async {
        let a = TestServer::start_with(&mesh_toml(&[], SECRET), None, None).await;
        let port = a.mesh().local_addr().port();
        // `localhost` may also resolve to ::1, where nothing listens: that one
        // address fails, the 127.0.0.1 one joins.
        let toml = format!(
            "[mesh]\nlisten = \"127.0.0.1:0\"\nseeds = [\"localhost:{port}\"]\nsecret = \"{SECRET}\"\n\n{ONE_CHANNEL}"
        );
        let b = TestServer::start_with(&toml, None, None).await;
        eventually("B joined through the name", CONVERGE, || {
            (a.mesh().live().len() == 2 && b.mesh().live().len() == 2).then_some(())
        })
        .await;
        a.stop().await;
        b.stop().await;
    });
}
