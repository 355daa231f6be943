//! Helpers shared by the compaction tests: keyed batches in, records and
//! batch headers out through the fetch path (`Log::read`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use karnak_protocol::kafka_protocol::records::RecordBatchDecoder;
use karnak_protocol::record_batch::{BatchHeader, BatchIter, Compression, check_crc};
use karnak_storage::test_support::{KeyValue, keyed_batch};
use karnak_storage::{CleanupPolicy, Log, LogConfig};

/// Record timestamps (2023): far from the test clocks' "now" unless a
/// test says otherwise.
pub const T: i64 = 1_700_000_000_000;

/// The wall clock (ms): producer state expires producers idle for a day
/// of wall time, so tests of producer state stamp their batches with it.
pub fn wall() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A compacted log's config: small segments, an index entry per batch.
pub fn compact_cfg(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 0,
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

pub fn open(dir: &std::path::Path, cfg: LogConfig) -> Log {
    Log::open(dir, "t", 0, cfg).unwrap()
}

pub fn recs<'a>(pairs: &'a [(&'a str, Option<&'a str>)]) -> Vec<KeyValue<'a>> {
    pairs
        .iter()
        .map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes)))
        .collect()
}

/// Appends one uncompressed batch of `pairs`; returns its base offset.
pub fn put(log: &Log, ts: i64, pairs: &[(&str, Option<&str>)]) -> i64 {
    put_with(log, ts, pairs, Compression::None, None)
}

pub fn put_with(
    log: &Log,
    ts: i64,
    pairs: &[(&str, Option<&str>)],
    codec: Compression,
    producer: Option<(i64, i16, i32, bool)>,
) -> i64 {
    let b = keyed_batch(ts, &recs(pairs), codec, producer);
    log.append(&Bytes::from(b), 0, None).unwrap().base_offset
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

impl Rec {
    pub fn kv(&self) -> (String, Option<String>) {
        let s = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
        (
            self.key.as_ref().map(s).unwrap_or_default(),
            self.value.as_ref().map(s),
        )
    }
}

/// Every batch from the log start to its end through `Log::read`, each
/// checked (CRC, decodable), and the data records they hold.
pub fn read_all(log: &Log) -> (Vec<Rec>, Vec<BatchHeader>) {
    let (mut out, mut headers) = (Vec::new(), Vec::new());
    let mut off = log.log_start_offset();
    let leo = log.log_end_offset();
    while off < leo {
        let r = log.read(off, 1 << 20, true).unwrap();
        let Some(s) = r.slice else { break };
        let mut buf = vec![0u8; s.len];
        s.file.read_exact_at(&mut buf, s.position).unwrap();
        let buf = Bytes::from(buf);
        for item in BatchIter::new(&buf) {
            let (pos, h) = item.unwrap();
            let batch = buf.slice(pos..pos + h.total_size());
            check_crc(&batch, &h).unwrap();
            assert!(h.next_offset() > off, "batches move forward");
            off = h.next_offset();
            headers.push(h);
            if h.is_control() {
                continue;
            }
            let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
            assert_eq!(set.records.len(), h.record_count as usize);
            for r in set.records {
                out.push(Rec {
                    offset: r.offset,
                    key: r.key.map(|b| b.to_vec()),
                    value: r.value.map(|b| b.to_vec()),
                    timestamp: r.timestamp,
                });
            }
        }
    }
    (out, headers)
}

pub fn records(log: &Log) -> Vec<Rec> {
    read_all(log).0
}

/// The newest record per key.
pub fn latest(recs: &[Rec]) -> BTreeMap<Vec<u8>, Rec> {
    let mut m = BTreeMap::new();
    for r in recs {
        if let Some(k) = &r.key {
            m.insert(k.clone(), r.clone());
        }
    }
    m
}

/// Names of the files in `dir` with one of `suffixes`.
pub fn files_with(dir: &std::path::Path, suffixes: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| suffixes.iter().any(|s| n.ends_with(s)))
        .collect();
    v.sort();
    v
}
