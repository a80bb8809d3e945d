//! The broadcasters of this node: their settings, vote logs and connected
//! overlays, behind one short `std::sync::Mutex` (never held across `.await`).
//! [`Hub::chat`] is the single entry point every chat source calls; fan-out
//! `try_send`s into each overlay's bounded outbox and evicts a client whose
//! outbox is full, so one slow socket never holds up the others.
//!
//! In a cluster (`cluster`), the owner of a broadcaster counts its votes: other
//! nodes forward chat to it, and every node merges the owner's vote log and
//! publishes it to its own overlays.

mod cluster;
mod forward;

pub use cluster::{ClusterHandler, PRESENCE_EVERY, PRESENCE_TTL};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::outbox::{self, Receiver, SendError, Sender};
use async_tungstenite::tungstenite::Utf8Bytes;

use crate::channel::{OverlayConfig, Streamer};
use crate::chat::{ChatMessage, MAX_TEXT_BYTES};
use crate::metrics::{Metrics, VoteResult, VoteSide};
use crate::sentiment::{self, Debouncer, NodeId, Side, TokenBucket, VoteLog};

/// At most 20 updates per second per broadcaster; votes in between coalesce.
pub const MIN_PUBLISH_GAP_MS: u64 = 50;
/// While the window holds votes, re-send once a second so expiry is visible.
pub const REFRESH_MS: u64 = 1_000;
/// Fold old buckets this often (bounds memory of "infinite" windows).
const COMPACT_EVERY_MS: u64 = 10_000;
/// Forget debounce marks this often.
const PRUNE_EVERY_MS: u64 = 5_000;

/// Close code for "this overlay URL is unknown or was rotated": the page stops retrying.
pub const CLOSE_TOKEN_INVALID: u16 = 4404;

