//! The TransactionCoordinator: producer ids, transactional ids and their
//! transactions, over the same Pharaoh shards as the groups. A
//! transactional id lives in the shard it hashes to, coordinated by the
//! broker that leads the shard; producer ids come from one Obelisk
//! sequencer whose blocks are leased in the cluster metadata (KIP-730's
//! producer-id blocks), so no two brokers ever hand out the same id.
//!
//! A request's state change is appended under its shard's lock and
//! awaited without it (the disk, the in-sync replicas, the markers), as
//! Kafka's coordinator runtime does: no thread waits on a follower.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};

use karnak_protocol::control::{ControlType, end_txn_marker};
use karnak_storage::{Log, LogManager};

use super::{TxnMetadata, TxnState};
use crate::coordinator::{COORDINATOR_TOPIC, GroupCoordinator, shard_for};
use crate::errors::*;
use crate::obelisk::Sequencer;
use crate::records::RecordKey;
use crate::shard::{Shard, ShardError, ShardState};

/// Transactions ended, by `result` (commit, abort).
pub const TRANSACTIONS_METRIC: &str = "karnak_transactions_total";
/// Transactions the coordinator aborted because they outlived their timeout.
pub const TIMED_OUT_METRIC: &str = "karnak_transactions_timed_out_total";

/// Where a transaction's COMMIT/ABORT markers go: each partition's leader
/// (this broker's log, or WriteTxnMarkers to another broker).
pub trait MarkerWriter: Send + Sync {
    /// Writes one marker per partition; resolves to each partition's error
    /// code. A partition of [`COORDINATOR_TOPIC`] names a shard whose
    /// pending transactional offsets of the producer are settled instead.
    fn write_markers(&self, marker: TxnMarker, partitions: Vec<(String, i32)>)
    -> MarkersFuture<'_>;
}

pub type MarkersFuture<'a> = Pin<Box<dyn Future<Output = Vec<i16>> + Send + 'a>>;

/// One transaction's end, as WriteTxnMarkers carries it.
#[derive(Debug, Clone, Copy)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub kind: ControlType,
    /// The leader epoch of the coordinating shard's partition.
    pub coordinator_epoch: i32,
}

/// Appends a marker to a partition log this broker leads, stamped with
/// `leader_epoch`; with `durable`, fsynced before it counts. Returns the
/// partition's error code and, on success, the offset after the marker.
pub fn append_marker(
    log: &Log,
    marker: &TxnMarker,
    leader_epoch: i32,
    durable: bool,
) -> (i16, Option<i64>) {
    let batch = bytes::Bytes::from(end_txn_marker(
        marker.producer_id,
        marker.producer_epoch,
        marker.kind,
        marker.coordinator_epoch,
        now_ms(),
    ));
    let (topic, partition) = (log.topic(), log.partition());
    match log.append(&batch, leader_epoch, None) {
        Ok(info) => {
            if durable && let Err(e) = log.flush_up_to(info.last_offset + 1) {
                tracing::error!(topic, partition, error = %e, "fsync of transaction marker failed");
                (KAFKA_STORAGE_ERROR, None)
            } else {
                (NONE, Some(info.last_offset + 1))
            }
        }
        Err(karnak_storage::StorageError::Producer(e)) => {
            tracing::warn!(topic, partition, error = %e, "transaction marker refused");
            let code = match e {
                karnak_storage::log::producer_state::ProducerError::InvalidProducerEpoch {
                    ..
                } => INVALID_PRODUCER_EPOCH,
                _ => INVALID_TXN_STATE,
            };
            (code, None)
        }
        Err(e) => {
            tracing::error!(topic, partition, error = %e, "writing transaction marker failed");
            (KAFKA_STORAGE_ERROR, None)
        }
    }
}

/// Markers into this process's own logs: one node owning every partition.
pub struct LocalMarkers {
    pub logs: Arc<LogManager>,
    pub durable: bool,
}

