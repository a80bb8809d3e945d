//! Binary encoding of a [`VoteLog`] ([`VoteLog::encode`] / [`VoteLog::decode`]) and
//! why bytes may fail to decode ([`DecodeError`]). Decoding never panics on untrusted
//! input.

use std::fmt;

use super::log::{BUCKET_MS, Base, Counts, Epoch, VoteLog};

/// Leads every encoded log; the byte after it is the format version.
const MAGIC: &[u8; 4] = b"CPVL";
const FORMAT_VERSION: u8 = 1;
/// node, through_bucket, epoch ms, epoch node, for, against: six u64.
const BASE_LEN: usize = 48;
/// bucket, node: u64; for, against: u32.
const BUCKET_LEN: usize = 24;

/// Why bytes are not a vote log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Ended early, or a count claims more entries than there are bytes.
    Truncated,
    BadMagic,
    UnsupportedVersion(u8),
    /// Well-formed bytes that no `VoteLog` encodes to.
    Invalid(&'static str),
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("vote log truncated"),
            DecodeError::BadMagic => f.write_str("not a vote log"),
            DecodeError::UnsupportedVersion(v) => write!(f, "vote log version {v} unsupported"),
            DecodeError::Invalid(why) => write!(f, "invalid vote log: {why}"),
            DecodeError::TrailingBytes => f.write_str("bytes after the vote log"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl VoteLog {
    /// Version 1, little-endian: magic `CPVL`, version u8, epoch (ms u64, node u64),
    /// u32 base count then bases sorted by node (node, through_bucket, epoch ms,
    /// epoch node, for, against: u64 each), u32 bucket count then buckets sorted by
    /// (bucket, node) (bucket u64, node u64, for u32, against u32).
    pub fn encode(&self) -> Vec<u8> {
        let len = 4 + 1 + 16 + 8 + self.bases.len() * BASE_LEN + self.buckets.len() * BUCKET_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        put_epoch(&mut out, self.epoch);
        put_count(&mut out, self.bases.len());
        for (&node, base) in &self.bases {
            for v in [node, base.through_bucket] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            put_epoch(&mut out, base.epoch);
            for v in [base.for_votes, base.against_votes] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        put_count(&mut out, self.buckets.len());
        for (&(bucket, node), counts) in &self.buckets {
            out.extend_from_slice(&bucket.to_le_bytes());
            out.extend_from_slice(&node.to_le_bytes());
            out.extend_from_slice(&counts.for_votes.to_le_bytes());
            out.extend_from_slice(&counts.against_votes.to_le_bytes());
        }
        out
    }

    /// Inverse of [`VoteLog::encode`]. Never panics; accepts only what `encode`
    /// could have written (sorted, unique, consistent with the epoch), so a decoded
    /// log re-encodes to the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<VoteLog, DecodeError> {
        let mut r = Reader { rest: bytes };
        if &r.array::<4>()? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        match r.u8()? {
            FORMAT_VERSION => {}
            v => return Err(DecodeError::UnsupportedVersion(v)),
        }
        let mut log = VoteLog {
            epoch: r.epoch()?,
            ..VoteLog::default()
        };
        for _ in 0..r.count(BASE_LEN)? {
            log.decode_base(&mut r)?;
        }
        for _ in 0..r.count(BUCKET_LEN)? {
            log.decode_bucket(&mut r)?;
        }
        if !r.rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(log)
    }

    fn decode_base(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let node = r.u64()?;
        let base = Base {
            through_bucket: r.bucket()?,
            epoch: r.epoch()?,
            for_votes: r.u64()?,
            against_votes: r.u64()?,
        };
        if base.epoch != self.epoch {
            return Err(DecodeError::Invalid("base from another epoch"));
        }
        if self
            .bases
            .last_key_value()
            .is_some_and(|(&last, _)| last >= node)
        {
            return Err(DecodeError::Invalid("bases not sorted"));
        }
        self.bases.insert(node, base);
        Ok(())
    }

    fn decode_bucket(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let key = (r.bucket()?, r.u64()?);
        let counts = Counts {
            for_votes: r.u32()?,
            against_votes: r.u32()?,
        };
        if key.0 < self.epoch.first_bucket() {
            return Err(DecodeError::Invalid("bucket before the epoch"));
        }
        if self
            .buckets
            .last_key_value()
            .is_some_and(|(&last, _)| last >= key)
        {
            return Err(DecodeError::Invalid("buckets not sorted"));
        }
        self.buckets.insert(key, counts);
        Ok(())
    }
}

fn put_epoch(out: &mut Vec<u8>, epoch: Epoch) {
    out.extend_from_slice(&epoch.ms.to_le_bytes());
    out.extend_from_slice(&epoch.node.to_le_bytes());
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    // A log holds a few hundred buckets; u32 is far beyond any real count.
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A bucket index whose start fits in u64 ms.
    fn bucket(&mut self) -> Result<u64, DecodeError> {
        let bucket = self.u64()?;
        if bucket > u64::MAX / BUCKET_MS {
            return Err(DecodeError::Invalid("bucket out of range"));
        }
        Ok(bucket)
    }

    fn epoch(&mut self) -> Result<Epoch, DecodeError> {
        Ok(Epoch {
            ms: self.u64()?,
            node: self.u64()?,
        })
    }

    /// An entry count, checked against the bytes left so garbage cannot make the
    /// decoder loop billions of times.
    fn count(&mut self, entry_len: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u32()?).map_err(|_| DecodeError::Truncated)?;
        if n.saturating_mul(entry_len) > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
}
