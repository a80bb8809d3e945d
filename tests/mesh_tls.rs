//! Mutual TLS on the mesh (`[mesh] tls_cert/tls_key/tls_ca`), with a private CA
//! and node certificates made by `openssl` for this test: two nodes with
//! certificates from the CA form a cluster and a vote on one reaches the other's
//! overlay; a node whose certificate comes from another CA, and a node without
//! TLS, are refused and counted; half a TLS setup or a bad file stops the start
//! naming the key. Needs `openssl` (skips loudly without it, unless
//! CHATPULSE_TEST_REQUIRE_TOOLS is set).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chatpulse::{Mode, Server};

use crate::common::{
    ONE_CHANNEL, Overlay, TEST_TIMEOUT, TestServer, eventually, openssl, openssl_available, run,
    temp_dir,
};

const SECRET: &str = "mesh-tls-test-secret-0123456789";
const CONVERGE: Duration = Duration::from_secs(20);

/// `ca{tag}.pem` and a node certificate `{node}.pem`/`{node}.key` it signed,
/// for the name `chatpulse-mesh`, usable as server and as client.
fn make_ca(dir: &Path, tag: &str) {
    let ec = "ec_paramgen_curve:prime256v1";
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            ec,
            "-nodes",
            "-keyout",
            &format!("ca{tag}.key"),
            "-out",
            &format!("ca{tag}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=chatpulse mesh test CA {tag}"),
        ],
    );
}

fn make_node(dir: &Path, ca: &str, node: &str) -> (PathBuf, PathBuf) {
    let ec = "ec_paramgen_curve:prime256v1";
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            ec,
            "-nodes",
            "-keyout",
            &format!("{node}.key"),
            "-out",
            &format!("{node}.csr"),
            "-subj",
            &format!("/CN={node}"),
        ],
    );
    std::fs::write(
        dir.join(format!("{node}.cnf")),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:chatpulse-mesh\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{node}.csr"),
            "-CA",
            &format!("ca{ca}.pem"),
            "-CAkey",
            &format!("ca{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{node}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{node}.cnf"),
        ],
    );
    (
        dir.join(format!("{node}.pem")),
        dir.join(format!("{node}.key")),
    )
}

fn toml(seed: Option<std::net::SocketAddr>, tls: Option<(&Path, &Path, &Path)>) -> String {
    let mut t = format!("[mesh]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n");
    if let Some(seed) = seed {
        t += &format!("seeds = [\"{seed}\"]\n");
    }
    if let Some((cert, key, ca)) = tls {
        t += &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
            cert.display(),
            key.display(),
            ca.display()
        );
    }
    format!("{t}\n{ONE_CHANNEL}")
}

fn auth_failures(t: &TestServer) -> u64 {
    t.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("mesh_auth_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn nodes_with_certificates_from_the_ca_form_a_cluster_and_others_are_refused() {
    if !openssl_available() {
        return;
    }
    run(TEST_TIMEOUT, async {
        let dir = temp_dir("mesh-tls");
        make_ca(&dir, "1");
        make_ca(&dir, "2");
        let ca = dir.join("ca1.pem");
        let (ca_, cb) = (make_node(&dir, "1", "a"), make_node(&dir, "1", "b"));
        let rogue = make_node(&dir, "2", "rogue");

        let a = TestServer::start_with(&toml(None, Some((&ca_.0, &ca_.1, &ca))), None, None).await;
        let seed = a.mesh().local_addr();
        let b =
            TestServer::start_with(&toml(Some(seed), Some((&cb.0, &cb.1, &ca))), None, None).await;
        eventually("A and B meshed over TLS", CONVERGE, || {
            (a.mesh().live().len() == 2 && b.mesh().live().len() == 2).then_some(())
        })
        .await;
        let mut on_b = Overlay::connect(b.addr, &b.token("alice")).await.unwrap();
        on_b.frame().await;
        eventually("B's overlay known on A", CONVERGE, || {
            (a.server.app().hub.viewers("alice") == 1).then_some(())
        })
        .await;
        a.chat("alice", "viewer", "yes").await;
        on_b.frame_where("A's vote on B", |f| f.for_votes == 1)
            .await;

        // Another CA's certificate, and no TLS at all: refused, and counted.
        let ca2 = dir.join("ca2.pem");
        let r = TestServer::start_with(
            &toml(Some(seed), Some((&rogue.0, &rogue.1, &ca2))),
            None,
            None,
        )
        .await;
        let plain = TestServer::start_with(&toml(Some(seed), None), None, None).await;
        eventually("both strangers refused", CONVERGE, || {
            (auth_failures(&a) >= 2).then_some(())
        })
        .await;
        assert_eq!(a.mesh().live().len(), 2);
        assert_eq!(r.mesh().live().len(), 1);
        assert_eq!(plain.mesh().live().len(), 1);
        for n in [a, b, r, plain] {
            n.stop().await;
        }
    });
}

#[test]
fn half_a_mesh_tls_setup_or_a_bad_file_stops_the_start() {
    let half = chatpulse::config::from_toml_str(
        "[mesh]\nlisten = \"127.0.0.1:0\"\nsecret = \"0123456789abcdef\"\ntls_cert = \"a.pem\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        half.contains("mesh.tls_key") && half.contains("mesh.tls_ca"),
        "{half}"
    );
    let bad = chatpulse::config::from_toml_str("[mesh]\ntls_name = \"not a name!\"\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("mesh.tls_name"), "{bad}");

    let dir = temp_dir("mesh-tls-bad");
    let missing = dir.join("missing.pem");
    let mut config =
        chatpulse::config::from_toml_str(&toml(None, Some((&missing, &missing, &missing))))
            .unwrap();
    config.data_dir = dir.clone();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let err = Server::start(config, Mode::Serve)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("mesh.tls_cert"), "{err}");
}
