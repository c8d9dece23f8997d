//! TLV records (SPEC §11): `tag u16 | len u32 | value`, tags strictly ascending.
//!
//! Tags below [`TLV_OPTIONAL_MIN`] are critical: a decoder that meets one it does not know
//! returns [`FormatError::UnknownCriticalTag`] (see [`unknown_tag`]). Tags from 0x8000 are
//! optional and skipped. The record's structure (lengths, order) is checked here; each decoder
//! checks the values of the tags it knows.

use crate::error::FormatError;
use crate::format::{TLV_HEADER_LEN, TLV_OPTIONAL_MIN};
use crate::wire::{Put, Reader, len_u32};

/// Iterates over the fields of a record, checking that tags strictly ascend.
pub(crate) struct TlvReader<'a> {
    r: Reader<'a>,
    last: Option<u16>,
}

impl<'a> TlvReader<'a> {
    pub(crate) fn new(record: &'a [u8], what: &'static str) -> TlvReader<'a> {
        TlvReader {
            r: Reader::new(record, what),
            last: None,
        }
    }

    /// The next field, or `None` at the end of the record.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u16, &'a [u8])>, FormatError> {
        if self.r.remaining() == 0 {
            return Ok(None);
        }
        if self.r.remaining() < TLV_HEADER_LEN {
            return Err(FormatError::Truncated {
                what: self.r.what(),
                needed: TLV_HEADER_LEN,
                got: self.r.remaining(),
            });
        }
        let tag = self.r.u16()?;
        if let Some(last) = self.last
            && tag <= last
        {
            return Err(FormatError::corrupted(
                self.r.what(),
                format!("tag {tag} after tag {last}: tags must be strictly ascending"),
            ));
        }
        self.last = Some(tag);
        let len = self.r.u32()? as usize;
        Ok(Some((tag, self.r.bytes(len)?)))
    }
}

/// What to do with a tag the decoder does not know: an error if it is critical, else skip.
pub(crate) fn unknown_tag(what: &'static str, tag: u16) -> Result<(), FormatError> {
    if tag < TLV_OPTIONAL_MIN {
        Err(FormatError::UnknownCriticalTag { what, tag })
    } else {
        Ok(())
    }
}

/// Fails unless `value` has exactly `len` bytes (every known field has a fixed or counted length).
pub(crate) fn expect_len(
    what: &'static str,
    tag: u16,
    value: &[u8],
    len: usize,
) -> Result<(), FormatError> {
    if value.len() == len {
        Ok(())
    } else {
        Err(FormatError::corrupted(
            what,
            format!("tag {tag}: value is {} bytes, expected {len}", value.len()),
        ))
    }
}

/// Appends fields to a record; callers add tags in ascending order.
pub(crate) struct TlvWriter {
    out: Vec<u8>,
    what: &'static str,
    last: Option<u16>,
}

impl TlvWriter {
    /// Appends to `out` (which may already hold a prefix such as a version byte).
    pub(crate) fn new(out: Vec<u8>, what: &'static str) -> TlvWriter {
        TlvWriter {
            out,
            what,
            last: None,
        }
    }

    pub(crate) fn field(&mut self, tag: u16, value: &[u8]) -> Result<(), FormatError> {
        debug_assert!(
            self.last.is_none_or(|l| l < tag),
            "TLV tags must be written in ascending order"
        );
        self.last = Some(tag);
        self.out.put_u16(tag);
        self.out
            .put_u32(len_u32(self.what, "TLV value length", value.len())?);
        self.out.put_bytes(value);
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, v) in fields {
            out.put_u16(*t);
            out.put_u32(v.len() as u32);
            out.put_bytes(v);
        }
        out
    }

    #[test]
    fn round_trip() {
        let mut w = TlvWriter::new(vec![9], "t");
        w.field(1, b"ab").unwrap();
        w.field(0x8001, b"").unwrap();
        let bytes = w.finish();
        let mut r = TlvReader::new(&bytes[1..], "t");
        assert_eq!(r.next_field().unwrap(), Some((1, &b"ab"[..])));
        assert_eq!(r.next_field().unwrap(), Some((0x8001, &b""[..])));
        assert_eq!(r.next_field().unwrap(), None);
    }

    #[test]
    fn rejects_unsorted_duplicate_and_truncated() {
        let b = record(&[(2, b"x"), (1, b"y")]);
        let mut r = TlvReader::new(&b, "t");
        r.next_field().unwrap();
        assert!(r.next_field().is_err());
        let b = record(&[(2, b"x"), (2, b"y")]);
        let mut r = TlvReader::new(&b, "t");
        r.next_field().unwrap();
        assert!(r.next_field().is_err());
        let b = record(&[(2, b"xyz")]);
        assert!(matches!(
            TlvReader::new(&b[..b.len() - 1], "t").next_field(),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            TlvReader::new(&b[..3], "t").next_field(),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn critical_and_optional_tags() {
        assert_eq!(
            unknown_tag("t", 0x7fff),
            Err(FormatError::UnknownCriticalTag {
                what: "t",
                tag: 0x7fff
            })
        );
        assert_eq!(unknown_tag("t", 0x8000), Ok(()));
    }
}
