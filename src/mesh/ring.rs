//! Ownership by rendezvous (highest-random-weight) hashing (pure).
//!
//! Owns the one rule every node applies to decide which live member owns a key
//! (a broadcaster, an IRC channel, an EventSub subscription): each member scores
//! the key and the highest score wins. All nodes that agree on the member set agree
//! on the owner without talking, and when a member leaves only the keys it owned
//! move (to their second choice); when one joins, only the keys it now wins move.
//!
//! The score must be identical on every node, every build and every release, so it
//! is spelled out here (FNV-1a 64 over `node ‖ key`, then the murmur3 64-bit
//! finalizer for avalanche) rather than taken from std's `Hash`, whose output is
//! neither specified nor stable.

use crate::sentiment::NodeId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// murmur3's fmix64: spreads FNV's weak high bits over the whole word.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The weight of `node` for `key`. Stable across processes, platforms and releases.
pub fn score(key: &str, node: NodeId) -> u64 {
    let h = fnv1a(FNV_OFFSET, &node.to_le_bytes());
    fmix64(fnv1a(h, key.as_bytes()))
}

/// A stable 64-bit hash of several byte strings (each length-framed, so
/// `["ab", "c"]` and `["a", "bc"]` differ): digests and bucket choice in [`super::lww`].
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let h = parts.iter().fold(FNV_OFFSET, |h, part| {
        let h = fnv1a(h, &(part.len() as u64).to_le_bytes());
        fnv1a(h, part)
    });
    fmix64(h)
}

/// The member that owns `key`: the highest score, ties to the larger node id.
/// `None` only when `members` is empty. Duplicates and order do not matter.
pub fn owner(key: &str, members: &[NodeId]) -> Option<NodeId> {
    members
        .iter()
        .copied()
        .max_by_key(|&node| (score(key, node), node))
}

/// Members ordered by preference for `key` (owner first): the fallback order when
/// the owner cannot be reached.
pub fn ranked(key: &str, members: &[NodeId]) -> Vec<NodeId> {
    let mut ranked: Vec<NodeId> = members.to_vec();
    ranked.sort_unstable_by_key(|&node| std::cmp::Reverse((score(key, node), node)));
    ranked.dedup();
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NODES: [NodeId; 5] = [
        0x1111_2222_3333_4444,
        0x9e37_79b9_7f4a_7c15,
        7,
        0xffff_ffff_ffff_fffe,
        0x0123_4567_89ab_cdef,
    ];

    fn keys() -> impl Iterator<Item = String> {
        (0..10_000).map(|i| format!("broadcaster_{i}"))
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn scores_are_pinned_so_every_release_agrees() {
        // If this fails, nodes of different releases would disagree on owners.
        // Values computed by an independent implementation of the same formula.
        assert_eq!(score("alice", 1), 0xc24f_013b_e7b6_840e);
        assert_eq!(score("", 0), 0x7bd3_144f_29c0_cc9e);
        assert_eq!(owner("alice", &NODES), Some(NODES[1]));
    }

    #[test]
    fn owner_is_deterministic_and_ignores_order_and_duplicates() {
        let mut shuffled = NODES.to_vec();
        shuffled.reverse();
        shuffled.push(NODES[1]);
        for key in keys().take(500) {
            let a = owner(&key, &NODES);
            assert_eq!(a, owner(&key, &shuffled));
            assert_eq!(a, ranked(&key, &shuffled).first().copied());
        }
        assert_eq!(owner("alice", &[]), None);
        assert_eq!(owner("alice", &[42]), Some(42));
    }

    #[test]
    fn keys_spread_evenly() {
        for n in [2, 3, 5] {
            let members = &NODES[..n];
            let mut counts: HashMap<NodeId, usize> = HashMap::new();
            for key in keys() {
                *counts.entry(owner(&key, members).unwrap()).or_default() += 1;
            }
            let fair = 10_000 / n;
            for (node, count) in counts {
                let off = count.abs_diff(fair) as f64 / fair as f64;
                assert!(
                    off < 0.08,
                    "{n} members: node {node:x} owns {count}, fair {fair}"
                );
            }
        }
    }

    #[test]
    fn a_leave_moves_only_the_leavers_keys_and_a_join_only_the_joiners() {
        let all = &NODES[..];
        let without = &NODES[..4]; // NODES[4] leaves
        let mut moved = 0;
        for key in keys() {
            let before = owner(&key, all).unwrap();
            let after = owner(&key, without).unwrap();
            if before == NODES[4] {
                moved += 1;
                assert_eq!(after, ranked(&key, all)[1], "falls to the second choice");
            } else {
                assert_eq!(before, after, "{key} moved although its owner stayed");
            }
        }
        // Rejoining is the same question read backwards: only ~1/5 of keys move.
        assert!((1_600..2_400).contains(&moved), "{moved} keys moved");
    }
}
