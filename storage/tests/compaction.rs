//! Log compaction on real files: which records survive (newest per key,
//! tombstones until their delete horizon, transactions), at their original
//! offsets, read back through the fetch path and the indexes.

mod common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use karnak_protocol::control::{ControlType, end_txn_marker};
use karnak_protocol::record_batch::{BatchHeader, Compression};
use karnak_storage::test_support::keyed_batch;
use karnak_storage::{Cleaner, CleanerConfig, CleanupPolicy, LogConfig, StorageError};

fn by_offset(m: std::collections::BTreeMap<Vec<u8>, Rec>) -> Vec<Rec> {
    let mut v: Vec<Rec> = m.into_values().collect();
    v.sort_by_key(|r| r.offset);
    v
}

#[test]
fn overwritten_keys_leave_only_the_newest_at_their_offsets() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), compact_cfg(512));
    for round in 0..10 {
        for k in 0..5 {
            put(
                &log,
                T + round,
                &[(&format!("k{k}"), Some(&format!("v{round}")))],
            );
        }
    }
    log.roll().unwrap();
    let before = records(&log);
    assert_eq!(before.len(), 50);
    let leo = log.log_end_offset();
    assert!(log.sealed_segments().len() > 3);
    let stats = log.compact(T + 100).unwrap().expect("something to clean");
    assert_eq!((stats.first_dirty_offset, stats.end_offset), (0, leo));
    assert_eq!((stats.records_read, stats.records_retained), (50, 5));
    let want = by_offset(latest(&before));
    assert_eq!(records(&log), want);
    assert_eq!(
        want.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![45, 46, 47, 48, 49]
    );
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, leo));
    assert_eq!(log.clean_offset(), Some(leo));
    assert!(
        log.compact(T + 100).unwrap().is_none(),
        "nothing dirty is left"
    );
    assert!(files_with(d.path(), &[".cleaned", ".swap"]).is_empty());
    // Appends go on at the log end.
    assert_eq!(put(&log, T, &[("k0", Some("again"))]), leo);
    // Both kinds of restart read the same log.
    drop(log);
    let log = open(d.path(), compact_cfg(512));
    assert_eq!(records(&log)[..5], want[..]);
    log.close().unwrap();
    let log = open(d.path(), compact_cfg(512));
    assert_eq!(records(&log).len(), 6);
    assert_eq!(log.log_end_offset(), leo + 1);
}

/// Offsets 0..30: key "dup" everywhere but every third offset, which has
/// a unique key; after cleaning, 2, 5, 8, ... 29 and 28 are left.
fn gappy_log(dir: &std::path::Path) -> karnak_storage::Log {
    let log = open(dir, compact_cfg(400));
    for i in 0..30 {
        let key = if i % 3 == 2 {
            format!("u{i}")
        } else {
            "dup".to_string()
        };
        put(&log, T + i, &[(&key, Some(&format!("v{i}")))]);
    }
    log.roll().unwrap();
    log.compact(T + 1000).unwrap().expect("cleaned");
    log
}

fn check_gaps(log: &karnak_storage::Log) {
    let survivors: Vec<i64> = records(log).iter().map(|r| r.offset).collect();
    let mut want: Vec<i64> = (0..30).filter(|i| i % 3 == 2).collect();
    want.push(28);
    want.sort();
    assert_eq!(survivors, want);
    for o in 0..30 {
        let next = *want.iter().find(|w| **w >= o).unwrap();
        // The fetch path: a read into a gap starts at the next batch.
        let r = log.read(o, 1, true).unwrap();
        let s = r.slice.expect("a batch");
        let mut head = vec![0u8; s.len];
        s.file.read_exact_at(&mut head, s.position).unwrap();
        let h = BatchHeader::parse(&head).unwrap();
        assert_eq!(
            (h.base_offset, s.len),
            (next, h.total_size()),
            "read at {o}"
        );
        // The time index: records' timestamps grow with their offsets.
        let (off, ts) = log.offset_for_timestamp(T + o).unwrap().unwrap();
        assert_eq!((off, ts), (next, T + next), "timestamp lookup {o}");
    }
    assert_eq!(
        log.read(30, 1 << 20, true).unwrap().slice.map(|s| s.len),
        None
    );
}

#[test]
fn reads_and_index_lookups_into_a_gap_land_on_the_next_batch() {
    let d = tempfile::tempdir().unwrap();
    let log = gappy_log(d.path());
    check_gaps(&log);
    log.close().unwrap();
    // Indexes from disk.
    let log = open(d.path(), compact_cfg(400));
    check_gaps(&log);
    drop(log);
    // Indexes lost: rebuilt from cleaned segments whose first batch sits
    // past their base offset.
    for f in files_with(d.path(), &[".index", ".timeindex"]) {
        std::fs::remove_file(d.path().join(f)).unwrap();
    }
    let log = open(d.path(), compact_cfg(400));
    check_gaps(&log);
}

