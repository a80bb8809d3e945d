//! Hostile and broken peers against a real node: the wrong secret, another
//! protocol version, replayed recordings, garbage bytes, and a peer that stops
//! reading. Raw TCP clients play the strangers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatpulse::mesh::wire::{self, MAX_HELLO, PROTOCOL_VERSION};
use chatpulse::mesh::{Frame, MeshKey, SwimTiming};
use chatpulse::sentiment::NodeId;
use smol::Executor;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use super::{
    CONVERGE, Gate, Node, Recorder, SECRET, WRONG, config, converge, on_executor, start,
    start_with, trio, vote_log,
};
use crate::common::{eventually, read_to_close};

/// Reads one frame, the `seq`-th of the connection.
async fn read_one(s: &mut TcpStream, key: &MeshKey, seq: u64) -> Frame {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut payload).await.unwrap();
    wire::open(key, seq, &payload).unwrap()
}

/// Reads the acceptor's first frame: its challenge nonce (checked when `key` is
/// given) and the raw bytes, which are all a stranger ever gets.
async fn raw_challenge(s: &mut TcpStream, key: Option<&MeshKey>) -> (u128, Vec<u8>) {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut payload).await.unwrap();
    assert!(payload.len() < 64, "a challenge is a nonce and a tag");
    let nonce = match key.map(|k| wire::open(k, 0, &payload).unwrap()) {
        Some(Frame::Challenge { nonce }) => nonce,
        Some(other) => panic!("expected a challenge, got {other:?}"),
        None => 0,
    };
    (nonce, payload)
}

fn raw_hello(node: NodeId, generation: u64, echo: u128) -> Frame {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        node,
        addr: "127.0.0.1:9".into(),
        generation,
        nonce: 0x1234_5678_9abc_def0,
        echo,
    }
}

#[test]
fn a_node_with_the_wrong_secret_learns_nothing_and_is_counted() {
    on_executor(|ex| async move {
        let a = start(&ex, 0xa1, &[]);
        let mut cfg = config(&[a.mesh.local_addr()]);
        cfg.secret = WRONG.into();
        let d = start_with(&ex, 0xd4, cfg, Recorder::default());
        // D cannot verify A's challenge, so it says nothing and counts a refusal.
        eventually("D's joins were refused", CONVERGE, || {
            (d.mesh.counters().auth_failures.get() >= 2).then_some(())
        })
        .await;
        assert_eq!(a.mesh.live(), vec![0xa1]);
        assert_eq!(d.mesh.live(), vec![0xd4]);
        assert!(d.mesh.counters().dial_failures.get() >= 2);
        assert!(
            a.mesh.counters().bad_frames.get() >= 2,
            "abandoned handshakes"
        );

        // A raw client that answers anyway: refused, counted, and it got nothing
        // but the challenge (a random nonce), not A's Hello.
        let mut s = TcpStream::connect(a.mesh.local_addr()).await.unwrap();
        let (nonce, _) = raw_challenge(&mut s, None).await;
        let hello = raw_hello(0xbad, 1, nonce);
        let wrong = MeshKey::derive(WRONG);
        let _ = s
            .write_all(&wire::seal_frame(&wrong, 0, &hello).unwrap())
            .await;
        assert!(read_to_close(&mut s).await.is_empty());
        eventually("A counted the bad tag", CONVERGE, || {
            (a.mesh.counters().auth_failures.get() == 1).then_some(())
        })
        .await;
        assert!(a.mesh.members().iter().all(|m| m.node != 0xbad));
    });
}

#[test]
fn another_protocol_version_is_refused() {
    on_executor(|ex| async move {
        let a = start(&ex, 0xa1, &[]);
        let key = MeshKey::derive(SECRET);
        let mut s = TcpStream::connect(a.mesh.local_addr()).await.unwrap();
        let (nonce, _) = raw_challenge(&mut s, Some(&key)).await;
        let mut hello = raw_hello(0xf00, 1, nonce);
        if let Frame::Hello { version, .. } = &mut hello {
            *version = PROTOCOL_VERSION + 1;
        }
        let mut bytes = Vec::new();
        wire::seal(
            &key,
            0,
            &wire::encode_version(PROTOCOL_VERSION + 1, &hello).unwrap(),
            &mut bytes,
        );
        let _ = s.write_all(&bytes).await;
        assert!(read_to_close(&mut s).await.is_empty());
        eventually("A counted the version", CONVERGE, || {
            (a.mesh.counters().version_mismatches.get() == 1).then_some(())
        })
        .await;
        assert_eq!(a.mesh.counters().auth_failures.get(), 0);
        assert_eq!(a.mesh.live(), vec![0xa1]);
    });
}

#[test]
fn recorded_frames_cannot_be_replayed() {
    on_executor(|ex| async move {
        let a = start(&ex, 0xa1, &[]);
        let key = MeshKey::derive(SECRET);
        // A real session from a secret holder, every byte it sent recorded.
        let mut s = TcpStream::connect(a.mesh.local_addr()).await.unwrap();
        let (theirs, _) = raw_challenge(&mut s, Some(&key)).await;
        let ours = 0x1234_5678_9abc_def0_u128;
        let mut sent = wire::seal_frame(&key, 0, &raw_hello(0xee, 1, theirs)).unwrap();
        s.write_all(&sent).await.unwrap();
        let reply = read_one(&mut s, &key, 1).await;
        assert!(matches!(reply, Frame::Hello { echo, .. } if echo == ours));
        let session = key.session(theirs, ours);
        let data = wire::seal_frame(&session, 0, &vote_log(1, 10)).unwrap();
        s.write_all(&data).await.unwrap();
        sent.extend_from_slice(&data);
        eventually("A got the frame", CONVERGE, || {
            (a.rec.frames_from(0xee) == 1).then_some(())
        })
        .await;

        // The same frame again on the same connection: its position no longer matches.
        s.write_all(&data).await.unwrap();
        assert!(read_to_close(&mut s).await.is_empty());
        // The whole recording on a new connection: the Hello answers an old challenge.
        let mut s = TcpStream::connect(a.mesh.local_addr()).await.unwrap();
        raw_challenge(&mut s, Some(&key)).await;
        let _ = s.write_all(&sent).await;
        assert!(read_to_close(&mut s).await.is_empty());
        eventually("both replays counted", CONVERGE, || {
            (a.mesh.counters().auth_failures.get() == 2).then_some(())
        })
        .await;
        assert_eq!(
            a.rec.frames_from(0xee),
            1,
            "nothing replayed reached the handler"
        );
    });
}

