use std::collections::BTreeMap;
use std::sync::Arc;

use karnak_storage::{LogConfig, LogManager};

use super::*;
use crate::errors::*;
use crate::{GroupConfig, GroupCoordinator, OffsetCommit};

struct Env {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        path: dir.path().to_path_buf(),
        _dir: dir,
    }
}

async fn open(
    e: &Env,
) -> (
    Arc<LogManager>,
    Arc<GroupCoordinator>,
    TransactionCoordinator,
) {
    let logs = Arc::new(LogManager::open(&e.path, LogConfig::default()).unwrap());
    if logs.topic("data").is_none() {
        logs.create_topic("data", 2, BTreeMap::new()).unwrap();
    }
    let groups = GroupCoordinator::open_local(&logs, &e.path, 4, GroupConfig::default()).unwrap();
    let tc = TransactionCoordinator::open_local(
        groups.clone(),
        logs.clone(),
        &e.path,
        TxnConfig::default(),
    )
    .await
    .unwrap();
    (logs, groups, tc)
}

fn parts() -> Vec<(String, i32)> {
    vec![("data".to_string(), 0), ("data".to_string(), 1)]
}

#[tokio::test]
async fn commit_writes_markers_and_settles_offsets() {
    let e = env();
    let (logs, groups, tc) = open(&e).await;
    let (pid, epoch) = tc
        .init_producer_id(Some("tx"), 60_000, -1, -1)
        .await
        .unwrap();
    assert_eq!(epoch, 0);
    assert_eq!(tc.end_txn("tx", pid, epoch, true).await, INVALID_TXN_STATE);
    tc.add_to_txn("tx", pid, epoch, &parts(), Some("g"))
        .await
        .unwrap();
    assert_eq!(tc.describe("tx").unwrap().state, TxnState::Ongoing);
    let offsets = vec![OffsetCommit {
        topic: "data".into(),
        partition: 0,
        offset: 42,
        leader_epoch: -1,
        metadata: None,
    }];
    let codes = tc
        .txn_offset_commit("tx", "g", pid, epoch, offsets, &|_, _| true)
        .await;
    assert_eq!(codes, vec![NONE]);
    assert!(tc.has_pending_offsets("g", "data", 0));
    assert_eq!(tc.end_txn("tx", pid, epoch, true).await, NONE);
    // A retried EndTxn is answered the same; the other outcome is refused.
    assert_eq!(tc.end_txn("tx", pid, epoch, true).await, NONE);
    assert_eq!(tc.end_txn("tx", pid, epoch, false).await, INVALID_TXN_STATE);
    assert_eq!(tc.describe("tx").unwrap().state, TxnState::CompleteCommit);
    for p in 0..2 {
        let log = logs.log("data", p).unwrap();
        assert_eq!(log.log_end_offset(), 1, "one marker in partition {p}");
        assert_eq!(log.last_stable_offset(), 1);
    }
    assert!(!tc.has_pending_offsets("g", "data", 0));
    let got = groups
        .shard("g")
        .unwrap()
        .fetch_offsets("g", Some(vec![("data".to_string(), 0)]));
    assert_eq!(got[0].1.as_ref().map(|o| o.offset), Some(42));
}

#[tokio::test]
async fn a_new_producer_fences_the_old_and_aborts_its_transaction() {
    let e = env();
    let (logs, _groups, tc) = open(&e).await;
    let (pid, e0) = tc
        .init_producer_id(Some("tx"), 60_000, -1, -1)
        .await
        .unwrap();
    tc.add_to_txn("tx", pid, e0, &parts(), None).await.unwrap();
    let (pid2, e1) = tc
        .init_producer_id(Some("tx"), 60_000, -1, -1)
        .await
        .unwrap();
    assert_eq!((pid2, e1), (pid, e0 + 1));
    assert_eq!(tc.end_txn("tx", pid, e0, true).await, PRODUCER_FENCED);
    assert_eq!(
        tc.add_to_txn("tx", pid, e0, &parts(), None).await,
        Err(PRODUCER_FENCED)
    );
    assert_eq!(
        tc.add_to_txn("tx", pid + 1, e1, &parts(), None).await,
        Err(INVALID_PRODUCER_ID_MAPPING)
    );
    assert_eq!(
        tc.verify_partition("tx", pid, e0, "data", 0),
        Err(INVALID_PRODUCER_EPOCH)
    );
    // The old transaction was aborted: a marker in each partition.
    assert_eq!(logs.log("data", 0).unwrap().log_end_offset(), 1);
    assert_eq!(
        tc.init_producer_id(Some(""), 60_000, -1, -1).await,
        Err(INVALID_REQUEST)
    );
    assert_eq!(
        tc.init_producer_id(Some("tx"), 900_001, -1, -1).await,
        Err(INVALID_TRANSACTION_TIMEOUT)
    );
}