#[test]
fn tombstones_stay_for_delete_retention_ms_then_go() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        delete_retention_ms: 1_000,
        ..compact_cfg(1 << 20)
    };
    let log = open(d.path(), cfg);
    put(&log, T, &[("k1", Some("v1"))]);
    put(&log, T, &[("k2", Some("v2"))]);
    put(&log, T, &[("k1", None)]);
    log.roll().unwrap();
    let now = T + 50_000;
    log.compact(now).unwrap().unwrap();
    let (recs, headers) = read_all(&log);
    let kv: Vec<_> = recs.iter().map(Rec::kv).collect();
    assert_eq!(
        kv,
        vec![("k2".into(), Some("v2".into())), ("k1".into(), None)]
    );
    // The tombstone's batch now carries its delete horizon (KIP-534).
    let tomb = headers.iter().find(|h| h.base_offset == 2).unwrap();
    assert!(tomb.attributes & 0x40 != 0);
    assert_eq!(tomb.base_timestamp, now + 1_000);
    assert_eq!(
        recs[1].timestamp, T,
        "record timestamps survive the rewrite"
    );

    put(&log, T, &[("k3", Some("v3"))]);
    log.roll().unwrap();
    log.compact(now + 500).unwrap().unwrap();
    assert!(
        records(&log)
            .iter()
            .any(|r| r.offset == 2 && r.value.is_none())
    );

    put(&log, T, &[("k4", Some("v4"))]);
    log.roll().unwrap();
    log.compact(now + 1_000).unwrap().unwrap();
    let kv: Vec<_> = records(&log).iter().map(|r| r.kv().0).collect();
    assert_eq!(kv, vec!["k2", "k3", "k4"]);
}

#[test]
fn min_compaction_lag_keeps_young_segments_out() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        min_compaction_lag_ms: 10_000,
        ..compact_cfg(1 << 20)
    };
    let log = open(d.path(), cfg);
    put(&log, T, &[("a", Some("1"))]);
    put(&log, T, &[("a", Some("2"))]);
    put(&log, T, &[("b", Some("1"))]);
    log.roll().unwrap();
    put(&log, T + 20_000, &[("a", Some("3"))]);
    put(&log, T + 20_000, &[("b", Some("2"))]);
    log.roll().unwrap();
    let now = T + 25_000;
    assert_eq!(log.cleanable(now).unwrap().first_uncleanable_offset, 3);
    log.compact(now).unwrap().unwrap();
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4]);
    assert_eq!(log.clean_offset(), Some(3));
    log.compact(T + 40_000).unwrap().unwrap();
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![3, 4]);
}

#[test]
fn compact_delete_also_applies_retention() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        retention_ms: 1_000,
        ..compact_cfg(300)
    };
    let log = open(d.path(), cfg);
    for i in 0..20 {
        put(&log, T, &[(&format!("k{}", i % 4), Some("x"))]);
    }
    log.roll().unwrap();
    log.compact(T).unwrap().unwrap();
    assert_eq!(records(&log).len(), 4);
    // Cleaned segments, empty ones included, age out like any other.
    assert!(log.enforce_retention(T + 10_000).unwrap() > 0);
    assert_eq!(log.log_start_offset(), 20);
    assert!(records(&log).is_empty());
    // The cleaner starts over from the new log start.
    put(&log, T + 20_000, &[("k9", Some("a"))]);
    put(&log, T + 20_000, &[("k9", Some("b"))]);
    log.roll().unwrap();
    let c = log.cleanable(T + 20_000).unwrap();
    assert_eq!(c.first_dirty_offset, 20);
    log.compact(T + 20_000).unwrap().unwrap();
    assert_eq!(
        records(&log).iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![21]
    );
}

fn marker(pid: i64, kind: ControlType) -> Bytes {
    Bytes::from(end_txn_marker(pid, 0, kind, 0, wall()))
}

