//! The cleaner's side of a batch's records: batches rebuilt from a subset
//! of their records with every header field kept (base offset, last offset
//! delta, producer id/epoch, base sequence, leader epoch, codec), and the
//! compacted-topic produce check. The records are read with
//! [`karnak_protocol::records`]; a kept record's bytes after its timestamp
//! delta are copied as they are.

use karnak_protocol::record_batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, TimestampType};
pub use karnak_protocol::records::BatchRecords;

use karnak_protocol::codec;

/// Attributes bit 6 (KIP-534): the batch's base timestamp holds the time
/// after which its tombstones and its marker may be removed.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const CRC_START: usize = 21;

/// The delete horizon of a batch (KIP-534), if one was set.
pub fn delete_horizon(h: &BatchHeader) -> Option<i64> {
    (h.attributes & ATTR_DELETE_HORIZON != 0).then_some(h.base_timestamp)
}

/// Whether a data batch holds a record with a null key (refused on
/// compacted topics). Control batches are never checked.
pub fn has_keyless_record(batch: &[u8], h: &BatchHeader) -> Result<bool, String> {
    if h.is_control() {
        return Ok(false);
    }
    // A produced batch's base offset is the client's, not assigned yet.
    let unassigned = BatchHeader {
        base_offset: 0,
        ..*h
    };
    let recs = BatchRecords::decode(batch, &unassigned).map_err(|e| e.to_string())?;
    Ok(recs.records.iter().any(|r| !r.has_key()))
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Writes a batch with `h`'s base offset, last offset delta, leader epoch,
/// producer fields and base sequence, and the given other fields.
fn assemble(
    h: &BatchHeader,
    attributes: i16,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    section: &[u8],
) -> Result<Vec<u8>, String> {
    let length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + section.len())
        .map_err(|_| format!("rebuilt batch of {} bytes is too large", section.len()))?;
    let mut b = Vec::with_capacity(HEADER_LEN + section.len());
    b.extend_from_slice(&h.base_offset.to_be_bytes());
    b.extend_from_slice(&length.to_be_bytes());
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(section);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// The batch rebuilt with only the records where `keep` is true, under
/// the same codec; with `horizon`, the delete-horizon bit is set and the
/// base timestamp carries it (record timestamps are re-expressed against
/// it, so every record keeps its timestamp).
pub fn rebuild(
    h: &BatchHeader,
    recs: &BatchRecords<'_>,
    keep: &[bool],
    horizon: Option<i64>,
) -> Result<Vec<u8>, String> {
    debug_assert_eq!(keep.len(), recs.records.len());
    let codec = h.compression().map_err(|e| e.to_string())?;
    let base_ts = horizon.unwrap_or(h.base_timestamp);
    let mut attributes = h.attributes;
    if horizon.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let mut raw = Vec::with_capacity(recs.section_len());
    let mut body = Vec::new();
    let mut count = 0i32;
    let mut max_ts = -1i64;
    for (r, _) in recs.records.iter().zip(keep).filter(|(_, k)| **k) {
        let ts = recs.timestamp(r);
        max_ts = max_ts.max(ts);
        body.clear();
        body.push(recs.attributes(r));
        put_varint(&mut body, ts.wrapping_sub(base_ts));
        body.extend_from_slice(recs.after_timestamp(r));
        put_varint(&mut raw, body.len() as i64);
        raw.extend_from_slice(&body);
        count += 1;
    }
    // LogAppendTime batches (and markers) keep the broker's stamp.
    if h.timestamp_type() == TimestampType::LogAppendTime || h.is_control() || count == 0 {
        max_ts = h.max_timestamp;
    }
    let section = codec::compress(codec, &raw).map_err(|e| e.to_string())?;
    assemble(h, attributes, base_ts, max_ts, count, &section)
}

/// A batch with `h`'s offsets and producer fields and no records: what is
/// left of a producer's last batch once its records are cleaned away,
/// kept so its sequence and epoch survive (Kafka's empty batches).
pub fn empty_batch(h: &BatchHeader) -> Vec<u8> {
    let attributes = h.attributes & !(ATTR_COMPRESSION_MASK | ATTR_DELETE_HORIZON);
    // An empty section cannot fail to assemble.
    assemble(h, attributes, -1, h.max_timestamp, 0, &[]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use karnak_protocol::kafka_protocol::records::{
        Compression as KCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType as KTs,
    };
    use karnak_protocol::record_batch::Compression;
    use karnak_protocol::record_batch::check_crc;

    pub(crate) fn batch(
        keys: &[Option<&str>],
        values: &[Option<&str>],
        c: KCompression,
    ) -> Vec<u8> {
        let recs: Vec<Record> = keys
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 3,
                producer_id: 42,
                producer_epoch: 1,
                timestamp_type: KTs::Creation,
                offset: 100 + i as i64,
                sequence: 7 + i as i32,
                timestamp: 1_000 + 10 * i as i64,
                key: k.map(|s| bytes::Bytes::copy_from_slice(s.as_bytes())),
                value: v.map(|s| bytes::Bytes::copy_from_slice(s.as_bytes())),
                headers: Default::default(),
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

    fn codecs() -> [KCompression; 5] {
        [
            KCompression::None,
            KCompression::Gzip,
            KCompression::Snappy,
            KCompression::Lz4,
            KCompression::Zstd,
        ]
    }

    #[test]
    fn rebuilt_batches_keep_header_fields_and_record_timestamps() {
        for c in codecs() {
            let b = batch(
                &[Some("a"), Some("b"), Some("c")],
                &[Some("1"), None, Some("3")],
                c,
            );
            let h = BatchHeader::parse(&b).unwrap();
            let recs = BatchRecords::decode(&b, &h).unwrap();
            assert_eq!(recs.records.len(), 3);
            assert_eq!(recs.key(&recs.records[1]), Some(&b"b"[..]));
            assert!(!recs.records[1].has_value());
            for horizon in [None, Some(5_000)] {
                let out = rebuild(&h, &recs, &[false, true, true], horizon).unwrap();
                let nh = BatchHeader::parse(&out).unwrap();
                check_crc(&out, &nh).unwrap();
                assert_eq!(nh.base_offset, 100);
                assert_eq!(nh.last_offset_delta, 2);
                assert_eq!((nh.producer_id, nh.producer_epoch), (42, 1));
                assert_eq!(nh.base_sequence, h.base_sequence);
                assert_eq!(nh.partition_leader_epoch, h.partition_leader_epoch);
                assert_eq!(nh.compression(), h.compression());
                assert_eq!(nh.record_count, 2);
                assert_eq!(delete_horizon(&nh), horizon);
                let set = RecordBatchDecoder::decode(&mut bytes::Bytes::from(out)).unwrap();
                let got: Vec<(i64, i64)> = set
                    .records
                    .iter()
                    .map(|r| (r.offset, r.timestamp))
                    .collect();
                assert_eq!(got, vec![(101, 1_010), (102, 1_020)], "{c:?} {horizon:?}");
                assert!(set.records[0].value.is_none());
            }
        }
    }

    #[test]
    fn empty_batches_keep_offsets_and_producer_fields() {
        let b = batch(
            &[Some("a"), Some("b")],
            &[Some("1"), Some("2")],
            KCompression::Zstd,
        );
        let h = BatchHeader::parse(&b).unwrap();
        let e = empty_batch(&h);
        let nh = BatchHeader::parse(&e).unwrap();
        check_crc(&e, &nh).unwrap();
        assert_eq!(
            (nh.base_offset, nh.last_offset()),
            (h.base_offset, h.last_offset())
        );
        assert_eq!((nh.record_count, nh.total_size()), (0, HEADER_LEN));
        assert_eq!(nh.compression(), Ok(Compression::None));
        assert_eq!(BatchRecords::decode(&e, &nh).unwrap().records.len(), 0);
    }

    #[test]
    fn keyless_records_are_found_in_every_codec() {
        for c in codecs() {
            let keyed = batch(&[Some("a"), Some("b")], &[Some("1"), Some("2")], c);
            let keyless = batch(&[Some("a"), None], &[Some("1"), Some("2")], c);
            let h = BatchHeader::parse(&keyed).unwrap();
            assert!(!has_keyless_record(&keyed, &h).unwrap());
            let h = BatchHeader::parse(&keyless).unwrap();
            assert!(has_keyless_record(&keyless, &h).unwrap());
        }
    }
}
