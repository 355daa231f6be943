//! Entry points for the fuzz targets in `fuzz/` and their regression tests:
//! each runs what the broker runs on bytes a client sent, and must return
//! (never panic, hang or allocate without bound) whatever the bytes are.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::record_batch::{BatchIter, Compression, ValidationPolicy, check_crc, validate_batches};
use crate::{codec, control, frame, legacy};

/// A request frame (without its size prefix): the header, then the body as
/// the API and version it names, then what the broker checks of a produce
/// request's records, and the pre-0.11 rewrites.
pub fn request(data: &[u8]) {
    let Ok(prefix) = frame::peek_request_prefix(data) else {
        return;
    };
    let Ok(key) = ApiKey::try_from(prefix.api_key) else {
        return;
    };
    let version = prefix.api_version;
    let range = key.valid_versions();
    if version < range.min || version > range.max {
        return;
    }
    let mut buf = Bytes::copy_from_slice(data);
    if RequestHeader::decode(&mut buf, key.request_header_version(version)).is_err() {
        return;
    }
    if legacy::upgrade_target(key, version).is_some() {
        let _ = legacy::upgrade_request(key, version, &buf);
    }
    match key {
        ApiKey::Produce if version <= 2 => {
            if let Ok(req) = legacy::produce::decode_request(&buf, version) {
                produce_records(&req);
            }
        }
        ApiKey::Fetch if version <= 3 => {
            let _ = legacy::fetch::decode_request(&buf, version);
        }
        _ => {}
    }
    if let Ok(RequestKind::Produce(req)) = RequestKind::decode(key, &mut buf, version) {
        produce_records(&req);
    }
}

fn produce_records(req: &kafka_protocol::messages::ProduceRequest) {
    for topic in &req.topic_data {
        for p in &topic.partition_data {
            if let Some(records) = &p.records {
                record_batches(records);
            }
        }
    }
}

/// v2 record batches as a producer sends them: what produce validates, then
/// each batch's CRC and control marker.
pub fn record_batches(data: &[u8]) {
    let _ = validate_batches(data, &ValidationPolicy::default(), 1_700_000_000_000);
    for (pos, h) in BatchIter::new(data).map_while(Result::ok) {
        let Some(batch) = data.get(pos..pos + h.total_size()) else {
            return;
        };
        let _ = check_crc(batch, &h);
        let _ = control::parse_marker(batch, &h);
    }
}

/// Pre-0.11 message sets (magic 0 and 1, compressed wrappers included) and
/// their conversion to a v2 batch.
pub fn message_set(data: &[u8]) {
    if let Ok(set) = legacy::message_set::decode(&Bytes::copy_from_slice(data))
        && let Ok(batch) = legacy::message_set::to_batch(&set)
    {
        record_batches(&batch);
    }
}

/// The decompressors, on a record section: the first byte picks the codec.
pub fn decompress(data: &[u8]) {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let codec = match which % 4 {
        0 => Compression::Gzip,
        1 => Compression::Snappy,
        2 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    let _ = codec::decompress(codec, input, 1 << 20);
}

/// Runs every input kept under `fuzz/regressions/<target>/` through `run`
/// (the crates' regression tests); returns how many there were.
pub fn replay(target: &str, run: impl Fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let input = std::fs::read(entry.path())
            .unwrap_or_else(|e| panic!("reading {}: {e}", entry.path().display()));
        run(&input);
        n += 1;
    }
    n
}
