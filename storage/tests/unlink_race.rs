//! A fetch takes a segment region (a `FileSlice`: the open file, a
//! position, a length) under the log's locks and sends it later by
//! `sendfile`, without them. Retention, DeleteRecords and topic deletion
//! may unlink that segment in between. The response must still carry the
//! same whole batches: the slice holds the file open and Linux frees an
//! unlinked file's blocks only when its last descriptor closes. A slice
//! that re-opened its segment by path, or a deletion that truncated files
//! before unlinking them, fails these.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use karnak_protocol::record_batch::{BatchIter, check_crc};
use karnak_storage::test_support::build_batch;
use karnak_storage::{FileSlice, Log, LogConfig, LogManager};

const T: i64 = 1_700_000_000_000;

/// Sends the slice as the broker's writer does (`sendfile(2)` from the
/// slice's descriptor) through a socket pair, and returns what arrived.
fn sendfile(slice: &FileSlice) -> Vec<u8> {
    let (tx, mut rx) = UnixStream::pair().unwrap();
    let slice = slice.clone();
    let sender = std::thread::spawn(move || {
        let mut pos = slice.position;
        let mut left = slice.len;
        while left > 0 {
            let n = rustix::fs::sendfile(&tx, &*slice.file, Some(&mut pos), left).unwrap();
            assert!(n > 0, "sendfile hit the end of the file {left} bytes early");
            left -= n;
        }
    });
    let mut out = Vec::new();
    rx.read_to_end(&mut out).unwrap();
    sender.join().unwrap();
    out
}

/// Every batch whole, its CRC right, offsets dense from `from`; returns
/// the offset after the last.
fn check_batches(buf: &[u8], from: i64) -> i64 {
    let mut next = from;
    let mut end = 0;
    for item in BatchIter::new(buf) {
        let (pos, h) = item.expect("a whole batch");
        check_crc(&buf[pos..pos + h.total_size()], &h).expect("the batch's CRC");
        assert_eq!(h.base_offset, next, "offsets not dense");
        next = h.next_offset();
        end = pos + h.total_size();
    }
    assert_eq!(end, buf.len(), "a torn batch at the end of the slice");
    next
}

/// `n` batches of 2 records.
fn fill(log: &Log, n: usize) {
    for i in 0..n {
        let b = build_batch(T + i as i64, &[format!("value-{i}").as_bytes(), b"x"]);
        log.append(&Bytes::from(b), 0, None).unwrap();
    }
}

/// The slice's bytes as the log holds them (offsets and epochs assigned).
fn pread(slice: &FileSlice) -> Vec<u8> {
    let mut buf = vec![0u8; slice.len];
    slice.file.read_exact_at(&mut buf, slice.position).unwrap();
    buf
}

fn segment_file(dir: &std::path::Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

#[test]
fn a_slice_outlives_retention_deleting_its_segment() {
    let d = tempfile::tempdir().unwrap();
    let one = build_batch(T, &[b"value-0", b"x"]).len() as u64;
    let log = Log::open(
        d.path(),
        "t",
        0,
        LogConfig {
            segment_bytes: one * 4,
            retention_ms: 1000,
            ..Default::default()
        },
    )
    .unwrap();
    fill(&log, 12);
    let slice = log.read(0, 1 << 20, true).unwrap().slice.unwrap();
    let before = pread(&slice);
    assert!(segment_file(d.path(), 0).exists());
    assert!(log.enforce_retention(T + 1_000_000).unwrap() >= 1);
    assert!(log.log_start_offset() > 0);
    assert!(
        !segment_file(d.path(), 0).exists(),
        "retention left the file"
    );
    let sent = sendfile(&slice);
    assert_eq!(sent, before, "the deleted segment's bytes changed");
    assert!(check_batches(&sent, 0) > 0);
}

#[test]
fn a_slice_outlives_delete_records_and_topic_deletion() {
    let d = tempfile::tempdir().unwrap();
    let one = build_batch(T, &[b"value-0", b"x"]).len() as u64;
    let m = LogManager::open(
        d.path(),
        LogConfig {
            segment_bytes: one * 4,
            ..Default::default()
        },
    )
    .unwrap();
    m.create_topic("doomed", 1, BTreeMap::new()).unwrap();
    let log = m.log("doomed", 0).unwrap();
    // 12 batches of 2 records, 4 batches to a segment: offsets 0-7, 8-15, 16-23.
    fill(&log, 12);
    let head = log.read(0, 1 << 20, true).unwrap().slice.unwrap();
    let tail = log.read(16, 1 << 20, true).unwrap().slice.unwrap();
    let (head_bytes, tail_bytes) = (pread(&head), pread(&tail));
    // DeleteRecords past the first segment unlinks it.
    assert_eq!(log.delete_records_before(9).unwrap(), 9);
    assert!(!segment_file(&d.path().join("doomed-0"), 0).exists());
    // Deleting the topic removes the partition's directory, the active
    // segment with it.
    drop(log);
    m.delete_topic("doomed").unwrap();
    assert!(!d.path().join("doomed-0").exists());
    assert_eq!(sendfile(&head), head_bytes);
    let sent = sendfile(&tail);
    assert_eq!(sent, tail_bytes);
    assert!(check_batches(&sent, 16) > 16);
}

/// Readers and retention at once: every slice taken, whenever its
/// segment is deleted, arrives as whole batches with dense offsets from
/// where it was asked, whatever retention did meanwhile (before the fix
/// in `segments_from`, a read whose segment went between the start check
/// and the lookup served the next segment: offsets skipped). Bounded by
/// the writer's count.
#[test]
fn reads_racing_retention_send_whole_batches() {
    let d = tempfile::tempdir().unwrap();
    let one = build_batch(T, &[b"value-0", b"x"]).len() as u64;
    let log = Arc::new(
        Log::open(
            d.path(),
            "t",
            0,
            LogConfig {
                segment_bytes: one * 3,
                retention_bytes: (one * 6) as i64,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    fill(&log, 6);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut deleted = 0;
            for i in 6..1_500 {
                let b = build_batch(T + i, &[format!("value-{i}").as_bytes(), b"x"]);
                log.append(&Bytes::from(b), 0, None).unwrap();
                deleted += log.enforce_retention(T + i).unwrap();
            }
            stop.store(true, Ordering::Release);
            deleted
        })
    };
    let mut sent = 0;
    let mut records = 0;
    while !stop.load(Ordering::Acquire) || sent < 50 {
        let from = log.log_start_offset();
        let slice = match log.read(from, 1 << 20, true) {
            Ok(r) => r.slice,
            // Retention moved the start past `from` between the two calls.
            Err(karnak_storage::StorageError::OffsetOutOfRange { .. }) => continue,
            Err(e) => panic!("read at {from}: {e}"),
        };
        let Some(slice) = slice else { continue };
        let bytes = sendfile(&slice);
        let next = check_batches(&bytes, from);
        assert!(next > from);
        records += next - from;
        sent += 1;
    }
    let deleted = writer.join().unwrap();
    assert!(deleted > 100, "retention deleted only {deleted} segments");
    assert!(
        sent >= 50 && records >= 100,
        "{sent} slices, {records} records"
    );
}
