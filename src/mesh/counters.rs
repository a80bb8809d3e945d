//! The mesh's own counters, kept lock-free beside the connections that bump them.
//!
//! Owns nothing but numbers; the wiring step renders them as `mesh_*` metrics
//! (`mesh_frames_total{kind,dir}`, `mesh_peer_rtt_seconds`, refusals and drops).

use crate::metrics::{Counter, Gauge, Histogram};

use super::wire::FrameKind;

/// Probe round trips on a LAN are sub-millisecond to a few ms; a Pi under load
/// or Wi-Fi reaches tens; past a second SWIM already suspects the member.
pub const RTT_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug)]
pub struct MeshCounters {
    /// Frames decoded from peers, by kind.
    pub frames_in: [Counter; FrameKind::COUNT],
    /// Frames queued to peers, by kind.
    pub frames_out: [Counter; FrameKind::COUNT],
    /// Connections refused because a frame's tag did not verify (wrong secret).
    pub auth_failures: Counter,
    /// Connections refused because the peer speaks another protocol version.
    pub version_mismatches: Counter,
    /// Connections dropped for garbage: bad length, undecodable body, a frame
    /// out of place, or no `Hello` in time.
    pub bad_frames: Counter,
    /// Peers dropped because their bounded queue was full (they resync on redial).
    pub slow_peer_drops: Counter,
    /// Frames not queued: the peer's connection was down and not yet redialed.
    pub frames_dropped: Counter,
    /// SWIM datagrams dropped because the membership loop was behind.
    pub swim_dropped: Counter,
    /// Dials or handshakes that failed.
    pub dial_failures: Counter,
    /// Open mesh connections, both directions.
    pub connections: Gauge,
    /// SWIM probe round trips, seconds.
    pub rtt: Histogram,
}

impl MeshCounters {
    pub fn new() -> Self {
        MeshCounters {
            frames_in: std::array::from_fn(|_| Counter::new()),
            frames_out: std::array::from_fn(|_| Counter::new()),
            auth_failures: Counter::new(),
            version_mismatches: Counter::new(),
            bad_frames: Counter::new(),
            slow_peer_drops: Counter::new(),
            frames_dropped: Counter::new(),
            swim_dropped: Counter::new(),
            dial_failures: Counter::new(),
            connections: Gauge::new(),
            rtt: Histogram::new(RTT_BUCKETS),
        }
    }

    pub fn frame_in(&self, kind: FrameKind) {
        self.frames_in[kind as usize].inc();
    }

    pub fn frame_out(&self, kind: FrameKind) {
        self.frames_out[kind as usize].inc();
    }

    pub fn frames_in_of(&self, kind: FrameKind) -> u64 {
        self.frames_in[kind as usize].get()
    }

    pub fn frames_out_of(&self, kind: FrameKind) -> u64 {
        self.frames_out[kind as usize].get()
    }
}

impl Default for MeshCounters {
    fn default() -> Self {
        Self::new()
    }
}