#[tokio::test]
async fn timeouts_abort_and_state_survives_restart() {
    let e = env();
    let (pid, epoch) = {
        let (_logs, _groups, tc) = open(&e).await;
        let (pid, epoch) = tc.init_producer_id(Some("slow"), 1, -1, -1).await.unwrap();
        tc.add_to_txn("slow", pid, epoch, &parts(), None)
            .await
            .unwrap();
        let (p2, e2) = tc
            .init_producer_id(Some("open"), 60_000, -1, -1)
            .await
            .unwrap();
        tc.add_to_txn("open", p2, e2, &parts(), None).await.unwrap();
        (pid, epoch)
    };
    // Restart: both transactions are still open, as persisted.
    let (_logs, _groups, tc) = open(&e).await;
    assert_eq!(tc.describe("open").unwrap().state, TxnState::Ongoing);
    let slow = tc.describe("slow").unwrap();
    assert_eq!((slow.producer_id, slow.state), (pid, TxnState::Ongoing));
    let aborted = tc.abort_timed_out(slow.start_ms + 10).await;
    assert_eq!(aborted, 1);
    let slow = tc.describe("slow").unwrap();
    assert_eq!(slow.state, TxnState::CompleteAbort);
    assert_eq!(
        slow.producer_epoch,
        epoch + 1,
        "the timed-out producer is fenced"
    );
    assert_eq!(tc.end_txn("slow", pid, epoch, true).await, PRODUCER_FENCED);
    // KIP-588: the timed-out producer re-initialises with its old epoch.
    assert_eq!(
        tc.init_producer_id(Some("slow"), 60_000, pid, epoch).await,
        Ok((pid, epoch + 2))
    );
    assert_eq!(
        tc.init_producer_id(Some("slow"), 60_000, pid, epoch).await,
        Err(PRODUCER_FENCED),
        "only once"
    );
    let listed = tc.list(&[TxnState::Ongoing], &[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].transactional_id, "open");
}

#[tokio::test]
async fn idempotent_producer_ids_are_distinct_across_restarts() {
    let e = env();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2 {
        let (_logs, _groups, tc) = open(&e).await;
        for _ in 0..1500 {
            let (pid, epoch) = tc.init_producer_id(None, 0, -1, -1).await.unwrap();
            assert_eq!(epoch, 0);
            assert!(pid >= 0 && seen.insert(pid), "{pid} repeated");
        }
    }
}

#[tokio::test]
async fn idle_transactional_ids_expire_and_stay_expired() {
    let e = env();
    {
        let (_logs, _groups, tc) = open(&e).await;
        let (pid, epoch) = tc
            .init_producer_id(Some("idle"), 60_000, -1, -1)
            .await
            .unwrap();
        let (p2, e2) = tc
            .init_producer_id(Some("busy"), 60_000, -1, -1)
            .await
            .unwrap();
        tc.add_to_txn("busy", p2, e2, &parts(), None).await.unwrap();
        let far = tc.describe("idle").unwrap().update_ms + 604_800_001;
        // An open transaction is never expired (its timeout ends it).
        assert_eq!(tc.expire_ids(far), 1);
        assert!(tc.describe("idle").is_none());
        assert_eq!(tc.describe("busy").unwrap().state, TxnState::Ongoing);
        assert_eq!(
            tc.end_txn("idle", pid, epoch, true).await,
            INVALID_PRODUCER_ID_MAPPING
        );
    }
    let (_logs, _groups, tc) = open(&e).await;
    assert!(tc.describe("idle").is_none());
    assert!(tc.describe("busy").is_some());
}

