//! A partition log: an ordered set of segments, the last one active.
//! Appends are serialized by one mutex; reads go through an RwLock'd
//! segment map and atomics, so they never wait for an append's I/O.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::{Bytes, BytesMut};
use karnak_protocol::control::parse_marker;
use karnak_protocol::record_batch::{BatchHeader, BatchIter, assign_offsets, set_log_append_time};

use crate::config::LogConfig;
use crate::error::{IoContext, StorageError};
use crate::segment::{IndexCursor, LogSegment};

mod compaction;
mod health;
pub mod leader_epoch;
mod open;
pub mod producer_state;
mod read;
pub(crate) mod replica;
mod retention;
mod timestamps;
mod transactions;
pub mod txn_index;

pub use compaction::LastRecord;
pub use health::PartitionHealth;
use leader_epoch::LeaderEpochCache;
use producer_state::{BatchInfo, Checked, CompletedTxn, ProducerStateManager};
use transactions::aborted_entry;
use txn_index::TxnIndex;

/// `producer.id.expiration.ms` (Kafka's default, one day): an idle
/// producer's state is dropped at the next segment roll after this.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// Marker written by a clean close; its presence lets open skip CRC checks.
pub const CLEAN_SHUTDOWN_FILE: &str = ".karnak_clean_shutdown";
/// Every offset below the one this file holds is on disk: start-up after a
/// crash checks (CRC) the segments from there on and trusts the ones before
/// (Kafka's recovery point, kept per partition).
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
/// Partitions taken offline by a storage error (Kafka's offline replicas).
pub const OFFLINE_PARTITIONS: &str = "karnak_offline_partitions";

/// A region of a segment file to `sendfile`.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
    /// The partition's health: a read error while sending the slice takes
    /// the partition offline ([`PartitionHealth::read_failed`]).
    pub health: Arc<PartitionHealth>,
}

#[derive(Clone, Debug)]
pub struct ReadResult {
    /// None when there is nothing to return (fetch at log end).
    pub slice: Option<FileSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 for CreateTime topics.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The batches were a producer's retry of batches already in the log:
    /// nothing was written and the offsets are the originals.
    pub duplicate: bool,
    /// Transactions the appended markers completed.
    pub completed: Vec<CompletedTxn>,
}

struct AppendState {
    active: Arc<LogSegment>,
    cursor: IndexCursor,
    unflushed_messages: u64,
    closed: bool,
    producers: ProducerStateManager,
}

/// Time of each log fsync (Kafka's LogFlushRateAndTimeMs).
pub const LOG_FLUSH_LATENCY: &str = "karnak_log_flush_seconds";

