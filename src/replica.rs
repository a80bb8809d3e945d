//! Streamers and their configs across the mesh (when PostgreSQL is not the store):
//! a save, a token rotation, a new channel on any node reaches every node and its
//! overlays, and a node that was away catches up when it comes back.
//!
//! - Each streamer is a last-writer-wins record (`store::sqlite::replica`),
//!   versioned `(rev, node)`; after a local change the node broadcasts it
//!   ([`publish`], `Frame::Lww`), and every receiver keeps it only if it is newer
//!   ([`Db::apply_record`](crate::store::sqlite::Db::apply_record)), then shows it:
//!   a new channel is served, a new config is pushed to the overlays, a rotated
//!   token closes the old URL's overlays with 4404 — on every node.
//! - Anti-entropy: when a link to a node comes up (a join, a restart, a healed
//!   partition, a dropped slow link), the two swap per-bucket digests of their
//!   records ([`crate::mesh::lww`]) and send each other only the buckets that
//!   differ ([`sync_with`], [`on_frame`]).
//! - Config-file channels created in a cluster get their overlay token from the
//!   mesh secret ([`seed_token`]), so every node starts with the same URL.
//!
//! Concurrent saves of one channel on two nodes settle on the same winner
//! everywhere (the larger `(rev, node)`); the other save is overwritten.

use std::sync::Arc;

use nanoserde::{DeBin, SerBin};

use crate::app::{App, now_ms};
use crate::mesh::lww::{self, Entry, LwwMap};
use crate::mesh::{Blob, Frame, List, Mesh};
use crate::sentiment::NodeId;
use crate::store::sqlite::{Applied, ChannelRecord, Replicated};

/// The `space` of the streamer records in `Digest`/`DigestRequest` frames.
pub const SPACE_CHANNELS: u8 = 0;

/// The overlay token of a config-file channel created on a node in a cluster:
/// derived from the mesh secret and the login, so nodes that create the same
/// channel independently agree on its URL (22 characters, 128 bits, like a
/// random one). A rotation replaces it with a random token as usual.
pub fn seed_token(mesh_secret: &str, login: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, mesh_secret.as_bytes());
    let mut msg = b"chatpulse seed overlay token v1\0".to_vec();
    msg.extend_from_slice(login.as_bytes());
    let tag = ring::hmac::sign(&key, &msg);
    crate::auth::encoding::base64url(&tag.as_ref()[..16])
}

fn lww_frame(r: &Replicated) -> Frame {
    Frame::Lww {
        key: r.record.login.as_str().into(),
        version: r.rev,
        node: r.node,
        value: Blob(r.record.serialize_bin()),
    }
}

