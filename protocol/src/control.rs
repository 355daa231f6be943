//! Control batches: the transaction markers (COMMIT / ABORT) a transaction
//! coordinator writes into each partition a transaction touched. They are
//! ordinary v2 batches with the control and transactional attribute bits,
//! holding one record whose key names the marker type; clients skip them.
//!
//! Record key:   version:i16 (0) type:i16 (0 = ABORT, 1 = COMMIT)
//! Record value: version:i16 (0) coordinator_epoch:i32

use crate::record_batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, read_varint as varint};

const ATTRIBUTES: i16 = 0x10 | 0x20; // transactional | control

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    pub fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// Builds an end-transaction marker batch (base offset 0; the log assigns it).
pub fn end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut record = vec![0u8, 0, 0]; // attributes, timestamp delta 0, offset delta 0
    record.push(8); // key length 4, zigzag
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&kind.code().to_be_bytes());
    record.push(12); // value length 6, zigzag
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    record.push(0); // no headers
    let mut b = Vec::with_capacity(HEADER_LEN + record.len() + 1);
    b.extend_from_slice(&0i64.to_be_bytes());
    let length = HEADER_LEN - LOG_OVERHEAD + 1 + record.len();
    b.extend_from_slice(&(length as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch, set by the log
    b.push(2);
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // record count
    b.push((record.len() as u8) << 1); // record length, zigzag (fits one byte)
    b.extend_from_slice(&record);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The marker type and coordinator epoch of a control batch (`batch` holds
/// the whole batch). `None` when it is not a well-formed end-txn marker
/// (Kafka has other control types; they are not transaction markers).
pub fn parse_marker(batch: &[u8], h: &BatchHeader) -> Option<(ControlType, i32)> {
    if !h.is_control() || h.compression().ok()? != crate::record_batch::Compression::None {
        return None;
    }
    let mut r = batch.get(HEADER_LEN..)?;
    let (_len, n) = varint(r)?;
    r = r.get(n..)?;
    r = r.get(1..)?; // attributes
    let (_, n) = varint(r)?; // timestamp delta
    r = r.get(n..)?;
    let (_, n) = varint(r)?; // offset delta
    r = r.get(n..)?;
    let (klen, n) = varint(r)?;
    r = r.get(n..)?;
    if klen < 4 {
        return None;
    }
    let key = r.get(..klen as usize)?;
    let kind = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return None,
    };
    r = r.get(klen as usize..)?;
    let (vlen, n) = varint(r)?;
    r = r.get(n..)?;
    let epoch = if vlen >= 6 {
        let v = r.get(..6)?;
        i32::from_be_bytes([v[2], v[3], v[4], v[5]])
    } else {
        -1
    };
    Some((kind, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{ValidationPolicy, validate_batches};
    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn markers_are_valid_batches_that_clients_decode_as_control() {
        for kind in [ControlType::Abort, ControlType::Commit] {
            let b = end_txn_marker(42, 3, kind, 7, 1_700_000_000_000);
            let s = validate_batches(&b, &ValidationPolicy::default(), 1_700_000_000_000).unwrap();
            assert_eq!(s.records, 1);
            let h = BatchHeader::parse(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(parse_marker(&b, &h), Some((kind, 7)));
            // The kafka-protocol client decoder reads it as a control record.
            let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(b.clone())).unwrap();
            let r = &sets[0].records[0];
            assert!(r.control && r.transactional);
            assert_eq!(r.key.as_deref(), Some(&[0, 0, 0, kind.code() as u8][..]));
        }
    }

    #[test]
    fn truncated_markers_parse_as_none() {
        let b = end_txn_marker(1, 0, ControlType::Commit, 0, 0);
        let h = BatchHeader::parse(&b).unwrap();
        for cut in HEADER_LEN..b.len() - 6 {
            // Never panics; a cut before the key is None.
            let _ = parse_marker(&b[..cut], &h);
        }
        assert_eq!(parse_marker(&b[..HEADER_LEN + 3], &h), None);
    }
}
