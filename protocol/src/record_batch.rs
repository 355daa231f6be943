//! A zero-copy view of Kafka v2 record batches (magic 2), as producers send
//! them and as they sit in a segment file.
//!
//! Layout of the 61-byte header (all big-endian):
//!
//! | field                  | bytes  |
//! |------------------------|--------|
//! | base offset            | 0..8   |
//! | batch length           | 8..12  | (bytes after this field)
//! | partition leader epoch | 12..16 |
//! | magic                  | 16     |
//! | crc (CRC32C)           | 17..21 | (covers 21..end)
//! | attributes             | 21..23 |
//! | last offset delta      | 23..27 |
//! | base timestamp         | 27..35 |
//! | max timestamp          | 35..43 |
//! | producer id            | 43..51 |
//! | producer epoch         | 51..53 |
//! | base sequence          | 53..57 |
//! | record count           | 57..61 |
//!
//! Base offset and leader epoch sit before the CRC'd region, which is why a
//! broker can assign offsets by rewriting them in place without touching the
//! CRC. Only `LogAppendTime` rewrites a CRC'd field.

use crate::error::BatchError;

pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length field is counted: base offset + batch length.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;

const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::Compression(other)),
        }
    }
}

/// How a topic stamps record timestamps (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The decoded header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks only that the header
    /// is there and the magic is 2; see [`validate_batches`] for the rest.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::TooShort {
                len: buf.len(),
                min: HEADER_LEN,
            });
        }
        let magic = buf[OFF_MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::Magic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, OFF_BATCH_LENGTH),
            partition_leader_epoch: be_i32(buf, OFF_LEADER_EPOCH),
            magic,
            crc: be_i32(buf, OFF_CRC) as u32,
            attributes: be_i16(buf, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(buf, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(buf, OFF_PRODUCER_ID),
            producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(buf, OFF_BASE_SEQUENCE),
            record_count: be_i32(buf, OFF_RECORD_COUNT),
        })
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Saturating: a torn or corrupt header may hold any base offset.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Iterates over the batches laid end to end in `buf` (a produce request's
/// records, or a region of a segment file). Yields `(position, header)`;
/// stops at the first header that is short or whose length runs past the
/// buffer, reporting it as an error so callers can tell a torn tail from the end.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, pos: 0 }
    }

    /// Position just past the last batch yielded.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(usize, BatchHeader), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        if rest.len() < LOG_OVERHEAD {
            return Some(Err(BatchError::TooShort {
                len: rest.len(),
                min: HEADER_LEN,
            }));
        }
        let length = be_i32(rest, OFF_BATCH_LENGTH);
        if length < (HEADER_LEN - LOG_OVERHEAD) as i32
            || LOG_OVERHEAD + length as usize > rest.len()
        {
            return Some(Err(BatchError::BadLength {
                position: self.pos,
                length,
                available: rest.len(),
            }));
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let at = self.pos;
        self.pos += header.total_size();
        Some(Ok((at, header)))
    }
}

/// Checks the CRC32C of one whole batch (`buf` holds exactly the batch).
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = crc32c::crc32c(&batch[CRC_START..header.total_size()]);
    if computed != header.crc {
        return Err(BatchError::Crc {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Broker-side limits a produced batch is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ValidationPolicy {
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime may be.
    pub timestamp_after_max_ms: i64,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        // Kafka 4.x defaults.
        ValidationPolicy {
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
        }
    }
}

/// What validation learnt about a produce request's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchesSummary {
    pub batches: usize,
    pub records: i64,
    pub bytes: usize,
    /// Largest max-timestamp over the batches, and the offset delta (from the
    /// first batch's base) of the batch that carries it.
    pub max_timestamp: i64,
    pub first_timestamp: i64,
    /// Producer id and epoch of the last batch (-1 without idempotence).
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Any batch has the transactional bit / is a control batch.
    pub transactional: bool,
    pub control: bool,
}

/// Validates every batch in a produce request's records: magic 2, lengths
/// that add up to exactly the bytes sent, CRC32C, record count against last
/// offset delta, the records section of uncompressed batches, codec, and
/// CreateTime timestamps against the policy's window around `now_ms`.
/// Nothing is modified; on error nothing may be appended.
pub fn validate_batches(
    records: &[u8],
    policy: &ValidationPolicy,
    now_ms: i64,
) -> Result<BatchesSummary, BatchError> {
    let mut summary = BatchesSummary {
        max_timestamp: -1,
        first_timestamp: -1,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let mut iter = BatchIter::new(records);
    for item in iter.by_ref() {
        let (pos, h) = item?;
        let batch = &records[pos..pos + h.total_size()];
        check_crc(batch, &h)?;
        if h.record_count <= 0 || h.last_offset_delta != h.record_count - 1 {
            return Err(BatchError::RecordCount {
                count: h.record_count,
                last_offset_delta: h.last_offset_delta,
            });
        }
        if h.compression()? == Compression::None {
            check_uncompressed_records(&batch[HEADER_LEN..], h.record_count)?;
        }
        if policy.timestamp_type == TimestampType::CreateTime && h.max_timestamp >= 0 {
            let too_old = h.base_timestamp >= 0
                && now_ms.saturating_sub(h.base_timestamp) > policy.timestamp_before_max_ms;
            let too_new = h.max_timestamp.saturating_sub(now_ms) > policy.timestamp_after_max_ms;
            if too_old || too_new {
                let timestamp = if too_old {
                    h.base_timestamp
                } else {
                    h.max_timestamp
                };
                return Err(BatchError::Timestamp {
                    timestamp,
                    now: now_ms,
                });
            }
        }
        if summary.batches == 0 {
            summary.first_timestamp = h.base_timestamp;
        }
        summary.batches += 1;
        summary.records += h.record_count as i64;
        summary.producer_id = h.producer_id;
        summary.producer_epoch = h.producer_epoch;
        summary.transactional |= h.is_transactional();
        summary.control |= h.is_control();
        summary.max_timestamp = summary.max_timestamp.max(h.max_timestamp);
    }
    if summary.batches == 0 {
        return Err(BatchError::Empty);
    }
    summary.bytes = iter.position();
    Ok(summary)
}

/// Reads a zigzag varint (Kafka's signed varint) from the front of `buf`:
/// the value and the bytes it took.
pub fn read_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            let signed = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((signed, i + 1));
        }
    }
    None
}

