//! A last-writer-wins map (pure): the state-based CRDT the mesh uses for data a
//! person edits on one node and every node must see (streamers, overlay configs).
//!
//! Owns the merge rule and the anti-entropy digest. Each key holds `(version, node,
//! value)`; the larger `(version, node)` wins, so concurrent edits on two nodes
//! settle the same way everywhere, in any order, any number of times (merge is
//! commutative, associative and idempotent). Keys are never removed: a delete is a
//! newer write of a tombstone value chosen by the caller, so an older write
//! arriving late cannot resurrect it.
//!
//! Anti-entropy: [`LwwMap::digest`] hashes the entries of each of [`BUCKETS`]
//! buckets; two nodes swap digests (a few hundred bytes), [`diff`] names the
//! buckets that differ, and only those buckets' entries ([`LwwMap::entries_in`])
//! travel. Both sides then [`LwwMap::apply`] what they received.

use std::collections::BTreeMap;

use super::ring::stable_hash;
use crate::sentiment::NodeId;

/// Digest width: with a few hundred keys, 64 buckets keep a repair to a handful
/// of entries while a digest stays 512 bytes.
pub const BUCKETS: usize = 64;

/// One key's current winner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub version: u64,
    pub node: NodeId,
    pub value: Vec<u8>,
}

impl Entry {
    /// Does `self` beat `other`? Larger (version, node) wins; an exact tie (one
    /// node reusing a version by mistake) goes to the larger value, so replicas
    /// still agree.
    fn beats(&self, other: &Entry) -> bool {
        (self.version, self.node, &self.value) > (other.version, other.node, &other.value)
    }
}

/// Per-bucket hashes of a map; equal digests mean equal maps (up to hash collisions).
pub type Digest = [u64; BUCKETS];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LwwMap {
    entries: BTreeMap<String, Entry>,
}

/// The bucket a key's entry is digested in.
pub fn bucket_of(key: &str) -> u16 {
    (stable_hash(&[key.as_bytes()]) % BUCKETS as u64) as u16
}

/// The buckets whose hashes differ between two digests (what to ask for).
pub fn diff(ours: &[u64], theirs: &[u64]) -> Vec<u16> {
    (0..BUCKETS)
        .filter(|&b| ours.get(b) != theirs.get(b))
        .map(|b| b as u16)
        .collect()
}

impl LwwMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e))
    }

    /// Offers one write (local or received). Returns true when it won, i.e. the
    /// map changed and the caller should act on the new value (and pass it on).
    pub fn apply(&mut self, key: &str, entry: Entry) -> bool {
        match self.entries.get_mut(key) {
            Some(current) if !entry.beats(current) => false,
            Some(current) => {
                *current = entry;
                true
            }
            None => {
                self.entries.insert(key.to_owned(), entry);
                true
            }
        }
    }

    /// Merges a whole replica; returns the keys that changed here.
    pub fn merge(&mut self, other: &LwwMap) -> Vec<String> {
        other
            .iter()
            .filter(|(key, entry)| self.apply(key, (*entry).clone()))
            .map(|(key, _)| key.to_owned())
            .collect()
    }

    pub fn digest(&self) -> Digest {
        let mut digest = [0u64; BUCKETS];
        for (key, e) in &self.entries {
            let h = stable_hash(&[
                key.as_bytes(),
                &e.version.to_le_bytes(),
                &e.node.to_le_bytes(),
                &e.value,
            ]);
            // A sum is order-free, so the digest does not depend on history.
            let slot = &mut digest[bucket_of(key) as usize];
            *slot = slot.wrapping_add(h);
        }
        digest
    }

    /// The entries of the given buckets (the answer to a digest request).
    pub fn entries_in(&self, buckets: &[u16]) -> Vec<(&str, &Entry)> {
        self.iter()
            .filter(|(key, _)| buckets.contains(&bucket_of(key)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rng::XorShift;

    fn entry(version: u64, node: NodeId, value: &str) -> Entry {
        Entry {
            version,
            node,
            value: value.as_bytes().to_vec(),
        }
    }

    /// A replica that saw a random subset of random writes to a few keys.
    fn replica(rng: &mut XorShift) -> LwwMap {
        let mut map = LwwMap::new();
        for _ in 0..rng.below(30) {
            let key = format!("config/{}", rng.below(12));
            let value = format!("v{}", rng.below(3));
            map.apply(&key, entry(rng.below(5), rng.below(3), &value));
        }
        map
    }

    fn merged(a: &LwwMap, b: &LwwMap) -> LwwMap {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    #[test]
    fn the_larger_version_then_node_wins() {
        let mut m = LwwMap::new();
        assert!(m.apply("k", entry(1, 9, "a")));
        assert!(
            !m.apply("k", entry(1, 9, "a")),
            "same write twice is no change"
        );
        assert!(m.apply("k", entry(1, 10, "b")), "same version, larger node");
        assert!(!m.apply("k", entry(0, 99, "c")), "older version loses");
        assert!(m.apply("k", entry(2, 1, "d")));
        assert_eq!(m.get("k"), Some(&entry(2, 1, "d")));
    }

    #[test]
    fn merge_is_commutative_associative_and_idempotent() {
        let mut rng = XorShift(0x5eed_1234_abcd_ef01);
        for _ in 0..500 {
            let (a, b, c) = (replica(&mut rng), replica(&mut rng), replica(&mut rng));
            assert_eq!(merged(&a, &b), merged(&b, &a));
            assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            assert_eq!(merged(&a, &a), a);
            assert_eq!(merged(&a, &b).digest(), merged(&b, &a).digest());
        }
    }

    #[test]
    fn digest_diff_names_exactly_the_buckets_that_differ() {
        let mut a = LwwMap::new();
        for i in 0..200 {
            a.apply(&format!("streamer/{i}"), entry(1, 1, "x"));
        }
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        assert!(diff(&a.digest(), &b.digest()).is_empty());
        b.apply("streamer/7", entry(2, 2, "y"));
        b.apply("streamer/new", entry(1, 2, "z"));
        let buckets = diff(&a.digest(), &b.digest());
        let mut expected = vec![bucket_of("streamer/7"), bucket_of("streamer/new")];
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(buckets, expected);
    }

    #[test]
    fn one_anti_entropy_round_converges_two_replicas() {
        let mut rng = XorShift(0x0dd_ba11);
        for _ in 0..100 {
            let (mut a, mut b) = (replica(&mut rng), replica(&mut rng));
            let want = merged(&a, &b);
            let buckets = diff(&a.digest(), &b.digest());
            let from_a: Vec<(String, Entry)> = a
                .entries_in(&buckets)
                .into_iter()
                .map(|(k, e)| (k.to_owned(), e.clone()))
                .collect();
            let from_b: Vec<(String, Entry)> = b
                .entries_in(&buckets)
                .into_iter()
                .map(|(k, e)| (k.to_owned(), e.clone()))
                .collect();
            for (k, e) in from_b {
                a.apply(&k, e);
            }
            for (k, e) in from_a {
                b.apply(&k, e);
            }
            assert_eq!(a, want);
            assert_eq!(b, want);
            assert!(diff(&a.digest(), &b.digest()).is_empty());
        }
    }
}
