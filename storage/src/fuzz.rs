//! Entry points for the fuzz targets in `fuzz/` and their regression tests:
//! what the broker runs on bytes it reads back from disk (after a crash, a
//! torn write or a flipped bit) or that a client wrote into the log. Each
//! must return whatever the bytes are; what a recovered log serves must
//! pass its checksums.

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use karnak_protocol::record_batch::{BatchIter, check_crc};

use crate::log::producer_state::ProducerStateManager;
use crate::{Log, LogConfig};

/// A log's batches turned into SQL rows (every codec decompressed).
pub fn columnar(data: &[u8]) {
    let mut rows = crate::columnar::RecordsBuilder::new();
    let _ = rows.push_batches(0, &Bytes::copy_from_slice(data), 0, i64::MAX, &[]);
    let _ = rows.finish();
}

/// The cleaner's view of each batch's records (keys, tombstones, headers).
pub fn cleaner_records(data: &[u8]) {
    for (pos, h) in BatchIter::new(data).map_while(Result::ok) {
        let Some(batch) = data.get(pos..pos + h.total_size()) else {
            return;
        };
        if let Ok(records) =
            karnak_protocol::records::BatchRecords::decode_within(batch, &h, 4 << 20)
        {
            for r in &records.records {
                let _ = (records.key(r), records.value(r), records.headers(r).count());
            }
        }
    }
}

/// A producer-state snapshot file.
pub fn producer_snapshot(data: &[u8]) {
    let _ = ProducerStateManager::decode(data);
}

/// The files a partition directory may hold, by the tag byte that names
/// them in a `partition_dir` input.
const PARTITION_FILES: [&str; 11] = [
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "00000000000000000000.snapshot",
    "00000000000000000000.txnindex",
    "00000000000000000100.log",
    "00000000000000000100.index",
    "leader-epoch-checkpoint",
    "log-start-offset-checkpoint",
    // With the marker, segments are opened unchecked and read checks them.
    crate::log::CLEAN_SHUTDOWN_FILE,
    crate::log::RECOVERY_POINT_FILE,
];

/// A partition directory as a crash or a bad disk may leave it: the input
/// is a list of (tag, u16 length, bytes) files. The log is opened
/// (recovered) in a fresh directory under `scratch` and read from its start
/// to its end and by time; every batch it serves must pass its CRC.
pub fn partition_dir(scratch: &Path, data: &[u8]) {
    let dir = scratch.join(format!("p-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut rest = data;
    while let [tag, a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let name = PARTITION_FILES[usize::from(*tag) % PARTITION_FILES.len()];
        let _ = std::fs::write(dir.join(name), &tail[..len]);
        rest = &tail[len..];
    }
    let config = LogConfig {
        preallocate_ahead_bytes: 0,
        ..LogConfig::default()
    };
    if let Ok(log) = Log::open(&dir, "fuzz", 0, config) {
        read_all(&log);
        let _ = log.offset_for_timestamp(0);
        let _ = log.max_timestamp_and_offset();
        let _ = log.end_offset_for_epoch(log.latest_epoch());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn read_all(log: &Log) {
    let mut offset = log.log_start_offset();
    // Each read moves forward by at least one batch; the bound stops a log
    // that would not.
    for _ in 0..10_000 {
        let Ok(r) = log.read(offset, 1 << 20, true) else {
            return;
        };
        let Some(slice) = r.slice else {
            return;
        };
        let mut buf = vec![0u8; slice.len];
        if slice.file.read_exact_at(&mut buf, slice.position).is_err() {
            return;
        }
        let mut next = offset;
        for item in BatchIter::new(&buf) {
            let (pos, h) = item.expect("a recovered log serves whole batches");
            let batch = &buf[pos..pos + h.total_size()];
            assert!(
                check_crc(batch, &h).is_ok(),
                "a recovered log served a batch with a bad CRC at offset {}",
                h.base_offset
            );
            next = next.max(h.next_offset());
        }
        if next <= offset {
            return;
        }
        offset = next;
    }
}

/// A face's Parquet file with a record that vouches for it (what a bug in
/// the writer could leave; a disk's damage fails the record's CRC first):
/// opened and read as a scan would.
pub fn face(scratch: &Path, data: &[u8]) {
    use crate::face::{Face, Manifest, ValueFormat, manifest_path, parquet_path};
    let dir = scratch.join(format!("face-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let manifest = Manifest::vouching_for(data, 0, 1_000);
    let written = std::fs::write(parquet_path(&dir, 0), data)
        .and_then(|()| std::fs::write(manifest_path(&dir, 0), manifest.encode()));
    if written.is_ok()
        && let Ok(face) = Face::open(&dir, 0, 1_000, 0, &ValueFormat::Raw)
        && let Ok(rows) = face.rows(0, 1_000, 100)
    {
        for batch in rows.take(1_000) {
            if batch.is_err() {
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