impl MarkerWriter for LocalMarkers {
    fn write_markers(
        &self,
        marker: TxnMarker,
        partitions: Vec<(String, i32)>,
    ) -> MarkersFuture<'_> {
        let (logs, durable, n) = (self.logs.clone(), self.durable, partitions.len());
        // Appends and fsyncs: off the reactor.
        let write = move || -> Vec<i16> {
            partitions
                .iter()
                .map(|(topic, p)| match logs.log(topic, *p) {
                    // Shards are all loaded in this process: settled already.
                    _ if topic == COORDINATOR_TOPIC => NOT_COORDINATOR,
                    // Deleted since it joined the transaction: nothing to mark.
                    None => UNKNOWN_TOPIC_OR_PARTITION,
                    Some(log) => append_marker(&log, &marker, log.latest_epoch(), durable).0,
                })
                .collect()
        };
        Box::pin(async move {
            karnak_storage::blocking::spawn(write)
                .await
                .unwrap_or_else(|_| vec![KAFKA_STORAGE_ERROR; n])
        })
    }
}

#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms`
    /// a producer may ask for.
    pub max_timeout_ms: i32,
    /// fsync the shard's records and the markers before answering.
    pub durable: bool,
    /// `transactional.id.expiration.ms`: an id with no open transaction
    /// and no activity for this long is forgotten.
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            durable: false,
            id_expiration_ms: 604_800_000,
        }
    }
}

pub struct TransactionCoordinator {
    pub(super) groups: Arc<GroupCoordinator>,
    markers: Arc<dyn MarkerWriter>,
    producer_ids: Sequencer,
    pub(super) cfg: TxnConfig,
}

