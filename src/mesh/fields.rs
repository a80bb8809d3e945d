//! Field types for [`super::wire::Frame`] whose decoding checks every length
//! against the bytes left *before* allocating (pure).
//!
//! nanoserde's own `String` and `Vec<T>` trust the length on the wire: a forged
//! one can overflow an index (a panic) or pre-allocate terabytes (an abort that
//! `catch_unwind` cannot stop). [`Text`], [`Blob`] and [`List`] encode exactly as
//! those do, so the format is still plain nanoserde binary.

use std::ops::Deref;

use nanoserde::{DeBin, DeBinErr, SerBin};

/// Reads a nanoserde length (u64 LE) and refuses one above the bytes left, so a
/// forged length can neither overflow an index nor pre-allocate a huge buffer.
fn bounded_len(o: &mut usize, d: &[u8]) -> Result<usize, DeBinErr> {
    let len = u64::de_bin(o, d)?;
    let left = d.len().saturating_sub(*o);
    match usize::try_from(len) {
        Ok(len) if len <= left => Ok(len),
        _ => Err(DeBinErr::new(*o, left, d.len())),
    }
}

/// Bytes on the wire (`Vec<u8>` with a checked length).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl SerBin for Blob {
    fn ser_bin(&self, s: &mut Vec<u8>) {
        self.0.len().ser_bin(s);
        s.extend_from_slice(&self.0);
    }
}

impl DeBin for Blob {
    fn de_bin(o: &mut usize, d: &[u8]) -> Result<Blob, DeBinErr> {
        let len = bounded_len(o, d)?;
        let bytes = d[*o..*o + len].to_vec();
        *o += len;
        Ok(Blob(bytes))
    }
}

/// UTF-8 text on the wire (`String` with a checked length).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(pub String);

impl SerBin for Text {
    fn ser_bin(&self, s: &mut Vec<u8>) {
        self.0.len().ser_bin(s);
        s.extend_from_slice(self.0.as_bytes());
    }
}

impl DeBin for Text {
    fn de_bin(o: &mut usize, d: &[u8]) -> Result<Text, DeBinErr> {
        let start = *o;
        let len = bounded_len(o, d)?;
        let text = std::str::from_utf8(&d[*o..*o + len])
            .map_err(|_| DeBinErr::new(start, len, d.len()))?;
        *o += len;
        Ok(Text(text.to_owned()))
    }
}

/// A sequence on the wire (`Vec<T>` with a checked length). Every `T` used here
/// encodes to at least one byte, so a count above the bytes left is a lie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T: SerBin> SerBin for List<T> {
    fn ser_bin(&self, s: &mut Vec<u8>) {
        self.0.len().ser_bin(s);
        for item in &self.0 {
            item.ser_bin(s);
        }
    }
}

impl<T: DeBin> DeBin for List<T> {
    fn de_bin(o: &mut usize, d: &[u8]) -> Result<List<T>, DeBinErr> {
        let len = bounded_len(o, d)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(T::de_bin(o, d)?);
        }
        Ok(List(items))
    }
}

macro_rules! wire_newtype {
    ($name:ident $(<$g:ident>)?, $inner:ty, $target:ty) => {
        impl$(<$g>)? Deref for $name$(<$g>)? {
            type Target = $target;
            fn deref(&self) -> &$target {
                &self.0
            }
        }
        impl$(<$g>)? From<$inner> for $name$(<$g>)? {
            fn from(v: $inner) -> Self {
                $name(v)
            }
        }
    };
}

wire_newtype!(Blob, Vec<u8>, [u8]);
wire_newtype!(Text, String, str);
wire_newtype!(List<T>, Vec<T>, [T]);

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(s.to_owned())
    }
}

impl From<&[u8]> for Blob {
    fn from(b: &[u8]) -> Blob {
        Blob(b.to_vec())
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