/// Walks the length prefixes of an uncompressed records section: `count`
/// records must fill it exactly. This catches a lying record count without
/// decoding any record.
fn check_uncompressed_records(mut section: &[u8], count: i32) -> Result<(), BatchError> {
    for _ in 0..count {
        let (len, used) = read_varint(section).ok_or(BatchError::Records { count })?;
        if len < 0 || (len as u64) > (section.len() - used) as u64 {
            return Err(BatchError::Records { count });
        }
        section = &section[used + len as usize..];
    }
    if !section.is_empty() {
        return Err(BatchError::Records { count });
    }
    Ok(())
}

/// Assigns offsets to validated batches by rewriting each base offset (and
/// the partition leader epoch) in place. Returns the next offset after the
/// last record. `records` must have passed [`validate_batches`].
/// A record as a producer without idempotence or transactions writes it,
/// for batches the broker builds itself (coordinator state, SQL INSERT).
/// `offset` is the record's position in its batch: the log assigns the base.
pub fn plain_record(
    offset: i64,
    timestamp: i64,
    key: Option<bytes::Bytes>,
    value: Option<bytes::Bytes>,
    headers: kafka_protocol::indexmap::IndexMap<
        kafka_protocol::protocol::StrBytes,
        Option<bytes::Bytes>,
    >,
) -> kafka_protocol::records::Record {
    kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key,
        value,
        headers,
    }
}

pub fn assign_offsets(records: &mut [u8], mut next_offset: i64, leader_epoch: i32) -> i64 {
    let mut pos = 0;
    while pos + HEADER_LEN <= records.len() {
        let length = be_i32(records, pos + OFF_BATCH_LENGTH);
        let last_delta = be_i32(records, pos + OFF_LAST_OFFSET_DELTA);
        debug_assert!(length >= (HEADER_LEN - LOG_OVERHEAD) as i32);
        records[pos..pos + 8].copy_from_slice(&next_offset.to_be_bytes());
        records[pos + OFF_LEADER_EPOCH..pos + OFF_LEADER_EPOCH + 4]
            .copy_from_slice(&leader_epoch.to_be_bytes());
        next_offset += last_delta as i64 + 1;
        pos += LOG_OVERHEAD + length as usize;
    }
    next_offset
}

