//! The pure checks of an EventSub webhook request: the HMAC signature, the
//! RFC 3339 message timestamp and its freshness window, and the set of message
//! ids already seen (replay and at-least-once de-duplication). No I/O here.

use std::collections::{HashMap, VecDeque};

use ring::hmac;

/// Twitch: "make sure the message timestamp isn't older than 10 minutes".
pub const MAX_AGE_MS: u64 = 10 * 60 * 1000;
/// Clock skew we tolerate for timestamps from the future.
pub const MAX_AHEAD_MS: u64 = 60 * 1000;
/// How long a message id is remembered. A message is accepted until its
/// timestamp is [`MAX_AGE_MS`] old and its timestamp may be [`MAX_AHEAD_MS`]
/// ahead of our clock, so an id kept this long outlives every possible replay.
pub const SEEN_TTL_MS: u64 = MAX_AGE_MS + MAX_AHEAD_MS;
/// Most ids remembered: ~11 minutes of 150 messages/s. Past this the oldest
/// are forgotten early (each id costs ~100 bytes, so this caps memory at ~10 MB).
pub const SEEN_CAPACITY: usize = 100_000;
/// Longest message id we accept (Twitch's are UUIDs or ~44-char tokens).
pub const MAX_ID_LEN: usize = 256;

/// `Twitch-Eventsub-Message-Signature` against HMAC-SHA256(secret, id ‖ timestamp ‖ body),
/// compared in constant time (`ring::hmac::verify`).
pub fn signature_ok(secret: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(tag) = header.strip_prefix("sha256=").and_then(hex_decode) else {
        return false;
    };
    let mut msg = Vec::with_capacity(id.len() + timestamp.len() + body.len());
    msg.extend_from_slice(id.as_bytes());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.extend_from_slice(body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &msg, &tag).is_ok()
}

/// `sha256=<hex>` for a message (what Twitch sends; used by tests and fakes).
pub fn sign(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(timestamp.as_bytes());
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    TooOld,
    TooNew,
}

/// Where `sent_ms` sits relative to `now_ms`: inside [-10 min, +1 min] is fresh.
pub fn freshness(sent_ms: u64, now_ms: u64) -> Freshness {
    if sent_ms + MAX_AGE_MS < now_ms {
        Freshness::TooOld
    } else if sent_ms > now_ms + MAX_AHEAD_MS {
        Freshness::TooNew
    } else {
        Freshness::Fresh
    }
}

/// Parses an RFC 3339 date-time (`2021-02-19T23:47:00.8091512Z`, up to 9
/// fractional digits, `Z` or `±hh:mm`) into Unix milliseconds. Dates before
/// 1970 are refused: Twitch never sends them.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then_some(())?;
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, chars: &[u8]| b.get(at).is_some_and(|c| chars.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; count it as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        for (k, c) in b[i + 1..i + 1 + digits.min(3)].iter().enumerate() {
            millis += i64::from(c - b'0') * 10i64.pow(2 - k as u32);
        }
        i += 1 + digits;
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && sep(i + 3, b":") => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Message ids seen in the last [`SEEN_TTL_MS`], oldest first. Insertion order
/// is expiry order (every id lives equally long), so expiry pops the front.
#[derive(Debug, Default)]
pub struct SeenIds {
    order: VecDeque<(u64, String)>,
    expires: HashMap<String, u64>,
}

impl SeenIds {
    /// Records `id`; false when it was already seen (a duplicate).
    pub fn insert(&mut self, id: &str, now_ms: u64) -> bool {
        self.expire(now_ms);
        if self.expires.contains_key(id) {
            return false;
        }
        while self.order.len() >= SEEN_CAPACITY {
            self.pop_oldest();
        }
        let until = now_ms + SEEN_TTL_MS;
        self.order.push_back((until, id.to_string()));
        self.expires.insert(id.to_string(), until);
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn expire(&mut self, now_ms: u64) {
        while self
            .order
            .front()
            .is_some_and(|(until, _)| *until <= now_ms)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.expires.remove(&id);
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