/// Replication that holds every wait until opened, counting the waits.
struct Gate {
    closed: tokio::sync::watch::Sender<bool>,
    waits: std::sync::atomic::AtomicUsize,
}

impl crate::ShardReplication for Gate {
    fn after_append(&self, _: &karnak_storage::Log) {}
    fn wait_replicated<'a>(
        &'a self,
        _: &'a karnak_storage::Log,
        _: i64,
    ) -> crate::ReplicatedFuture<'a> {
        self.waits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut closed = self.closed.subscribe();
        Box::pin(async move {
            let _ = closed.wait_for(|c| !*c).await;
            Ok(())
        })
    }
}

/// Fails if `f` has not finished within 10 s (a call stuck behind a lock
/// or a wait fails the test instead of hanging it).
async fn within_10s<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), f)
        .await
        .expect("blocked: the call did not finish within 10 s")
}

#[tokio::test]
async fn a_state_waiting_for_the_replicas_holds_up_its_transaction_only() {
    let e = env();
    let logs = Arc::new(LogManager::open(&e.path, LogConfig::default()).unwrap());
    logs.create_topic("data", 2, BTreeMap::new()).unwrap();
    let gate = Arc::new(Gate {
        closed: tokio::sync::watch::channel(false).0,
        waits: 0.into(),
    });
    let groups = GroupCoordinator::open_local_with(
        &logs,
        &e.path,
        4,
        GroupConfig::default(),
        Some(gate.clone()),
    )
    .unwrap();
    let tc = Arc::new(
        TransactionCoordinator::open_local(groups, logs, &e.path, TxnConfig::default())
            .await
            .unwrap(),
    );
    // Two transactional ids of one shard.
    let shard_of = |t: &str| crate::coordinator::shard_for(t, 4);
    let a = "tx-a".to_string();
    let b = (0..)
        .map(|i| format!("tx-b{i}"))
        .find(|t| shard_of(t) == shard_of(&a))
        .unwrap();
    let (pid, epoch) = tc.init_producer_id(Some(&a), 60_000, -1, -1).await.unwrap();
    tc.init_producer_id(Some(&b), 60_000, -1, -1).await.unwrap();

    gate.closed.send_replace(true);
    let waits = gate.waits.load(std::sync::atomic::Ordering::SeqCst);
    // A task of its own: the coordinator's futures must be Send.
    let bump = {
        let (tc, a) = (tc.clone(), a.clone());
        tokio::spawn(async move { tc.init_producer_id(Some(&a), 60_000, pid, epoch).await })
    };
    within_10s(async {
        while gate.waits.load(std::sync::atomic::Ordering::SeqCst) == waits {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // While `a`'s new epoch waits: the shard answers for `b`, `a` still
    // has its old epoch, and `a`'s other requests are told to retry.
    let (b_state, a_state, add, end) = within_10s(async {
        (
            tc.describe(&b).map(|m| m.state),
            tc.describe(&a).map(|m| m.producer_epoch),
            tc.add_to_txn(&a, pid, epoch, &parts(), None).await,
            tc.end_txn(&a, pid, epoch, true).await,
        )
    })
    .await;
    assert_eq!(b_state, Some(TxnState::Empty));
    assert_eq!(
        a_state,
        Some(epoch),
        "a state not yet replicated was made current"
    );
    assert_eq!(add, Err(CONCURRENT_TRANSACTIONS));
    assert_eq!(end, CONCURRENT_TRANSACTIONS);
    assert!(
        !bump.is_finished(),
        "the bump did not wait for the replicas"
    );

    gate.closed.send_replace(false);
    let (pid2, epoch2) = within_10s(bump).await.unwrap().unwrap();
    assert_eq!((pid2, epoch2), (pid, epoch + 1));
    assert_eq!(tc.describe(&a).unwrap().producer_epoch, epoch + 1);
    // The old epoch is fenced now; the new one works.
    assert_eq!(
        tc.add_to_txn(&a, pid, epoch, &parts(), None).await,
        Err(PRODUCER_FENCED)
    );
    tc.add_to_txn(&a, pid, epoch + 1, &parts(), None)
        .await
        .unwrap();
    assert_eq!(tc.end_txn(&a, pid, epoch + 1, false).await, NONE);
}

/// Markers into the local logs, refused while `failing` (a partition whose
/// disk failed).
struct FailingMarkers {
    local: LocalMarkers,
    failing: std::sync::atomic::AtomicBool,
}

impl MarkerWriter for FailingMarkers {
    fn write_markers(
        &self,
        marker: TxnMarker,
        partitions: Vec<(String, i32)>,
    ) -> MarkersFuture<'_> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            let n = partitions.len();
            return Box::pin(async move { vec![KAFKA_STORAGE_ERROR; n] });
        }
        self.local.write_markers(marker, partitions)
    }
}

#[tokio::test]
async fn a_prepared_transaction_whose_markers_fail_is_answered_as_decided_and_finished_later() {
    let e = env();
    let (logs, groups, _) = open(&e).await;
    let markers = Arc::new(FailingMarkers {
        local: LocalMarkers {
            logs: logs.clone(),
            durable: true,
        },
        failing: true.into(),
    });
    let ids = crate::obelisk::Sequencer::open(&e.path.join("ids.seq"), 0, 100, 1 << 40).unwrap();
    let tc = TransactionCoordinator::new(groups, markers.clone(), ids, TxnConfig::default());
    let (pid, epoch) = tc
        .init_producer_id(Some("tx"), 60_000, -1, -1)
        .await
        .unwrap();
    tc.add_to_txn("tx", pid, epoch, &parts(), None)
        .await
        .unwrap();
    // The prepare is written, the markers are not: the commit is decided,
    // so EndTxn says so (Kafka answers once the prepare is in its log); an
    // error here would have the client give up a commit that will happen.
    assert_eq!(tc.end_txn("tx", pid, epoch, true).await, NONE);
    assert_eq!(tc.describe("tx").unwrap().state, TxnState::PrepareCommit);
    assert_eq!(logs.log("data", 0).unwrap().log_end_offset(), 0);
    // Until the markers are in, the producer waits.
    assert_eq!(
        tc.end_txn("tx", pid, epoch, true).await,
        CONCURRENT_TRANSACTIONS
    );
    assert_eq!(
        tc.init_producer_id(Some("tx"), 60_000, pid, epoch).await,
        Err(CONCURRENT_TRANSACTIONS)
    );
    markers
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(tc.complete_prepared().await, 1);
    assert_eq!(tc.describe("tx").unwrap().state, TxnState::CompleteCommit);
    for p in 0..2 {
        assert_eq!(logs.log("data", p).unwrap().log_end_offset(), 1);
    }
    assert_eq!(tc.end_txn("tx", pid, epoch, true).await, NONE);

    // Fencing an open transaction whose abort markers fail: the new
    // producer retries until the coordinator has finished the abort.
    tc.add_to_txn("tx", pid, epoch, &parts(), None)
        .await
        .unwrap();
    markers
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        tc.init_producer_id(Some("tx"), 60_000, -1, -1).await,
        Err(CONCURRENT_TRANSACTIONS)
    );
    assert_eq!(tc.describe("tx").unwrap().state, TxnState::PrepareAbort);
    markers
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(tc.complete_prepared().await, 1);
    let (pid2, epoch2) = tc
        .init_producer_id(Some("tx"), 60_000, -1, -1)
        .await
        .unwrap();
    assert_eq!(pid2, pid);
    assert!(epoch2 > epoch + 1, "fenced at {}, then bumped", epoch + 1);
    for p in 0..2 {
        assert_eq!(logs.log("data", p).unwrap().log_end_offset(), 2);
    }
}