#[test]
fn aborted_transactions_go_committed_stay_and_markers_go_when_safe() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        delete_retention_ms: 1_000,
        ..compact_cfg(1 << 20)
    };
    let log = open(d.path(), cfg);
    // Batches stamped with the wall clock (idle producers expire), the
    // cleaner's clock well after it.
    let (t, now) = (wall(), wall() + 10_000);
    let txn = |pid| Some((pid, 0i16, 0i32, true));
    put_with(
        &log,
        t,
        &[("a", Some("aborted")), ("b", Some("aborted"))],
        Compression::None,
        txn(7),
    );
    put_with(
        &log,
        t,
        &[("c", Some("committed"))],
        Compression::None,
        txn(8),
    );
    put(&log, t, &[("d", Some("plain"))]);
    log.append(&marker(7, ControlType::Abort), 0, None).unwrap();
    log.append(&marker(8, ControlType::Commit), 0, None)
        .unwrap();
    log.roll().unwrap();
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
    assert_eq!(log.aborted_txns(0, 100).len(), 1);
    log.compact(now).unwrap().unwrap();
    let (recs, headers) = read_all(&log);
    let keys: Vec<_> = recs.iter().map(|r| r.kv().0).collect();
    assert_eq!(keys, vec!["c", "d"]);
    // Producer 7's aborted batch stays as an empty batch (its last
    // sequence); both markers stay while their data was seen.
    let empty = headers
        .iter()
        .find(|h| h.producer_id == 7 && !h.is_control())
        .unwrap();
    assert_eq!(
        (
            empty.base_offset,
            empty.record_count,
            empty.last_offset_delta
        ),
        (0, 0, 1)
    );
    assert_eq!(headers.iter().filter(|h| h.is_control()).count(), 2);
    assert_eq!(log.aborted_txns(0, 100).len(), 1);

    // The producer moves on: its aborted batch is no longer its last.
    put_with(
        &log,
        t,
        &[("g", Some("idempotent"))],
        Compression::None,
        Some((7, 0, 2, false)),
    );
    log.roll().unwrap();
    log.compact(now + 100).unwrap().unwrap();
    let (_, headers) = read_all(&log);
    assert!(
        !headers
            .iter()
            .any(|h| h.producer_id == 7 && h.base_offset == 0)
    );
    // Its data was seen in that pass, so the marker stayed once more.
    assert!(headers.iter().any(|h| h.is_control() && h.producer_id == 7));
    assert_eq!(log.aborted_txns(0, 100).len(), 1);

    put(&log, t, &[("e", Some("later"))]);
    log.roll().unwrap();
    log.compact(now + 200).unwrap().unwrap();
    // Nothing of the abort is left: its marker waits out its horizon.
    let (_, headers) = read_all(&log);
    let abort = headers
        .iter()
        .find(|h| h.is_control() && h.producer_id == 7)
        .unwrap();
    assert_eq!(abort.base_timestamp, now + 200 + 1_000);
    assert!(log.aborted_txns(0, 100).is_empty());
    // The commit's data is still there: its marker stays.
    assert!(headers.iter().any(|h| h.is_control() && h.producer_id == 8));

    put(&log, t, &[("f", Some("later"))]);
    log.roll().unwrap();
    log.compact(now + 2_000).unwrap().unwrap();
    let (recs, headers) = read_all(&log);
    assert!(!headers.iter().any(|h| h.is_control() && h.producer_id == 7));
    assert!(headers.iter().any(|h| h.is_control() && h.producer_id == 8));
    let keys: Vec<_> = recs.iter().map(|r| r.kv().0).collect();
    assert_eq!(keys, vec!["c", "d", "g", "e", "f"]);
    // Producer state is intact.
    assert_eq!(log.producer_entry(7).unwrap().epoch, 0);
    assert!(log.producer_entry(8).unwrap().txn_first_offset.is_none());
}

#[test]
fn open_transactions_are_never_cleaned() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), compact_cfg(1 << 20));
    put(&log, T, &[("k", Some("1"))]);
    put(&log, T, &[("k", Some("2"))]);
    log.roll().unwrap();
    put_with(
        &log,
        T,
        &[("k", Some("open"))],
        Compression::None,
        Some((5, 0, 0, true)),
    );
    log.roll().unwrap();
    put(&log, T, &[("k", Some("3"))]);
    log.roll().unwrap();
    // The stable offset stops the cleaner at the open transaction's segment.
    let c = log.cleanable(T).unwrap();
    assert_eq!(
        (log.last_stable_offset(), c.first_uncleanable_offset),
        (2, 2)
    );
    log.compact(T).unwrap().unwrap();
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![1, 2, 3]);
}

#[test]
fn idempotent_dedupe_survives_cleaning_and_restarts() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), compact_cfg(1 << 20));
    let batch = |seq: i32, key: &str| {
        Bytes::from(keyed_batch(
            wall(),
            &recs(&[(key, Some("v"))]),
            Compression::None,
            Some((9, 0, seq, false)),
        ))
    };
    for seq in 0..20 {
        assert!(!log.append(&batch(seq, "k"), 0, None).unwrap().duplicate);
    }
    // The producer's last batch is then overwritten by someone else.
    put(&log, wall(), &[("k", Some("plain"))]);
    log.roll().unwrap();
    log.compact(wall()).unwrap().unwrap();
    let (recs_after, headers) = read_all(&log);
    assert_eq!(
        recs_after.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![20]
    );
    // Its last batch is kept, emptied, with its sequence.
    let kept: Vec<_> = headers.iter().filter(|h| h.producer_id == 9).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (
            kept[0].base_offset,
            kept[0].base_sequence,
            kept[0].record_count
        ),
        (19, 19, 0)
    );
    let retry = |log: &karnak_storage::Log| {
        let info = log.append(&batch(19, "k"), 0, None).unwrap();
        assert!(info.duplicate && info.base_offset == 19);
    };
    retry(&log);
    // An older retry still in the dedupe window too.
    assert!(log.append(&batch(17, "k"), 0, None).unwrap().duplicate);
    // Crash: snapshot plus replay.
    drop(log);
    let log = open(d.path(), compact_cfg(1 << 20));
    retry(&log);
    drop(log);
    // No snapshot at all: rebuilt from the (cleaned) segments' headers.
    for f in files_with(d.path(), &[".snapshot"]) {
        std::fs::remove_file(d.path().join(f)).unwrap();
    }
    let log = open(d.path(), compact_cfg(1 << 20));
    retry(&log);
    assert!(!log.append(&batch(20, "k"), 0, None).unwrap().duplicate);
}

