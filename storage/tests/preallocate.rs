//! Blocks reserved ahead of the active segment's write position: present
//! while it is written, invisible in its length, never more than the
//! segment holds, the cap or the roll size, released when the segment is sealed
//! (by a roll, a clean close, or after a crash left them behind).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use karnak_storage::segment::PREALLOCATE_AHEAD;
use karnak_storage::test_support::build_batch;
use karnak_storage::{Log, LogConfig};

const T: i64 = 1_700_000_000_000;

/// (length, bytes allocated on disk) of a segment file.
fn usage(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.len(), m.blocks() * 512)
}

fn seg(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// One 1 KiB record per batch; returns the batch length.
fn append(log: &Log, n: usize) -> u64 {
    let b = build_batch(T, &[&[5u8; 1024]]);
    for _ in 0..n {
        log.append(&Bytes::from(b.clone()), 0, None).unwrap();
    }
    b.len() as u64
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        ..Default::default()
    }
}

/// A sealed file holds its data's blocks and at most one block more.
fn assert_released(path: &Path) {
    let (len, alloc) = usage(path);
    assert!(
        alloc <= len.next_multiple_of(4096) + 4096,
        "{}: {alloc} bytes allocated for {len} written",
        path.display()
    );
}

#[test]
fn active_segment_reserves_ahead_and_a_roll_releases() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), "t", 0, cfg()).unwrap();
    let batch = append(&log, 1);
    let (len, alloc) = usage(&seg(d.path(), 0));
    assert_eq!(len, batch, "the reservation does not change the length");
    assert!(alloc >= 8192, "{alloc} bytes allocated for {len} written");
    append(&log, 9);
    let (len, alloc) = usage(&seg(d.path(), 0));
    assert_eq!(len, 10 * batch);
    assert!(alloc <= 2 * len + 8192, "{alloc} bytes allocated for {len}");
    // Fill past 64 KiB: the first segment is sealed and gives blocks back.
    let per_seg = (64 << 10) / batch;
    append(&log, per_seg as usize);
    assert!(seg(d.path(), per_seg as i64).exists());
    assert_released(&seg(d.path(), 0));
    // Reads see exactly what was written.
    assert_eq!(log.log_end_offset(), 10 + per_seg as i64);
    let r = log.read(0, 1 << 20, false).unwrap();
    assert_eq!(r.slice.unwrap().len as u64, per_seg * batch);
}

#[test]
fn the_reservation_stops_at_the_roll_size() {
    // Blocks past segment.bytes would never be written, only taken from a
    // disk that may be nearly full until the segment is sealed.
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), "t", 0, cfg()).unwrap();
    let batch = append(&log, 1);
    for _ in 1..(64 << 10) / batch {
        append(&log, 1);
        let (len, alloc) = usage(&seg(d.path(), 0));
        assert!(
            alloc <= (64 << 10) + 4096,
            "{alloc} bytes allocated for {len} written in a 64 KiB segment"
        );
    }
}

#[test]
fn clean_close_releases_and_a_crash_leftover_is_released_at_the_next_seal() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), "t", 0, cfg()).unwrap();
    append(&log, 5);
    log.close().unwrap();
    drop(log);
    assert_released(&seg(d.path(), 0));

    // Reopen, append, then drop without close: the reservation outlives it.
    let log = Log::open(d.path(), "t", 0, cfg()).unwrap();
    let batch = append(&log, 1);
    drop(log);
    let (len, alloc) = usage(&seg(d.path(), 0));
    assert!(
        alloc > len.next_multiple_of(4096) + 4096,
        "{alloc} for {len}"
    );
    // Recovery keeps the data and ignores the blocks past the end; the
    // roll that follows releases them.
    let log = Log::open(d.path(), "t", 0, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    let to_roll = (64 << 10) / batch - 6 + 1;
    append(&log, to_roll as usize);
    assert!(seg(d.path(), ((64 << 10) / batch) as i64).exists());
    assert_released(&seg(d.path(), 0));
    assert_eq!(usage(&seg(d.path(), 0)).0, ((64 << 10) / batch) * batch);
}

#[test]
fn a_busy_segment_reserves_up_to_the_cap_and_zero_turns_it_off() {
    let d = tempfile::tempdir().unwrap();
    let big = Bytes::from(build_batch(T, &[&vec![9u8; 1_000_000]]));
    let cfg = LogConfig {
        segment_bytes: 64 << 20,
        ..Default::default()
    };
    let log = Log::open(&d.path().join("on"), "t", 0, cfg.clone()).unwrap();
    let mut most_ahead = 0;
    for _ in 0..20 {
        log.append(&big, 0, None).unwrap();
        let (len, alloc) = usage(&seg(&d.path().join("on"), 0));
        assert!(alloc <= len + PREALLOCATE_AHEAD + 8192, "{alloc} for {len}");
        most_ahead = most_ahead.max(alloc - len);
    }
    assert!(most_ahead > PREALLOCATE_AHEAD / 2, "{most_ahead}");

    let off = LogConfig {
        preallocate_ahead_bytes: 0,
        ..cfg
    };
    let log = Log::open(&d.path().join("off"), "t", 0, off).unwrap();
    for _ in 0..3 {
        log.append(&big, 0, None).unwrap();
    }
    assert_released(&seg(&d.path().join("off"), 0));
}
