//! A follower's log from a leader's batches: byte-identical segment files,
//! the leader's epochs and producer state kept, a high watermark that moves
//! only when told, bad batches refused, and truncation back to a leader's
//! end followed by the same history again.

use std::collections::BTreeMap;

use bytes::Bytes;
use karnak_protocol::control::{ControlType, end_txn_marker};
use karnak_storage::test_support::{build_batch, producer_batch};
use karnak_storage::{LogConfig, LogManager, StorageError};

const TS: i64 = 1_700_000_000_000;

fn segment_bytes(dir: &std::path::Path) -> Vec<u8> {
    std::fs::read(dir.join("00000000000000000000.log")).unwrap()
}

fn manager(dir: &std::path::Path) -> LogManager {
    let cfg = LogConfig {
        preallocate_ahead_bytes: 0,
        ..LogConfig::default()
    };
    LogManager::open(dir, cfg).unwrap()
}

/// The leader's log: plain batches at epoch 3, a transaction aborted at epoch 4.
fn leader_history(m: &LogManager) -> Vec<u8> {
    m.create_topic("t", 1, BTreeMap::new()).unwrap();
    let log = m.log("t", 0).unwrap();
    for i in 0..3 {
        let v = format!("plain-{i}");
        log.append(&Bytes::from(build_batch(TS, &[v.as_bytes()])), 3, None)
            .unwrap();
    }
    let txn = producer_batch(TS, &[b"in-txn", b"also"], 7, 0, 0, true);
    log.append(&Bytes::from(txn), 4, None).unwrap();
    let abort = end_txn_marker(7, 0, ControlType::Abort, 0, TS);
    log.append(&Bytes::from(abort), 4, None).unwrap();
    log.flush().unwrap();
    segment_bytes(log.dir())
}

#[test]
fn a_follower_appends_the_leaders_batches_as_they_are() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = manager(ld.path());
    let bytes = leader_history(&leader);
    let l = leader.log("t", 0).unwrap();

    let follower = manager(fd.path());
    follower.create_topic("t", 1, BTreeMap::new()).unwrap();
    let f = follower.log("t", 0).unwrap();
    f.set_replicated(true);
    // In two fetches, the second starting where the first ended; a fetch
    // may end inside a batch, which waits for the next one.
    let cut = bytes.len() / 2;
    let first = f
        .append_as_follower(&Bytes::copy_from_slice(&bytes[..cut]))
        .unwrap();
    assert!(first > 0 && first < l.log_end_offset());
    let start = {
        // Where the batch at `first` begins in the leader's bytes.
        let mut pos = 0usize;
        loop {
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
            if base == first {
                break pos;
            }
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
            pos += 12 + len as usize;
        }
    };
    let end = f
        .append_as_follower(&Bytes::copy_from_slice(&bytes[start..]))
        .unwrap();
    assert_eq!(end, l.log_end_offset());
    f.flush().unwrap();
    assert_eq!(
        segment_bytes(f.dir()),
        bytes,
        "the follower's segment is the leader's"
    );
    assert_eq!(f.latest_epoch(), 4);
    assert_eq!(f.end_offset_for_epoch(3), (3, 3));
    // The aborted transaction is known to read_committed readers.
    assert_eq!(f.aborted_txns(0, end).len(), 1);
    assert_eq!(
        f.last_stable_offset(),
        0,
        "nothing is committed below the high watermark yet"
    );

    // Replicated: the high watermark moves when told, never past the end.
    assert_eq!(f.high_watermark(), 0);
    assert_eq!(f.set_high_watermark(2), 2);
    assert_eq!(f.high_watermark(), 2);
    assert_eq!(f.set_high_watermark(1_000), end);
    assert_eq!(f.last_stable_offset(), end);

    // Batches that do not follow, or whose CRC is wrong, are refused whole.
    let again = f.append_as_follower(&Bytes::copy_from_slice(&bytes));
    assert!(
        matches!(again, Err(StorageError::Corrupt { .. })),
        "{again:?}"
    );
    let mut bad = build_batch(TS, &[b"x"]);
    bad[..8].copy_from_slice(&end.to_be_bytes());
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let refused = f.append_as_follower(&Bytes::from(bad));
    assert!(
        matches!(refused, Err(StorageError::Corrupt { .. })),
        "{refused:?}"
    );
    assert_eq!(f.log_end_offset(), end);
}

