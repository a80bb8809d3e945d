//! Streamers and configs across a cluster (no PostgreSQL): three in-process
//! nodes meshed on 127.0.0.1:0. A config-file channel has one URL everywhere; a
//! save or a token rotation on one node reaches the overlays on every node; a
//! channel only one node knows appears on the others; a node that was down
//! catches up when it rejoins.

use std::net::SocketAddr;
use std::time::Duration;

use chatpulse::channel::OverlayConfig;

use crate::common::{ONE_CHANNEL, Overlay, Received, TEST_TIMEOUT, TestServer, eventually, run};

const SECRET: &str = "replica-test-secret-0123456789";
const CONVERGE: Duration = Duration::from_secs(20);

fn toml(seeds: &[SocketAddr], channels: &str) -> String {
    crate::common::mesh_toml(seeds, SECRET, channels)
}

/// A with `first`, then B and C (seeded with A) with `others`; all three live.
async fn trio_with(first: &str, others: &str) -> Vec<TestServer> {
    crate::common::mesh_trio(SECRET, first, others).await
}

fn label(t: &TestServer, login: &str) -> Option<String> {
    t.server
        .app()
        .hub
        .config_of(login)
        .map(|c| c.for_label.clone())
}

fn relabeled(label: &str) -> OverlayConfig {
    OverlayConfig {
        for_label: label.into(),
        ..OverlayConfig::default()
    }
}

#[test]
fn a_config_file_channel_has_one_url_on_every_node() {
    run(TEST_TIMEOUT, async {
        let nodes = trio_with(ONE_CHANNEL, ONE_CHANNEL).await;
        let token = nodes[0].token("alice");
        for n in &nodes {
            assert_eq!(n.token("alice"), token);
            let mut o = Overlay::connect(n.addr, &token).await.unwrap();
            assert_eq!(o.frame().await.total_votes, 0);
        }
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn a_save_on_one_node_reaches_the_overlays_on_every_node() {
    run(TEST_TIMEOUT, async {
        let nodes = trio_with(ONE_CHANNEL, ONE_CHANNEL).await;
        let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
        let mut on_c = Overlay::connect(c.addr, &c.token("alice")).await.unwrap();
        on_c.frame().await;
        let app = b.server.app();
        let version = app
            .save_config("alice", relabeled("Ja"), "test")
            .await
            .expect("saved on B");
        let f = on_c
            .frame_where("B's label on C's overlay", |f| f.for_label == "Ja")
            .await;
        assert_eq!(f.status, "active");
        eventually("A and C store B's version", CONVERGE, || {
            [a, c]
                .iter()
                .all(|n| {
                    let s = n.server.app().hub.streamers();
                    s.iter()
                        .any(|s| s.login == "alice" && s.config_version == version)
                })
                .then_some(())
        })
        .await;
        assert_eq!(label(a, "alice").as_deref(), Some("Ja"));
        // A later save on another node wins everywhere, B's included.
        a.server
            .app()
            .save_config("alice", relabeled("Oui"), "test")
            .await
            .expect("saved on A");
        on_c.frame_where("A's label", |f| f.for_label == "Oui")
            .await;
        eventually("B shows A's save", CONVERGE, || {
            (label(b, "alice").as_deref() == Some("Oui")).then_some(())
        })
        .await;
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn a_rotated_url_closes_its_overlays_on_every_node() {
    run(TEST_TIMEOUT, async {
        let nodes = trio_with(ONE_CHANNEL, ONE_CHANNEL).await;
        let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
        let old = a.token("alice");
        let mut on_c = Overlay::connect(c.addr, &old).await.unwrap();
        on_c.frame().await;
        let new = a
            .server
            .app()
            .rotate_token("alice", "test")
            .await
            .expect("rotated on A");
        let closed = loop {
            match on_c.recv(CONVERGE).await {
                Received::Frame(_) => continue,
                Received::Closed(code) => break code,
            }
        };
        assert_eq!(closed, Some(4404), "the old URL is refused on C too");
        for n in [b, c] {
            eventually("the new token everywhere", CONVERGE, || {
                (n.token("alice") == new).then_some(())
            })
            .await;
            let mut o = Overlay::connect(n.addr, &new).await.unwrap();
            o.frame().await;
        }
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn a_channel_one_node_knows_is_served_by_every_node() {
    run(TEST_TIMEOUT, async {
        let both = format!("{ONE_CHANNEL}[[channel]]\nlogin = \"bob\"\nfor_label = \"Bob!\"\n");
        let nodes = trio_with(&both, ONE_CHANNEL).await;
        let token = nodes[0].token("bob");
        for n in &nodes[1..] {
            eventually("bob replicated", CONVERGE, || {
                (label(n, "bob").as_deref() == Some("Bob!")).then_some(())
            })
            .await;
            assert_eq!(n.token("bob"), token);
            let mut o = Overlay::connect(n.addr, &token).await.unwrap();
            assert_eq!(o.frame().await.for_label, "Bob!");
        }
        for n in nodes {
            n.stop().await;
        }
    });
}

#[test]
fn a_node_that_was_down_catches_up_when_it_rejoins() {
    run(TEST_TIMEOUT, async {
        let mut nodes = trio_with(ONE_CHANNEL, ONE_CHANNEL).await;
        let seed = nodes[0].mesh().local_addr();
        let c = nodes.pop().unwrap();
        let dir = c.stop().await;
        let (a, b) = (&nodes[0], &nodes[1]);
        eventually("C is gone", CONVERGE, || {
            (a.mesh().live().len() == 2).then_some(())
        })
        .await;
        a.server
            .app()
            .save_config("alice", relabeled("While you were out"), "test")
            .await
            .expect("saved on A");
        let new = b
            .server
            .app()
            .rotate_token("alice", "test")
            .await
            .expect("rotated on B");
        let c = TestServer::start_with(&toml(&[seed], ONE_CHANNEL), Some(dir), None).await;
        eventually("C caught up", CONVERGE, || {
            (label(&c, "alice").as_deref() == Some("While you were out") && c.token("alice") == new)
                .then_some(())
        })
        .await;
        let mut o = Overlay::connect(c.addr, &new).await.unwrap();
        assert_eq!(o.frame().await.for_label, "While you were out");
        c.stop().await;
        for n in nodes {
            n.stop().await;
        }
    });
}
