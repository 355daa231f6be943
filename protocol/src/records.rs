//! The records inside a v2 batch, decoded without copying them: each
//! record's offset and timestamp, and its key, value and headers as slices
//! of the (decompressed) records section.
//!
//! Record layout (after the 61-byte batch header, possibly compressed):
//! length varint, attributes i8, timestamp delta varlong, offset delta
//! varint, key length varint (-1: null) and key, value length varint (-1:
//! null) and value, header count varint, then per header a key length
//! varint and UTF-8 key, a value length varint (-1: null) and value.
//!
//! Everything a batch says is checked before it is used: the codec's output
//! is bounded, every length lies inside its record, every record ends where
//! its length says, every offset delta lies inside the batch and the
//! batch's offsets inside i64. Timestamps add their delta to the base with
//! wrapping arithmetic, as Kafka's Java decoder does (a delta no client
//! writes, never a panic). The Kafka crate's decoder is not used on bytes
//! from a file or a peer: it adds the deltas unchecked and decodes into
//! owned records.

use std::borrow::Cow;

use crate::codec::{self, CodecError, MAX_RECORDS_BYTES};
use crate::record_batch::{BatchHeader, Compression, HEADER_LEN, read_varint};

/// The smallest record: length, attributes, two deltas, two lengths and a
/// header count of one byte each.
const MIN_RECORD_BYTES: usize = 7;
/// The smallest header: two lengths of one byte each.
const MIN_HEADER_BYTES: usize = 2;

/// Why the records of a batch could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("batch at offset {base_offset}: {source}")]
    Codec {
        base_offset: i64,
        #[source]
        source: CodecError,
    },
    #[error("batch at offset {base_offset}: {reason}")]
    Corrupt { base_offset: i64, reason: String },
}

/// A run of bytes in the records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    at: u32,
    len: u32,
}

/// One record of a batch, by position in its records section; read its
/// parts through [`BatchRecords`].
#[derive(Debug, Clone, Copy)]
pub struct RecordView {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    key: Option<Span>,
    value: Option<Span>,
    /// The header count and the headers after it.
    headers: Span,
    header_count: u32,
    /// Position of the attributes byte, of the offset delta (right after
    /// the timestamp delta), and of the record's end.
    attrs_at: u32,
    rest_at: u32,
    end: u32,
}

impl RecordView {
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// False for a tombstone.
    pub fn has_value(&self) -> bool {
        self.value.is_some()
    }

    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }
}

/// The records of one batch, checked.
pub struct BatchRecords<'a> {
    section: Cow<'a, [u8]>,
    base_offset: i64,
    base_timestamp: i64,
    pub records: Vec<RecordView>,
}

impl<'a> BatchRecords<'a> {
    /// Decodes the records of `batch` (the whole batch, header `h`);
    /// a compressed section is decompressed, to at most
    /// [`MAX_RECORDS_BYTES`].
    pub fn decode(batch: &'a [u8], h: &BatchHeader) -> Result<Self, RecordsError> {
        Self::decode_within(batch, h, MAX_RECORDS_BYTES)
    }

