//! Byte reader and the [`Codec`] trait every IKE structure implements.
//!
//! How to drive it: wrap received bytes in a [`Reader`], call `T::read`, then
//! [`Reader::expect_empty`] (or use [`Codec::read_bytes`], which does both) so trailing bytes are
//! an error rather than silently ignored. Every length read from the wire goes through
//! [`Reader::take`] or [`Reader::sub`], which check it against what is left before any slicing.

use crate::error::DecodeError;

/// A cursor over received bytes; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    cursor: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` from its first byte.
    pub fn init(buf: &'a [u8]) -> Self {
        Self { buf, cursor: 0 }
    }

    /// Takes the next `n` bytes, or fails with `Truncated(what)` when fewer are left.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.left() < n {
            return Err(DecodeError::Truncated(what));
        }
        let out = &self.buf[self.cursor..self.cursor + n];
        self.cursor += n;
        Ok(out)
    }

    /// A reader over the next `n` bytes (consumed from this one).
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        self.take(n, what).map(Reader::init)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.cursor..];
        self.cursor = self.buf.len();
        out
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.buf.len() - self.cursor
    }

    /// True when bytes are left.
    pub fn any_left(&self) -> bool {
        self.left() > 0
    }

    /// Bytes read so far.
    pub fn used(&self) -> usize {
        self.cursor
    }

    /// Fails with `TrailingBytes(what)` if anything is left.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.any_left() {
            Err(DecodeError::TrailingBytes(what))
        } else {
            Ok(())
        }
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }
}

/// Encoding to and decoding from wire bytes.
pub trait Codec: Sized {
    /// Appends the wire form to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value; the reader may have bytes left afterwards.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The wire form as a new vector.
    fn get_encoding(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads exactly one value from `bytes`; trailing bytes are an error.
    fn read_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::init(bytes);
        let v = Self::read(&mut r)?;
        r.expect_empty(std::any::type_name::<Self>())?;
        Ok(v)
    }
}

/// Appends a big-endian u16.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian u32.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u16 length at `at` (a placeholder written earlier).
pub(crate) fn patch_u16(out: &mut [u8], at: usize, v: usize) {
    let v = u16::try_from(v).unwrap_or(u16::MAX);
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_checks_bounds() {
        let mut r = Reader::init(&[1, 2, 3]);
        assert_eq!(r.u16("x"), Ok(0x0102));
        assert_eq!(r.u16("y"), Err(DecodeError::Truncated("y")));
        assert_eq!(r.expect_empty("z"), Err(DecodeError::TrailingBytes("z")));
        assert_eq!(r.u8("w"), Ok(3));
        assert_eq!(r.expect_empty("z"), Ok(()));
        assert_eq!(r.take(1, "v"), Err(DecodeError::Truncated("v")));
    }

    #[test]
    fn sub_reader_is_bounded() {
        let mut r = Reader::init(&[0, 0, 0, 1, 9]);
        let mut s = r.sub(4, "s").unwrap();
        assert_eq!(s.u32("u"), Ok(1));
        assert!(!s.any_left());
        assert_eq!(r.left(), 1);
        assert!(Reader::init(&[1]).sub(2, "s").is_err());
    }
}
