//! The data dir's group-commit flusher: acks=all waiters across logs, one
//! fsync per log per pass, nothing after shutdown.

use std::collections::BTreeMap;

use bytes::Bytes;
use karnak_storage::test_support::build_batch;
use karnak_storage::{LogConfig, LogManager};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

#[test]
fn waiters_on_many_logs_are_made_durable_sharing_one_fsync_per_log() {
    let d = tempfile::tempdir().unwrap();
    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    let t = m.create_topic("acks-all", 3, BTreeMap::new()).unwrap();
    let batch = Bytes::from(build_batch(1, &[b"a", b"b"]));
    // 60 appends, each queued for flushing at once, while the flusher is
    // held: all 61 jobs must be served by one pass.
    let held = m.hold_flusher();
    let mut waits = Vec::new();
    for i in 0..60 {
        let log = t.logs[i % 3].clone();
        let info = log.append(&batch, 0, None).unwrap();
        waits.push(m.flush_logs(vec![(log, info.last_offset + 1)]));
    }
    // One request naming all three logs gets one outcome per log, in order.
    let all: Vec<_> = t
        .logs
        .iter()
        .map(|l| (l.clone(), l.log_end_offset()))
        .collect();
    let both = m.flush_logs(all);
    assert_eq!(
        t.logs.iter().map(|l| l.fsync_count()).sum::<u64>(),
        0,
        "nothing is flushed while the flusher is held"
    );
    drop(held);
    let rt = runtime();
    for w in waits {
        let outcome = rt.block_on(w).expect("flusher running");
        assert_eq!(outcome.len(), 1);
        assert!(outcome[0].is_ok(), "{outcome:?}");
    }
    let outcome = rt.block_on(both).expect("flusher running");
    assert_eq!(outcome.len(), 3);
    assert!(outcome.iter().all(Result::is_ok), "{outcome:?}");
    for l in &t.logs {
        assert_eq!(
            l.fsync_count(),
            1,
            "61 requests queued together share one fsync per log"
        );
        assert_eq!(l.durable_offset(), l.log_end_offset());
    }
}

#[test]
fn a_waiter_already_covered_costs_no_fsync() {
    let d = tempfile::tempdir().unwrap();
    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    let t = m.create_topic("covered", 1, BTreeMap::new()).unwrap();
    let log = t.logs[0].clone();
    let batch = Bytes::from(build_batch(1, &[b"a"]));
    log.append(&batch, 0, None).unwrap();
    let second = log.append(&batch, 0, None).unwrap();
    let rt = runtime();
    rt.block_on(m.flush_logs(vec![(log.clone(), second.last_offset + 1)]))
        .unwrap();
    let after_first = log.fsync_count();
    assert!(after_first >= 1);
    // Offset 1 is below what the first pass made durable.
    let outcome = rt.block_on(m.flush_logs(vec![(log.clone(), 1)])).unwrap();
    assert!(outcome[0].is_ok());
    assert_eq!(log.fsync_count(), after_first);
}

#[test]
fn after_shutdown_a_flush_is_refused_not_lost() {
    let d = tempfile::tempdir().unwrap();
    let m = LogManager::open(d.path(), LogConfig::default()).unwrap();
    let t = m.create_topic("late", 1, BTreeMap::new()).unwrap();
    let log = t.logs[0].clone();
    log.append(&Bytes::from(build_batch(1, &[b"a"])), 0, None)
        .unwrap();
    m.shutdown().unwrap();
    let refused = runtime().block_on(m.flush_logs(vec![(log, 1)]));
    assert!(
        refused.is_err(),
        "a stopped flusher must not claim durability"
    );
}
