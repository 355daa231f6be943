use std::io::Write;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use karnak_protocol::record_batch::{BatchHeader, BatchIter};
use karnak_storage::test_support::build_batch;
use karnak_storage::{Log, LogConfig, StorageError};

const T: i64 = 1_700_000_000_000;

fn slice_bytes(r: &karnak_storage::ReadResult) -> Vec<u8> {
    let s = r.slice.as_ref().expect("slice");
    let mut buf = vec![0u8; s.len];
    s.file.read_exact_at(&mut buf, s.position).unwrap();
    buf
}

fn headers(buf: &[u8]) -> Vec<BatchHeader> {
    BatchIter::new(buf).map(|r| r.unwrap().1).collect()
}

fn open(dir: &std::path::Path, cfg: LogConfig) -> Log {
    Log::open(dir, "t", 0, cfg).unwrap()
}

/// Appends `n` batches of 3 records each, returning the raw batches.
fn fill(log: &Log, n: usize, ts: i64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let b = build_batch(
                ts + 10 * i as i64,
                &[b"aaaa", b"bbbbbbbb", format!("value-{i}").as_bytes()],
            );
            log.append(&Bytes::from(b.clone()), 5, None).unwrap();
            b
        })
        .collect()
}

#[test]
fn append_read_round_trip_assigns_offsets() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), LogConfig::default());
    let mut two = build_batch(T, &[b"a", b"b"]);
    two.extend(build_batch(T, &[b"c"]));
    let info = log.append(&Bytes::from(two.clone()), 7, None).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.log_append_time),
        (0, 2, -1)
    );
    let info = log
        .append(&Bytes::from(build_batch(T, &[b"d", b"e", b"f"])), 7, None)
        .unwrap();
    assert_eq!((info.base_offset, info.last_offset), (3, 5));
    assert_eq!((log.log_end_offset(), log.high_watermark()), (6, 6));

    let r = log.read(0, 1 << 20, false).unwrap();
    let got = slice_bytes(&r);
    let hs = headers(&got);
    assert_eq!(
        hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 2, 3]
    );
    assert!(hs.iter().all(|h| h.partition_leader_epoch == 7));
    // Byte-exact apart from base offset and epoch.
    let mut expect = two.clone();
    expect.extend(build_batch(T, &[b"d", b"e", b"f"]));
    let mut patched = got.clone();
    for (pos, _) in BatchIter::new(&got).map(|r| r.unwrap()) {
        patched[pos..pos + 8].copy_from_slice(&0i64.to_be_bytes());
        patched[pos + 12..pos + 16].copy_from_slice(&(-1i32).to_be_bytes());
    }
    assert_eq!(patched, expect);
    assert_eq!(log.size_bytes(), expect.len() as u64);
    // Reading from the middle of a batch returns that batch.
    let r = log.read(4, 1 << 20, false).unwrap();
    assert_eq!(headers(&slice_bytes(&r))[0].base_offset, 3);
    let r = log.read(1, 1 << 20, false).unwrap();
    assert_eq!(headers(&slice_bytes(&r))[0].base_offset, 0);
}

#[test]
fn read_edges_and_out_of_range() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), LogConfig::default());
    assert!(log.read(0, 100, true).unwrap().slice.is_none());
    fill(&log, 2, T);
    let r = log.read(6, 100, true).unwrap();
    assert!(r.slice.is_none());
    assert_eq!(r.high_watermark, 6);
    for bad in [-1, 7, 100] {
        match log.read(bad, 100, true) {
            Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: 0,
                log_end_offset: 6,
            }) => {
                assert_eq!(offset, bad)
            }
            other => panic!("{bad}: {:?}", other.map(|r| r.high_watermark)),
        }
    }
}