#[test]
fn every_codec_is_kept_through_a_rewrite() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let d = tempfile::tempdir().unwrap();
        let log = open(d.path(), compact_cfg(1 << 20));
        for round in 0..4 {
            let v = format!("r{round}");
            let pairs: Vec<(String, Option<&str>)> = (0..5)
                .map(|k| (format!("k{}", (k + round) % 7), Some(v.as_str())))
                .collect();
            let pairs: Vec<(&str, Option<&str>)> =
                pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            put_with(&log, T, &pairs, codec, None);
        }
        log.roll().unwrap();
        let before = records(&log);
        log.compact(T).unwrap().unwrap();
        let (after, headers) = read_all(&log);
        assert_eq!(after, by_offset(latest(&before)), "{codec:?}");
        assert!(
            headers.iter().all(|h| h.compression() == Ok(codec)),
            "{codec:?}"
        );
    }
}

#[test]
fn keyless_records_are_refused_on_compacted_topics_only() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), compact_cfg(1 << 20));
    let v: &[u8] = b"v";
    for codec in [Compression::None, Compression::Zstd] {
        let b = keyed_batch(
            T,
            &[(Some(b"k".as_slice()), Some(v)), (None, Some(v))],
            codec,
            None,
        );
        let err = log.append(&Bytes::from(b), 0, None).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::KeylessRecordOnCompactedTopic { partition: 0, .. }
            ),
            "{err}"
        );
    }
    assert_eq!(log.log_end_offset(), 0, "nothing was appended");
    // Markers have no data key and are welcome.
    log.append(&marker(3, ControlType::Commit), 0, None)
        .unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let plain = open(d2.path(), LogConfig::default());
    let b = keyed_batch(T, &[(None, Some(v))], Compression::None, None);
    plain.append(&Bytes::from(b), 0, None).unwrap();
}

#[test]
fn a_reader_holding_an_old_segment_keeps_reading_it() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), compact_cfg(1 << 20));
    for i in 0..10 {
        put(&log, T, &[("same", Some(&format!("v{i}")))]);
    }
    log.roll().unwrap();
    let slice = log.read(0, 1 << 20, true).unwrap().slice.unwrap();
    log.compact(T).unwrap().unwrap();
    let mut buf = vec![0u8; slice.len];
    slice.file.read_exact_at(&mut buf, slice.position).unwrap();
    let h = BatchHeader::parse(&buf).unwrap();
    assert_eq!((h.base_offset, slice.len), (0, 10 * h.total_size()));
    assert_eq!(records(&log).len(), 1);
}

#[test]
fn the_io_limit_slows_the_cleaner_down() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path(), compact_cfg(1 << 20));
    let value = "x".repeat(1000);
    for i in 0..100 {
        put(&log, T, &[(&format!("k{}", i % 10), Some(&value))]);
    }
    log.roll().unwrap();
    let mut c = Cleaner::new(CleanerConfig {
        io_max_bytes_per_second: 200_000.0,
        io_buffer_bytes: 16 << 10,
        ..CleanerConfig::default()
    });
    let start = Instant::now();
    let stats = c.clean(&log, T).unwrap().unwrap();
    // About 100 kB read twice (map, rewrite) and 10 kB written.
    let io = stats.bytes_read + stats.bytes_written;
    assert!(io > 200_000, "{io}");
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    assert!(stats.throttled > Duration::ZERO);
    assert_eq!(records(&log).len(), 10);
}

#[test]
fn segment_ms_rolls_make_segments_cleanable() {
    let d = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1,
        ..compact_cfg(1 << 20)
    };
    let log = open(d.path(), cfg);
    for i in 0..4 {
        put(&log, T, &[("k", Some(&format!("{i}")))]);
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(log.sealed_segments().len(), 3);
    log.compact(T).unwrap().unwrap();
    // The active segment (offset 3) is never cleaned.
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![2, 3]);
}
