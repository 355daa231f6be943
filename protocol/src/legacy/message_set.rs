//! Message sets, the record format before v2 batches (magic 0 and 1), as
//! clients older than Kafka 0.11 write and read them.
//!
//! A message set is a run of `offset i64, size i32, message`; a message is
//! `crc u32` (CRC-32, IEEE, over the rest), `magic i8`, `attributes i8`
//! (codec in bits 0-2, for magic 1 the timestamp type in bit 3),
//! `timestamp i64` (magic 1 only), `key bytes`, `value bytes`. A compressed
//! message ("wrapper") holds a whole inner message set, compressed, as its
//! value; with magic 1 the inner offsets are relative and the wrapper
//! carries the absolute offset of the last one.
//!
//! Produce converts a set into one v2 batch with the same codec (as Kafka
//! 3.x did with `compression.type=producer`); fetch converts v2 batches
//! back, uncompressed, without control batches and headers (old formats
//! have neither).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as KCompression, RecordBatchEncoder, RecordEncodeOptions,
};

use super::LegacyError;
use crate::codec::{self, MAX_RECORDS_BYTES};
use crate::record_batch::{self, BatchIter, Compression, HEADER_LEN, TimestampType, read_varint};

/// offset i64 + size i32 before every message.
const LOG_OVERHEAD: usize = 12;
/// crc, magic, attributes, key length, value length.
const MIN_MESSAGE_V0: usize = 4 + 1 + 1 + 4 + 4;
const ATTR_CODEC_MASK: i8 = 0x07;
const ATTR_LOG_APPEND_TIME: i8 = 0x08;

/// One message of a set, with compression undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub magic: i8,
    /// -1 for magic 0, which has none.
    pub timestamp: i64,
    pub log_append_time: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Whether produced records are v2 batches rather than a message set: the
/// magic byte sits at the same place in both (after offset, size and a
/// 4-byte CRC or leader epoch).
pub fn is_v2(records: &[u8]) -> bool {
    const MAGIC_AT: usize = 16;
    records.get(MAGIC_AT) == Some(&2)
}

/// What a produced message set held.
#[derive(Debug)]
pub struct MessageSet {
    pub magic: i8,
    pub codec: Compression,
    pub messages: Vec<Message>,
}

