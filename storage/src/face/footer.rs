//! A bounded walk over a face's Parquet footer (Thrift compact protocol)
//! before the parquet crate parses it. Its decoder skips unknown fields
//! with a loop per list element, and takes a boolean element to be zero
//! bytes long: a list claiming two billion booleans is two billion turns
//! on no input (fuzz finding 9, a 65-byte footer spinning for seconds).
//! No field of Parquet's file metadata is a collection of booleans, so one
//! is refused here; every other element takes at least one byte (in the
//! protocol and in that decoder's reading alike), so a count larger than
//! what is left of the footer is refused too, and the walk, and the
//! decoder's after it, are linear in the footer's length. (Allowing
//! boolean elements of one byte, as the protocol has them, is not enough:
//! the decoder reads the same bytes differently, as nested lists of
//! nothing; fuzz found that too.)

/// Nesting deeper than this is refused (the parquet crate stops at 64).
const MAX_DEPTH: u32 = 64;

/// Compact-protocol type codes.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// Checks the footer of the Parquet file `file`: its length field, then
/// that its metadata is a well-formed Thrift struct within it.
pub(crate) fn check(file: &[u8]) -> Result<(), String> {
    let len = file.len();
    if len < 12 || &file[len - 4..] != b"PAR1" {
        return Err("no Parquet footer".into());
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&file[len - 8..len - 4]);
    let footer_len = u32::from_le_bytes(n) as usize;
    let start = (len - 8)
        .checked_sub(footer_len)
        .filter(|s| *s >= 4)
        .ok_or_else(|| format!("a footer of {footer_len} bytes in a file of {len}"))?;
    let mut w = Walker {
        buf: &file[start..len - 8],
        pos: 0,
    };
    w.structure(MAX_DEPTH)
        .map_err(|e| format!("footer metadata at byte {}: {e}", w.pos))
}

struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        match usize::try_from(n).ok().filter(|n| *n <= self.left()) {
            Some(n) => {
                self.pos += n;
                Ok(())
            }
            None => Err(format!("{n} bytes claimed, {} left", self.left())),
        }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("cut short")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint of more than 10 bytes".into())
    }

    /// `n` elements follow, each at least one byte long.
    fn count(&self, n: u64) -> Result<u64, String> {
        if n > self.left() as u64 {
            return Err(format!("{n} elements claimed, {} bytes left", self.left()));
        }
        Ok(n)
    }

    fn structure(&mut self, depth: u32) -> Result<(), String> {
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            if header >> 4 == 0 {
                // The field id in full, after the header.
                self.varint()?;
            }
            // A boolean field's value is its type code: nothing follows.
            match header & 0x0f {
                BOOL_TRUE | BOOL_FALSE => {}
                ty => self.value(ty, depth)?,
            }
        }
    }

    /// A value of type `ty` as it stands in a list, set, map or a field
    /// (where booleans are a byte each, unlike in a field header).
    fn value(&mut self, ty: u8, depth: u32) -> Result<(), String> {
        let depth = depth
            .checked_sub(1)
            .filter(|d| *d > 0)
            .ok_or("nested too deep")?;
        match ty {
            BOOL_TRUE | BOOL_FALSE | BYTE => self.skip(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.skip(8),
            UUID => self.skip(16),
            BINARY => {
                let n = self.varint()?;
                self.skip(n)
            }
            LIST | SET => {
                let header = self.byte()?;
                let mut n = u64::from(header >> 4);
                if n == 15 {
                    n = self.varint()?;
                }
                let ty = element(header & 0x0f)?;
                for _ in 0..self.count(n)? {
                    self.value(ty, depth)?;
                }
                Ok(())
            }
            MAP => {
                let n = self.varint()?;
                if n > 0 {
                    let kv = self.byte()?;
                    let (k, v) = (element(kv >> 4)?, element(kv & 0x0f)?);
                    for _ in 0..self.count(n)? {
                        self.value(k, depth)?;
                        self.value(v, depth)?;
                    }
                }
                Ok(())
            }
            STRUCT => self.structure(depth),
            other => Err(format!("type code {other}")),
        }
    }
}

/// A collection's element type, unless boolean (see the module's note).
fn element(ty: u8) -> Result<u8, String> {
    match ty {
        BOOL_TRUE | BOOL_FALSE => Err("a collection of booleans".into()),
        ty => Ok(ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(footer: &[u8]) -> Vec<u8> {
        let mut f = b"PAR1".to_vec();
        f.extend_from_slice(footer);
        f.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        f.extend_from_slice(b"PAR1");
        f
    }

    #[test]
    fn a_list_claiming_more_elements_than_bytes_is_refused_at_once() {
        // Field 1, a list (header 0x19), of 15+ booleans: 2^31 of them.
        let footer = [0x19, 0xf1, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        let err = check(&file(&footer)).unwrap_err();
        assert!(err.contains("booleans"), "{err}");
        // Of bytes, and a map of i32 to i32: refused by their counts.
        for footer in [
            [0x19, 0xf3, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00],
            [0x1b, 0xff, 0xff, 0xff, 0xff, 0x07, 0x55, 0x00],
        ] {
            let err = check(&file(&footer)).unwrap_err();
            assert!(err.contains("elements claimed"), "{err}");
        }
    }

    #[test]
    fn well_formed_structs_pass_and_torn_ones_do_not() {
        // {1: i32 150, 2: true, 3: binary "ab", 4: list<i32> [1, 2],
        //  5: struct {1: double}} then stop.
        let footer = [
            0x15, 0xac, 0x02, 0x11, 0x18, 0x02, b'a', b'b', 0x19, 0x25, 0x02, 0x04, 0x1c, 0x17, 0,
            0, 0, 0, 0, 0, 0, 0, 0x00, 0x00,
        ];
        check(&file(&footer)).unwrap();
        for cut in 0..footer.len() - 1 {
            assert!(check(&file(&footer[..cut])).is_err(), "cut at {cut}");
        }
        // 65 nested structs.
        let mut deep = vec![0x1c; 65];
        deep.extend(vec![0x00; 66]);
        assert!(check(&file(&deep)).unwrap_err().contains("deep"));
        assert!(check(b"PAR1").is_err());
        assert!(check(&[b"PAR1".as_slice(), &[0xff, 0xff, 0, 0], b"PAR1"].concat()).is_err());
    }
}
