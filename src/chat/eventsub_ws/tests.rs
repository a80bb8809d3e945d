//! Pure parts of the EventSub WebSocket source: sharding, backoff, close codes.

use std::time::Duration;

use super::socket::close_meaning;
use super::*;

fn channels(n: usize) -> Vec<Channel> {
    (0..n)
        .map(|i| Channel {
            login: format!("c{i}"),
            id: i.to_string(),
        })
        .collect()
}

#[test]
fn shards_fill_sockets_in_order_and_leave_out_the_rest() {
    let small = Limits {
        subs_per_socket: 2,
        max_sockets: 3,
    };
    let (shards, left) = shard(channels(0), small);
    assert!(shards.is_empty() && left.is_empty());
    let (shards, left) = shard(channels(5), small);
    let sizes: Vec<usize> = shards.iter().map(Vec::len).collect();
    assert_eq!((sizes, left.len()), (vec![2, 2, 1], 0));
    assert_eq!(shards[2][0].login, "c4");
    let (shards, left) = shard(channels(8), small);
    assert_eq!(shards.len(), 3);
    assert_eq!(
        left.iter().map(|c| c.login.as_str()).collect::<Vec<_>>(),
        ["c6", "c7"]
    );
    // Twitch's limits: 900 channels fit, the 901st does not.
    let (shards, left) = shard(channels(901), Limits::default());
    assert_eq!((shards.len(), shards[0].len(), left.len()), (3, 300, 1));
    let (shards, _) = shard(channels(300), Limits::default());
    assert_eq!(shards.len(), 1);
    // A zero limit is treated as one per socket rather than dividing by zero.
    let (shards, left) = shard(
        channels(2),
        Limits {
            subs_per_socket: 0,
            max_sockets: 1,
        },
    );
    assert_eq!((shards.len(), left.len()), (1, 1));
}

#[test]
fn resolve_keeps_known_logins_in_order() {
    let logins = vec!["alice".to_string(), "bob".to_string(), "carol".to_string()];
    let users = vec![("Carol".into(), "3".into()), ("alice".into(), "1".into())];
    let got = resolve(&logins, users);
    assert_eq!(
        got,
        vec![
            Channel {
                login: "alice".into(),
                id: "1".into()
            },
            Channel {
                login: "carol".into(),
                id: "3".into()
            }
        ]
    );
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap() {
    let s = Duration::from_secs;
    let mut b = Backoff::new(s(1), s(8));
    let lows: Vec<Duration> = (0..6).map(|_| b.next_with(0)).collect();
    assert_eq!(
        lows,
        [Duration::from_millis(500), s(1), s(2), s(4), s(4), s(4)]
    );
    b.reset();
    let highs: Vec<Duration> = (0..5).map(|_| b.next_with(u64::MAX - 1)).collect();
    for (d, full) in highs.iter().zip([1, 2, 4, 8, 8]) {
        assert!(*d >= s(full) / 2 && *d <= s(full), "{d:?} vs {full}");
    }
    // Many attempts neither overflow nor exceed the cap.
    for _ in 0..100 {
        assert!(b.next() <= s(8));
    }
}

#[test]
fn close_codes_blame_the_right_side() {
    use log::Level::{Error, Warn};
    assert_eq!(close_meaning(4001).0, Error);
    assert_eq!(close_meaning(4003).0, Error);
    for code in [4000, 4002, 4004, 4005, 4006, 4007, 1000, 1006] {
        assert_eq!(close_meaning(code).0, Warn, "{code}");
    }
    assert!(close_meaning(4004).1.contains("reconnect"));
}
