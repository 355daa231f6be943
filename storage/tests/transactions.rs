//! Idempotent and transactional appends through a real Log on disk: the
//! producer state and aborted-transaction index survive reopen (clean and
//! not), and reads honour the last stable offset.

use bytes::Bytes;
use karnak_protocol::control::{ControlType, end_txn_marker};
use karnak_storage::log::producer_state::ProducerError;
use karnak_storage::test_support::producer_batch;
use karnak_storage::{Log, LogConfig, StorageError};

const TS: i64 = 1_700_000_000_000;

fn open(dir: &std::path::Path) -> Log {
    let cfg = LogConfig {
        segment_bytes: 4 << 10,
        ..LogConfig::default()
    };
    Log::open(dir, "t", 0, cfg).unwrap()
}

fn b(pid: i64, epoch: i16, seq: i32, n: usize, txn: bool) -> Bytes {
    let values: Vec<Vec<u8>> = (0..n).map(|i| vec![b'x'; 100 + i]).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    Bytes::from(producer_batch(TS, &refs, pid, epoch, seq, txn))
}

fn marker(pid: i64, epoch: i16, kind: ControlType) -> Bytes {
    Bytes::from(end_txn_marker(pid, epoch, kind, 0, TS))
}

#[test]
fn duplicates_survive_rolls_and_both_kinds_of_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut seq = 0;
    let mut last = None;
    // Enough batches to roll several 4 KiB segments (snapshots at each roll).
    for _ in 0..60 {
        let info = log.append(&b(9, 0, seq, 3, false), 0, None).unwrap();
        assert!(!info.duplicate);
        last = Some((seq, info.base_offset));
        seq += 3;
    }
    let (last_seq, last_off) = last.unwrap();
    let again = log.append(&b(9, 0, last_seq, 3, false), 0, None).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.base_offset, last_off);
    let leo = log.log_end_offset();
    assert!(log.sealed_segments().len() >= 3);

    // Not closed: a crash. Start-up replays from the newest snapshot.
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.log_end_offset(), leo);
    let again = log.append(&b(9, 0, last_seq, 3, false), 0, None).unwrap();
    assert!(again.duplicate && again.base_offset == last_off);
    assert!(matches!(
        log.append(&b(9, 0, seq + 1, 1, false), 0, None),
        Err(StorageError::Producer(
            ProducerError::OutOfOrderSequence { .. }
        ))
    ));
    log.close().unwrap();

    // Clean: the snapshot at the log end covers everything.
    let log = open(dir.path());
    let again = log.append(&b(9, 0, last_seq, 3, false), 0, None).unwrap();
    assert!(again.duplicate && again.base_offset == last_off);
    assert!(
        !log.append(&b(9, 0, seq, 1, false), 0, None)
            .unwrap()
            .duplicate
    );
    assert!(matches!(
        log.append(&b(9, -1, seq + 1, 1, false), 0, None),
        Err(StorageError::Producer(
            ProducerError::InvalidProducerEpoch { .. }
        ))
    ));
}

#[test]
fn open_transactions_hold_the_stable_offset_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(&b(-1, -1, -1, 2, false), 0, None).unwrap(); // 0..2
    let t1 = log.append(&b(5, 0, 0, 2, true), 0, None).unwrap(); // 2..4 (open)
    log.append(&b(-1, -1, -1, 1, false), 0, None).unwrap(); // 4
    assert_eq!(t1.base_offset, 2);
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(log.high_watermark(), 5);
    // read_committed reads stop before the open transaction.
    let r = log
        .read_upto(0, 1 << 20, true, log.last_stable_offset())
        .unwrap();
    let slice = r.slice.unwrap();
    let r_all = log.read(0, 1 << 20, true).unwrap().slice.unwrap();
    assert!(slice.len < r_all.len);
    assert!(log.read_upto(2, 1 << 20, true, 2).unwrap().slice.is_none());

    let m = log
        .append(&marker(5, 0, ControlType::Abort), 0, None)
        .unwrap();
    assert_eq!(m.completed.len(), 1);
    assert!(m.completed[0].aborted);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    let aborted = log.aborted_txns(0, i64::MAX);
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (
            aborted[0].producer_id,
            aborted[0].first_offset,
            aborted[0].last_offset
        ),
        (5, 2, 5)
    );
    // A committed one is not indexed.
    log.append(&b(6, 0, 0, 1, true), 0, None).unwrap();
    log.append(&marker(6, 0, ControlType::Commit), 0, None)
        .unwrap();
    assert_eq!(log.aborted_txns(0, i64::MAX).len(), 1);
    // A plain batch from a producer with an open transaction is refused.
    log.append(&b(7, 0, 0, 1, true), 0, None).unwrap();
    assert!(matches!(
        log.append(&b(7, 0, 1, 1, false), 0, None),
        Err(StorageError::Producer(
            ProducerError::InvalidTxnState { .. }
        ))
    ));
    let lso = log.last_stable_offset();
    assert!(lso < log.high_watermark());

    // A crash: the open transaction still holds the stable offset back and
    // the aborted one is still known.
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.last_stable_offset(), lso);
    assert_eq!(log.aborted_txns(0, i64::MAX).len(), 1);
    // The txnindex lost (e.g. torn before it reached disk): replay finds it.
    drop(log);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "txnindex") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let log = open(dir.path());
    assert_eq!(log.aborted_txns(0, i64::MAX).len(), 1);
    // The marker ends the transaction that was open across the crash.
    log.append(&marker(7, 0, ControlType::Commit), 0, None)
        .unwrap();
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

#[test]
fn idle_producers_expire_on_the_retention_pass_unless_in_a_transaction() {
    let d = tempfile::tempdir().unwrap();
    let log = Log::open(d.path(), "t", 0, LogConfig::default()).unwrap();
    log.append(&b(7, 0, 0, 2, false), 0, None).unwrap();
    log.append(&b(8, 0, 0, 1, true), 0, None).unwrap();
    let pids = |log: &Log| {
        let mut p: Vec<i64> = log.producer_entries().into_iter().map(|(p, _)| p).collect();
        p.sort();
        p
    };
    // A day after producer 7's last timestamp (its batch's max, TS + 1):
    // both still known, so a retry of its batch is a duplicate.
    let last = TS + 1;
    log.enforce_retention(last + 86_400_000).unwrap();
    assert_eq!(pids(&log), vec![7, 8]);
    log.append(&b(7, 0, 0, 2, false), 0, None).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    // Past it: the idle producer is forgotten without a roll (its next
    // batch starts a new entry, as in Kafka); the one with an open
    // transaction stays until its transaction ends.
    log.enforce_retention(last + 86_400_001).unwrap();
    assert_eq!(pids(&log), vec![8]);
    log.append(&b(7, 0, 0, 2, false), 0, None).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(pids(&log), vec![7, 8]);
}
