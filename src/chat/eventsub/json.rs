//! A strict JSON syntax walk, run over every EventSub message before nanoserde
//! sees it. nanoserde 0.2 skips unknown fields with a routine that panics on
//! some malformed input (`{"x":]}`) and never returns on a truncated one
//! (`{"x":{"y":`); after this walk it only ever meets well-formed JSON. The walk
//! also hands back the raw text of top-level fields, so a WebSocket envelope's
//! `payload` goes to the same parser as a webhook body, byte for byte.

/// Deepest nesting accepted. Twitch's payloads nest ~5 levels; the bound keeps
/// the recursion (one stack frame per level) small.
pub(crate) const MAX_DEPTH: usize = 32;

/// Where and why a text is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub at: usize,
    pub what: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// Checks that `text` is one JSON object (nothing after it but whitespace) and
/// returns its fields as (raw key, raw value text). Keys with escapes are
/// returned as written; EventSub's keys have none.
pub(crate) fn top_level_fields(text: &str) -> Result<Vec<(&str, &str)>, JsonError> {
    let mut w = Walk {
        b: text.as_bytes(),
        i: 0,
    };
    w.ws();
    if w.peek() != Some(b'{') {
        return Err(w.err("expected an object"));
    }
    let mut fields = Vec::new();
    w.object(1, Some(&mut fields))?;
    w.ws();
    if w.i != w.b.len() {
        return Err(w.err("text after the object"));
    }
    // Spans come from the walk and sit on ASCII punctuation, so they are char boundaries.
    Ok(fields
        .into_iter()
        .map(|((ks, ke), (vs, ve))| (&text[ks..ke], &text[vs..ve]))
        .collect())
}

type Span = (usize, usize);

struct Walk<'a> {
    b: &'a [u8],
    i: usize,
}

impl Walk<'_> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { at: self.i, what }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8, what: &'static str) -> Result<(), JsonError> {
        self.ws();
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            _ => Err(self.err(what)),
        }
    }

    /// One value; returns its span (leading whitespace excluded).
    fn value(&mut self, depth: usize) -> Result<Span, JsonError> {
        self.ws();
        let start = self.i;
        match self.peek() {
            Some(b'{') => self.object(depth + 1, None)?,
            Some(b'[') => self.array(depth + 1)?,
            Some(b'"') => self.string()?,
            Some(b't') => self.literal("true")?,
            Some(b'f') => self.literal("false")?,
            Some(b'n') => self.literal("null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.err("expected a value")),
        }
        Ok((start, self.i))
    }

    fn object(
        &mut self,
        depth: usize,
        mut fields: Option<&mut Vec<(Span, Span)>>,
    ) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        self.eat(b'{', "expected '{'")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a key"));
            }
            let key_start = self.i + 1;
            self.string()?;
            let key = (key_start, self.i - 1);
            self.eat(b':', "expected ':'")?;
            let value = self.value(depth)?;
            if let Some(fields) = fields.as_deref_mut() {
                fields.push((key, value));
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        self.eat(b'[', "expected '['")?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    /// A string, quotes included. Raw control characters are let through (as
    /// nanoserde does); escapes must be complete.
    fn string(&mut self) -> Result<(), JsonError> {
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("bad \\u escape"));
                            }
                            self.i += 5;
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                Some(_) => self.i += 1,
            }
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("bad literal"))
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.err("bad number"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.err("bad number"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}