fn codec_of(attributes: i8) -> Result<Compression, LegacyError> {
    match attributes & ATTR_CODEC_MASK {
        0 => Ok(Compression::None),
        1 => Ok(Compression::Gzip),
        2 => Ok(Compression::Snappy),
        3 => Ok(Compression::Lz4),
        // zstd needs magic 2 (KIP-110).
        other => Err(LegacyError::Codec(other)),
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Reads a BYTES field (i32 length, -1 null) at `at` of `m`.
fn bytes_at(m: &Bytes, at: &mut usize, what: &'static str) -> Result<Option<Bytes>, LegacyError> {
    let len = m
        .get(*at..*at + 4)
        .map(be_i32)
        .ok_or(LegacyError::Truncated { what, at: *at })?;
    *at += 4;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| LegacyError::Length {
        what,
        len: len as i64,
    })?;
    if *at + len > m.len() {
        return Err(LegacyError::Truncated { what, at: *at });
    }
    let b = m.slice(*at..*at + len);
    *at += len;
    Ok(Some(b))
}

/// Magic-0 LZ4 frames (librdkafka and Kafka before 0.10, KAFKA-3160) hash
/// the frame magic into the header checksum; the frame format hashes only
/// the descriptor. Kafka ignored that checksum for magic 0; we recompute it
/// so the decoder accepts the frame.
fn fix_lz4_header_checksum(frame: &mut [u8]) {
    const FLG: usize = 4;
    if frame.len() < FLG + 3 {
        return;
    }
    let flg = frame[FLG];
    let mut end = FLG + 2;
    if flg & 0x08 != 0 {
        end += 8; // content size
    }
    if flg & 0x01 != 0 {
        end += 4; // dictionary id
    }
    if frame.len() <= end {
        return;
    }
    let hc = (twox_hash::XxHash32::oneshot(0, &frame[FLG..end]) >> 8) as u8;
    frame[end] = hc;
}

/// Decodes a produced message set. Every message's CRC is checked; a
/// compressed message is opened (bounded at [`MAX_RECORDS_BYTES`]) and its
/// inner messages must be uncompressed and of the same magic. All messages
/// must share one magic and one codec, as one client request always does.
pub fn decode(set: &Bytes) -> Result<MessageSet, LegacyError> {
    let mut out = MessageSet {
        magic: -1,
        codec: Compression::None,
        messages: Vec::new(),
    };
    walk(set, false, &mut out)?;
    if out.messages.is_empty() {
        return Err(LegacyError::EmptySet);
    }
    Ok(out)
}

fn walk(set: &Bytes, inner: bool, out: &mut MessageSet) -> Result<(), LegacyError> {
    let mut pos = 0usize;
    while pos < set.len() {
        let head = set
            .get(pos..pos + LOG_OVERHEAD)
            .ok_or(LegacyError::Truncated {
                what: "message set entry",
                at: pos,
            })?;
        let size = be_i32(&head[8..]);
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s >= MIN_MESSAGE_V0)
            .ok_or(LegacyError::Length {
                what: "message size",
                len: size as i64,
            })?;
        let start = pos + LOG_OVERHEAD;
        let end =
            start
                .checked_add(size)
                .filter(|&e| e <= set.len())
                .ok_or(LegacyError::Truncated {
                    what: "message",
                    at: pos,
                })?;
        let m = set.slice(start..end);
        pos = end;

        let stored = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
        let computed = crc32fast::hash(&m[4..]);
        if stored != computed {
            return Err(LegacyError::Crc { stored, computed });
        }
        let magic = m[4] as i8;
        let attributes = m[5] as i8;
        if !(0..=1).contains(&magic) {
            return Err(LegacyError::Magic(magic));
        }
        if out.magic == -1 {
            out.magic = magic;
        } else if out.magic != magic {
            return Err(LegacyError::MixedMagic);
        }
        let mut at = 6;
        let timestamp = if magic == 1 {
            let t = m
                .get(at..at + 8)
                .map(be_i64)
                .ok_or(LegacyError::Truncated {
                    what: "timestamp",
                    at,
                })?;
            at += 8;
            t
        } else {
            -1
        };
        let key = bytes_at(&m, &mut at, "key")?;
        let value = bytes_at(&m, &mut at, "value")?;
        if at != m.len() {
            return Err(LegacyError::Trailing {
                what: "message",
                bytes: m.len() - at,
            });
        }
        let codec = codec_of(attributes)?;
        if codec == Compression::None {
            out.messages.push(Message {
                magic,
                timestamp,
                log_append_time: attributes & ATTR_LOG_APPEND_TIME != 0,
                key,
                value,
            });
            continue;
        }
        if inner {
            return Err(LegacyError::NestedCompression);
        }
        if !out.messages.is_empty() && out.codec != codec {
            return Err(LegacyError::MixedCodec);
        }
        out.codec = codec;
        let compressed = value.unwrap_or_default();
        let raw = if codec == Compression::Lz4 && magic == 0 {
            let mut fixed = compressed.to_vec();
            fix_lz4_header_checksum(&mut fixed);
            codec::decompress(codec, &fixed, MAX_RECORDS_BYTES)
        } else {
            codec::decompress(codec, &compressed, MAX_RECORDS_BYTES)
        }
        .map_err(|e| LegacyError::Decompress(e.to_string()))?;
        walk(&Bytes::from(raw), true, out)?;
    }
    Ok(())
}

fn to_kafka_protocol(c: Compression) -> KCompression {
    match c {
        Compression::None => KCompression::None,
        Compression::Gzip => KCompression::Gzip,
        Compression::Snappy => KCompression::Snappy,
        Compression::Lz4 => KCompression::Lz4,
        Compression::Zstd => KCompression::Zstd,
    }
}

/// Up-converts a produced message set to one v2 batch (base offset 0, no
/// producer id), compressed with the set's codec. Magic-0 messages have no
/// timestamp: they get -1, Kafka's NO_TIMESTAMP, as Kafka 3.x gave them.
pub fn to_batch(set: &MessageSet) -> Result<Bytes, LegacyError> {
    let records: Vec<_> = set
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            record_batch::plain_record(
                i as i64,
                m.timestamp,
                m.key.clone(),
                m.value.clone(),
                Default::default(),
            )
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: to_kafka_protocol(set.codec),
        },
    )
    .map_err(|e| LegacyError::Encode(format!("{e:#}")))?;
    Ok(buf.freeze())
}

