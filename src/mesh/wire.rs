//! The mesh wire format (pure: no I/O, no clocks).
//!
//! Owns the envelope every node-to-node frame travels in, the [`Frame`] enum, and
//! the keys derived from the shared `[mesh] secret`:
//!
//! ```text
//! u32 BE length | u8 protocol version | nanoserde-binary Frame | 32-byte tag
//! tag = HMAC-SHA256(key, u64 BE sequence ‖ version ‖ body)
//! ```
//!
//! The sequence number is not sent: each side counts the frames of a connection
//! in each direction. With the per-connection key below, a frame replayed,
//! dropped or reordered by someone on the path fails its tag, like a TLS record.
//!
//! Keys: the secret goes through HKDF once ([`MeshKey::derive`]); that key tags
//! the handshake (a `Challenge` nonce from the acceptor, then a `Hello` each way
//! that echoes the other side's nonce), and [`MeshKey::session`] derives the key
//! for the rest of the connection from both nonces. So a recorded handshake or
//! frame is worthless on any other connection.
//!
//! The length counts everything after itself and is checked against a limit
//! *before* any buffer is allocated ([`payload_len`]). [`open`] then checks, in
//! this order: the version byte (so a peer of another release gets a clear
//! "version" refusal rather than an "auth" one), the tag (so only holders of the
//! secret ever reach the decoder), and only then decodes. Decoding is guarded too:
//! every length read from the body is checked before anything is allocated
//! ([`Text`], [`Blob`], [`List`]), and the decoder runs under `catch_unwind`, so
//! even a buggy or malicious secret holder cannot crash or balloon a node.

use std::panic::{AssertUnwindSafe, catch_unwind};

use nanoserde::{DeBin, SerBin};
use ring::{hkdf, hmac};

pub use super::fields::{Blob, List, Text};

/// Bumped on any change to the envelope or to [`Frame`]'s encoding. Checked on
/// every frame; a mismatch at the handshake is refused with a log line naming both.
pub const PROTOCOL_VERSION: u8 = 3;
/// Largest frame (after the length prefix) a node accepts or sends: a full vote
/// log is tens of KB, a digest a few hundred bytes; 1 MiB leaves ample room.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest first frame on a fresh connection: a `Hello` is under 100 bytes, so
/// an unauthenticated socket can never make a node buffer more than this.
pub const MAX_HELLO: usize = 4096;
pub const TAG_LEN: usize = 32;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// version byte + the body's u16 variant tag + the MAC.
const MIN_PAYLOAD: usize = 1 + 2 + TAG_LEN;

/// HKDF inputs: a fixed salt and purpose labels, so no key is the secret itself
/// and each use (handshake, session, later a TLS PSK) gets a key of its own.
const KDF_SALT: &[u8] = b"chatpulse-mesh";
const HANDSHAKE_INFO: &[u8] = b"chatpulse-mesh-v1 handshake tag";
const SESSION_INFO: &[u8] = b"chatpulse-mesh-v1 session tag";

/// An HMAC key for frame tags: from `[mesh] secret` ([`MeshKey::derive`], for
/// handshakes) or from that plus a connection's nonces ([`MeshKey::session`]).
#[derive(Clone)]
pub struct MeshKey {
    prk: hkdf::Prk,
    tag: hmac::Key,
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]]) -> hmac::Key {
    // 32 bytes is far below HKDF's 255 × 32 limit, so expand cannot fail.
    let okm = prk
        .expand(info, hmac::HMAC_SHA256)
        .expect("HKDF output of one hash length");
    hmac::Key::from(okm)
}

impl MeshKey {
    pub fn derive(secret: &str) -> MeshKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KDF_SALT).extract(secret.as_bytes());
        let tag = expand(&prk, &[HANDSHAKE_INFO]);
        MeshKey { prk, tag }
    }

    /// The key for one connection's frames after its handshake.
    pub fn session(&self, acceptor_nonce: u128, dialer_nonce: u128) -> MeshKey {
        let (a, d) = (acceptor_nonce.to_be_bytes(), dialer_nonce.to_be_bytes());
        MeshKey {
            prk: self.prk.clone(),
            tag: expand(&self.prk, &[SESSION_INFO, &a, &d]),
        }
    }

    fn sign(&self, seq: u64, payload: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.tag);
        ctx.update(&seq.to_be_bytes());
        ctx.update(payload);
        ctx.sign()
    }
}

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshKey(..)")
    }
}