#[test]
fn truncation_cuts_back_to_a_batch_boundary_and_the_history_replays() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = manager(ld.path());
    let bytes = leader_history(&leader);
    let follower = manager(fd.path());
    follower.create_topic("t", 1, BTreeMap::new()).unwrap();
    let f = follower.log("t", 0).unwrap();
    f.set_replicated(true);
    let end = f
        .append_as_follower(&Bytes::copy_from_slice(&bytes))
        .unwrap();

    // Back to offset 3: the transaction and its abort are gone.
    let f = follower.truncate_partition("t", 0, 3).unwrap();
    assert_eq!(f.log_end_offset(), 3);
    assert!(f.is_replicated());
    assert_eq!(f.latest_epoch(), 3);
    assert!(f.aborted_txns(0, end).is_empty());
    assert!(f.producer_entry(7).is_none());
    // The same history again, from the leader's bytes after offset 3.
    let l = leader.log("t", 0).unwrap();
    let r = l.read(3, 1 << 20, true).unwrap();
    let slice = r.slice.expect("records after 3");
    let mut tail = vec![0u8; slice.len];
    std::os::unix::fs::FileExt::read_exact_at(slice.file.as_ref(), &mut tail, slice.position)
        .unwrap();
    assert_eq!(f.append_as_follower(&Bytes::from(tail)).unwrap(), end);
    f.flush().unwrap();
    assert_eq!(segment_bytes(f.dir()), bytes);
    assert_eq!(f.aborted_txns(0, end).len(), 1);

    // And it survives a restart of the follower as it is.
    drop(f);
    follower.shutdown().unwrap();
    drop(follower);
    let reopened = manager(fd.path());
    let f = reopened.log("t", 0).unwrap();
    assert_eq!(f.log_end_offset(), end);
    assert_eq!(f.latest_epoch(), 4);
}

#[test]
fn a_restarted_replica_starts_from_its_checkpointed_high_watermark() {
    let d = tempfile::tempdir().unwrap();
    let m = manager(d.path());
    m.create_topic("t", 1, BTreeMap::new()).unwrap();
    let log = m.log("t", 0).unwrap();
    log.set_replicated(true);
    for _ in 0..3 {
        log.append(&Bytes::from(build_batch(TS, &[b"x"])), 0, None)
            .unwrap();
    }
    // Replicated: appends do not move the high watermark; the leader does.
    assert_eq!(log.high_watermark(), 0);
    log.set_high_watermark(2);
    assert!(m.checkpoint_high_watermarks().unwrap());
    assert!(!m.checkpoint_high_watermarks().unwrap(), "nothing moved");
    drop(log);
    m.shutdown().unwrap();
    drop(m);

    let m = manager(d.path());
    let log = m.log("t", 0).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    log.set_replicated(true);
    assert_eq!(log.high_watermark(), 2, "not the log end: 3");
    // Without a checkpoint entry, a log starts replicated at its end.
    let fresh = m.create_topic("u", 1, BTreeMap::new()).unwrap();
    fresh.logs[0]
        .append(&Bytes::from(build_batch(TS, &[b"y"])), 0, None)
        .unwrap();
    fresh.logs[0].set_replicated(true);
    assert_eq!(fresh.logs[0].high_watermark(), 1);
}

#[test]
fn a_replica_behind_its_leaders_log_start_starts_again_there() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = manager(ld.path());
    leader_history(&leader);
    let l = leader.log("t", 0).unwrap();
    let end = l.log_end_offset();
    // Retention (here DeleteRecords) moved the leader's start past offset 3.
    assert_eq!(l.delete_records_before(3).unwrap(), 3);
    let read = l.read(3, 1 << 20, true).unwrap();
    let slice = read.slice.unwrap();
    let mut tail = vec![0u8; slice.len];
    std::os::unix::fs::FileExt::read_exact_at(&*slice.file, &mut tail, slice.position).unwrap();

    let follower = manager(fd.path());
    follower.create_topic("t", 1, BTreeMap::new()).unwrap();
    let f = follower.log("t", 0).unwrap();
    f.set_replicated(true);
    f.append(&Bytes::from(build_batch(TS, &[b"only one"])), 1, None)
        .unwrap();
    let f = follower.reset_partition("t", 0, 3).unwrap();
    assert!(f.is_replicated());
    assert_eq!((f.log_start_offset(), f.log_end_offset()), (3, 3));
    assert_ne!(
        f.latest_epoch(),
        1,
        "the epoch cache of the old log is gone"
    );
    f.append_as_follower(&Bytes::from(tail)).unwrap();
    assert_eq!(f.log_end_offset(), end);
    assert_eq!(f.latest_epoch(), 4);
    drop(f);
    follower.shutdown().unwrap();
    drop(follower);
    let follower = manager(fd.path());
    let f = follower.log("t", 0).unwrap();
    assert_eq!((f.log_start_offset(), f.log_end_offset()), (3, end));
    assert!(f.read(2, 1 << 20, true).is_err(), "nothing below the start");
}