/// After a local change of `login`: its record to every node.
pub async fn publish(app: &App, login: &str) {
    let Some(mesh) = app.mesh() else {
        return;
    };
    match app.db.record(login).await {
        Ok(Some(r)) => {
            if let Err(e) = mesh.broadcast(&lww_frame(&r)) {
                log::warn!("mesh: record of {login} not sent: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => log::warn!("mesh: reading the record of {login}: {e}"),
    }
}

/// Every stored record as an LWW map (digests, bucket repairs).
async fn local_map(app: &App) -> Option<LwwMap> {
    let records = app
        .db
        .records()
        .await
        .inspect_err(|e| log::warn!("mesh: reading records for anti-entropy: {e}"))
        .ok()?;
    let mut map = LwwMap::new();
    for r in records {
        let entry = Entry {
            version: r.rev,
            node: r.node,
            value: r.record.serialize_bin(),
        };
        map.apply(&r.record.login, entry);
    }
    Some(map)
}

/// A link to `node` came up (or it joined): offer it our digest.
pub async fn sync_with(app: Arc<App>, node: NodeId) {
    let (Some(mesh), Some(map)) = (app.mesh(), local_map(&app).await) else {
        return;
    };
    let frame = Frame::Digest {
        space: SPACE_CHANNELS,
        buckets: List(map.digest().to_vec()),
    };
    let _ = mesh.send(node, &frame);
}

/// Sends `to` our records in `buckets`.
fn send_buckets(mesh: &Mesh, map: &LwwMap, to: NodeId, buckets: &[u16]) {
    for (key, e) in map.entries_in(buckets) {
        let frame = Frame::Lww {
            key: key.into(),
            version: e.version,
            node: e.node,
            value: Blob(e.value.clone()),
        };
        let _ = mesh.send(to, &frame);
    }
}

/// A replication frame (`Lww`, `Digest`, `DigestRequest`) from node `from`.
pub async fn on_frame(app: Arc<App>, from: NodeId, frame: Frame) {
    let Some(mesh) = app.mesh() else {
        return;
    };
    match frame {
        Frame::Lww {
            key,
            version,
            node,
            value,
        } => apply(&app, from, &key, version, node, &value).await,
        Frame::Digest { space, buckets } if space == SPACE_CHANNELS => {
            let Some(map) = local_map(&app).await else {
                return;
            };
            let differ = lww::diff(&map.digest(), &buckets);
            if differ.is_empty() {
                return;
            }
            log::debug!(
                "mesh: {} record buckets differ from {from:016x}; repairing",
                differ.len()
            );
            send_buckets(&mesh, &map, from, &differ);
            let ask = Frame::DigestRequest {
                space,
                buckets: List(differ),
            };
            let _ = mesh.send(from, &ask);
        }
        Frame::DigestRequest { space, buckets } if space == SPACE_CHANNELS => {
            if let Some(map) = local_map(&app).await {
                send_buckets(&mesh, &map, from, &buckets);
            }
        }
        other => log::debug!("mesh: {:?} frame from {from:016x} ignored", other.kind()),
    }
}

async fn apply(app: &App, from: NodeId, key: &str, rev: u64, node: u64, value: &[u8]) {
    let decoded = std::panic::catch_unwind(|| ChannelRecord::deserialize_bin(value));
    let record = match decoded {
        Ok(Ok(record)) if record.login == key => record,
        _ => {
            log::warn!("mesh: unreadable record of {key:?} from {from:016x}; ignored");
            return;
        }
    };
    apply_record(app, from, Replicated { rev, node, record }).await;
}

/// Stores a record from node `from` (the mesh, or PostgreSQL) if it is newer,
/// and shows what changed: a new channel served, a rotated URL's overlays
/// closed, a new config pushed to the overlays.
pub async fn apply_record(app: &App, from: NodeId, incoming: Replicated) {
    let key = incoming.record.login.clone();
    match app.db.apply_record(incoming, from).await {
        Ok(None) => {}
        Ok(Some(Applied {
            streamer,
            config,
            created,
            token_changed,
            config_changed,
        })) => {
            let login = streamer.login.clone();
            if created {
                log::info!("mesh: channel {login} replicated from {from:016x}");
                app.serve_streamer(streamer, config);
                return;
            }
            if token_changed {
                log::info!("mesh: overlay URL of {login} rotated on {from:016x}");
                app.hub.rotate_token(&login, streamer.overlay_token.clone());
            }
            if config_changed {
                log::info!(
                    "mesh: config of {login} (version {}) from {from:016x}",
                    streamer.config_version
                );
                app.hub
                    .update_config(&login, config, streamer.config_version, now_ms());
            }
        }
        Err(e) => log::warn!("mesh: record of {key} from {from:016x} not applied: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tokens_are_per_secret_and_login_and_look_like_random_ones() {
        let a = seed_token("secret-one-0123456789", "alice");
        assert_eq!(a, seed_token("secret-one-0123456789", "alice"));
        assert_ne!(a, seed_token("secret-two-0123456789", "alice"));
        assert_ne!(a, seed_token("secret-one-0123456789", "bob"));
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn records_round_trip_through_the_frame_value() {
        let r = ChannelRecord {
            login: "alice".into(),
            display_name: "Alice".into(),
            twitch_user_id: String::new(),
            overlay_token: "t".repeat(22),
            token_rev: 2,
            token_node: 9,
            config_version: 3,
            config_node: 7,
            config: "{}".into(),
        };
        let bytes = r.serialize_bin();
        assert_eq!(ChannelRecord::deserialize_bin(&bytes).unwrap(), r);
        assert!(ChannelRecord::deserialize_bin(&bytes[..bytes.len() - 1]).is_err());
    }
}