/// Why a frame was refused. Every case ends the connection it arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix is above the limit (nothing was allocated).
    Oversized(usize),
    /// Too short to hold a version, a body and a tag.
    Undersized(usize),
    /// Another protocol version.
    Version(u8),
    /// The tag does not match: wrong secret, altered bytes, or a replayed,
    /// dropped or reordered frame.
    BadTag,
    /// Authentic but undecodable (a bug or a hostile secret holder).
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Oversized(n) => write!(f, "frame of {n} bytes is over the limit"),
            WireError::Undersized(n) => write!(f, "frame of {n} bytes is too short"),
            WireError::Version(v) => write!(
                f,
                "peer speaks mesh protocol v{v}, this node speaks v{PROTOCOL_VERSION}"
            ),
            WireError::BadTag => write!(
                f,
                "frame tag does not verify (wrong mesh secret, or altered or replayed bytes)"
            ),
            WireError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Everything nodes say to each other. Variants are encoded by position (u16):
/// append new ones at the end and bump [`PROTOCOL_VERSION`] on any change.
#[derive(Debug, Clone, PartialEq, SerBin, DeBin)]
pub enum Frame {
    /// The acceptor's first frame: a fresh nonce the dialer's `Hello` must echo.
    Challenge { nonce: u128 },
    /// The dialer's answer to `Challenge`, then the acceptor's reply.
    Hello {
        version: u8,
        node: u64,
        /// Where other nodes dial this one (`[mesh] advertise`, else `listen`).
        addr: Text,
        /// Identity generation: boot time in ms, bumped when SWIM declared us down.
        generation: u64,
        /// The sender's own fresh nonce.
        nonce: u128,
        /// The other side's nonce: proves this `Hello` was made for this connection.
        echo: u128,
    },
    /// One opaque SWIM datagram for the membership layer (foca).
    Swim(Blob),
    /// Sent to every peer by a node leaving on purpose: its ownerships move at once.
    Leave { node: u64, generation: u64 },
    /// A vote log (delta or full, as `VoteLog::encode` bytes); the receiver merges.
    VoteLog {
        broadcaster: Text,
        epoch: u64,
        bytes: Blob,
        /// When the owner accepted the newest vote (Unix ms; 0 = none): the
        /// overlay frame's `ts` everywhere, and the origin of convergence times.
        accepted_ms: u64,
    },
    /// A chat line handed to the broadcaster's owner, which counts it.
    ChatForward {
        broadcaster: Text,
        chatter: Text,
        text: Text,
        /// Empty when the source has none.
        message_id: Text,
        /// 0 when the source does not say.
        sent_ms: u64,
        /// The chat source's metric label (`irc`, `eventsub_ws`, ...).
        source: Text,
        /// The forwarder's number for this line: the owner acknowledges it
        /// ([`Frame::ForwardAck`]) and counts a re-sent line only once.
        seq: u64,
    },
    /// Overlays connected to `node`, per broadcaster (a full replacement).
    Presence {
        node: u64,
        entries: List<PresenceEntry>,
    },
    /// One entry of the replicated LWW map (streamers, configs).
    Lww {
        key: Text,
        version: u64,
        node: u64,
        value: Blob,
    },
    /// Per-bucket hashes of the replicated map `space`, for anti-entropy.
    Digest { space: u8, buckets: List<u64> },
    /// "Send me every entry of `space` in these buckets" (they differed).
    DigestRequest { space: u8, buckets: List<u16> },
    /// Close the overlays of `broadcaster` that use `token` with `code` (rotation).
    Close {
        broadcaster: Text,
        token: Text,
        code: u16,
    },
    /// The owner handled these forwarded lines (`ChatForward::seq`): the
    /// forwarder may forget them.
    ForwardAck { seqs: List<u64> },
}

/// One row of [`Frame::Presence`].
#[derive(Debug, Clone, PartialEq, Eq, SerBin, DeBin)]
pub struct PresenceEntry {
    pub broadcaster: Text,
    pub overlays: u32,
}

/// The kind of a frame: its metric label and counter slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Challenge,
    Hello,
    Swim,
    Leave,
    VoteLog,
    ChatForward,
    Presence,
    Lww,
    Digest,
    DigestRequest,
    Close,
    ForwardAck,
}

impl FrameKind {
    pub const COUNT: usize = 12;
    pub const ALL: [FrameKind; FrameKind::COUNT] = [
        FrameKind::Challenge,
        FrameKind::Hello,
        FrameKind::Swim,
        FrameKind::Leave,
        FrameKind::VoteLog,
        FrameKind::ChatForward,
        FrameKind::Presence,
        FrameKind::Lww,
        FrameKind::Digest,
        FrameKind::DigestRequest,
        FrameKind::Close,
        FrameKind::ForwardAck,
    ];

    /// The `kind` label of `mesh_frames_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Challenge => "challenge",
            FrameKind::Hello => "hello",
            FrameKind::Swim => "swim",
            FrameKind::Leave => "leave",
            FrameKind::VoteLog => "vote_log",
            FrameKind::ChatForward => "chat_forward",
            FrameKind::Presence => "presence",
            FrameKind::Lww => "lww",
            FrameKind::Digest => "digest",
            FrameKind::DigestRequest => "digest_request",
            FrameKind::Close => "close",
            FrameKind::ForwardAck => "forward_ack",
        }
    }
}

