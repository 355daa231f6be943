//! Builders of v2 batches for tests (here and in the broker's tests).

use karnak_protocol::record_batch::{HEADER_LEN, LOG_OVERHEAD};

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

/// An uncompressed CreateTime v2 batch of `values` (no keys, no headers);
/// record i has timestamp `base_ts + i`.
pub fn build_batch(base_ts: i64, values: &[&[u8]]) -> Vec<u8> {
    let mut recs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut body = vec![0u8];
        put_varint(&mut body, i as i64); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        put_varint(&mut body, -1);
        put_varint(&mut body, v.len() as i64);
        body.extend_from_slice(v);
        put_varint(&mut body, 0);
        put_varint(&mut recs, body.len() as i64);
        recs.extend_from_slice(&body);
    }
    let n = values.len() as i32;
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + recs.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&(base_ts + n as i64 - 1).to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&recs);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// `build_batch` written by a producer: id, epoch, base sequence, and the
/// transactional bit.
pub fn producer_batch(
    base_ts: i64,
    values: &[&[u8]],
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    transactional: bool,
) -> Vec<u8> {
    let mut b = build_batch(base_ts, values);
    if transactional {
        b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    }
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A record's key and value (`None`: null).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// A CreateTime v2 batch of keyed records (`None` key or value: null),
/// records section compressed with `codec`; record i has timestamp
/// `base_ts + i`. `producer`: (id, epoch, base sequence, transactional).
pub fn keyed_batch(
    base_ts: i64,
    records: &[KeyValue<'_>],
    codec: karnak_protocol::record_batch::Compression,
    producer: Option<(i64, i16, i32, bool)>,
) -> Vec<u8> {
    use karnak_protocol::record_batch::Compression;
    let mut recs = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut body = vec![0u8];
        put_varint(&mut body, i as i64); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        for field in [k, v] {
            match field {
                Some(b) => {
                    put_varint(&mut body, b.len() as i64);
                    body.extend_from_slice(b);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut body, 0);
        put_varint(&mut recs, body.len() as i64);
        recs.extend_from_slice(&body);
    }
    let section = karnak_protocol::codec::compress(codec, &recs).expect("compress");
    let n = records.len() as i32;
    let (pid, epoch, seq, txn) = producer.unwrap_or((-1, -1, -1, false));
    let codec_bits: i16 = match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let attributes = codec_bits | if txn { 0x10 } else { 0 };
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + section.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&(base_ts + n as i64 - 1).to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&section);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}
