//! Minimal MessagePack reader and writer for the exact forms the grid protocol uses.
//!
//! The reference encoder (tinylib/msgp) always writes the smallest integer form and `bin` for
//! byte strings; its decoder is lenient about integer widths. We write exactly what the reference
//! writes and read what it reads (PROTOCOL.md §3.1, §3.6). A general-purpose MessagePack crate
//! would allocate and would not give us byte ranges into the input for zero-copy payloads.

use super::error::DecodeError;
use super::time::GridTime;
use bytes::BufMut;
use std::ops::Range;

/// Nesting limit when skipping unknown values, so a hostile map cannot recurse without bound.
const MAX_SKIP_DEPTH: usize = 32;

/// Extension type the reference uses for timestamps (msgp's private time extension).
pub(crate) const TIME_EXT_TYPE: i8 = 5;
/// MessagePack's standard timestamp extension type, accepted on receive.
const STD_TIME_EXT_TYPE: i8 = -1;

/// A cursor over a byte slice that decodes MessagePack values.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(
        &mut self,
        n: usize,
        context: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                context,
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self, context: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, context)?[0])
    }

    fn peek(&self, context: &'static str) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated {
                context,
                offset: self.pos,
                needed: 1,
            })
    }

    fn be<const N: usize>(&mut self, context: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, context)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn unexpected(&self, field: &'static str, byte: u8) -> DecodeError {
        DecodeError::UnexpectedType {
            field,
            byte,
            offset: self.pos.saturating_sub(1),
        }
    }

    /// Reads an integer of any MessagePack integer form as i128.
    fn int(&mut self, field: &'static str) -> Result<i128, DecodeError> {
        let b = self.byte(field)?;
        Ok(match b {
            0x00..=0x7f => b as i128,
            0xe0..=0xff => (b as i8) as i128,
            0xcc => self.byte(field)? as i128,
            0xcd => u16::from_be_bytes(self.be(field)?) as i128,
            0xce => u32::from_be_bytes(self.be(field)?) as i128,
            0xcf => u64::from_be_bytes(self.be(field)?) as i128,
            0xd0 => (self.byte(field)? as i8) as i128,
            0xd1 => i16::from_be_bytes(self.be(field)?) as i128,
            0xd2 => i32::from_be_bytes(self.be(field)?) as i128,
            0xd3 => i64::from_be_bytes(self.be(field)?) as i128,
            _ => return Err(self.unexpected(field, b)),
        })
    }

    /// Reads a non-negative integer that must fit in `max`.
    pub(crate) fn uint(&mut self, field: &'static str, max: u64) -> Result<u64, DecodeError> {
        // Fast path: a positive fixint (most tuple fields on the wire).
        if let Some(&b) = self.buf.get(self.pos) {
            if b <= 0x7f && b as u64 <= max {
                self.pos += 1;
                return Ok(b as u64);
            }
        }
        let v = self.int(field)?;
        if v < 0 || v > max as i128 {
            return Err(DecodeError::IntOutOfRange { field, value: v });
        }
        Ok(v as u64)
    }

    /// Reads an array header and returns the element count.
    pub(crate) fn array_len(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.byte(field)?;
        Ok(match b {
            0x90..=0x9f => (b & 0x0f) as u32,
            0xdc => u16::from_be_bytes(self.be(field)?) as u32,
            0xdd => u32::from_be_bytes(self.be(field)?),
            _ => return Err(self.unexpected(field, b)),
        })
    }

    /// Reads a map header and returns the number of key/value pairs.
    pub(crate) fn map_len(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.byte(field)?;
        Ok(match b {
            0x80..=0x8f => (b & 0x0f) as u32,
            0xde => u16::from_be_bytes(self.be(field)?) as u32,
            0xdf => u32::from_be_bytes(self.be(field)?),
            _ => return Err(self.unexpected(field, b)),
        })
    }

    /// Reads the header of a `bin` value and returns the length it announces (the bytes
    /// themselves are not read).
    pub(crate) fn bin_header(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let b = self.byte(field)?;
        Ok(match b {
            0xc4 => self.byte(field)? as usize,
            0xc5 => u16::from_be_bytes(self.be(field)?) as usize,
            0xc6 => u32::from_be_bytes(self.be(field)?) as usize,
            _ => return Err(self.unexpected(field, b)),
        })
    }

    /// Reads a `bin` value and returns its byte range in the input (for zero-copy slicing).
    pub(crate) fn bin_range(&mut self, field: &'static str) -> Result<Range<usize>, DecodeError> {
        let len = self.bin_header(field)?;
        let start = self.pos;
        self.take(len, field)?;
        Ok(start..start + len)
    }

    pub(crate) fn bin(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let r = self.bin_range(field)?;
        Ok(&self.buf[r])
    }

    fn str_len(&mut self, b: u8, field: &'static str) -> Result<Option<usize>, DecodeError> {
        Ok(Some(match b {
            0xa0..=0xbf => (b & 0x1f) as usize,
            0xd9 => self.byte(field)? as usize,
            0xda => u16::from_be_bytes(self.be(field)?) as usize,
            0xdb => u32::from_be_bytes(self.be(field)?) as usize,
            _ => return Ok(None),
        }))
    }

    /// Reads a `str` value (only str forms are accepted, as the reference does).
    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let b = self.byte(field)?;
        match self.str_len(b, field)? {
            Some(len) => {
                let s = self.take(len, field)?;
                std::str::from_utf8(s).map_err(|_| DecodeError::InvalidUtf8 { field })
            }
            None => Err(self.unexpected(field, b)),
        }
    }

    /// Reads a `str` or `nil`.
    pub(crate) fn opt_str(&mut self, field: &'static str) -> Result<Option<&'a str>, DecodeError> {
        if self.peek(field)? == 0xc0 {
            self.pos += 1;
            return Ok(None);
        }
        self.str(field).map(Some)
    }

    /// Reads a map key, which may be a `str` or a `bin` (msgp accepts both).
    pub(crate) fn key(&mut self) -> Result<&'a [u8], DecodeError> {
        const FIELD: &str = "map key";
        let b = self.byte(FIELD)?;
        if let Some(len) = self.str_len(b, FIELD)? {
            return self.take(len, FIELD);
        }
        let len = match b {
            0xc4 => self.byte(FIELD)? as usize,
            0xc5 => u16::from_be_bytes(self.be(FIELD)?) as usize,
            0xc6 => u32::from_be_bytes(self.be(FIELD)?) as usize,
            _ => return Err(self.unexpected(FIELD, b)),
        };
        self.take(len, FIELD)
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.byte(field)? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            b => Err(self.unexpected(field, b)),
        }
    }

    /// Reads a timestamp: msgp's type-5 extension, or the standard type -1 forms.
    pub(crate) fn time(&mut self, field: &'static str) -> Result<GridTime, DecodeError> {
        let b = self.byte(field)?;
        let (len, ty) = match b {
            0xd6 => (4usize, self.byte(field)? as i8),
            0xd7 => (8, self.byte(field)? as i8),
            0xc7 => {
                let len = self.byte(field)? as usize;
                (len, self.byte(field)? as i8)
            }
            _ => return Err(self.unexpected(field, b)),
        };
        let data = self.take(len, field)?;
        let bad = |reason| DecodeError::InvalidTimestamp { field, reason };
        let (secs, nanos) = match (ty, len) {
            (TIME_EXT_TYPE, 12) | (STD_TIME_EXT_TYPE, 12) => {
                let (s, n) = if ty == TIME_EXT_TYPE {
                    (&data[0..8], &data[8..12])
                } else {
                    (&data[4..12], &data[0..4])
                };
                let secs = i64::from_be_bytes(s.try_into().map_err(|_| bad("length"))?);
                let nanos = u32::from_be_bytes(n.try_into().map_err(|_| bad("length"))?);
                (secs, nanos)
            }
            (STD_TIME_EXT_TYPE, 4) => {
                let secs = u32::from_be_bytes(data.try_into().map_err(|_| bad("length"))?);
                (secs as i64, 0)
            }
            (STD_TIME_EXT_TYPE, 8) => {
                let v = u64::from_be_bytes(data.try_into().map_err(|_| bad("length"))?);
                ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
            }
            (TIME_EXT_TYPE, _) | (STD_TIME_EXT_TYPE, _) => return Err(bad("bad length")),
            _ => return Err(bad("not a timestamp extension")),
        };
        if nanos >= 1_000_000_000 {
            return Err(bad("nanoseconds out of range"));
        }
        Ok(GridTime { secs, nanos })
    }

    /// Skips one value of any type (used for unknown map keys).
    pub(crate) fn skip(&mut self) -> Result<(), DecodeError> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: usize) -> Result<(), DecodeError> {
        const FIELD: &str = "skipped value";
        if depth > MAX_SKIP_DEPTH {
            return Err(DecodeError::TooDeep(MAX_SKIP_DEPTH));
        }
        let b = self.byte(FIELD)?;
        let (skip_bytes, children): (usize, u64) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * (b & 0x0f) as u64),
            0x90..=0x9f => (0, (b & 0x0f) as u64),
            0xa0..=0xbf => ((b & 0x1f) as usize, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 | 0xca => (4, 0),
            0xcf | 0xd3 | 0xcb => (8, 0),
            0xc4 | 0xd9 => (self.byte(FIELD)? as usize, 0),
            0xc5 | 0xda => (u16::from_be_bytes(self.be(FIELD)?) as usize, 0),
            0xc6 | 0xdb => (u32::from_be_bytes(self.be(FIELD)?) as usize, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xc7 => (self.byte(FIELD)? as usize + 1, 0),
            0xc8 => (u16::from_be_bytes(self.be(FIELD)?) as usize + 1, 0),
            0xc9 => (u32::from_be_bytes(self.be(FIELD)?) as usize + 1, 0),
            0xdc => (0, u16::from_be_bytes(self.be(FIELD)?) as u64),
            0xdd => (0, u32::from_be_bytes(self.be(FIELD)?) as u64),
            0xde => (0, 2 * u16::from_be_bytes(self.be(FIELD)?) as u64),
            0xdf => (0, 2 * u32::from_be_bytes(self.be(FIELD)?) as u64),
            // 0xc1 is "never used" in MessagePack.
            _ => return Err(self.unexpected(FIELD, b)),
        };
        self.take(skip_bytes, FIELD)?;
        for _ in 0..children {
            // Every child needs at least one byte, so a huge announced count fails fast.
            if self.remaining() == 0 {
                return Err(DecodeError::Truncated {
                    context: FIELD,
                    offset: self.pos,
                    needed: 1,
                });
            }
            self.skip_depth(depth + 1)?;
        }
        Ok(())
    }
}

