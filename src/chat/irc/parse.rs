//! Twitch IRC bytes → messages, with no I/O: [`LineBuffer`] frames lines out of
//! whatever the socket delivers, [`parse_line`] splits one line into a borrowing
//! [`Message`] (tags are looked up lazily and unescaped only when asked), and
//! [`Message::privmsg`] pulls out the fields a vote needs. Nothing here panics
//! on garbage; it reports an error the caller counts.

use std::borrow::Cow;

/// Longest line we keep, without its line ending. IRCv3 allows 8191 bytes of
/// tags plus 512 of message; real Twitch lines stay under ~2 KiB, so a longer
/// one is broken or hostile and is dropped rather than buffered.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// Why a line was not handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Longer than [`MAX_LINE_BYTES`]; the rest of it up to the newline is skipped.
    TooLong,
    /// Not UTF-8 (Twitch always sends UTF-8, so the line is damaged).
    NotUtf8,
}

/// Frames CRLF- (or bare LF-) terminated lines across reads. Holds at most
/// [`MAX_LINE_BYTES`] of an unfinished line plus one read's worth of bytes.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes before this offset were already handed out.
    start: usize,
    /// Inside a too-long line: skip everything up to the next newline.
    skipping: bool,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete, non-empty line (without its line ending), an error for
    /// a line that cannot be used, or `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Option<Result<&str, LineError>> {
        let (begin, end) = loop {
            let begin = self.start;
            let newline = self.buf[begin..].iter().position(|&b| b == b'\n');
            let Some(nl) = newline else {
                // Room for a full line and its CR while the LF is still on the way.
                if self.skipping || self.buf.len() - begin > MAX_LINE_BYTES + 1 {
                    // Report a too-long line once, then drop what arrives until a newline.
                    let first = !self.skipping;
                    self.buf.clear();
                    self.start = 0;
                    self.skipping = true;
                    return first.then_some(Err(LineError::TooLong));
                }
                return None;
            };
            self.start += nl + 1;
            let mut end = begin + nl;
            if end > begin && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            if !std::mem::take(&mut self.skipping) && end > begin {
                break (begin, end);
            }
        };
        if end - begin > MAX_LINE_BYTES {
            return Some(Err(LineError::TooLong));
        }
        Some(std::str::from_utf8(&self.buf[begin..end]).map_err(|_| LineError::NotUtf8))
    }
}

/// Why a line is not an IRC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Tags or prefix with nothing after them.
    Truncated,
    /// The command is not letters or a three-digit numeric.
    BadCommand,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Truncated => write!(f, "line ends before the command"),
            ParseError::BadCommand => write!(f, "command is not a word or a numeric"),
        }
    }
}

impl std::error::Error for ParseError {}

/// One IRC message, borrowing from its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub tags: Tags<'a>,
    /// `nick!user@host` or a server name, without the leading `:`.
    pub prefix: Option<&'a str>,
    pub command: &'a str,
    /// Everything after the command, as sent (what a PONG echoes).
    pub args: &'a str,
    /// Space-separated middle parameters, before any trailing one.
    middle: &'a str,
    /// The last parameter, after ` :` (may contain spaces).
    pub trailing: Option<&'a str>,
}

/// Parses one line (a trailing CR/LF is ignored). Allocates nothing.
pub fn parse_line(line: &str) -> Result<Message<'_>, ParseError> {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    let mut tags = Tags("");
    if let Some(after) = rest.strip_prefix('@') {
        let (raw, tail) = after.split_once(' ').ok_or(ParseError::Truncated)?;
        tags = Tags(raw);
        rest = tail.trim_start_matches(' ');
    }
    let mut prefix = None;
    if let Some(after) = rest.strip_prefix(':') {
        let (p, tail) = after.split_once(' ').ok_or(ParseError::Truncated)?;
        prefix = Some(p);
        rest = tail.trim_start_matches(' ');
    }
    let (command, args) = rest.split_once(' ').unwrap_or((rest, ""));
    let numeric = command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit());
    if command.is_empty() || !(numeric || command.bytes().all(|b| b.is_ascii_alphabetic())) {
        return Err(ParseError::BadCommand);
    }
    let args = args.trim_start_matches(' ');
    let (middle, trailing) = match args.strip_prefix(':') {
        Some(t) => ("", Some(t)),
        None => match args.split_once(" :") {
            Some((m, t)) => (m, Some(t)),
            None => (args, None),
        },
    };
    Ok(Message {
        tags,
        prefix,
        command,
        args,
        middle,
        trailing,
    })
}

impl<'a> Message<'a> {
    /// The middle parameters (not the trailing one).
    pub fn params(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.middle.split(' ').filter(|p| !p.is_empty())
    }

    /// The nick of a `nick!user@host` prefix.
    pub fn nick(&self) -> Option<&'a str> {
        let prefix = self.prefix?;
        let nick = prefix.split(['!', '@']).next().unwrap_or(prefix);
        (!nick.is_empty()).then_some(nick)
    }

    /// The fields of a chat message, when this is a PRIVMSG to a channel.
    pub fn privmsg(&self) -> Option<Privmsg<'a>> {
        if self.command != "PRIVMSG" {
            return None;
        }
        let channel = self.params().next()?.strip_prefix('#')?;
        let channel = match channel.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Cow::Owned(channel.to_ascii_lowercase()),
            false => Cow::Borrowed(channel),
        };
        let text = self.trailing.or_else(|| self.params().nth(1))?;
        let tag = |key| self.tags.get(key).filter(|v| !v.is_empty());
        Some(Privmsg {
            channel,
            text: strip_action(text),
            user_id: tag("user-id"),
            room_id: tag("room-id"),
            id: tag("id"),
            sent_ms: tag("tmi-sent-ts").and_then(|v| v.parse().ok()),
            display_name: self.tags.value("display-name").filter(|v| !v.is_empty()),
            nick: self.nick(),
        })
    }
}

/// `/me waves` arrives as CTCP `\x01ACTION waves\x01`; the words are what count.
fn strip_action(text: &str) -> &str {
    match text.strip_prefix("\u{1}ACTION ") {
        Some(inner) => inner.strip_suffix('\u{1}').unwrap_or(inner),
        None => text,
    }
}

/// What a vote needs from a PRIVMSG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privmsg<'a> {
    /// Broadcaster login without `#`, lower-case.
    pub channel: Cow<'a, str>,
    pub text: &'a str,
    pub user_id: Option<&'a str>,
    pub room_id: Option<&'a str>,
    /// Twitch's message id (`id` tag).
    pub id: Option<&'a str>,
    /// `tmi-sent-ts`: when Twitch received it, Unix ms.
    pub sent_ms: Option<u64>,
    pub display_name: Option<Cow<'a, str>>,
    /// The sender's login, from the prefix.
    pub nick: Option<&'a str>,
}

/// The raw IRCv3 tag string (`k=v;k2=v2`), searched on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tags<'a>(pub &'a str);

impl<'a> Tags<'a> {
    /// Every `(key, raw value)`; a key without `=` has the empty value.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        self.0
            .split(';')
            .filter(|t| !t.is_empty())
            .map(|t| t.split_once('=').unwrap_or((t, "")))
    }

    /// The raw (still escaped) value of `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The unescaped value of `key`; borrowed when it holds no escapes.
    pub fn value(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).map(unescape)
    }
}

/// IRCv3 tag-value unescaping: `\:` `;`, `\s` space, `\\` `\`, `\r`, `\n`; an
/// unknown escape keeps the character, a lone trailing backslash is dropped.
pub fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}
