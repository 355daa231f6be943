//! The TransactionCoordinator: producer ids, transactional ids and their
//! transactions, over the same Pharaoh shards as the groups. A
//! transactional id lives in the shard it hashes to; producer ids come from
//! the shards' Obelisk sequencers and carry the shard number in their high
//! bits, so no two shards ever hand out the same id.
//!
//! Every method here may write to logs (the shard's own, and markers into
//! data partitions): call them off the async reactor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use karnak_protocol::control::{ControlType, end_txn_marker};
use karnak_storage::LogManager;

use super::{TxnMetadata, TxnState};
use crate::coordinator::{GroupCoordinator, shard_for};
use crate::errors::*;
use crate::records::RecordKey;
use crate::shard::Shard;

/// Transactions ended, by `result` (commit, abort).
pub const TRANSACTIONS_METRIC: &str = "karnak_transactions_total";
/// Transactions the coordinator aborted because they outlived their timeout.
pub const TIMED_OUT_METRIC: &str = "karnak_transactions_timed_out_total";

/// Ids a sequencer may hand out stay below this; the shard goes above.
const ID_BITS: u32 = 48;
/// The coordinator epoch stamped on markers. One node has one coordinator
/// per shard for its whole life; a cluster will take it from the shard's
/// leadership term.
const COORDINATOR_EPOCH: i32 = 0;

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
    pub(super) shards: Vec<Arc<Shard>>,
    logs: Arc<LogManager>,
    pub(super) cfg: TxnConfig,
    /// Round-robin over shards for producers without a transactional id.
    next_shard: AtomicUsize,
}