/// Encoded size of an unsigned integer in its smallest form.
pub(crate) fn uint_len(v: u64) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Writes an unsigned integer in its smallest form, as msgp does.
pub(crate) fn put_uint(buf: &mut impl BufMut, v: u64) {
    match v {
        0..=0x7f => buf.put_u8(v as u8),
        0x80..=0xff => {
            buf.put_u8(0xcc);
            buf.put_u8(v as u8);
        }
        0x100..=0xffff => {
            buf.put_u8(0xcd);
            buf.put_u16(v as u16);
        }
        0x1_0000..=0xffff_ffff => {
            buf.put_u8(0xce);
            buf.put_u32(v as u32);
        }
        _ => {
            buf.put_u8(0xcf);
            buf.put_u64(v);
        }
    }
}

/// Encoded size of a bin header for `len` bytes.
pub(crate) fn bin_header_len(len: usize) -> usize {
    match len {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// Writes a bin header. The caller guarantees `len <= u32::MAX`.
pub(crate) fn put_bin_header(buf: &mut impl BufMut, len: usize) {
    match len {
        0..=0xff => {
            buf.put_u8(0xc4);
            buf.put_u8(len as u8);
        }
        0x100..=0xffff => {
            buf.put_u8(0xc5);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(0xc6);
            buf.put_u32(len as u32);
        }
    }
}

pub(crate) fn put_bin(buf: &mut impl BufMut, data: &[u8]) {
    put_bin_header(buf, data.len());
    buf.put_slice(data);
}

pub(crate) fn put_str(buf: &mut impl BufMut, s: &str) {
    let len = s.len();
    match len {
        0..=31 => buf.put_u8(0xa0 | len as u8),
        32..=0xff => {
            buf.put_u8(0xd9);
            buf.put_u8(len as u8);
        }
        0x100..=0xffff => {
            buf.put_u8(0xda);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(0xdb);
            buf.put_u32(len as u32);
        }
    }
    buf.put_slice(s.as_bytes());
}

pub(crate) fn put_map_header(buf: &mut impl BufMut, n: u32) {
    match n {
        0..=15 => buf.put_u8(0x80 | n as u8),
        16..=0xffff => {
            buf.put_u8(0xde);
            buf.put_u16(n as u16);
        }
        _ => {
            buf.put_u8(0xdf);
            buf.put_u32(n);
        }
    }
}

pub(crate) fn put_bool(buf: &mut impl BufMut, v: bool) {
    buf.put_u8(if v { 0xc3 } else { 0xc2 });
}

pub(crate) fn put_nil(buf: &mut impl BufMut) {
    buf.put_u8(0xc0);
}

/// Writes a timestamp as msgp's type-5 extension: `c7 0c 05`, i64 BE seconds, u32 BE nanos.
pub(crate) fn put_time(buf: &mut impl BufMut, t: GridTime) {
    buf.put_u8(0xc7);
    buf.put_u8(12);
    buf.put_i8(TIME_EXT_TYPE);
    buf.put_i64(t.secs);
    buf.put_u32(t.nanos);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_smallest_forms() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (0x7f, &[0x7f]),
            (0x80, &[0xcc, 0x80]),
            (0xff, &[0xcc, 0xff]),
            (0x100, &[0xcd, 0x01, 0x00]),
            (60000, &[0xcd, 0xea, 0x60]),
            (70000, &[0xce, 0x00, 0x01, 0x11, 0x70]),
            (1 << 40, &[0xcf, 0, 0, 1, 0, 0, 0, 0, 0]),
        ];
        for (v, want) in cases {
            let mut b = Vec::new();
            put_uint(&mut b, *v);
            assert_eq!(&b[..], *want, "value {v}");
            assert_eq!(uint_len(*v), want.len());
            assert_eq!(Reader::new(&b).uint("x", u64::MAX).unwrap(), *v);
        }
    }

    #[test]
    fn signed_forms_accepted_when_non_negative() {
        assert_eq!(Reader::new(&[0xd0, 0x05]).uint("x", 255).unwrap(), 5);
        assert_eq!(
            Reader::new(&[0xd3, 0, 0, 0, 0, 0, 0, 1, 0])
                .uint("x", 256)
                .unwrap(),
            256
        );
        assert!(matches!(
            Reader::new(&[0xd0, 0xff]).uint("x", 255),
            Err(DecodeError::IntOutOfRange { value: -1, .. })
        ));
        assert!(matches!(
            Reader::new(&[0xff]).uint("x", 255),
            Err(DecodeError::IntOutOfRange { value: -1, .. })
        ));
        assert!(matches!(
            Reader::new(&[0xcd, 0x01, 0x00]).uint("x", 255),
            Err(DecodeError::IntOutOfRange { value: 256, .. })
        ));
    }

    #[test]
    fn skip_handles_nesting_and_limits() {
        // {"a": [1, "x", {"b": nil}]}
        let v = [
            0x81, 0xa1, b'a', 0x93, 0x01, 0xa1, b'x', 0x81, 0xa1, b'b', 0xc0, 0x07,
        ];
        let mut r = Reader::new(&v);
        r.skip().unwrap();
        assert_eq!(r.pos(), v.len() - 1);
        // 40 nested arrays is too deep.
        let deep = vec![0x91u8; 40];
        assert_eq!(
            Reader::new(&deep).skip(),
            Err(DecodeError::TooDeep(MAX_SKIP_DEPTH))
        );
        // A huge announced array with no content fails quickly.
        let huge = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge).skip(),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
#[cfg(test)]
#[path = "msgpack_diff_tests.rs"]
mod diff_tests;