/// One record of a v2 batch, as a down-converted message needs it.
struct V2Record {
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

/// The records of one v2 batch (decompressed, bounded).
fn v2_records(batch: &[u8], h: &record_batch::BatchHeader) -> Result<Vec<V2Record>, LegacyError> {
    let codec = h
        .compression()
        .map_err(|e| LegacyError::Decompress(e.to_string()))?;
    let section = &batch[HEADER_LEN..h.total_size()];
    let section = Bytes::from(
        codec::decompress(codec, section, MAX_RECORDS_BYTES)
            .map_err(|e| LegacyError::Decompress(e.to_string()))?,
    );
    let bad = || LegacyError::V2Records {
        base_offset: h.base_offset,
    };
    let count = usize::try_from(h.record_count).map_err(|_| bad())?;
    let mut out = Vec::with_capacity(count.min(section.len()));
    let mut at = 0usize;
    let varint = |at: &mut usize| -> Result<i64, LegacyError> {
        let (v, n) = section.get(*at..).and_then(read_varint).ok_or_else(bad)?;
        *at += n;
        Ok(v)
    };
    for _ in 0..count {
        let len = varint(&mut at)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|&e| e <= section.len())
            .ok_or_else(bad)?;
        at += 1; // attributes
        let ts_delta = varint(&mut at)?;
        let offset_delta = varint(&mut at)?;
        let field = |at: &mut usize| -> Result<Option<Bytes>, LegacyError> {
            let n = varint(at)?;
            if n < 0 {
                return Ok(None);
            }
            let e = at
                .checked_add(n as usize)
                .filter(|&e| e <= end)
                .ok_or_else(bad)?;
            let b = section.slice(*at..e);
            *at = e;
            Ok(Some(b))
        };
        let key = field(&mut at)?;
        let value = field(&mut at)?;
        // Headers are dropped: magic 0/1 cannot carry them.
        at = end;
        out.push(V2Record {
            offset: h.base_offset + offset_delta,
            timestamp: if h.timestamp_type() == TimestampType::LogAppendTime {
                h.max_timestamp
            } else {
                h.base_timestamp.saturating_add(ts_delta)
            },
            key,
            value,
        });
    }
    Ok(out)
}

fn put_message(out: &mut BytesMut, magic: i8, offset: i64, r: &V2Record, log_append: bool) {
    let mut body = BytesMut::new();
    body.put_i8(magic);
    body.put_i8(if magic == 1 && log_append {
        ATTR_LOG_APPEND_TIME
    } else {
        0
    });
    if magic == 1 {
        body.put_i64(r.timestamp);
    }
    for field in [&r.key, &r.value] {
        match field {
            None => body.put_i32(-1),
            Some(b) => {
                body.put_i32(b.len() as i32);
                body.put_slice(b);
            }
        }
    }
    out.put_i64(offset);
    out.put_i32(body.len() as i32 + 4);
    out.put_u32(crc32fast::hash(&body));
    out.put_slice(&body);
}

/// Down-converts v2 batches read from a log into a magic-0 or magic-1
/// message set, uncompressed, for fetch v0-3. Records below `from_offset`
/// (the front of the first batch) and control batches are left out; a
/// torn batch at the end (a read cut short) ends the set, as a partial
/// message did for old clients.
pub fn from_batches(batches: &[u8], magic: i8, from_offset: i64) -> Result<Bytes, LegacyError> {
    let mut out = BytesMut::with_capacity(batches.len());
    for item in BatchIter::new(batches) {
        let Ok((pos, h)) = item else { break };
        if h.is_control() || h.last_offset() < from_offset {
            continue;
        }
        let batch = &batches[pos..pos + h.total_size()];
        let log_append = h.timestamp_type() == TimestampType::LogAppendTime;
        for r in v2_records(batch, &h)? {
            if r.offset >= from_offset {
                put_message(&mut out, magic, r.offset, &r, log_append);
            }
        }
    }
    Ok(out.freeze())
}

