use super::*;
use crate::rng::XorShift;

const SECRET: &str = "correct horse battery staple";

fn key() -> MeshKey {
    MeshKey::derive(SECRET)
}

/// Random bytes (up to `max`) for the garbage tests.
fn random_bytes(rng: &mut XorShift, max: usize) -> Vec<u8> {
    let len = (rng.next_u64() as usize) % (max + 1);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn samples() -> Vec<Frame> {
    vec![
        Frame::Challenge {
            nonce: u128::MAX - 5,
        },
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: 0xdead_beef,
            addr: "10.0.0.2:7946".into(),
            generation: 1_700_000_000_000,
            nonce: 1 << 100,
            echo: 42,
        },
        Frame::Swim(Blob(vec![1, 2, 3, 0, 255])),
        Frame::Leave {
            node: 7,
            generation: 9,
        },
        Frame::VoteLog {
            broadcaster: "alice".into(),
            epoch: 3,
            bytes: Blob(vec![9; 300]),
            accepted_ms: 1_700_000_000_123,
        },
        Frame::ChatForward {
            broadcaster: "alice".into(),
            chatter: "12345".into(),
            text: "Kappa ΝΑΣ 🎉".into(),
            message_id: "".into(),
            sent_ms: 0,
            source: "irc".into(),
            seq: 1_796_000_000_000_001,
        },
        Frame::Presence {
            node: 2,
            entries: List(vec![
                PresenceEntry {
                    broadcaster: "alice".into(),
                    overlays: 3,
                },
                PresenceEntry {
                    broadcaster: "bob".into(),
                    overlays: 0,
                },
            ]),
        },
        Frame::Lww {
            key: "config/alice".into(),
            version: 12,
            node: 4,
            value: Blob(b"{}".to_vec()),
        },
        Frame::Digest {
            space: 0,
            buckets: List(vec![u64::MAX, 0, 42]),
        },
        Frame::DigestRequest {
            space: 0,
            buckets: List(vec![0, 63]),
        },
        Frame::Close {
            broadcaster: "alice".into(),
            token: "tok".into(),
            code: 4404,
        },
        Frame::ForwardAck {
            seqs: List(vec![1, u64::MAX]),
        },
    ]
}

/// Signs arbitrary body bytes with the right key as frame 0: what only a secret
/// holder can send. Returns the payload (no length prefix).
fn signed_payload(key: &MeshKey, body: &[u8]) -> Vec<u8> {
    let mut encoded = vec![PROTOCOL_VERSION];
    encoded.extend_from_slice(body);
    let mut out = Vec::new();
    seal(key, 0, &encoded, &mut out);
    out.split_off(LEN_PREFIX)
}

#[test]
fn every_frame_kind_round_trips() {
    let key = key();
    let frames = samples();
    assert_eq!(frames.len(), FrameKind::COUNT, "a sample per kind");
    for (frame, kind) in frames.iter().zip(FrameKind::ALL) {
        assert_eq!(frame.kind(), kind);
        let bytes = seal_frame(&key, 0, frame).unwrap();
        let (back, used) = parse(&key, 0, &bytes, MAX_FRAME).unwrap().unwrap();
        assert_eq!(&back, frame);
        assert_eq!(used, bytes.len());
    }
}

#[test]
fn frames_stream_back_to_back_and_partial_input_asks_for_more() {
    let key = key();
    let mut stream = Vec::new();
    for f in samples() {
        stream.extend(seal_frame(&key, 0, &f).unwrap());
    }
    for cut in 0..40 {
        assert_eq!(parse(&key, 0, &stream[..cut], MAX_FRAME).unwrap(), None);
    }
    let mut at = 0;
    let mut seen = 0;
    while let Some((_, used)) = parse(&key, 0, &stream[at..], MAX_FRAME).unwrap() {
        at += used;
        seen += 1;
    }
    assert_eq!((at, seen), (stream.len(), FrameKind::COUNT));
}

#[test]
fn a_tampered_frame_or_the_wrong_secret_fails_the_tag() {
    let key = key();
    let bytes = seal_frame(&key, 0, &samples()[4]).unwrap();
    for at in [LEN_PREFIX + 1, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        assert_eq!(parse(&key, 0, &bad, MAX_FRAME), Err(WireError::BadTag));
    }
    let other = MeshKey::derive("another secret entirely");
    assert_eq!(parse(&other, 0, &bytes, MAX_FRAME), Err(WireError::BadTag));
}

#[test]
fn a_frame_opens_only_at_its_position_and_under_its_session() {
    let key = key();
    let frame = &samples()[4];
    let sealed = seal_frame(&key, 7, frame).unwrap();
    assert_eq!(
        parse(&key, 7, &sealed, MAX_FRAME).unwrap().unwrap().0,
        *frame
    );
    // Replayed later, or reordered earlier, on the same connection.
    assert_eq!(parse(&key, 8, &sealed, MAX_FRAME), Err(WireError::BadTag));
    assert_eq!(parse(&key, 6, &sealed, MAX_FRAME), Err(WireError::BadTag));
    // Each connection's key depends on both nonces and differs from the handshake key.
    let session = key.session(1, 2);
    let sealed = seal_frame(&session, 0, frame).unwrap();
    assert!(parse(&key.session(1, 2), 0, &sealed, MAX_FRAME).is_ok());
    for other in [key.clone(), key.session(1, 3), key.session(2, 1)] {
        assert_eq!(parse(&other, 0, &sealed, MAX_FRAME), Err(WireError::BadTag));
    }
    // The same secret always derives the same keys (nodes agree without talking).
    let again = MeshKey::derive(SECRET).session(1, 2);
    assert!(parse(&again, 0, &sealed, MAX_FRAME).is_ok());
    assert!(same_tag(b"abc", b"abc") && !same_tag(b"abc", b"abd") && !same_tag(b"abc", b"ab"));
}