/// Producer id and epoch handed to a producer.
pub type ProducerIdAndEpoch = (i64, i16);

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl TransactionCoordinator {
    /// Over the group coordinator's shards; finishes transactions a crash
    /// left prepared (their markers may be partly written).
    pub fn open(groups: &GroupCoordinator, logs: Arc<LogManager>, cfg: TxnConfig) -> Self {
        let tc = TransactionCoordinator {
            shards: groups.shards().to_vec(),
            logs,
            cfg,
            next_shard: AtomicUsize::new(0),
        };
        let (prepared, ongoing) = tc.count_states();
        let finished = tc.complete_prepared();
        tracing::info!(
            transactions_prepared = prepared,
            transactions_ongoing = ongoing,
            finished,
            "transaction coordinator loaded"
        );
        tc
    }

    fn count_states(&self) -> (usize, usize) {
        let mut prepared = 0;
        let mut ongoing = 0;
        for s in &self.shards {
            for m in s.lock().txns.values() {
                prepared += m.state.is_prepare() as usize;
                ongoing += (m.state == TxnState::Ongoing) as usize;
            }
        }
        (prepared, ongoing)
    }

    pub(super) fn shard(&self, key: &str) -> &Arc<Shard> {
        &self.shards[shard_for(key, self.shards.len() as u32) as usize]
    }

    fn new_producer_id(&self, shard: &Shard) -> Result<i64, i16> {
        match shard.seq.next() {
            Ok(n) => Ok(((shard.id as i64) << ID_BITS) | (n as i64 & ((1 << ID_BITS) - 1))),
            Err(e) => {
                tracing::error!(shard = shard.id, error = %e, "producer id sequencer failed");
                Err(COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// Persists a transaction's metadata in its shard (lock held by caller),
    /// durably when the broker flushes acks=all writes.
    pub(super) fn persist(&self, shard: &Shard, m: &TxnMetadata) -> Result<(), i16> {
        self.persist_with(shard, m, self.cfg.durable)
    }

    fn persist_with(&self, shard: &Shard, m: &TxnMetadata, sync: bool) -> Result<(), i16> {
        let record = (RecordKey::Txn(m.transactional_id.clone()), Some(m.encode()));
        match shard.append_durable(vec![record], sync) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(shard = shard.id, txn = %m.transactional_id, error = %e, "could not persist transaction state");
                Err(KAFKA_STORAGE_ERROR)
            }
        }
    }

    /// InitProducerId. Without a transactional id: a fresh producer id
    /// (idempotence only; KIP-360 re-inits get a fresh one too, as in
    /// Kafka). With one: the id's producer, epoch bumped, which fences any
    /// older producer and aborts its open transaction.
    pub fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<ProducerIdAndEpoch, i16> {
        let Some(tid) = transactional_id else {
            let n = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
            return Ok((self.new_producer_id(&self.shards[n])?, 0));
        };
        if tid.is_empty() {
            return Err(INVALID_REQUEST);
        }
        if timeout_ms <= 0 || timeout_ms > self.cfg.max_timeout_ms {
            return Err(INVALID_TRANSACTION_TIMEOUT);
        }
        let shard = self.shard(tid);
        let now = now_ms();
        let mut st = shard.lock();
        let Some(m) = st.txns.get(tid).cloned() else {
            let m = TxnMetadata {
                transactional_id: tid.to_string(),
                producer_id: self.new_producer_id(shard)?,
                producer_epoch: 0,
                last_producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: Default::default(),
                groups: Default::default(),
                start_ms: -1,
                update_ms: now,
            };
            self.persist(shard, &m)?;
            st.txns.insert(tid.to_string(), m.clone());
            return Ok((m.producer_id, m.producer_epoch));
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
            drop(st);
            // Fence the old producer: abort under a bumped epoch.
            let epoch = self.end(tid, false, true)?;
            let mut st = shard.lock();
            let m = st.txns.get_mut(tid).ok_or(CONCURRENT_TRANSACTIONS)?;
            m.timeout_ms = timeout_ms;
            m.state = TxnState::Empty;
            m.last_producer_epoch = -1;
            m.update_ms = now_ms();
            let m = m.clone();
            self.persist(shard, &m)?;
            return Ok((m.producer_id, epoch));
        }
        let mut next = m;
        if next.producer_epoch >= i16::MAX - 1 {
            // Epochs exhausted: a new producer id starts again at 0.
            next.producer_id = self.new_producer_id(shard)?;
            next.producer_epoch = 0;
        } else {
            next.producer_epoch += 1;
        }
        next.timeout_ms = timeout_ms;
        next.state = TxnState::Empty;
        next.last_producer_epoch = -1;
        next.update_ms = now;
        self.persist(shard, &next)?;
        st.txns.insert(tid.to_string(), next.clone());
        Ok((next.producer_id, next.producer_epoch))
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
    pub fn add_to_txn(
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
        let shard = self.shard(tid);
        let mut st = shard.lock();
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
            return Ok(());
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
        self.persist(shard, &next)?;
        st.txns.insert(tid.to_string(), next);
        Ok(())
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
        let st = self.shard(tid).lock();
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
    pub fn end_txn(&self, tid: &str, producer_id: i64, epoch: i16, commit: bool) -> i16 {
        if tid.is_empty() {
            return INVALID_REQUEST;
        }
        {
            let st = self.shard(tid).lock();
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
        match self.end(tid, commit, false) {
            Ok(_) => NONE,
            Err(code) => code,
        }
    }

    /// Moves an Ongoing transaction to Prepare*, writes its markers and
    /// settles its offsets, then Complete*. With `fence`, the epoch is
    /// bumped first so the current producer can write nothing more.
    /// Returns the epoch the markers carry.
    pub(super) fn end(&self, tid: &str, commit: bool, fence: bool) -> Result<i16, i16> {
        let shard = self.shard(tid);
        let prepared = {
            let mut st = shard.lock();
            let m = st.txns.get(tid).ok_or(INVALID_PRODUCER_ID_MAPPING)?;
            if m.state != TxnState::Ongoing {
                return Err(CONCURRENT_TRANSACTIONS);
            }
            let mut next = m.clone();
            if fence {
                next.last_producer_epoch = next.producer_epoch;
                if next.producer_epoch >= i16::MAX - 1 {
                    // No epoch left to fence with: retire the producer id.
                    next.producer_id = self.new_producer_id(shard)?;
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
            self.persist(shard, &next)?;
            st.txns.insert(tid.to_string(), next.clone());
            next
        };
        self.complete(&prepared)?;
        Ok(prepared.producer_epoch)
    }

    /// Writes the markers of a prepared transaction and settles its group
    /// offsets, then records it complete. Safe to repeat after a crash.
    pub(super) fn complete(&self, m: &TxnMetadata) -> Result<(), i16> {
        let commit = m.state == TxnState::PrepareCommit;
        let kind = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let partitions: Vec<(String, i32)> = m.partitions.iter().cloned().collect();
        let failed = self
            .write_markers(m.producer_id, m.producer_epoch, kind, &partitions)
            .into_iter()
            .filter(|(_, code)| *code != NONE && *code != UNKNOWN_TOPIC_OR_PARTITION)
            .count();
        if failed > 0 {
            // Stays prepared: the timer retries, start-up finishes it.
            return Err(KAFKA_STORAGE_ERROR);
        }
        for g in &m.groups {
            self.settle_offsets(g, m.producer_id, commit)?;
        }
        let shard = self.shard(&m.transactional_id);
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
        self.persist_with(shard, &next, false)?;
        st.txns.insert(m.transactional_id.clone(), next);
        let result = if commit { "commit" } else { "abort" };
        metrics::counter!(TRANSACTIONS_METRIC, "result" => result).increment(1);
        shard.maybe_checkpoint(&mut st);
        Ok(())
    }

    /// Writes one marker per partition (WriteTxnMarkers does the same on
    /// the wire). Returns each partition's error code. Markers are made
    /// durable before the transaction is recorded complete: a complete
    /// record with a lost marker would leave the partition's stable offset
    /// stuck behind a transaction nobody will end.
    pub fn write_markers(
        &self,
        producer_id: i64,
        epoch: i16,
        kind: ControlType,
        partitions: &[(String, i32)],
    ) -> Vec<((String, i32), i16)> {
        let now = now_ms();
        let marker = bytes::Bytes::from(end_txn_marker(
            producer_id,
            epoch,
            kind,
            COORDINATOR_EPOCH,
            now,
        ));
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, p) in partitions {
            let code = match self.logs.log(topic, *p) {
                // Deleted since it joined the transaction: nothing to mark.
                None => UNKNOWN_TOPIC_OR_PARTITION,
                Some(log) => match log.append(&marker, log.latest_epoch(), None) {
                    Ok(info) => {
                        if self.cfg.durable
                            && let Err(e) = log.flush_up_to(info.last_offset + 1)
                        {
                            tracing::error!(topic, partition = p, error = %e, "fsync of transaction marker failed");
                            KAFKA_STORAGE_ERROR
                        } else {
                            NONE
                        }
                    }
                    Err(karnak_storage::StorageError::Producer(e)) => {
                        tracing::warn!(topic, partition = p, error = %e, "transaction marker refused");
                        match e {
                            karnak_storage::log::producer_state::ProducerError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
                            _ => INVALID_TXN_STATE,
                        }
                    }
                    Err(e) => {
                        tracing::error!(topic, partition = p, error = %e, "writing transaction marker failed");
                        KAFKA_STORAGE_ERROR
                    }
                },
            };
            out.push(((topic.clone(), *p), code));
        }
        out
    }
}