/// Stamps every batch with the broker's append time (`LogAppendTime` topics):
/// sets the timestamp-type bit and max timestamp, then recomputes the CRC,
/// since both fields sit inside the CRC'd region.
pub fn set_log_append_time(records: &mut [u8], now_ms: i64) {
    let mut pos = 0;
    while pos + HEADER_LEN <= records.len() {
        let length = be_i32(records, pos + OFF_BATCH_LENGTH) as usize;
        let end = pos + LOG_OVERHEAD + length;
        let attrs = be_i16(records, pos + OFF_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
        records[pos + OFF_ATTRIBUTES..pos + OFF_ATTRIBUTES + 2]
            .copy_from_slice(&attrs.to_be_bytes());
        records[pos + OFF_MAX_TIMESTAMP..pos + OFF_MAX_TIMESTAMP + 8]
            .copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c(&records[pos + CRC_START..end]);
        records[pos + OFF_CRC..pos + OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// Builds an uncompressed v2 batch of `values` (no keys, no headers).
    pub fn build_batch(base_ts: i64, values: &[&[u8]]) -> Vec<u8> {
        let mut recs = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, 0); // timestamp delta
            put_varint(&mut body, i as i64); // offset delta
            put_varint(&mut body, -1); // null key
            put_varint(&mut body, v.len() as i64);
            body.extend_from_slice(v);
            put_varint(&mut body, 0); // no headers
            put_varint(&mut recs, body.len() as i64);
            recs.extend_from_slice(&body);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + recs.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(values.len() as i32 - 1).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&(values.len() as i32).to_be_bytes());
        b.extend_from_slice(&recs);
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn valid_batches_pass_and_offsets_are_assigned_in_place() {
        let mut records = build_batch(NOW, &[b"a", b"bb", b"ccc"]);
        records.extend(build_batch(NOW, &[b"d"]));
        let s = validate_batches(&records, &ValidationPolicy::default(), NOW).unwrap();
        assert_eq!((s.batches, s.records, s.bytes), (2, 4, records.len()));
        let next = assign_offsets(&mut records, 100, 7);
        assert_eq!(next, 104);
        let headers: Vec<_> = BatchIter::new(&records).map(|r| r.unwrap().1).collect();
        assert_eq!(headers[0].base_offset, 100);
        assert_eq!(headers[1].base_offset, 103);
        assert_eq!(headers[1].partition_leader_epoch, 7);
        // Offsets live outside the CRC: the batches still validate.
        validate_batches(&records, &ValidationPolicy::default(), NOW).unwrap();
    }

    #[test]
    fn bad_crc_is_corrupt_message() {
        let mut records = build_batch(NOW, &[b"hello"]);
        let last = records.len() - 2;
        records[last] ^= 0xff;
        let err = validate_batches(&records, &ValidationPolicy::default(), NOW).unwrap_err();
        assert!(matches!(err, BatchError::Crc { .. }));
        assert_eq!(err.kafka_error_code(), 2);
    }

    #[test]
    fn truncated_and_overlong_lengths_are_rejected() {
        let records = build_batch(NOW, &[b"hello"]);
        for cut in [0, 5, 20, HEADER_LEN, records.len() - 1] {
            assert!(validate_batches(&records[..cut], &ValidationPolicy::default(), NOW).is_err());
        }
        let mut lying = records.clone();
        lying[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            validate_batches(&lying, &ValidationPolicy::default(), NOW),
            Err(BatchError::BadLength { .. })
        ));
        let mut negative = records;
        negative[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(validate_batches(&negative, &ValidationPolicy::default(), NOW).is_err());
    }

    #[test]
    fn lying_record_count_is_rejected() {
        let mut records = build_batch(NOW, &[b"a", b"b"]);
        records[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&3i32.to_be_bytes());
        records[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&2i32.to_be_bytes());
        let crc = crc32c::crc32c(&records[CRC_START..]);
        records[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_batches(&records, &ValidationPolicy::default(), NOW),
            Err(BatchError::Records { count: 3 })
        );
    }

    #[test]
    fn wrong_magic_and_future_timestamps() {
        let mut records = build_batch(NOW, &[b"a"]);
        records[OFF_MAGIC] = 1;
        assert_eq!(
            validate_batches(&records, &ValidationPolicy::default(), NOW),
            Err(BatchError::Magic(1))
        );
        let future = build_batch(NOW + 2 * 3_600_000, &[b"a"]);
        let err = validate_batches(&future, &ValidationPolicy::default(), NOW).unwrap_err();
        assert_eq!(err.kafka_error_code(), 32);
        let policy = ValidationPolicy {
            timestamp_type: TimestampType::LogAppendTime,
            ..Default::default()
        };
        validate_batches(&future, &policy, NOW).unwrap();
    }

    #[test]
    fn log_append_time_rewrites_and_keeps_crc_valid() {
        let mut records = build_batch(NOW - 10, &[b"a", b"b"]);
        set_log_append_time(&mut records, NOW);
        let h = BatchHeader::parse(&records).unwrap();
        assert_eq!(h.max_timestamp, NOW);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        check_crc(&records, &h).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = validate_batches(&bytes, &ValidationPolicy::default(), NOW);
            for item in BatchIter::new(&bytes) { if item.is_err() { break; } }
        }

        #[test]
        fn flipping_any_crc_covered_byte_is_caught(idx in 21usize..80, bit in 0u8..8) {
            let mut records = build_batch(NOW, &[b"hello world", b"second record"]);
            let i = idx.min(records.len() - 1);
            records[i] ^= 1 << bit;
            proptest::prop_assert!(validate_batches(&records, &ValidationPolicy::default(), NOW).is_err());
        }
    }
}