pub struct Log {
    dir: PathBuf,
    topic: String,
    partition: i32,
    /// Swapped whole by [`Log::set_config`] (AlterConfigs on a live topic);
    /// each append, roll and retention pass reads it once.
    config: RwLock<Arc<LogConfig>>,
    segments: RwLock<BTreeMap<i64, Arc<LogSegment>>>,
    append: Mutex<AppendState>,
    log_end_offset: AtomicI64,
    log_start_offset: AtomicI64,
    /// Below the first open transaction's first offset (read_committed bound).
    last_stable_offset: AtomicI64,
    txn_index: TxnIndex,
    leader_epochs: LeaderEpochCache,
    flushed_offset: AtomicI64,
    flush_lock: Mutex<()>,
    fsyncs: AtomicU64,
    last_flush_ms: AtomicI64,
    dirty_dir: AtomicBool,
    /// It was opened without its clean-shutdown marker: what it had not
    /// fsynced before the crash may be gone.
    opened_after_crash: bool,
    /// The offset last written to the recovery-point file.
    recovery_point: AtomicI64,
    /// Offline after the first failed fsync, write or read.
    health: Arc<PartitionHealth>,
    /// The high watermark: the log end offset unless replicated (then the
    /// leader's replication moves it). Fetch long polls wait on it.
    hw: tokio::sync::watch::Sender<i64>,
    replicated: AtomicBool,
    /// From the data dir's replication checkpoint, until replication starts (-1: none).
    hw_checkpoint: AtomicI64,
    /// The log end offset, for followers' fetches to wait on.
    end: tokio::sync::watch::Sender<i64>,
    /// The log cleaner's offset cleaned up to; -1: none yet.
    clean_offset: AtomicI64,
    /// Held by a cleaning of this log for its whole run.
    cleaning: Mutex<()>,
    /// Set on close: a running cleaning gives up.
    clean_abort: AtomicBool,
    /// Held by whatever removes sealed segments (retention, deletes behind
    /// a checkpoint, the cleaner's swap), before the append lock if both.
    segment_removal: Mutex<()>,
    /// A cleaning failed: the cleaner thread skips this log until restart.
    uncleanable: AtomicBool,
    /// Cleaned segments swapped in: records below the log end changed in
    /// place (what a cache of decoded records must notice).
    rewrites: AtomicU64,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Log {
    /// Appends validated v2 batches, assigning offsets from the log end offset.
    pub fn append(
        &self,
        records: &Bytes,
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) -> Result<AppendInfo, StorageError> {
        self.append_guarded(records, leader_epoch, log_append_time, None)
    }

    /// As [`Self::append`]; with `guard`, a transactional batch that opens a
    /// transaction here is refused if a marker for its producer was written
    /// since the token was taken.
    pub fn append_guarded(
        &self,
        records: &Bytes,
        leader_epoch: i32,
        log_append_time: Option<i64>,
        guard: Option<u64>,
    ) -> Result<AppendInfo, StorageError> {
        let cfg = self.config();
        let mut batches: Vec<(usize, BatchHeader)> = Vec::new();
        let mut records_count = 0u64;
        for item in BatchIter::new(records) {
            let (pos, h) = item.map_err(|e| StorageError::Corrupt {
                path: self.dir.clone(),
                reason: format!("records to append are malformed: {e}"),
            })?;
            if h.total_size() > cfg.max_message_bytes as usize {
                return Err(StorageError::RecordTooLarge {
                    size: h.total_size(),
                    max: cfg.max_message_bytes,
                });
            }
            records_count += h.last_offset_delta as u64 + 1;
            batches.push((pos, h));
        }
        let total: usize = batches.last().map_or(0, |(p, h)| p + h.total_size());
        if batches.is_empty() || total != records.len() {
            return Err(StorageError::Corrupt {
                path: self.dir.clone(),
                reason: "records to append hold no whole batches".into(),
            });
        }
        // The config read once at the top of the append serves the check too.
        self.check_keys(&cfg, records, &batches)?;
        let mut st = lock(&self.append);
        self.check_online()?;
        if st.closed {
            return Err(StorageError::io(
                format!("appending to {}-{}", self.topic, self.partition),
                std::io::Error::other("log is closed"),
            ));
        }
        let base_offset = self.log_end_offset.load(Ordering::Acquire);
        let now = now_ms();
        // Final headers (offsets assigned) for indexing and producer checks.
        let mut next = base_offset;
        for (_, h) in batches.iter_mut() {
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            if let Some(t) = log_append_time {
                h.max_timestamp = t;
            }
            next = h.next_offset();
        }
        let producer_batches: Vec<BatchInfo> = batches
            .iter()
            .filter(|(_, h)| h.producer_id >= 0)
            .map(|(pos, h)| {
                let marker = h
                    .is_control()
                    .then(|| parse_marker(&records[*pos..pos + h.total_size()], h))
                    .flatten();
                BatchInfo::from_header(h, marker)
            })
            .collect();
        let (updates, completed) = if producer_batches.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let checked = st.producers.check(&producer_batches, guard);
            if let (Some(token), Some(b)) = (guard, producer_batches.first()) {
                // Used or refused, the token is done either way.
                st.producers.remove_guard(b.producer_id, token);
            }
            match checked? {
                Checked::Duplicate(d) => {
                    return Ok(AppendInfo {
                        base_offset: d.first_offset,
                        last_offset: d.last_offset,
                        log_append_time: log_append_time.map_or(-1, |_| d.timestamp),
                        log_start_offset: self.log_start_offset(),
                        duplicate: true,
                        completed: Vec::new(),
                    });
                }
                Checked::Append(u) => {
                    let done = producer_batches
                        .iter()
                        .filter_map(|b| st.producers.completes(b))
                        .collect();
                    (u, done)
                }
            }
        };
        self.maybe_roll(&mut st, &cfg, total as u64, base_offset, records_count, now)?;
        self.leader_epochs.assign(leader_epoch, base_offset)?;
        let active = st.active.clone();
        let interval = cfg.index_interval_bytes;
        let ahead = cfg.preallocate_ahead_bytes;
        let roll_at = cfg.segment_bytes;
        match log_append_time {
            Some(t) => {
                // LogAppendTime rewrites CRC'd fields, so this path copies.
                let mut buf = BytesMut::from(&records[..]);
                assign_offsets(&mut buf, base_offset, leader_epoch);
                set_log_append_time(&mut buf, t);
                let mut iov = [IoSlice::new(&buf)];
                active
                    .append(&mut iov, &batches, interval, &mut st.cursor, ahead, roll_at)
                    .map_err(|e| self.on_write_error(e))?;
            }
            None => {
                let offsets: Vec<[u8; 8]> = batches
                    .iter()
                    .map(|(_, h)| h.base_offset.to_be_bytes())
                    .collect();
                let epoch = leader_epoch.to_be_bytes();
                let mut iov = Vec::with_capacity(batches.len() * 4);
                for ((pos, h), off) in batches.iter().zip(&offsets) {
                    let end = pos + h.total_size();
                    iov.push(IoSlice::new(off));
                    iov.push(IoSlice::new(&records[pos + 8..pos + 12]));
                    iov.push(IoSlice::new(&epoch));
                    iov.push(IoSlice::new(&records[pos + 16..end]));
                }
                active
                    .append(&mut iov, &batches, interval, &mut st.cursor, ahead, roll_at)
                    .map_err(|e| self.on_write_error(e))?;
            }
        }
        if active.created_ms.load(Ordering::Relaxed) < 0 {
            active.created_ms.store(now, Ordering::Relaxed);
        }
        if !updates.is_empty() {
            st.producers.apply(updates);
        }
        for b in producer_batches.iter().filter(|b| b.control.is_some()) {
            st.producers.clear_guards(b.producer_id);
        }
        let lso = st.producers.first_unstable_offset().unwrap_or(next);
        for c in completed.iter().filter(|c| c.aborted) {
            self.txn_index
                .add(&self.dir, active.base_offset, aborted_entry(c, lso))?;
        }
        self.last_stable_offset.store(lso, Ordering::Release);
        self.log_end_offset.store(next, Ordering::Release);
        self.end.send_replace(next);
        if !self.replicated.load(Ordering::Acquire) {
            self.hw.send_replace(next);
        }
        st.unflushed_messages += records_count;
        let flush_now = cfg
            .flush_messages
            .is_some_and(|n| st.unflushed_messages >= n);
        if flush_now {
            st.unflushed_messages = 0;
        }
        drop(st);
        if flush_now {
            self.flush_up_to(next)?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: log_append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset(),
            duplicate: false,
            completed,
        })
    }

    fn maybe_roll(
        &self,
        st: &mut AppendState,
        cfg: &LogConfig,
        size: u64,
        next_offset: i64,
        records: u64,
        now: i64,
    ) -> Result<(), StorageError> {
        let active = &st.active;
        if active.size() == 0 {
            return Ok(());
        }
        // Positions and relative offsets are u32 in the indexes.
        let max_seg = cfg.segment_bytes.min(i32::MAX as u64);
        let created = active.created_ms.load(Ordering::Relaxed);
        let roll = active.size() + size > max_seg
            || (created >= 0 && now.saturating_sub(created) >= cfg.max_segment_ms() as i64)
            || active.indexes_full()
            || (next_offset + records as i64 - active.base_offset) > u32::MAX as i64;
        if !roll {
            return Ok(());
        }
        // The sealed segment's data is fsynced later, off this path (see
        // `flush_sealed`); until then start-up after a crash checks it.
        active.seal()?;
        // The sealed segment's aborted-txn entries must be on disk before a
        // snapshot past them lets start-up skip replaying their markers.
        let txn_idx = crate::segment::txn_index_path(&self.dir, active.base_offset);
        if txn_idx.exists() {
            File::open(&txn_idx)
                .and_then(|f| f.sync_all())
                .ctx(|| format!("fsync {}", txn_idx.display()))?;
        }
        // Producer state as of the new segment's base: start-up replays
        // from here, so only the active segment's headers are read.
        st.producers.expire(now, PRODUCER_ID_EXPIRATION_MS);
        st.producers.write_snapshot(&self.dir, next_offset)?;
        let seg = Arc::new(LogSegment::create(
            &self.dir,
            next_offset,
            cfg.segment_index_bytes as u64,
            now,
        )?);
        seg.prepare_active(cfg.segment_index_bytes as u64)?;
        // The new file's directory entry must survive a crash too.
        self.dirty_dir.store(true, Ordering::Release);
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(next_offset, seg.clone());
        tracing::debug!(topic = %self.topic, partition = self.partition, base_offset = next_offset, "rolled new log segment");
        st.active = seg;
        st.cursor = IndexCursor::default();
        Ok(())
    }

    pub(crate) fn segment_list(&self) -> Vec<Arc<LogSegment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Sealed segments (all but the active one), oldest first.
    pub fn sealed_segments(&self) -> Vec<Arc<LogSegment>> {
        let mut segs = self.segment_list();
        segs.pop();
        segs
    }

    /// Whether `seg` is still one of this log's segments (not deleted).
    pub fn holds_segment(&self, seg: &Arc<LogSegment>) -> bool {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&seg.base_offset)
            .is_some_and(|s| Arc::ptr_eq(s, seg))
    }

    /// The segment holding `offset` (the last one whose base is at or below).
    pub fn segment_for(&self, offset: i64) -> Option<Arc<LogSegment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s.clone())
    }

    /// Every offset below this is on disk (fsynced since this process
    /// opened the log, or before a clean shutdown).
    pub fn durable_offset(&self) -> i64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// Consumers read below it. The log end offset unless the partition
    /// is replicated.
    pub fn high_watermark(&self) -> i64 {
        if self.replicated.load(Ordering::Acquire) {
            *self.hw.borrow()
        } else {
            self.log_end_offset()
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// The latest leader epoch that wrote to this log (0 when none has).
    pub fn latest_epoch(&self) -> i32 {
        self.leader_epochs.latest_epoch().unwrap_or(0)
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` and the
    /// offset where the epoch after it starts (see
    /// [`LeaderEpochCache::end_offset_for`]).
    /// A log with no checkpoint yet (nothing appended since the cache
    /// existed) is all epoch 0, the only epoch a single node has led in.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        if self.leader_epochs.latest_epoch().is_none() {
            return match epoch {
                0 => (0, self.log_end_offset()),
                _ => (
                    leader_epoch::UNDEFINED_EPOCH,
                    leader_epoch::UNDEFINED_EPOCH_OFFSET,
                ),
            };
        }
        self.leader_epochs
            .end_offset_for(epoch, self.log_end_offset())
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The config in force now (a cheap handle; a later
    /// [`Self::set_config`] does not change it).
    pub fn config(&self) -> Arc<LogConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the config of a live log (AlterConfigs): the next append,
    /// roll, flush and retention pass use it. Segments already written keep
    /// their layout (a new `segment.index.bytes` applies from the next roll).
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Size on disk of all segments' log files.
    pub fn size_bytes(&self) -> u64 {
        self.segment_list().iter().map(|s| s.size()).sum()
    }

    /// Number of fsync rounds performed (for tests and metrics).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Why the log is offline, if it is (a failed fsync or write).
    pub fn offline_cause(&self) -> Option<String> {
        self.health.cause()
    }

    /// Opened without its clean-shutdown marker (after a crash or kill).
    pub fn opened_after_crash(&self) -> bool {
        self.opened_after_crash
    }

    pub fn is_offline(&self) -> bool {
        self.health.is_offline()
    }

    pub(crate) fn check_online(&self) -> Result<(), StorageError> {
        match self.offline_cause() {
            None => Ok(()),
            Some(cause) => Err(StorageError::Offline {
                topic: self.topic.clone(),
                partition: self.partition,
                cause,
            }),
        }
    }

    /// A full disk fails the append (the segment was put back to its
    /// length before it); any other write error may have left what the disk
    /// holds unknown, so the log goes offline.
    fn on_write_error(&self, e: StorageError) -> StorageError {
        match &e {
            StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                e
            }
            _ => self.take_offline(e),
        }
    }

    /// Takes the log offline after `e` (once; the first cause is kept) and
    /// returns the error its caller reports.
    fn take_offline(&self, e: StorageError) -> StorageError {
        self.health.take_offline(&e)
    }

    /// Makes every offset < `offset` durable. Concurrent callers share one
    /// fsync round; a call already covered returns without a syscall.
    pub fn flush_up_to(&self, offset: i64) -> Result<(), StorageError> {
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _g = lock(&self.flush_lock);
        self.check_online()?;
        let from = self.flushed_offset.load(Ordering::Acquire);
        if from >= offset {
            return Ok(());
        }
        // Cover everything committed so far, so waiters behind us are done too.
        let target = self.log_end_offset();
        let started = std::time::Instant::now();
        // A failed fsync is not retried: Linux may have dropped the pages
        // whose write-back failed and marked them clean, so a later fsync
        // would "succeed" without them. The log goes offline instead.
        if self.dirty_dir.swap(false, Ordering::AcqRel)
            && let Err(e) = sync_dir(&self.dir)
        {
            return Err(self.take_offline(e));
        }
        for seg in self.segment_list() {
            if seg.next_offset() > from && seg.base_offset < target {
                seg.sync().map_err(|e| self.take_offline(e))?;
            }
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!(LOG_FLUSH_LATENCY).record(started.elapsed().as_secs_f64());
        self.flushed_offset.fetch_max(target, Ordering::AcqRel);
        self.last_flush_ms.store(now_ms(), Ordering::Relaxed);
        Ok(())
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.flush_up_to(self.log_end_offset())
    }

    /// Makes the sealed segments durable and moves the recovery point past
    /// them, off the produce path (a roll does not wait for the disk): the
    /// broker's flush timer calls it. Returns whether it flushed anything.
    pub fn flush_sealed(&self) -> Result<bool, StorageError> {
        let Some(active_base) = self
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .next_back()
            .copied()
        else {
            return Ok(false);
        };
        if self.recovery_point.load(Ordering::Acquire) >= active_base || self.is_offline() {
            return Ok(false);
        }
        let from = self.flushed_offset.load(Ordering::Acquire);
        // The data first, without the flush lock: a segment's fsync may take
        // a while and acks=all waiters on this log must not queue behind it.
        for seg in self.segment_list() {
            if seg.base_offset < active_base && seg.next_offset() > from {
                seg.sync().map_err(|e| self.take_offline(e))?;
            }
        }
        // The roll's producer snapshot, now that the log below it is durable
        // (its name with the directory fsync below).
        producer_state::sync_snapshot(&self.dir, active_base).map_err(|e| self.take_offline(e))?;
        {
            let _g = lock(&self.flush_lock);
            if self.dirty_dir.swap(false, Ordering::AcqRel)
                && let Err(e) = sync_dir(&self.dir)
            {
                return Err(self.take_offline(e));
            }
            self.flushed_offset.fetch_max(active_base, Ordering::AcqRel);
        }
        self.write_recovery_point(active_base)?;
        Ok(true)
    }

    fn write_recovery_point(&self, offset: i64) -> Result<(), StorageError> {
        crate::checkpoint::write_checkpoint(&self.dir.join(RECOVERY_POINT_FILE), &[vec![offset]])?;
        self.recovery_point.fetch_max(offset, Ordering::AcqRel);
        Ok(())
    }

    /// Background flush by `flush.ms`; the broker calls this from a timer.
    pub fn flush_if_due(&self, now_ms: i64) {
        if let Err(e) = self.flush_sealed() {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "flushing sealed segments failed");
        }
        let Some(interval) = self.config().flush_ms else {
            return;
        };
        if now_ms.saturating_sub(self.last_flush_ms.load(Ordering::Relaxed)) < interval as i64 {
            return;
        }
        if let Err(e) = self.flush() {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "scheduled log flush failed");
        }
        self.last_flush_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Watch the high watermark, for fetch long-polling.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Rolls a new active segment now (if the current one holds anything),
    /// so everything written so far sits in sealed segments.
    pub fn roll(&self) -> Result<(), StorageError> {
        let mut st = lock(&self.append);
        let next = self.log_end_offset();
        // A size no segment can take forces the roll.
        let cfg = self.config();
        self.maybe_roll(&mut st, &cfg, u64::MAX / 4, next, 0, now_ms())
    }

    /// Clean shutdown: flush, seal the active segment's indexes, write the
    /// clean-shutdown marker. Later appends fail.
    pub fn close(&self) -> Result<(), StorageError> {
        // A cleaning must not swap segments under a closing log.
        self.abort_cleaning();
        // A retention pass unlinks its segments' files after releasing the
        // append lock: wait for it, so a log truncated or cleared after
        // this close never has a new file removed under the old name.
        let _removal = lock(&self.segment_removal);
        let mut st = lock(&self.append);
        if let Some(cause) = self.offline_cause() {
            // Nothing more is written to a disk in doubt, and no clean
            // marker: the next start checks this log as after a crash.
            tracing::warn!(topic = %self.topic, partition = self.partition, %cause,
                "closing an offline partition without marking it clean");
            st.closed = true;
            return Ok(());
        }
        if st.closed {
            return Ok(());
        }
        st.closed = true;
        let active = st.active.clone();
        let leo = self.log_end_offset();
        st.producers.write_snapshot(&self.dir, leo)?;
        producer_state::sync_snapshot(&self.dir, leo)?;
        drop(st);
        self.dirty_dir.store(true, Ordering::Release);
        self.flush()?;
        active.sync()?;
        active.seal()?;
        self.write_recovery_point(self.log_end_offset())?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        File::create(&marker).ctx(|| format!("writing {}", marker.display()))?;
        sync_dir(&self.dir)
    }
}

/// `create_dir_all` whose new directories survive a power cut: each one
/// created is fsynced into its parent (as Kafka flushes a new log dir's
/// parent), or a power cut could take a directory, and everything fsynced
/// inside it, away.
pub fn create_dir_durable(path: &Path) -> Result<(), StorageError> {
    let mut missing = Vec::new();
    let mut p = Some(path);
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        p = d.parent();
    }
    std::fs::create_dir_all(path).ctx(|| format!("creating {}", path.display()))?;
    for d in missing.iter().rev() {
        match d.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// fsyncs a directory, so the creates, renames and unlinks in it survive
/// a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("fsync directory {}", dir.display()))
}