/// Producer id and epoch handed to a producer.
pub type ProducerIdAndEpoch = (i64, i16);

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl TransactionCoordinator {
    /// Over the group coordinator's shards (transactions live in the ones
    /// loaded here); `producer_ids` hands out producer ids.
    pub fn new(
        groups: Arc<GroupCoordinator>,
        markers: Arc<dyn MarkerWriter>,
        producer_ids: Sequencer,
        cfg: TxnConfig,
    ) -> Self {
        TransactionCoordinator {
            groups,
            markers,
            producer_ids,
            cfg,
        }
    }

    /// One process owning every shard and partition (tests, tools): markers
    /// go to `logs`, producer ids come from a sequencer file in the data
    /// dir, and transactions left prepared are finished now.
    pub async fn open_local(
        groups: Arc<GroupCoordinator>,
        logs: Arc<LogManager>,
        data_dir: &std::path::Path,
        cfg: TxnConfig,
    ) -> Result<Self, crate::obelisk::SequencerError> {
        let ids = Sequencer::open(
            &crate::coordinator::legacy_sequencer_dir(data_dir).join("producer-ids.seq"),
            0,
            1000,
            i64::MAX as u64,
        )?;
        let markers = Arc::new(LocalMarkers {
            logs,
            durable: cfg.durable,
        });
        let tc = TransactionCoordinator::new(groups, markers, ids, cfg);
        for s in tc.shards() {
            tc.shard_loaded(&s).await;
        }
        Ok(tc)
    }

    /// A shard was loaded here: finishes the transactions it left prepared
    /// (their markers may be partly written) before it serves.
    pub async fn shard_loaded(&self, shard: &Shard) {
        let (mut prepared, mut ongoing) = (Vec::new(), 0);
        for m in shard.lock().txns.values() {
            if m.state.is_prepare() {
                prepared.push(m.clone());
            }
            ongoing += (m.state == TxnState::Ongoing) as usize;
        }
        let mut finished = 0;
        for m in &prepared {
            finished += self.complete(m).await.is_ok() as usize;
        }
        if !prepared.is_empty() || ongoing > 0 {
            tracing::info!(
                shard = shard.id,
                transactions_prepared = prepared.len(),
                transactions_ongoing = ongoing,
                finished,
                "transactions loaded"
            );
        }
    }

    pub(super) fn shard(&self, key: &str) -> Result<Arc<Shard>, i16> {
        self.groups.shard(key)
    }

    pub(super) fn shards(&self) -> Vec<Arc<Shard>> {
        self.groups.shards()
    }

    /// Leases producer ids ahead if none are left, so the InitProducerId
    /// that follows does not block its thread on the lease. A failure is
    /// left for that call to report.
    pub async fn reserve_producer_id(&self) {
        if let Err(e) = self.producer_ids.reserve().await {
            tracing::warn!(error = %e, "leasing producer ids ahead failed");
        }
    }

    /// A producer id, from those leased ahead ([`Self::reserve_producer_id`])
    /// when the lease is the cluster metadata's: that one is never taken in
    /// place, so requests that used the ids up meanwhile get
    /// COORDINATOR_NOT_AVAILABLE (retried) rather than block the runtime.
    fn new_producer_id(&self) -> Result<i64, i16> {
        match self.producer_ids.next() {
            Ok(n) => i64::try_from(n).map_err(|_| COORDINATOR_NOT_AVAILABLE),
            Err(e) => {
                tracing::error!(error = %e, "producer id sequencer failed");
                Err(COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// Writes `next` to its shard's log under the caller's lock (taken with
    /// `lock_idle`, released here) and marks it pending: requests for the
    /// transaction answer CONCURRENT_TRANSACTIONS (Kafka's pendingState)
    /// until [`Self::finish_write`] makes it the transaction's state.
    /// Returns the record's offset.
    fn begin_write(
        &self,
        shard: &Shard,
        mut st: MutexGuard<'_, ShardState>,
        next: &TxnMetadata,
    ) -> Result<i64, i16> {
        let tid = &next.transactional_id;
        debug_assert!(!st.txn_writes.contains_key(tid));
        match shard.append(vec![txn_record(next)]) {
            Ok(last) => {
                st.txn_writes.insert(tid.clone(), next.clone());
                Ok(last)
            }
            Err(e) => Err(persist_failed(shard, next, e)),
        }
    }

    /// Awaits the record [`Self::begin_write`] wrote at `last` on the disk
    /// (unless configured off) and on the in-sync replicas, then makes
    /// `next` the transaction's state: nothing acts on a state a failover
    /// could lose. The shard lock is free meanwhile, so a slow follower
    /// delays this transaction, not the shard's others and its groups.
    async fn finish_write(&self, shard: &Shard, next: TxnMetadata, last: i64) -> Result<(), i16> {
        let held = shard.wait_durable(last, self.cfg.durable).await;
        let mut st = shard.lock();
        st.txn_writes.remove(&next.transactional_id);
        match held {
            Ok(()) => {
                st.txns.insert(next.transactional_id.clone(), next);
                Ok(())
            }
            Err(e) => Err(persist_failed(shard, &next, e)),
        }
    }

    /// The lock on `tid`'s shard, unless a state of `tid` is being written.
    fn lock_idle<'a>(shard: &'a Shard, tid: &str) -> Result<MutexGuard<'a, ShardState>, i16> {
        let st = shard.lock();
        if st.txn_writes.contains_key(tid) {
            return Err(CONCURRENT_TRANSACTIONS);
        }
        Ok(st)
    }

    /// Writes `m` without waiting for the disk or the replicas: for a
    /// completion, which the durable prepare record redoes if it is lost.
    fn persist_lazily(&self, shard: &Shard, m: &TxnMetadata) -> Result<(), i16> {
        shard
            .append(vec![txn_record(m)])
            .map(drop)
            .map_err(|e| persist_failed(shard, m, e))
    }

    /// InitProducerId. Without a transactional id: a fresh producer id
    /// (idempotence only; KIP-360 re-inits get a fresh one too, as in
    /// Kafka). With one: the id's producer, epoch bumped, which fences any
    /// older producer and aborts its open transaction.
    pub async fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<ProducerIdAndEpoch, i16> {
        self.reserve_producer_id().await;
        let Some(tid) = transactional_id else {
            return Ok((self.new_producer_id()?, 0));
        };
        if tid.is_empty() {
            return Err(INVALID_REQUEST);
        }
        if timeout_ms <= 0 || timeout_ms > self.cfg.max_timeout_ms {
            return Err(INVALID_TRANSACTION_TIMEOUT);
        }
        let shard = &self.shard(tid)?;
        let (next, last) =
            match self.begin_init(shard, tid, timeout_ms, producer_id, producer_epoch)? {
                Some(written) => written,
                None => {
                    // Fence the old producer: abort under a bumped epoch.
                    let epoch = match self.end(tid, false, true).await {
                        Ok(epoch) => epoch,
                        // Aborting, its markers not all written yet (the timer
                        // finishes it): the producer retries, as Kafka answers.
                        Err(_) if self.decided(tid, false) => return Err(CONCURRENT_TRANSACTIONS),
                        Err(code) => return Err(code),
                    };
                    let (m, last) = self.begin_reset(shard, tid, timeout_ms)?;
                    let id = m.producer_id;
                    self.finish_write(shard, m, last).await?;
                    return Ok((id, epoch));
                }
            };
        let (id, epoch) = (next.producer_id, next.producer_epoch);
        self.finish_write(shard, next, last).await?;
        Ok((id, epoch))
    }

    /// InitProducerId's state change, begun under the shard lock: the
    /// state written and its offset, or None when an open transaction must
    /// be aborted (fencing its producer) first.
    fn begin_init(
        &self,
        shard: &Shard,
        tid: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<Option<(TxnMetadata, i64)>, i16> {
        let now = now_ms();
        let st = Self::lock_idle(shard, tid)?;
        let Some(m) = st.txns.get(tid).cloned() else {
            let m = TxnMetadata {
                transactional_id: tid.to_string(),
                producer_id: self.new_producer_id()?,
                producer_epoch: 0,
                last_producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: Default::default(),
                groups: Default::default(),
                start_ms: -1,
                update_ms: now,
            };
            let last = self.begin_write(shard, st, &m)?;
            return Ok(Some((m, last)));
        };
        if m.state.is_prepare() {
            return Err(CONCURRENT_TRANSACTIONS);
        }
        // KIP-360: a producer re-initialising names its current id and
        // epoch; after a timeout abort fenced it, its old epoch (KIP-588).
        let known_epoch = producer_epoch == m.producer_epoch
            || (m.last_producer_epoch >= 0 && producer_epoch == m.last_producer_epoch);
        if producer_id >= 0 && (producer_id != m.producer_id || !known_epoch) {
            return Err(PRODUCER_FENCED);
        }
        if m.state == TxnState::Ongoing {
            return Ok(None);
        }
        let mut next = m;
        if next.producer_epoch >= i16::MAX - 1 {
            // Epochs exhausted: a new producer id starts again at 0.
            next.producer_id = self.new_producer_id()?;
            next.producer_epoch = 0;
        } else {
            next.producer_epoch += 1;
        }
        next.timeout_ms = timeout_ms;
        next.state = TxnState::Empty;
        next.last_producer_epoch = -1;
        next.update_ms = now;
        let last = self.begin_write(shard, st, &next)?;
        Ok(Some((next, last)))
    }

    /// After a fencing abort: the transaction, at the epoch the abort
    /// bumped it to, made empty for the new producer.
    fn begin_reset(
        &self,
        shard: &Shard,
        tid: &str,
        timeout_ms: i32,
    ) -> Result<(TxnMetadata, i64), i16> {
        let st = Self::lock_idle(shard, tid)?;
        let mut m = st.txns.get(tid).cloned().ok_or(CONCURRENT_TRANSACTIONS)?;
        m.timeout_ms = timeout_ms;
        m.state = TxnState::Empty;
        m.last_producer_epoch = -1;
        m.update_ms = now_ms();
        let last = self.begin_write(shard, st, &m)?;
        Ok((m, last))
    }

    /// Checks a request's producer id and epoch against the transaction.
    fn check_producer(m: Option<&TxnMetadata>, producer_id: i64, epoch: i16) -> Result<(), i16> {
        match m {
            None => Err(INVALID_PRODUCER_ID_MAPPING),
            Some(m) if m.producer_id != producer_id => Err(INVALID_PRODUCER_ID_MAPPING),
            Some(m) if m.producer_epoch != epoch => Err(PRODUCER_FENCED),
            Some(_) => Ok(()),
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the partitions (and groups)
    /// join the transaction, which starts if it was not open.
    pub async fn add_to_txn(
        &self,
        tid: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        group: Option<&str>,
    ) -> Result<(), i16> {
        if tid.is_empty() {
            return Err(INVALID_REQUEST);
        }
        let shard = &self.shard(tid)?;
        if let Some((next, last)) =
            self.begin_add(shard, tid, producer_id, epoch, partitions, group)?
        {
            self.finish_write(shard, next, last).await?;
        }
        Ok(())
    }

    /// [`Self::add_to_txn`]'s state change, begun under the shard lock;
    /// None when the transaction has every partition and group already.
    fn begin_add(
        &self,
        shard: &Shard,
        tid: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        group: Option<&str>,
    ) -> Result<Option<(TxnMetadata, i64)>, i16> {
        let st = Self::lock_idle(shard, tid)?;
        Self::check_producer(st.txns.get(tid), producer_id, epoch)?;
        let Some(m) = st.txns.get(tid) else {
            return Err(INVALID_PRODUCER_ID_MAPPING);
        };
        if m.state.is_prepare() {
            return Err(CONCURRENT_TRANSACTIONS);
        }
        let known = m.state == TxnState::Ongoing
            && partitions.iter().all(|p| m.partitions.contains(p))
            && group.is_none_or(|g| m.groups.contains(g));
        if known {
            return Ok(None);
        }
        let mut next = m.clone();
        let now = now_ms();
        if next.state != TxnState::Ongoing {
            next.state = TxnState::Ongoing;
            next.start_ms = now;
        }
        next.partitions.extend(partitions.iter().cloned());
        if let Some(g) = group {
            next.groups.insert(g.to_string());
        }
        next.update_ms = now;
        let last = self.begin_write(shard, st, &next)?;
        Ok(Some((next, last)))
    }

    /// Whether `partition` is in the producer's open transaction: what a
    /// transactional produce and AddPartitionsToTxn v4 `verify_only` ask.
    pub fn verify_partition(
        &self,
        tid: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), i16> {
        let shard = self.shard(tid)?;
        let st = shard.lock();
        let m = st.txns.get(tid).ok_or(INVALID_PRODUCER_ID_MAPPING)?;
        if m.producer_id != producer_id {
            return Err(INVALID_PRODUCER_ID_MAPPING);
        }
        if epoch < m.producer_epoch {
            return Err(INVALID_PRODUCER_EPOCH);
        }
        let added = m.state == TxnState::Ongoing
            && epoch == m.producer_epoch
            && m.partitions.contains(&(topic.to_string(), partition));
        if added {
            Ok(())
        } else {
            Err(INVALID_TXN_STATE)
        }
    }

    /// EndTxn: commits or aborts the open transaction.
    pub async fn end_txn(&self, tid: &str, producer_id: i64, epoch: i16, commit: bool) -> i16 {
        if tid.is_empty() {
            return INVALID_REQUEST;
        }
        {
            let shard = match self.shard(tid) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let st = match Self::lock_idle(&shard, tid) {
                Ok(st) => st,
                Err(code) => return code,
            };
            if let Err(code) = Self::check_producer(st.txns.get(tid), producer_id, epoch) {
                return code;
            }
            let Some(m) = st.txns.get(tid) else {
                return INVALID_PRODUCER_ID_MAPPING;
            };
            match (m.state, commit) {
                (TxnState::Ongoing, _) => {}
                // A retry of an EndTxn that completed.
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return NONE,
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    return CONCURRENT_TRANSACTIONS;
                }
                _ => return INVALID_TXN_STATE,
            }
        }
        match self.end(tid, commit, false).await {
            Ok(_) => NONE,
            // The outcome is durable (the prepare record) though a marker or
            // the completion failed: the timer retries them and a new leader
            // finishes them at load, so the transaction will end as asked.
            // Kafka answers once the prepare is written, for the same reason.
            Err(code) if self.decided(tid, commit) => {
                tracing::warn!(transactional_id = %tid, code, commit, "transaction prepared, its completion left to the coordinator's timer");
                NONE
            }
            Err(code) => code,
        }
    }

    /// Whether `tid`'s transaction is prepared (durably: the state moves only
    /// once its record is written) to commit or, without `commit`, abort.
    fn decided(&self, tid: &str, commit: bool) -> bool {
        let want = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.shard(tid)
            .is_ok_and(|shard| shard.lock().txns.get(tid).is_some_and(|m| m.state == want))
    }

    /// Moves an Ongoing transaction to Prepare*, writes its markers and
    /// settles its offsets, then Complete*. With `fence`, the epoch is
    /// bumped first so the current producer can write nothing more.
    /// Returns the epoch the markers carry.
    pub(super) async fn end(&self, tid: &str, commit: bool, fence: bool) -> Result<i16, i16> {
        let shard = &self.shard(tid)?;
        if fence {
            // A fence may retire the producer id for a new one.
            self.reserve_producer_id().await;
        }
        let (prepared, last) = {
            let st = Self::lock_idle(shard, tid)?;
            let m = st.txns.get(tid).ok_or(INVALID_PRODUCER_ID_MAPPING)?;
            if m.state != TxnState::Ongoing {
                return Err(CONCURRENT_TRANSACTIONS);
            }
            let mut next = m.clone();
            if fence {
                next.last_producer_epoch = next.producer_epoch;
                if next.producer_epoch >= i16::MAX - 1 {
                    // No epoch left to fence with: retire the producer id.
                    next.producer_id = self.new_producer_id()?;
                    next.producer_epoch = 0;
                } else {
                    next.producer_epoch += 1;
                }
            }
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.update_ms = now_ms();
            let last = self.begin_write(shard, st, &next)?;
            (next, last)
        };
        self.finish_write(shard, prepared.clone(), last).await?;
        self.complete(&prepared).await?;
        Ok(prepared.producer_epoch)
    }

    /// Writes the markers of a prepared transaction and settles its group
    /// offsets, then records it complete. Safe to repeat after a crash.
    pub(super) async fn complete(&self, m: &TxnMetadata) -> Result<(), i16> {
        let commit = m.state == TxnState::PrepareCommit;
        let kind = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let shard = &self.shard(&m.transactional_id)?;
        let marker = TxnMarker {
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            kind,
            coordinator_epoch: shard.leader_epoch,
        };
        // The groups' pending offsets settle in their shards, here or on
        // the brokers leading them (as Kafka marks __consumer_offsets).
        let mut partitions: Vec<(String, i32)> = m.partitions.iter().cloned().collect();
        let n = self.groups.shard_count();
        let mut shards: Vec<u32> = m.groups.iter().map(|g| shard_for(g, n)).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut failed = 0;
        for s in shards {
            if self.groups.shard_by_id(s).is_ok() {
                failed +=
                    (self.settle_shard_offsets(s, m.producer_id, commit).await != NONE) as usize;
            } else {
                partitions.push((COORDINATOR_TOPIC.to_string(), s as i32));
            }
        }
        failed += self
            .markers
            .write_markers(marker, partitions)
            .await
            .into_iter()
            .filter(|code| *code != NONE && *code != UNKNOWN_TOPIC_OR_PARTITION)
            .count();
        if failed > 0 {
            // Stays prepared: the timer retries, a new leader finishes it.
            return Err(KAFKA_STORAGE_ERROR);
        }
        let mut st = shard.lock();
        let Some(cur) = st.txns.get(&m.transactional_id) else {
            return Ok(());
        };
        if cur.state != m.state || cur.producer_id != m.producer_id {
            return Ok(());
        }
        let mut next = cur.clone();
        next.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.groups.clear();
        // Kafka keeps the finished transaction's start time (DescribeTransactions shows it).
        next.update_ms = now_ms();
        // Not fsynced: if lost, the durable prepare record completes it again.
        self.persist_lazily(shard, &next)?;
        st.txns.insert(m.transactional_id.clone(), next);
        let result = if commit { "commit" } else { "abort" };
        metrics::counter!(TRANSACTIONS_METRIC, "result" => result).increment(1);
        shard.maybe_checkpoint(&mut st);
        Ok(())
    }
}

fn txn_record(m: &TxnMetadata) -> (RecordKey, Option<bytes::Bytes>) {
    (RecordKey::Txn(m.transactional_id.clone()), Some(m.encode()))
}

fn persist_failed(shard: &Shard, m: &TxnMetadata, e: ShardError) -> i16 {
    if !matches!(e, ShardError::NotCoordinator { .. }) {
        tracing::error!(shard = shard.id, txn = %m.transactional_id, error = %e, "could not persist transaction state");
    }
    e.code()
}
