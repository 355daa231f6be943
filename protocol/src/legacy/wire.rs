//! Kafka's non-flexible primitive types, read with every length and count
//! checked against the bytes actually there, and written back.

use bytes::{BufMut, Bytes, BytesMut};

use super::LegacyError;

/// A cursor over a request or response body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LegacyError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(LegacyError::Truncated { what, at: self.pos })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn i8(&mut self, what: &'static str) -> Result<i8, LegacyError> {
        Ok(self.take(1, what)?[0] as i8)
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, LegacyError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, LegacyError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, LegacyError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, LegacyError> {
        Ok(self.i8(what)? != 0)
    }

    /// A STRING or NULLABLE_STRING (i16 length, -1 for null), as raw bytes.
    pub fn nullable_string(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, LegacyError> {
        match self.i16(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(LegacyError::Length {
                what,
                len: n as i64,
            }),
            n => Ok(Some(self.take(n as usize, what)?)),
        }
    }

    /// A STRING: null is refused.
    pub fn string(&mut self, what: &'static str) -> Result<&'a [u8], LegacyError> {
        self.nullable_string(what)?
            .ok_or(LegacyError::Length { what, len: -1 })
    }

    /// A string that must be UTF-8 (topic and group names).
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, LegacyError> {
        std::str::from_utf8(self.string(what)?).map_err(|_| LegacyError::Utf8 { what })
    }

    pub fn nullable_str(&mut self, what: &'static str) -> Result<Option<&'a str>, LegacyError> {
        self.nullable_string(what)?
            .map(|s| std::str::from_utf8(s).map_err(|_| LegacyError::Utf8 { what }))
            .transpose()
    }

    /// BYTES or NULLABLE_BYTES (i32 length, -1 for null).
    pub fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, LegacyError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(LegacyError::Length {
                what,
                len: n as i64,
            }),
            n => Ok(Some(self.take(n as usize, what)?)),
        }
    }

    /// An ARRAY's count; null (-1) is `None`. The count is bounded by the
    /// bytes left, at `min_elem` bytes per element, so a forged count
    /// cannot make us allocate or loop beyond what was sent.
    pub fn nullable_array_len(
        &mut self,
        what: &'static str,
        min_elem: usize,
    ) -> Result<Option<usize>, LegacyError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(LegacyError::Count {
                what,
                count: n as i64,
            }),
            n => {
                let n = n as usize;
                if n.saturating_mul(min_elem.max(1)) > self.remaining() {
                    return Err(LegacyError::Count {
                        what,
                        count: n as i64,
                    });
                }
                Ok(Some(n))
            }
        }
    }

    pub fn array_len(&mut self, what: &'static str, min_elem: usize) -> Result<usize, LegacyError> {
        self.nullable_array_len(what, min_elem)?
            .ok_or(LegacyError::Count { what, count: -1 })
    }

    /// Fails unless every byte was read (Kafka rejects trailing bytes too).
    pub fn finish(&self, what: &'static str) -> Result<(), LegacyError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(LegacyError::Trailing {
                what,
                bytes: self.remaining(),
            })
        }
    }
}

/// Writes non-flexible primitives.
#[derive(Default)]
pub struct Writer {
    pub buf: BytesMut,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }

    pub fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.put_i8(v as i8);
    }

    pub fn nullable_string(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.buf.put_i16(-1),
            Some(s) => {
                // Strings we write came from a decoded message: they fit.
                self.buf.put_i16(s.len().min(i16::MAX as usize) as i16);
                self.buf.put_slice(&s[..s.len().min(i16::MAX as usize)]);
            }
        }
    }

    pub fn string(&mut self, v: &[u8]) {
        self.nullable_string(Some(v));
    }

    pub fn nullable_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.buf.put_i32(-1),
            Some(b) => {
                self.buf.put_i32(b.len() as i32);
                self.buf.put_slice(b);
            }
        }
    }

    pub fn array_len(&mut self, n: usize) {
        self.buf.put_i32(n as i32);
    }

    pub fn freeze(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lengths_are_bounded_by_the_bytes_sent() {
        // An array of 1,000,000 elements in 4 bytes.
        let mut r = Reader::new(&[0x00, 0x0f, 0x42, 0x40]);
        assert!(matches!(
            r.array_len("topics", 1),
            Err(LegacyError::Count { .. })
        ));
        // A string claiming 10 bytes with 2 there.
        let mut r = Reader::new(&[0, 10, b'a', b'b']);
        assert!(matches!(
            r.string("name"),
            Err(LegacyError::Truncated { .. })
        ));
        // Negative lengths other than -1.
        let mut r = Reader::new(&[0xff, 0xfe]);
        assert!(matches!(
            r.nullable_string("name"),
            Err(LegacyError::Length { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.nullable_bytes("records").unwrap(), None);
    }

    #[test]
    fn writer_and_reader_agree() {
        let mut w = Writer::new();
        w.i8(-3);
        w.i16(7);
        w.i32(-9);
        w.i64(1 << 40);
        w.string(b"topic");
        w.nullable_string(None);
        w.nullable_bytes(Some(b"xyz"));
        w.array_len(0);
        let b = w.freeze();
        let mut r = Reader::new(&b);
        assert_eq!(r.i8("a").unwrap(), -3);
        assert_eq!(r.i16("b").unwrap(), 7);
        assert_eq!(r.i32("c").unwrap(), -9);
        assert_eq!(r.i64("d").unwrap(), 1 << 40);
        assert_eq!(r.str("e").unwrap(), "topic");
        assert_eq!(r.nullable_string("f").unwrap(), None);
        assert_eq!(r.nullable_bytes("g").unwrap(), Some(&b"xyz"[..]));
        assert_eq!(r.array_len("h", 1).unwrap(), 0);
        r.finish("all").unwrap();
    }
}