    /// [`Self::decode`] with the decompressed section bounded at `limit`
    /// bytes (fuzz targets bound it lower, so each input costs
    /// milliseconds and takes the same paths).
    pub fn decode_within(
        batch: &'a [u8],
        h: &BatchHeader,
        limit: usize,
    ) -> Result<Self, RecordsError> {
        let base_offset = h.base_offset;
        let corrupt = |reason: String| RecordsError::Corrupt {
            base_offset,
            reason,
        };
        let codec = h.compression().map_err(|e| corrupt(e.to_string()))?;
        let raw = batch
            .get(HEADER_LEN..h.total_size())
            .ok_or_else(|| corrupt("the batch is shorter than its length field".into()))?;
        let section: Cow<'a, [u8]> = match codec {
            Compression::None => Cow::Borrowed(raw),
            c => Cow::Owned(codec::decompress(c, raw, limit).map_err(|source| {
                RecordsError::Codec {
                    base_offset,
                    source,
                }
            })?),
        };
        // Spans are u32: MAX_RECORDS_BYTES and a batch length (i32) fit.
        if u32::try_from(section.len()).is_err() {
            return Err(corrupt(format!("{}-byte records section", section.len())));
        }
        if h.base_offset
            .checked_add(i64::from(h.last_offset_delta))
            .is_none()
        {
            return Err(corrupt(format!(
                "last offset delta {} takes the batch past the largest offset",
                h.last_offset_delta
            )));
        }
        let count = usize::try_from(h.record_count)
            .map_err(|_| corrupt(format!("negative record count {}", h.record_count)))?;
        if count > section.len() / MIN_RECORD_BYTES {
            return Err(corrupt(format!(
                "{count} records cannot fit a {}-byte records section",
                section.len()
            )));
        }
        // The count is the batch's word: room is made as records are found,
        // not up front (a 20-byte section may claim millions).
        let mut records = Vec::with_capacity(count.min(4096));
        let mut at = 0;
        for _ in 0..count {
            let r = read_record(&section, at, h.last_offset_delta).map_err(corrupt)?;
            at = r.end as usize;
            records.push(r);
        }
        if at != section.len() {
            return Err(corrupt(format!(
                "{} bytes left after the batch's {count} records",
                section.len() - at
            )));
        }
        Ok(BatchRecords {
            section,
            base_offset: h.base_offset,
            base_timestamp: h.base_timestamp,
            records,
        })
    }

    fn span(&self, s: Span) -> &[u8] {
        &self.section[s.at as usize..(s.at + s.len) as usize]
    }

    /// Cannot overflow: decoding checked the batch's last offset.
    pub fn offset(&self, r: &RecordView) -> i64 {
        self.base_offset + i64::from(r.offset_delta)
    }

    /// The record's own (CreateTime) timestamp; see the module note.
    pub fn timestamp(&self, r: &RecordView) -> i64 {
        self.base_timestamp.wrapping_add(r.timestamp_delta)
    }

    pub fn key(&self, r: &RecordView) -> Option<&[u8]> {
        r.key.map(|s| self.span(s))
    }

    pub fn value(&self, r: &RecordView) -> Option<&[u8]> {
        r.value.map(|s| self.span(s))
    }

    /// The record's headers in order: key (not checked for UTF-8, as Kafka
    /// reads it leniently) and value.
    pub fn headers<'s>(&'s self, r: &RecordView) -> Headers<'s> {
        Headers {
            buf: self.span(r.headers),
            left: r.header_count,
        }
    }

    /// The record's attributes byte (unused by Kafka so far, kept by
    /// rebuilt batches).
    pub fn attributes(&self, r: &RecordView) -> u8 {
        self.section[r.attrs_at as usize]
    }

    /// The record's bytes from its offset delta to its end: what a rebuilt
    /// batch copies unchanged after a re-based timestamp delta.
    pub fn after_timestamp(&self, r: &RecordView) -> &[u8] {
        &self.section[r.rest_at as usize..r.end as usize]
    }

    /// Bytes of the (decompressed) records section.
    pub fn section_len(&self) -> usize {
        self.section.len()
    }
}