#[test]
fn max_bytes_cuts_at_batch_boundaries_and_kip74() {
    let d = tempfile::tempdir().unwrap();
    let log = open(
        d.path(),
        LogConfig {
            index_interval_bytes: 1,
            ..Default::default()
        },
    );
    let batches = fill(&log, 10, T);
    let size = batches[0].len();
    assert!(batches.iter().all(|b| b.len() == size));
    let r = log.read(0, size * 3 + size / 2, false).unwrap();
    assert_eq!(r.slice.as_ref().unwrap().len, size * 3);
    let r = log.read(3, size * 2, false).unwrap();
    let s = r.slice.as_ref().unwrap();
    assert_eq!((s.position, s.len), (size as u64, size * 2));
    // First batch larger than max_bytes: whole when min_one_batch, else nothing.
    let r = log.read(6, size - 1, true).unwrap();
    assert_eq!(r.slice.as_ref().unwrap().len, size);
    assert!(log.read(6, size - 1, false).unwrap().slice.is_none());
    assert_eq!(
        headers(&slice_bytes(&log.read(29, 10, true).unwrap()))[0].base_offset,
        27
    );
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let d = tempfile::tempdir().unwrap();
    let size = build_batch(T, &[b"aaaa", b"bbbbbbbb", b"value-0"]).len() as u64;
    let cfg = LogConfig {
        segment_bytes: size * 3,
        index_interval_bytes: 1,
        ..Default::default()
    };
    let log = open(d.path(), cfg.clone());
    fill(&log, 10, T);
    let mut logs: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        vec![
            "00000000000000000000.log",
            "00000000000000000009.log",
            "00000000000000000018.log",
            "00000000000000000027.log"
        ]
    );
    // Sealed segment indexes are trimmed (2 entries: batches 2 and 3).
    assert_eq!(
        std::fs::metadata(d.path().join("00000000000000000000.index"))
            .unwrap()
            .len(),
        16
    );
    // A read stops at the segment end; the next read moves on.
    let r = log.read(3, 1 << 20, false).unwrap();
    let hs = headers(&slice_bytes(&r));
    assert_eq!(
        hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![3, 6]
    );
    let r = log.read(9, 1 << 20, false).unwrap();
    assert_eq!(headers(&slice_bytes(&r))[0].base_offset, 9);
    for off in 0..30 {
        let r = log.read(off, 1 << 20, false).unwrap();
        let h = headers(&slice_bytes(&r))[0];
        assert!(h.base_offset <= off && off <= h.last_offset(), "{off}");
    }
    // A batch larger than segment_bytes still goes into an empty segment.
    let big = build_batch(T, &[&vec![7u8; 4 * size as usize]]);
    let info = log.append(&Bytes::from(big.clone()), 0, None).unwrap();
    assert_eq!(info.base_offset, 30);
    assert_eq!(
        slice_bytes(&log.read(30, 1, true).unwrap()).len(),
        big.len()
    );
    log.close().unwrap();
    let log = open(d.path(), cfg);
    assert_eq!(log.log_end_offset(), 31);
    assert_eq!(
        headers(&slice_bytes(&log.read(13, 1 << 20, false).unwrap()))[0].base_offset,
        12
    );
}

#[test]
fn reopen_after_clean_close_continues() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 100,
        ..Default::default()
    };
    let log = open(d.path(), cfg.clone());
    fill(&log, 20, T);
    let before = slice_bytes(&log.read(0, 1 << 20, false).unwrap());
    log.close().unwrap();
    assert!(
        log.append(&Bytes::from(build_batch(T, &[b"x"])), 0, None)
            .is_err()
    );
    assert!(d.path().join(".karnak_clean_shutdown").exists());
    drop(log);
    let log = open(d.path(), cfg);
    assert!(!d.path().join(".karnak_clean_shutdown").exists());
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(slice_bytes(&log.read(0, 1 << 20, false).unwrap()), before);
    assert_eq!(
        log.append(&Bytes::from(build_batch(T, &[b"x"])), 0, None)
            .unwrap()
            .base_offset,
        60
    );
    assert_eq!(
        headers(&slice_bytes(&log.read(60, 1 << 20, false).unwrap()))[0].base_offset,
        60
    );
    assert_eq!(
        headers(&slice_bytes(&log.read(31, 1 << 20, false).unwrap()))[0].base_offset,
        30
    );
}

fn active_log_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("00000000000000000000.log")
}