impl Frame {
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Challenge { .. } => FrameKind::Challenge,
            Frame::Hello { .. } => FrameKind::Hello,
            Frame::Swim(_) => FrameKind::Swim,
            Frame::Leave { .. } => FrameKind::Leave,
            Frame::VoteLog { .. } => FrameKind::VoteLog,
            Frame::ChatForward { .. } => FrameKind::ChatForward,
            Frame::Presence { .. } => FrameKind::Presence,
            Frame::Lww { .. } => FrameKind::Lww,
            Frame::Digest { .. } => FrameKind::Digest,
            Frame::DigestRequest { .. } => FrameKind::DigestRequest,
            Frame::Close { .. } => FrameKind::Close,
            Frame::ForwardAck { .. } => FrameKind::ForwardAck,
        }
    }
}

/// A frame's signed part, `version ‖ body`: encoded once, then sealed per
/// connection with [`seal`] (a broadcast serializes once for every peer).
pub fn encode(frame: &Frame) -> Result<Vec<u8>, WireError> {
    encode_version(PROTOCOL_VERSION, frame)
}

/// [`encode`] with another version byte: for tests and compatibility tools only.
pub fn encode_version(version: u8, frame: &Frame) -> Result<Vec<u8>, WireError> {
    let mut out = vec![version];
    frame.ser_bin(&mut out);
    let len = out.len() + TAG_LEN;
    if len > MAX_FRAME {
        return Err(WireError::Oversized(len));
    }
    Ok(out)
}

/// Appends the envelope of an encoded frame, the `seq`-th on its connection.
pub fn seal(key: &MeshKey, seq: u64, encoded: &[u8], out: &mut Vec<u8>) {
    let len = (encoded.len() + TAG_LEN) as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(encoded);
    out.extend_from_slice(key.sign(seq, encoded).as_ref());
}

/// [`encode`] then [`seal`]: the whole envelope of one frame, ready to write.
pub fn seal_frame(key: &MeshKey, seq: u64, frame: &Frame) -> Result<Vec<u8>, WireError> {
    let encoded = encode(frame)?;
    let mut out = Vec::with_capacity(LEN_PREFIX + encoded.len() + TAG_LEN);
    seal(key, seq, &encoded, &mut out);
    Ok(out)
}

/// The payload length announced by a prefix, refused above `limit` (checked
/// before the caller allocates anything).
pub fn payload_len(prefix: [u8; LEN_PREFIX], limit: usize) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        Err(WireError::Oversized(len))
    } else if len < MIN_PAYLOAD {
        Err(WireError::Undersized(len))
    } else {
        Ok(len)
    }
}

/// Checks and decodes one payload (everything after the length prefix), expected
/// to be the `seq`-th frame on its connection.
pub fn open(key: &MeshKey, seq: u64, payload: &[u8]) -> Result<Frame, WireError> {
    if payload.len() < MIN_PAYLOAD {
        return Err(WireError::Undersized(payload.len()));
    }
    if payload[0] != PROTOCOL_VERSION {
        return Err(WireError::Version(payload[0]));
    }
    let (signed, tag) = payload.split_at(payload.len() - TAG_LEN);
    if !same_tag(key.sign(seq, signed).as_ref(), tag) {
        return Err(WireError::BadTag);
    }
    decode_body(&signed[1..])
}

/// Constant-time equality: no early exit, so timing cannot reveal how many
/// leading bytes of a forged tag were right.
fn same_tag(expected: &[u8], got: &[u8]) -> bool {
    let diff = expected
        .iter()
        .zip(got)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0 && expected.len() == got.len()
}

/// One complete frame at the start of `buf`, if there is one: `Ok(None)` means
/// "read more". Returns the frame and the bytes it used.
pub fn parse(
    key: &MeshKey,
    seq: u64,
    buf: &[u8],
    limit: usize,
) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = payload_len(*prefix, limit)?;
    let Some(payload) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    Ok(Some((open(key, seq, payload)?, LEN_PREFIX + len)))
}

fn decode_body(body: &[u8]) -> Result<Frame, WireError> {
    let mut offset = 0;
    // The field types below never panic on their own; this guards the derive
    // and nanoserde's primitives against anything we did not foresee.
    let decoded = catch_unwind(AssertUnwindSafe(|| Frame::de_bin(&mut offset, body)))
        .map_err(|_| WireError::Malformed("decoder panicked".into()))?;
    let frame = decoded.map_err(|e| WireError::Malformed(e.to_string()))?;
    if offset != body.len() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            body.len() - offset
        )));
    }
    Ok(frame)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