/// Encodes messages as an old client would send them: one message each,
/// or with a codec one wrapper message holding them all (inner offsets
/// 0..n, the wrapper carrying the last, as magic 1 has it). For tests and
/// tools that speak the old formats.
pub fn encode(magic: i8, codec: Compression, messages: &[Message]) -> Result<Bytes, LegacyError> {
    let mut inner = BytesMut::new();
    for (i, m) in messages.iter().enumerate() {
        let r = V2Record {
            offset: i as i64,
            timestamp: m.timestamp,
            key: m.key.clone(),
            value: m.value.clone(),
        };
        put_message(&mut inner, magic, i as i64, &r, m.log_append_time);
    }
    if codec == Compression::None {
        return Ok(inner.freeze());
    }
    let bits: i8 = match codec {
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        other => return Err(LegacyError::Codec(other as i8)),
    };
    let packed = codec::compress(codec, &inner).map_err(|e| LegacyError::Encode(e.to_string()))?;
    let mut body = BytesMut::new();
    body.put_i8(magic);
    body.put_i8(bits);
    if magic == 1 {
        body.put_i64(messages.iter().map(|m| m.timestamp).max().unwrap_or(-1));
    }
    body.put_i32(-1);
    body.put_i32(packed.len() as i32);
    body.put_slice(&packed);
    let mut out = BytesMut::new();
    out.put_i64(messages.len() as i64 - 1);
    out.put_i32(body.len() as i32 + 4);
    out.put_u32(crc32fast::hash(&body));
    out.put_slice(&body);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_set(magic: i8, codec: Compression, msgs: &[(&[u8], &[u8])]) -> Bytes {
        let messages: Vec<Message> = msgs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Message {
                magic,
                timestamp: 1_700_000_000_000 + i as i64,
                log_append_time: false,
                key: Some(Bytes::copy_from_slice(k)),
                value: Some(Bytes::copy_from_slice(v)),
            })
            .collect();
        encode(magic, codec, &messages).unwrap()
    }

    const MSGS: [(&[u8], &[u8]); 3] = [(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")];

    #[test]
    fn every_magic_and_codec_up_and_down_again() {
        for magic in [0i8, 1] {
            for codec in [
                Compression::None,
                Compression::Gzip,
                Compression::Snappy,
                Compression::Lz4,
            ] {
                let set = decode(&build_set(magic, codec, &MSGS)).unwrap();
                assert_eq!((set.magic, set.codec), (magic, codec));
                assert_eq!(set.messages.len(), 3);
                let batch = to_batch(&set).unwrap();
                let summary =
                    record_batch::validate_batches(&batch, &Default::default(), 1_700_000_000_000)
                        .unwrap();
                assert_eq!(summary.records, 3, "{magic} {codec:?}");
                assert_eq!(
                    record_batch::BatchHeader::parse(&batch)
                        .unwrap()
                        .compression(),
                    Ok(codec)
                );
                // Back down, from offset 1: the first record is left out.
                let down = from_batches(&batch, magic, 1).unwrap();
                let back = decode(&down).unwrap();
                assert_eq!(back.magic, magic);
                let kv: Vec<_> = back
                    .messages
                    .iter()
                    .map(|m| {
                        (
                            m.key.clone().unwrap(),
                            m.value.clone().unwrap(),
                            m.timestamp,
                        )
                    })
                    .collect();
                let ts = |i: i64| {
                    if magic == 1 {
                        1_700_000_000_000 + i
                    } else {
                        -1
                    }
                };
                assert_eq!(
                    kv,
                    vec![
                        (Bytes::from_static(b"k1"), Bytes::from_static(b"v1"), ts(1)),
                        (Bytes::from_static(b"k2"), Bytes::from_static(b"v2"), ts(2)),
                    ],
                    "{magic} {codec:?}"
                );
                // Offsets are absolute in the down-converted set.
                assert_eq!(be_i64(&down[..8]), 1);
            }
        }
    }

    #[test]
    fn bad_sets_are_refused_not_panicked_on() {
        let good = build_set(1, Compression::None, &MSGS);
        // Every truncation but those at a message boundary (each message
        // here is 38 bytes), which leave a shorter valid set.
        for cut in 1..good.len() {
            let r = decode(&good.slice(..cut));
            assert_eq!(r.is_ok(), cut % 38 == 0, "cut at {cut}");
        }
        // A flipped bit anywhere in the first message's CRC'd bytes.
        let mut bad = good.to_vec();
        bad[LOG_OVERHEAD + 10] ^= 1;
        assert!(matches!(
            decode(&Bytes::from(bad)),
            Err(LegacyError::Crc { .. })
        ));
        // A size field claiming 2 GiB.
        let mut bad = good.to_vec();
        bad[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode(&Bytes::from(bad)).is_err());
        // Nothing at all.
        assert!(matches!(decode(&Bytes::new()), Err(LegacyError::EmptySet)));
        // A compressed value that is not what its codec says.
        let mut body = BytesMut::new();
        body.put_i8(0);
        body.put_i8(1);
        body.put_i32(-1);
        body.put_i32(4);
        body.put_slice(b"junk");
        let mut set = BytesMut::new();
        set.put_i64(0);
        set.put_i32(body.len() as i32 + 4);
        set.put_u32(crc32fast::hash(&body));
        set.put_slice(&body);
        assert!(matches!(
            decode(&set.freeze()),
            Err(LegacyError::Decompress(_))
        ));
    }

    #[test]
    fn control_batches_are_not_sent_to_old_clients() {
        let data = to_batch(&decode(&build_set(1, Compression::None, &MSGS)).unwrap()).unwrap();
        let mut m = crate::control::end_txn_marker(
            7,
            0,
            crate::control::ControlType::Commit,
            0,
            1_700_000_000_000,
        );
        let mut both = data.to_vec();
        m[..8].copy_from_slice(&3i64.to_be_bytes());
        both.extend_from_slice(&m);
        let down = from_batches(&both, 1, 0).unwrap();
        assert_eq!(decode(&down).unwrap().messages.len(), 3);
    }
}