#[test]
fn crash_recovery_truncates_torn_and_corrupt_tails() {
    let good = build_batch(T, &[b"next"]);
    type Damage = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, Damage)> = vec![
        ("garbage", Box::new(|_| vec![0xAB; 100])),
        ("half batch", Box::new(|b| b[..b.len() / 2].to_vec())),
        ("short header", Box::new(|b| b[..20].to_vec())),
        (
            "crc flipped",
            Box::new(|b| {
                let mut b = b.to_vec();
                let n = b.len() - 1;
                b[n] ^= 1;
                b
            }),
        ),
    ];
    for (name, make) in cases {
        let d = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            index_interval_bytes: 50,
            ..Default::default()
        };
        let log = open(d.path(), cfg.clone());
        fill(&log, 5, T);
        let good_len = std::fs::metadata(active_log_file(d.path())).unwrap().len();
        drop(log); // no close: an unclean shutdown
        let mut tail = build_batch(T, &[b"torn"]);
        tail[..8].copy_from_slice(&15i64.to_be_bytes());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(active_log_file(d.path()))
            .unwrap();
        f.write_all(&make(&tail)).unwrap();
        drop(f);
        let log = open(d.path(), cfg);
        assert_eq!(
            std::fs::metadata(active_log_file(d.path())).unwrap().len(),
            good_len,
            "{name}"
        );
        assert_eq!(log.log_end_offset(), 15, "{name}");
        let info = log.append(&Bytes::from(good.clone()), 0, None).unwrap();
        assert_eq!(info.base_offset, 15, "{name}");
        let r = log.read(15, 1 << 20, false).unwrap();
        assert_eq!(headers(&slice_bytes(&r))[0].base_offset, 15, "{name}");
        assert_eq!(
            headers(&slice_bytes(&log.read(7, 1 << 20, false).unwrap()))[0].base_offset,
            6,
            "{name}"
        );
    }
}

#[test]
fn crc_flip_inside_an_indexed_region_is_caught_without_marker() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 1,
        ..Default::default()
    };
    let log = open(d.path(), cfg.clone());
    let batches = fill(&log, 5, T);
    drop(log);
    // Corrupt the last batch's payload in place (its index entry stays valid).
    let size = batches[0].len() as u64;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(active_log_file(d.path()))
        .unwrap();
    f.write_all_at(b"Z", 4 * size + size - 3).unwrap();
    drop(f);
    let log = open(d.path(), cfg);
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.size_bytes(), 4 * size);
}

#[test]
fn missing_index_is_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let size = build_batch(T, &[b"aaaa", b"bbbbbbbb", b"value-0"]).len() as u64;
    let cfg = LogConfig {
        segment_bytes: size * 4,
        index_interval_bytes: 1,
        ..Default::default()
    };
    let log = open(d.path(), cfg.clone());
    fill(&log, 10, T);
    log.close().unwrap();
    drop(log);
    let sealed = d.path().join("00000000000000000000.index");
    let len = std::fs::metadata(&sealed).unwrap().len();
    std::fs::remove_file(&sealed).unwrap();
    std::fs::remove_file(d.path().join("00000000000000000012.index")).unwrap();
    let log = open(d.path(), cfg);
    assert_eq!(std::fs::metadata(&sealed).unwrap().len(), len);
    assert_eq!(log.log_end_offset(), 30);
    for off in 0..30 {
        let h = headers(&slice_bytes(&log.read(off, 1 << 20, false).unwrap()))[0];
        assert!(h.base_offset <= off && off <= h.last_offset(), "{off}");
    }
}