/// What an overlay's writer receives.
#[derive(Debug, Clone)]
pub enum Outbound {
    Frame(Utf8Bytes),
    Close(u16, &'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    pub debounce_ms: u64,
    pub bucket_capacity: f64,
    pub bucket_refill_per_minute: f64,
    pub max_per_broadcaster: usize,
    pub outbox: usize,
}

struct Sub {
    id: u64,
    tx: Sender<Outbound>,
}

struct Channel {
    streamer: Streamer,
    config: OverlayConfig,
    log: VoteLog,
    bucket: TokenBucket,
    subs: Vec<Sub>,
    seq: u64,
    last_publish_ms: u64,
    last_total: u64,
    pending: bool,
    newest_vote_ms: u64,
    dirty: bool,
    /// The log changed here (a vote or a reset): broadcast it at the next publish.
    replicate: bool,
}

type TokenKey = [u8; 32];

fn token_key(token: &str) -> TokenKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

struct Inner {
    channels: HashMap<Arc<str>, Channel>,
    /// Overlay tokens by their SHA-256 ([`token_key`]), never by the text: a
    /// lookup's timing then depends on a digest an attacker cannot steer, so
    /// it tells nothing about how close a guessed token came.
    tokens: HashMap<TokenKey, Arc<str>>,
    debouncer: Debouncer,
    next_sub: u64,
    last_compact_ms: u64,
    last_prune_ms: u64,
    /// Overlays on the other nodes, per node ([`cluster`]).
    presence: cluster::Presence,
}

pub struct Hub {
    node: NodeId,
    settings: HubSettings,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
    /// Set while this node is in a cluster; never locked across the hub lock's
    /// acquisition (read it first, or under the hub lock, never the reverse).
    mesh: RwLock<Option<Arc<crate::mesh::Mesh>>>,
    /// Forwarded chat lines awaiting their owner's acknowledgement
    /// ([`forward`]); its own lock, never held with the hub's.
    forwards: Mutex<forward::Forwards>,
}

/// A granted overlay subscription; its outbox already holds the snapshot.
pub struct Subscription {
    pub id: u64,
    pub login: Arc<str>,
    pub rx: Receiver<Outbound>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    UnknownToken,
    BroadcasterFull,
}

impl Hub {
    pub fn new(node: NodeId, settings: HubSettings, metrics: Arc<Metrics>) -> Self {
        Hub {
            node,
            settings,
            metrics,
            inner: Mutex::new(Inner {
                channels: HashMap::new(),
                tokens: HashMap::new(),
                debouncer: Debouncer::new(settings.debounce_ms),
                next_sub: 1,
                last_compact_ms: 0,
                last_prune_ms: 0,
                presence: Default::default(),
            }),
            mesh: RwLock::new(None),
            forwards: Mutex::new(forward::Forwards::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or refreshes) a broadcaster. A restored vote log may be passed in.
    pub fn add_channel(
        &self,
        streamer: Streamer,
        config: OverlayConfig,
        log: Option<VoteLog>,
        now_ms: u64,
    ) {
        let mut inner = self.lock();
        let login: Arc<str> = Arc::from(streamer.login.as_str());
        inner
            .tokens
            .insert(token_key(&streamer.overlay_token), login.clone());
        let s = self.settings;
        inner.channels.insert(
            login,
            Channel {
                streamer,
                config,
                log: log.unwrap_or_default(),
                bucket: TokenBucket::new(s.bucket_capacity, s.bucket_refill_per_minute, now_ms),
                subs: Vec::new(),
                seq: 0,
                last_publish_ms: 0,
                last_total: 0,
                pending: false,
                newest_vote_ms: 0,
                dirty: false,
                replicate: false,
            },
        );
    }

    pub fn streamers(&self) -> Vec<Streamer> {
        let inner = self.lock();
        let mut v: Vec<Streamer> = inner
            .channels
            .values()
            .map(|c| c.streamer.clone())
            .collect();
        v.sort_by(|a, b| a.login.cmp(&b.login));
        v
    }

    pub fn token_exists(&self, token: &str) -> bool {
        self.lock().tokens.contains_key(&token_key(token))
    }

    /// Registers an overlay for `token` and queues the snapshot frame.
    pub fn subscribe(&self, token: &str, now_ms: u64) -> Result<Subscription, SubscribeError> {
        let mut inner = self.lock();
        let login = inner
            .tokens
            .get(&token_key(token))
            .cloned()
            .ok_or(SubscribeError::UnknownToken)?;
        let id = inner.next_sub;
        inner.next_sub += 1;
        let Some(ch) = inner.channels.get_mut(&login) else {
            return Err(SubscribeError::UnknownToken);
        };
        if ch.subs.len() >= self.settings.max_per_broadcaster {
            return Err(SubscribeError::BroadcasterFull);
        }
        let (tx, rx) = outbox::bounded(self.settings.outbox.max(2));
        let frame = build_frame(ch, "snapshot", now_ms);
        // A fresh channel with capacity ≥ 2 has room for the snapshot.
        let _ = tx.try_send(Outbound::Frame(frame));
        if ch.subs.is_empty() {
            self.metrics.broadcaster_active_sessions.inc();
        }
        ch.subs.push(Sub { id, tx });
        Ok(Subscription { id, login, rx })
    }

    pub fn unsubscribe(&self, login: &str, id: u64) {
        let mut inner = self.lock();
        if let Some(ch) = inner.channels.get_mut(login) {
            let before = ch.subs.len();
            ch.subs.retain(|s| s.id != id);
            if before > 0 && ch.subs.is_empty() {
                self.metrics.broadcaster_active_sessions.dec();
            }
        }
    }

    /// Overlays of `login` across the cluster (this node's plus the others' presence).
    pub fn viewers(&self, login: &str) -> usize {
        let inner = self.lock();
        let local = inner.channels.get(login).map_or(0, |c| c.subs.len());
        local + inner.presence.viewers(login)
    }

    /// The chat entry point: match, debounce, rate-limit, count, publish.
    pub fn chat(&self, msg: &ChatMessage, now_ms: u64) -> VoteResult {
        let started = std::time::Instant::now();
        self.metrics.chat_messages_received.inc(msg.source);
        let result = match self.forward(msg) {
            Some(result) => result,
            None => self.process(msg, now_ms),
        };
        self.metrics
            .observe_vote(result, started.elapsed().as_secs_f64());
        result
    }

    fn process(&self, msg: &ChatMessage, now_ms: u64) -> VoteResult {
        if msg.text.len() > MAX_TEXT_BYTES || msg.chatter_id.is_empty() {
            return VoteResult::Invalid;
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(ch) = inner.channels.get_mut(msg.channel.as_str()) else {
            return VoteResult::UnknownChannel;
        };
        // Zero-cost idle: nobody watches (on any node), nothing to count.
        if ch.subs.is_empty() && inner.presence.viewers(&msg.channel) == 0 {
            return VoteResult::NoViewers;
        }
        let cfg = &ch.config;
        let Some(side) =
            sentiment::match_trigger(&msg.text, &cfg.for_triggers, &cfg.against_triggers)
        else {
            return VoteResult::NoMatch;
        };
        self.metrics.vote_trigger_matches.inc(match side {
            Side::For => VoteSide::For,
            Side::Against => VoteSide::Against,
        });
        if !inner
            .debouncer
            .accept(&msg.channel, &msg.chatter_id, now_ms)
        {
            return VoteResult::Debounced;
        }
        if !ch.bucket.try_take(now_ms) {
            return VoteResult::RateLimited;
        }
        ch.log.record(self.node, side, now_ms);
        ch.newest_vote_ms = now_ms;
        ch.dirty = true;
        ch.replicate = true;
        if now_ms.saturating_sub(ch.last_publish_ms) >= MIN_PUBLISH_GAP_MS {
            self.publish(ch, now_ms);
        } else {
            ch.pending = true;
            self.metrics.broadcaster_updates_coalesced.inc();
        }
        VoteResult::Applied
    }

    /// New settings for a broadcaster, pushed to its overlays at once.
    pub fn update_config(
        &self,
        login: &str,
        config: OverlayConfig,
        version: i64,
        now_ms: u64,
    ) -> bool {
        let mut inner = self.lock();
        let Some(ch) = inner.channels.get_mut(login) else {
            return false;
        };
        ch.config = config;
        ch.streamer.config_version = version;
        self.publish(ch, now_ms);
        true
    }

    /// Back to the center for every overlay, at once.
    pub fn reset(&self, login: &str, now_ms: u64) -> bool {
        let mut inner = self.lock();
        let Some(ch) = inner.channels.get_mut(login) else {
            return false;
        };
        ch.log.reset(self.node, now_ms);
        ch.dirty = true;
        ch.replicate = true;
        self.publish(ch, now_ms);
        true
    }

    /// Replaces the overlay token; overlays on the old one are closed with 4404.
    pub fn rotate_token(&self, login: &str, new_token: String) -> bool {
        let mut inner = self.lock();
        let Some(ch) = inner.channels.get_mut(login) else {
            return false;
        };
        let old = std::mem::replace(&mut ch.streamer.overlay_token, new_token.clone());
        if !ch.subs.is_empty() {
            self.metrics.broadcaster_active_sessions.dec();
        }
        for sub in ch.subs.drain(..) {
            let _ = sub
                .tx
                .force_send(Outbound::Close(CLOSE_TOKEN_INVALID, "overlay URL rotated"));
        }
        let key: Arc<str> = Arc::from(login);
        inner.tokens.remove(&token_key(&old));
        inner.tokens.insert(token_key(&new_token), key);
        true
    }

    /// Shutdown: every overlay gets `code` (1001: reconnect elsewhere) at once.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let mut inner = self.lock();
        for ch in inner.channels.values_mut() {
            if !ch.subs.is_empty() {
                self.metrics.broadcaster_active_sessions.dec();
            }
            for sub in ch.subs.drain(..) {
                let _ = sub.tx.force_send(Outbound::Close(code, reason));
            }
        }
    }

    /// Periodic work: coalesced updates, 1 s refreshes, compaction, pruning.
    pub fn tick(&self, now_ms: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let compact = now_ms.saturating_sub(inner.last_compact_ms) >= COMPACT_EVERY_MS;
        if compact {
            inner.last_compact_ms = now_ms;
        }
        if now_ms.saturating_sub(inner.last_prune_ms) >= PRUNE_EVERY_MS {
            inner.last_prune_ms = now_ms;
            inner.debouncer.prune(now_ms);
        }
        for ch in inner.channels.values_mut() {
            if compact {
                ch.log.compact(now_ms);
            }
            let since = now_ms.saturating_sub(ch.last_publish_ms);
            let due_pending = ch.pending && since >= MIN_PUBLISH_GAP_MS;
            if ch.subs.is_empty() {
                // An owner counting for other nodes' overlays still replicates.
                if due_pending {
                    self.publish(ch, now_ms);
                }
                continue;
            }
            let due_refresh = since >= REFRESH_MS && (ch.last_total > 0 || !ch.log.is_empty());
            if due_pending || due_refresh {
                self.publish(ch, now_ms);
            }
        }
    }

    /// Encoded logs changed since the last call (for the redb flush).
    pub fn take_dirty_logs(&self) -> Vec<(String, Vec<u8>)> {
        let mut inner = self.lock();
        inner
            .channels
            .values_mut()
            .filter(|c| c.dirty)
            .map(|c| {
                c.dirty = false;
                (c.streamer.login.clone(), c.log.encode())
            })
            .collect()
    }

    /// Marks every log dirty again (after a failed flush).
    pub fn mark_dirty(&self, logins: &[String]) {
        let mut inner = self.lock();
        for l in logins {
            if let Some(c) = inner.channels.get_mut(l.as_str()) {
                c.dirty = true;
            }
        }
    }

    fn publish(&self, ch: &mut Channel, now_ms: u64) {
        ch.pending = false;
        ch.last_publish_ms = now_ms;
        if std::mem::take(&mut ch.replicate) {
            self.replicate(ch);
        }
        if ch.subs.is_empty() {
            return;
        }
        let frame = build_frame(ch, "update", now_ms);
        self.metrics.broadcaster_updates_published.inc();
        let before = ch.subs.len();
        let metrics = &self.metrics;
        ch.subs.retain(
            |sub| match sub.tx.try_send(Outbound::Frame(frame.clone())) {
                Ok(()) => true,
                Err(SendError::Full) => {
                    // Slow client: drop it rather than wait; its writer sees the close.
                    metrics.broadcaster_slow_clients_evicted.inc();
                    false
                }
                Err(SendError::Closed) => false,
            },
        );
        if before > 0 && ch.subs.is_empty() {
            self.metrics.broadcaster_active_sessions.dec();
        }
    }
}

/// Serialises the broadcaster's current state once; every overlay shares the bytes.
fn build_frame(ch: &mut Channel, kind: &'static str, now_ms: u64) -> Utf8Bytes {
    ch.seq += 1;
    let snapshot = sentiment::snapshot(&ch.log, ch.config.model, now_ms);
    ch.last_total = snapshot.tally.total();
    let ts = if ch.newest_vote_ms > 0 {
        ch.newest_vote_ms
    } else {
        now_ms
    };
    Utf8Bytes::from(crate::frame::encode(
        kind, ch.seq, ts, &snapshot, &ch.config,
    ))
}

impl Hub {
    /// The current settings of a broadcaster.
    pub fn config_of(&self, login: &str) -> Option<OverlayConfig> {
        self.lock().channels.get(login).map(|c| c.config.clone())
    }
}