#[test]
fn another_version_is_refused_before_the_tag() {
    let key = key();
    let mut bytes = Vec::new();
    seal(
        &key,
        0,
        &encode_version(PROTOCOL_VERSION + 1, &samples()[1]).unwrap(),
        &mut bytes,
    );
    assert_eq!(
        parse(&key, 0, &bytes, MAX_FRAME),
        Err(WireError::Version(PROTOCOL_VERSION + 1))
    );
    // Even with the wrong secret, the version is what gets reported.
    let other = MeshKey::derive("x".repeat(20).as_str());
    assert_eq!(
        parse(&other, 0, &bytes, MAX_FRAME),
        Err(WireError::Version(PROTOCOL_VERSION + 1))
    );
    assert!(WireError::Version(2).to_string().contains("v2"));
}

#[test]
fn lengths_are_checked_before_anything_is_read_or_allocated() {
    let key = key();
    let huge = [0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        payload_len(huge, MAX_FRAME),
        Err(WireError::Oversized(u32::MAX as usize))
    );
    // The prefix alone is enough to refuse: no body needs to follow.
    assert_eq!(
        parse(&key, 0, &huge, MAX_FRAME),
        Err(WireError::Oversized(u32::MAX as usize))
    );
    let hello = seal_frame(&key, 0, &samples()[1]).unwrap();
    assert!(parse(&key, 0, &hello, MAX_HELLO).is_ok());
    let log = seal_frame(&key, 0, &samples()[4]).unwrap();
    assert!(matches!(
        parse(&key, 0, &log, 64),
        Err(WireError::Oversized(_))
    ));
    assert_eq!(
        payload_len([0, 0, 0, 3], MAX_FRAME),
        Err(WireError::Undersized(3))
    );
    let too_big = Frame::Swim(Blob(vec![0; MAX_FRAME]));
    assert!(matches!(
        seal_frame(&key, 0, &too_big),
        Err(WireError::Oversized(_))
    ));
}

#[test]
fn authentic_but_hostile_bodies_are_malformed_not_panics() {
    let key = key();
    // Variant 2 (Swim) claiming 2^62 bytes: refused without allocating them.
    let mut body = 2u16.to_le_bytes().to_vec();
    body.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let err = open(&key, 0, &signed_payload(&key, &body)).unwrap_err();
    assert!(
        matches!(err, WireError::Malformed(ref m) if m != "decoder panicked"),
        "{err:?}"
    );
    // Presence with u64::MAX entries (would overflow an index or a capacity).
    let mut body = 6u16.to_le_bytes().to_vec();
    body.extend_from_slice(&2u64.to_le_bytes());
    body.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        open(&key, 0, &signed_payload(&key, &body)),
        Err(WireError::Malformed(_))
    ));
    // Unknown variant, invalid UTF-8, trailing bytes.
    let unknown = 999u16.to_le_bytes();
    assert!(matches!(
        open(&key, 0, &signed_payload(&key, &unknown)),
        Err(WireError::Malformed(_))
    ));
    // Hello (variant 1): version, node, then an addr of 2 bytes that are not UTF-8.
    let mut bad_utf8 = 1u16.to_le_bytes().to_vec();
    bad_utf8.push(PROTOCOL_VERSION);
    bad_utf8.extend_from_slice(&1u64.to_le_bytes());
    bad_utf8.extend_from_slice(&2u64.to_le_bytes());
    bad_utf8.extend_from_slice(&[0xc3, 0x28]);
    bad_utf8.extend_from_slice(&3u64.to_le_bytes());
    assert!(matches!(
        open(&key, 0, &signed_payload(&key, &bad_utf8)),
        Err(WireError::Malformed(_))
    ));
    let mut trailing = samples()[3].serialize_bin();
    trailing.push(0);
    assert!(matches!(
        open(&key, 0, &signed_payload(&key, &trailing)),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn random_garbage_never_panics() {
    let key = key();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5_000 {
        let junk = random_bytes(&mut rng, 300);
        let _ = parse(&key, 0, &junk, MAX_FRAME);
        // With a plausible prefix too, so the version and tag paths run.
        let mut framed = ((junk.len() as u32).to_be_bytes()).to_vec();
        framed.extend_from_slice(&junk);
        assert!(parse(&key, 0, &framed, MAX_FRAME).is_err() || junk.len() < MIN_PAYLOAD);
    }
}

#[test]
fn signed_garbage_and_mutated_frames_never_panic_the_decoder() {
    let key = key();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let encoded: Vec<Vec<u8>> = samples().iter().map(SerBin::serialize_bin).collect();
    for i in 0..5_000 {
        let body = if i % 2 == 0 {
            // Any variant tag, then noise.
            let mut b = ((rng.next_u64() % 13) as u16).to_le_bytes().to_vec();
            b.extend(random_bytes(&mut rng, 200));
            b
        } else {
            // A real body with a few bytes flipped, cut or extended.
            let mut b = encoded[(rng.next_u64() as usize) % encoded.len()].clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() as usize) % b.len();
                b[at] = rng.next_u64() as u8;
            }
            b.truncate(b.len() - (rng.next_u64() as usize) % 3);
            b
        };
        match open(&key, 0, &signed_payload(&key, &body)) {
            Ok(frame) => assert!(encode(&frame).is_ok()),
            Err(WireError::Malformed(m)) => assert_ne!(m, "decoder panicked"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}