#[test]
fn timestamps_lookup() {
    let d = tempfile::tempdir().unwrap();
    let size = build_batch(T, &[b"aaaa", b"bbbbbbbb", b"value-0"]).len() as u64;
    let cfg = LogConfig {
        segment_bytes: size * 4,
        index_interval_bytes: 1,
        ..Default::default()
    };
    let log = open(d.path(), cfg);
    assert_eq!(log.max_timestamp_and_offset().unwrap(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    // batch i: offsets 3i..3i+2, record timestamps T+10i, +1, +2
    fill(&log, 10, T);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, T)));
    assert_eq!(
        log.offset_for_timestamp(T + 41).unwrap(),
        Some((13, T + 41))
    );
    assert_eq!(
        log.offset_for_timestamp(T + 43).unwrap(),
        Some((15, T + 50))
    );
    assert_eq!(
        log.offset_for_timestamp(T + 92).unwrap(),
        Some((29, T + 92))
    );
    assert_eq!(log.offset_for_timestamp(T + 93).unwrap(), None);
    assert_eq!(log.max_timestamp_and_offset().unwrap(), Some((T + 92, 29)));
    // Log append time stamps every batch with the broker time.
    let info = log
        .append(
            &Bytes::from(build_batch(T, &[b"x", b"y"])),
            0,
            Some(T + 500),
        )
        .unwrap();
    assert_eq!(info.log_append_time, T + 500);
    // Every record of a LogAppendTime batch has its time: the first holds
    // the max (KAFKA-16310: the record's offset, not the batch's last).
    assert_eq!(log.max_timestamp_and_offset().unwrap(), Some((T + 500, 30)));
    assert_eq!(
        log.offset_for_timestamp(T + 100).unwrap(),
        Some((30, T + 500))
    );
    let h = headers(&slice_bytes(&log.read(30, 1 << 20, false).unwrap()))[0];
    assert_eq!((h.base_offset, h.max_timestamp), (30, T + 500));
}

#[test]
fn flush_group_commit_and_flush_messages() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), LogConfig::default());
    fill(&log, 3, T);
    assert_eq!(log.fsync_count(), 0);
    log.flush_up_to(5).unwrap();
    assert_eq!(log.fsync_count(), 1);
    // Covered: the first flush went to the log end offset (9).
    log.flush_up_to(9).unwrap();
    log.flush().unwrap();
    assert_eq!(log.fsync_count(), 1);
    fill(&log, 1, T);
    log.flush().unwrap();
    assert_eq!(log.fsync_count(), 2);

    let d = tempfile::tempdir().unwrap();
    let log = open(
        d.path(),
        LogConfig {
            flush_messages: Some(6),
            ..Default::default()
        },
    );
    fill(&log, 1, T);
    assert_eq!(log.fsync_count(), 0);
    fill(&log, 1, T);
    assert_eq!(log.fsync_count(), 1);
    let d = tempfile::tempdir().unwrap();
    let log = open(
        d.path(),
        LogConfig {
            flush_ms: Some(1000),
            ..Default::default()
        },
    );
    fill(&log, 1, T);
    log.flush_if_due(i64::MAX);
    assert_eq!(log.fsync_count(), 1);
}

#[test]
fn record_too_large_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let log = open(
        d.path(),
        LogConfig {
            max_message_bytes: 100,
            ..Default::default()
        },
    );
    let mut recs = build_batch(T, &[b"ok"]);
    recs.extend(build_batch(T, &[&[0u8; 200]]));
    match log.append(&Bytes::from(recs), 0, None) {
        Err(StorageError::RecordTooLarge { max: 100, size }) => assert!(size > 200),
        other => panic!("{other:?}"),
    }
    assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
}

#[test]
fn concurrent_appends_and_watch() {
    let d = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(
        d.path(),
        LogConfig {
            index_interval_bytes: 64,
            ..Default::default()
        },
    ));
    let rx = log.subscribe();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || fill(&log, 50, T))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*rx.borrow(), 600);
    let all = slice_bytes(&log.read(0, 1 << 24, false).unwrap());
    let mut next = 0;
    for h in headers(&all) {
        assert_eq!(h.base_offset, next);
        next = h.next_offset();
    }
    assert_eq!(next, 600);
}

#[test]
fn retention_deletes_old_segments() {
    let d = tempfile::tempdir().unwrap();
    let size = build_batch(T, &[b"aaaa", b"bbbbbbbb", b"value-0"]).len() as u64;
    let log = open(
        d.path(),
        LogConfig {
            segment_bytes: size * 2,
            retention_ms: 1000,
            ..Default::default()
        },
    );
    fill(&log, 6, T);
    assert_eq!(log.enforce_retention(T + 30 + 1000).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 6);
    assert!(matches!(
        log.read(0, 100, true),
        Err(StorageError::OffsetOutOfRange {
            log_start_offset: 6,
            ..
        })
    ));
    assert_eq!(log.enforce_retention(T + 1_000_000).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 12);
    assert_eq!(log.log_end_offset(), 18);
}