/// The headers of one record, already checked by the decode.
pub struct Headers<'a> {
    buf: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The decode checked every length: a failure here ends the walk.
        let (key, rest) = take_bytes(self.buf)?;
        let (value, rest) = take_bytes(rest)?;
        self.buf = rest;
        Some((key?, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// A length-prefixed field at the front of `buf`: None past the end, the
/// field (None when its length is -1) and what follows.
fn take_bytes(buf: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (len, n) = read_varint(buf)?;
    let rest = &buf[n..];
    match len {
        -1 => Some((None, rest)),
        l if l >= 0 && (l as u64) <= rest.len() as u64 => {
            let (field, rest) = rest.split_at(l as usize);
            Some((Some(field), rest))
        }
        _ => None,
    }
}

/// Reads the varint at `at`, which must end by `end`.
fn varint_at(buf: &[u8], at: usize, end: usize, what: &str) -> Result<(i64, usize), String> {
    buf.get(at..end)
        .and_then(read_varint)
        .map(|(v, n)| (v, at + n))
        .ok_or_else(|| format!("truncated {what} at position {at}"))
}

/// A length-prefixed field at `at` inside a record ending at `end`.
fn field_at(
    buf: &[u8],
    at: usize,
    end: usize,
    what: &str,
    nullable: bool,
) -> Result<(Option<Span>, usize), String> {
    let (len, p) = varint_at(buf, at, end, what)?;
    match len {
        -1 if nullable => Ok((None, p)),
        n if n >= 0 && (n as u64) <= (end - p) as u64 => Ok((
            Some(Span {
                at: p as u32,
                len: n as u32,
            }),
            p + n as usize,
        )),
        n => Err(format!("{what} {n} at position {at} is invalid")),
    }
}

/// The record starting at `at` in `section`; spans fit u32 (checked by
/// the caller).
fn read_record(section: &[u8], at: usize, last_offset_delta: i32) -> Result<RecordView, String> {
    let (len, body) = varint_at(section, at, section.len(), "record length")?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| body.checked_add(l))
        .filter(|e| *e <= section.len())
        .ok_or_else(|| format!("record of length {len} at {at} runs past the section"))?;
    if body >= end {
        return Err(format!("empty record at {at}"));
    }
    let (timestamp_delta, p) = varint_at(section, body + 1, end, "timestamp delta")?;
    let rest_at = p;
    let (offset_delta, p) = varint_at(section, p, end, "offset delta")?;
    let offset_delta = i32::try_from(offset_delta)
        .ok()
        .filter(|d| (0..=last_offset_delta).contains(d))
        .ok_or_else(|| format!("offset delta {offset_delta} outside the batch"))?;
    let (key, p) = field_at(section, p, end, "key length", true)?;
    let (value, p) = field_at(section, p, end, "value length", true)?;
    let (count, headers_at) = varint_at(section, p, end, "header count")?;
    let header_count = u32::try_from(count)
        .ok()
        .filter(|c| (*c as usize) <= (end - headers_at) / MIN_HEADER_BYTES)
        .ok_or_else(|| format!("header count {count} at {p} is invalid"))?;
    let mut p = headers_at;
    for _ in 0..header_count {
        // Kafka refuses a null header key; a null value is allowed.
        (_, p) = field_at(section, p, end, "header key length", false)?;
        (_, p) = field_at(section, p, end, "header value length", true)?;
    }
    if p != end {
        return Err(format!(
            "record at {at} is {} bytes long but its fields take {}",
            end - body,
            p - body
        ));
    }
    Ok(RecordView {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers: Span {
            at: headers_at as u32,
            len: (end - headers_at) as u32,
        },
        header_count,
        attrs_at: body as u32,
        rest_at: rest_at as u32,
        end: end as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as KCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType as KTs,
    };
    use proptest::prelude::*;

    type Rec = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
        i64,
    );

    fn encode(base_offset: i64, recs: &[Rec], c: KCompression) -> Vec<u8> {
        let recs: Vec<Record> = recs
            .iter()
            .enumerate()
            .map(|(i, (k, v, hs, ts))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: KTs::Creation,
                offset: base_offset + i as i64,
                // Consecutive sequences: the encoder keeps them in one batch.
                sequence: i as i32,
                timestamp: *ts,
                key: k.clone().map(Bytes::from),
                value: v.clone().map(Bytes::from),
                headers: hs
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                    .collect::<IndexMap<_, _>>(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: c,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    fn codec() -> impl Strategy<Value = KCompression> {
        prop_oneof![
            Just(KCompression::None),
            Just(KCompression::Gzip),
            Just(KCompression::Snappy),
            Just(KCompression::Lz4),
            Just(KCompression::Zstd),
        ]
    }

    fn record() -> impl Strategy<Value = Rec> {
        let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
        (
            bytes(),
            bytes(),
            proptest::collection::vec(("[a-z]{0,6}", bytes()), 0..4),
            0i64..4_000_000_000_000,
        )
            .prop_map(|(k, v, mut hs, ts)| {
                // Header keys are a map in the Kafka crate: keep them unique.
                hs.sort_by(|a, b| a.0.cmp(&b.0));
                hs.dedup_by(|a, b| a.0 == b.0);
                (k, v, hs, ts)
            })
    }

    proptest! {
        /// What the Kafka crate's decoder reads from batches its encoder
        /// wrote, this decoder reads too: offsets, timestamps, keys,
        /// values and headers in order, in every codec.
        #[test]
        fn reads_what_the_kafka_crate_reads(
            base in 0i64..1 << 40,
            recs in proptest::collection::vec(record(), 1..20),
            c in codec(),
        ) {
            let b = encode(base, &recs, c);
            let h = BatchHeader::parse(&b).unwrap();
            prop_assert_eq!(h.total_size(), b.len(), "one batch");
            let ours = BatchRecords::decode(&b, &h).unwrap();
            let theirs = RecordBatchDecoder::decode(&mut Bytes::from(b.clone())).unwrap();
            prop_assert_eq!(ours.records.len(), theirs.records.len());
            for (r, t) in ours.records.iter().zip(&theirs.records) {
                prop_assert_eq!(ours.offset(r), t.offset);
                prop_assert_eq!(ours.timestamp(r), t.timestamp);
                prop_assert_eq!(ours.key(r), t.key.as_deref());
                prop_assert_eq!(ours.value(r), t.value.as_deref());
                let hs: Vec<(&[u8], Option<&[u8]>)> = ours.headers(r).collect();
                let ths: Vec<(&[u8], Option<&[u8]>)> = t
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                    .collect();
                prop_assert_eq!(hs, ths);
            }
        }

        /// Any bytes after a valid header: an answer or an error, never a
        /// panic, and every record it yields lies inside the batch.
        #[test]
        fn garbage_sections_never_panic(
            recs in proptest::collection::vec(record(), 1..4),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut b = encode(5, &recs, KCompression::None);
            for (i, x) in flips {
                let at = HEADER_LEN + i.index(b.len() - HEADER_LEN);
                b[at] ^= x;
            }
            let h = BatchHeader::parse(&b).unwrap();
            if let Ok(d) = BatchRecords::decode(&b, &h) {
                for r in &d.records {
                    prop_assert!((5..5 + i64::from(h.last_offset_delta) + 1).contains(&d.offset(r)));
                    let _ = (d.key(r), d.value(r), d.headers(r).count(), d.timestamp(r));
                }
            }
        }
    }

    fn set_i64(b: &mut [u8], at: usize, v: i64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    /// Found by the columnar fuzz target (finding 7 in fuzz/RESULTS.md):
    /// the Kafka crate's decoder added the offset delta to a base offset
    /// near i64::MAX unchecked.
    #[test]
    fn offsets_past_the_largest_are_an_error() {
        let recs: Vec<Rec> = (0..3).map(|i| (None, Some(vec![i]), vec![], 7)).collect();
        let mut b = encode(0, &recs, KCompression::Gzip);
        set_i64(&mut b, 0, i64::MAX - 1);
        let h = BatchHeader::parse(&b).unwrap();
        let e = BatchRecords::decode(&b, &h).err().expect("an error");
        assert!(e.to_string().contains("past the largest offset"), "{e}");
        set_i64(&mut b, 0, i64::MAX - 2);
        let h = BatchHeader::parse(&b).unwrap();
        let d = BatchRecords::decode(&b, &h).unwrap();
        assert_eq!(d.offset(&d.records[2]), i64::MAX);
    }

    #[test]
    fn timestamps_wrap_as_kafka_reads_them() {
        let recs: Vec<Rec> = vec![(None, None, vec![], 10), (None, None, vec![], 20)];
        let mut b = encode(0, &recs, KCompression::None);
        // Base timestamp near the top: the second record's delta of 10 wraps.
        set_i64(&mut b, 27, i64::MAX - 5);
        let h = BatchHeader::parse(&b).unwrap();
        let d = BatchRecords::decode(&b, &h).unwrap();
        assert_eq!(d.timestamp(&d.records[0]), i64::MAX - 5);
        assert_eq!(d.timestamp(&d.records[1]), (i64::MAX - 5).wrapping_add(10));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let recs: Vec<Rec> = vec![(
            Some(b"key".to_vec()),
            Some(b"value".to_vec()),
            vec![("h".into(), Some(b"v".to_vec())), ("n".into(), None)],
            1,
        )];
        let b = encode(0, &recs, KCompression::None);
        for cut in HEADER_LEN..b.len() {
            let mut t = b[..cut].to_vec();
            let len = (t.len() - crate::record_batch::LOG_OVERHEAD) as i32;
            t[8..12].copy_from_slice(&len.to_be_bytes());
            let h = BatchHeader::parse(&t).unwrap();
            assert!(BatchRecords::decode(&t, &h).is_err(), "{cut}");
        }
    }

    #[test]
    fn a_header_count_beyond_the_record_is_an_error() {
        let recs: Vec<Rec> = vec![(None, Some(b"v".to_vec()), vec![], 1)];
        let mut b = encode(0, &recs, KCompression::None);
        // The record's last byte is its header count (0): claim 100.
        let last = b.len() - 1;
        assert_eq!(b[last], 0);
        b[last] = 100; // zigzag: 50 headers, in one byte
        let h = BatchHeader::parse(&b).unwrap();
        assert!(BatchRecords::decode(&b, &h).is_err());
    }
}
