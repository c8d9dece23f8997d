//! Bounds-checked little-endian reading and writing (internal).
//!
//! Every decoder reads through a [`Reader`], which never indexes past the end of its input and
//! turns a short input into [`FormatError::Truncated`]. Before a decoder allocates room for `n`
//! elements it calls [`Reader::check_count`], so a hostile count cannot make it allocate more
//! than the input could possibly hold.

use crate::error::FormatError;
use crate::id::Id;

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, naming `what` in errors.
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The object name used in errors.
    pub(crate) fn what(&self) -> &'static str {
        self.what
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::Truncated {
                what: self.what,
                needed: n,
                got: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn id(&mut self) -> Result<Id, FormatError> {
        Ok(Id(self.array()?))
    }

    /// A u32 count of elements of at least `min_elem_len` bytes each, checked against the
    /// remaining input so that `Vec::with_capacity(count)` is safe.
    pub(crate) fn count(&mut self, min_elem_len: usize) -> Result<usize, FormatError> {
        let n = self.u32()? as usize;
        self.check_count(n, min_elem_len)?;
        Ok(n)
    }

    /// Fails unless `n` elements of at least `min_elem_len` bytes can fit in the rest.
    pub(crate) fn check_count(&self, n: usize, min_elem_len: usize) -> Result<(), FormatError> {
        let needed = n.saturating_mul(min_elem_len);
        if needed > self.remaining() {
            return Err(FormatError::Truncated {
                what: self.what,
                needed,
                got: self.remaining(),
            });
        }
        Ok(())
    }

    /// Fails if any input is left: every encoding in the format has an exact length.
    pub(crate) fn finish(&self) -> Result<(), FormatError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(FormatError::corrupted(
                self.what,
                format!("{n} unexpected trailing bytes"),
            )),
        }
    }
}

/// Little-endian appends to a byte vector.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_i32(&mut self, v: i32);
    fn put_i64(&mut self, v: i64);
    fn put_bytes(&mut self, v: &[u8]);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
}

/// `len` as a u32 length field, or `OutOfBounds` naming `field`.
pub(crate) fn len_u32(
    what: &'static str,
    field: &'static str,
    len: usize,
) -> Result<u32, FormatError> {
    u32::try_from(len).map_err(|_| FormatError::bounds(what, field, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_truncation() {
        let mut v = Vec::new();
        v.put_u16(0x0102);
        v.put_i64(-2);
        v.put_u32(7);
        let mut r = Reader::new(&v, "test");
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.i64(), Ok(-2));
        assert_eq!(r.remaining(), 4);
        assert_eq!(
            r.u64(),
            Err(FormatError::Truncated {
                what: "test",
                needed: 8,
                got: 4
            })
        );
        assert_eq!(r.u32(), Ok(7));
        assert!(r.finish().is_ok());
        assert_eq!(v[..2], [2, 1]);
    }

    #[test]
    fn count_is_checked_against_remaining() {
        let mut v = Vec::new();
        v.put_u32(u32::MAX);
        v.put_bytes(&[0; 10]);
        assert!(matches!(
            Reader::new(&v, "t").count(1),
            Err(FormatError::Truncated { .. })
        ));
        let mut v = Vec::new();
        v.put_u32(2);
        v.put_bytes(&[0; 10]);
        assert_eq!(Reader::new(&v, "t").count(5), Ok(2));
        assert!(Reader::new(&v, "t").count(6).is_err());
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let r = Reader::new(&[1], "t");
        assert!(matches!(r.finish(), Err(FormatError::Corrupted { .. })));
    }
}