#[test]
fn garbage_on_the_mesh_port_is_dropped_and_counted() {
    on_executor(|ex| async move {
        let (a, b, _c) = trio(&ex).await;
        let refused = |n: &Node| {
            let c = n.mesh.counters();
            c.bad_frames.get() + c.auth_failures.get() + c.version_mismatches.get()
        };
        // An HTTP request (its first 4 bytes read as a 1.2 GB length), then noise.
        let mut junk: Vec<Vec<u8>> = vec![b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in [5usize, 40, 300, 5000] {
            let mut bytes = (len as u32).to_be_bytes().to_vec();
            bytes.extend((0..len).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }));
            junk.push(bytes);
        }
        // A length over the pre-handshake limit: refused before any body is read.
        junk.push(((MAX_HELLO + 1) as u32).to_be_bytes().to_vec());
        for bytes in &junk {
            let mut s = TcpStream::connect(a.mesh.local_addr()).await.unwrap();
            raw_challenge(&mut s, Some(&MeshKey::derive(SECRET))).await;
            let _ = s.write_all(bytes).await;
            assert!(read_to_close(&mut s).await.is_empty());
        }
        eventually("every bad connection counted", CONVERGE, || {
            (refused(&a) == junk.len() as u64).then_some(())
        })
        .await;
        // The node is fine: still a member, still fanning out.
        assert_eq!(a.mesh.live().len(), 3);
        assert_eq!(a.mesh.broadcast(&vote_log(9, 10)).unwrap(), 2);
        eventually("B still receives", CONVERGE, || {
            (b.rec.frames_from(0xa1) == 1).then_some(())
        })
        .await;
    });
}

#[test]
fn a_handshake_flood_from_one_host_leaves_room_for_real_peers() {
    on_executor(|ex| async move {
        let a = start(&ex, 0xa1, &[]);
        // Another host (127.0.0.9) opens 40 sockets and never says a word.
        let flooder = std::net::IpAddr::from([127, 0, 0, 9]);
        let mut held = Vec::new();
        for _ in 0..40 {
            held.push(crate::common::connect_from(flooder, a.mesh.local_addr()).unwrap());
        }
        eventually(
            "the sockets past that host's share refused",
            CONVERGE,
            || (a.mesh.counters().bad_frames.get() >= 32).then_some(()),
        )
        .await;
        // A real peer still gets in while the flood is held open.
        let b = start(&ex, 0xb2, &[a.mesh.local_addr()]);
        converge(&[&a, &b]).await;
        drop(held);
    });
}

#[test]
fn a_peer_that_stops_reading_is_dropped_without_stalling_broadcast() {
    on_executor(|ex| async move {
        // C runs on its own thread and freezes in on_frame: its socket stops being read.
        let gate = Arc::new(Gate::default());
        let c_ex = Arc::new(Executor::<'static>::new());
        let (stop_c, c_stopped) = smol::channel::bounded::<()>(1);
        let c_thread = {
            let c_ex = Arc::clone(&c_ex);
            std::thread::spawn(move || {
                smol::block_on(c_ex.run(async { c_stopped.recv().await.ok() }))
            })
        };
        let mut a_cfg = config(&[]);
        a_cfg.peer_queue = 4;
        // Default (slower) SWIM: C must stay a member while its buffers fill.
        a_cfg.timing = SwimTiming::default();
        let a = start_with(&ex, 0xa1, a_cfg, Recorder::default());
        let seed = [a.mesh.local_addr()];
        let b = start(&ex, 0xb2, &seed);
        let frozen = Recorder {
            gate: Some(Arc::clone(&gate)),
            ..Recorder::default()
        };
        let c = start_with(&c_ex, 0xc3, config(&seed), frozen);
        converge(&[&a, &b, &c]).await;

        let mut sent = 0;
        let mut slowest = Duration::ZERO;
        while a.mesh.counters().slow_peer_drops.get() == 0 {
            assert!(sent < 2_000, "C was never dropped");
            let t = Instant::now();
            a.mesh.broadcast(&vote_log(sent, 256 * 1024)).unwrap();
            slowest = slowest.max(t.elapsed());
            sent += 1;
            // B keeps up: each frame reaches it before the next is sent.
            eventually("B got the frame", CONVERGE, || {
                (b.rec.frames_from(0xa1) == sent as usize).then_some(())
            })
            .await;
        }
        assert!(
            slowest < Duration::from_millis(50),
            "broadcast took {slowest:?}"
        );
        // After the drop, fan-out to B goes on as before.
        a.mesh.broadcast(&vote_log(sent, 10)).unwrap();
        eventually("B still receives", CONVERGE, || {
            (b.rec.frames_from(0xa1) == sent as usize + 1).then_some(())
        })
        .await;
        assert_eq!(a.mesh.counters().slow_peer_drops.get(), 1);

        gate.release();
        drop(c);
        stop_c.close();
        c_thread.join().unwrap();
    });
}
