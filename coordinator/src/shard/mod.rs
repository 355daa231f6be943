//! A Pharaoh shard: the groups whose ids hash to it, their committed
//! offsets, an Obelisk sequencer for the ids it hands out, and its own
//! internal partition where every change is a record, replayed on start.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use karnak_storage::Log;
use tokio::sync::Notify;
use tokio::time::Instant;

mod expiry;
mod membership;
mod offsets;

use crate::consumer::{self, ConsumerGroup, ConsumerHeartbeat, HeartbeatOutcome, TopicView};
use crate::errors::*;
use crate::group::{Group, GroupConfig, JoinOutcome, JoinRequest, SyncOutcome, SyncRequest};
use crate::obelisk::Sequencer;
use crate::records::{RecordKey, StoredGroup, StoredOffset};
use crate::txn::TxnMetadata;
use karnak_protocol::record_batch::{BatchIter, plain_record};
use karnak_protocol::records::BatchRecords;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard {shard}: {source}")]
    Storage {
        shard: u32,
        source: karnak_storage::StorageError,
    },
    #[error("shard {shard}: reading its log at offset {offset}: {reason}")]
    Replay {
        shard: u32,
        offset: i64,
        reason: String,
    },
    /// The shard moved to another broker (or is moving): Kafka's
    /// NOT_COORDINATOR for whoever asked.
    #[error("shard {shard} is no longer led here")]
    NotCoordinator { shard: u32 },
    /// The in-sync replicas did not take the record in time (or are fewer
    /// than min.insync.replicas): Kafka's COORDINATOR_NOT_AVAILABLE, which
    /// clients retry. The record may still be replicated later; state in
    /// memory did not move, so a retry writes it again.
    #[error("shard {shard}: the in-sync replicas do not hold the record: {reason}")]
    NotReplicated { shard: u32, reason: String },
}

impl ShardError {
    /// The Kafka error a coordinator request answers when persisting failed.
    /// A failed disk answers NOT_COORDINATOR, as Kafka's coordinators map a
    /// storage error of their log: clients find the coordinator again and
    /// retry (to the Java client KAFKA_STORAGE_ERROR from a coordinator is
    /// fatal), and the request's outcome stays open for that retry to learn.
    pub fn code(&self) -> i16 {
        match self {
            ShardError::NotCoordinator { .. }
            | ShardError::Storage { .. }
            | ShardError::Replay { .. } => NOT_COORDINATOR,
            ShardError::NotReplicated { .. } => COORDINATOR_NOT_AVAILABLE,
        }
    }
}

/// Why the in-sync replicas do not hold an append (see [`ShardReplication`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReplicated {
    /// This broker no longer leads the shard's partition.
    NotLeader,
    /// Fewer in-sync replicas than min.insync.replicas, or they did not
    /// catch up before the deadline.
    Refused(String),
}

/// What the broker's replication does for a shard: its log is a partition
/// of the coordinator topic, replicated as any other.
pub trait ShardReplication: Send + Sync {
    /// After each append as leader: the high watermark may move (at once
    /// when no follower is in sync).
    fn after_append(&self, log: &Log);
    /// Resolves once the in-sync replicas hold `log` below `end` (Kafka
    /// writes its transaction log with acks=all): state a new coordinator
    /// must find after a failover is acted on only once it is there.
    /// Awaited without the shard lock, as Kafka's coordinator runtime
    /// completes a write's response when the high watermark passes it.
    fn wait_replicated<'a>(&'a self, log: &'a Log, end: i64) -> ReplicatedFuture<'a>;
    /// This broker may answer as a coordinator now: a broker cut off from
    /// the cluster may have lost its shards without hearing of it, and
    /// must not answer from the state it was left with.
    fn may_serve(&self) -> bool {
        true
    }
}

pub type ReplicatedFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), NotReplicated>> + Send + 'a>>;

/// Deadlines of the shard's groups.
#[derive(Default)]
struct Timers {
    /// (deadline, group id); stale entries are harmless: `on_timer` checks.
    heap: BinaryHeap<Reverse<(Instant, String)>>,
    /// Each group's earliest pending entry. A heartbeat that only pushes a
    /// deadline later adds nothing: the pending entry fires first, and the
    /// group re-arms for its real next deadline then.
    armed: HashMap<String, Instant>,
}

/// Offsets a transaction committed, by (group, producer id), waiting for
/// its end: a commit makes them the group's offsets, an abort drops them.
/// An offset record met in replay: group, partition, value (None: a
/// tombstone) and its position in the shard's log.
type ReplayedOffset = (String, (String, i32), Option<StoredOffset>, i64);

pub type PendingTxnOffsets = HashMap<(String, i64), BTreeMap<(String, i32), StoredOffset>>;

pub struct ShardState {
    pub groups: HashMap<String, Group>,
    /// Transactions whose transactional id hashes to this shard.
    pub txns: HashMap<String, TxnMetadata>,
    /// Transaction states written to the log and waiting, without the
    /// shard lock, for the disk and the in-sync replicas; each becomes the
    /// transaction's state in `txns` once held (Kafka's pendingState).
    /// Requests for a transaction here answer CONCURRENT_TRANSACTIONS.
    pub txn_writes: HashMap<String, TxnMetadata>,
    /// Transactional offset commits of groups that hash to this shard.
    pub txn_offsets: PendingTxnOffsets,
    /// Offsets written but not yet durable, by the log offset of the last
    /// record of their commit: shown in log order once fsynced.
    pub unflushed_offsets: BTreeMap<i64, Vec<UnflushedOffset>>,
}

/// One committed offset waiting for its record's fsync: group, partition, value.
pub type UnflushedOffset = (String, (String, i32), StoredOffset);

pub struct Shard {
    pub id: u32,
    pub log: Arc<Log>,
    pub seq: Sequencer,
    pub cfg: GroupConfig,
    /// The leader epoch of the shard's partition this broker leads it in,
    /// stamped into every batch it writes.
    pub leader_epoch: i32,
    /// See [`ShardReplication`]; None on a single node.
    pub replication: Option<Arc<dyn ShardReplication>>,
    /// Set when the shard is unloaded: nothing more is written, timers stop.
    fenced: AtomicBool,
    stop: tokio::sync::watch::Sender<bool>,
    state: Mutex<ShardState>,
    timers: Mutex<Timers>,
    /// Woken when a deadline earlier than the current head is added.
    timer_changed: Notify,
    /// Bytes appended since the last checkpoint.
    since_checkpoint: AtomicU64,
}

/// The member fields of an OffsetCommit: who commits, at which generation
/// (classic) or member epoch (KIP-848), with which request version.
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    pub generation: i32,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub version: i16,
}

impl Committer<'_> {
    /// A commit from outside the group (admin tools, standalone consumers).
    pub const SIMPLE: Committer<'static> = Committer {
        generation: -1,
        member_id: "",
        instance_id: None,
        version: 9,
    };
}

/// One committed offset as a request carries it.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shard {
    /// Opens the shard over its partition log, replaying every record.
    pub fn open(
        id: u32,
        log: Arc<Log>,
        seq: Sequencer,
        cfg: GroupConfig,
    ) -> Result<Self, ShardError> {
        let now = Instant::now();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut offsets: Vec<ReplayedOffset> = Vec::new();
        let mut stored_groups: HashMap<String, Option<Group>> = HashMap::new();
        // Where each group's last tombstone is: offsets written before it
        // were deleted with the group (DeleteGroups, offset expiry).
        let mut deleted_at: HashMap<String, i64> = HashMap::new();
        let mut txns: HashMap<String, TxnMetadata> = HashMap::new();
        let mut txn_offsets: PendingTxnOffsets = HashMap::new();
        let session =
            tokio::time::Duration::from_millis(cfg.consumer_session_timeout_ms.max(0) as u64);
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let replay = |reason: String| ShardError::Replay {
                shard: id,
                offset,
                reason,
            };
            let read = log
                .read(offset, 4 << 20, true)
                .map_err(|source| ShardError::Storage { shard: id, source })?;
            let Some(slice) = read.slice else { break };
            let mut buf = vec![0u8; slice.len];
            slice
                .file
                .read_exact_at(&mut buf, slice.position)
                .map_err(|e| replay(e.to_string()))?;
            let mut last = offset - 1;
            for item in BatchIter::new(&buf) {
                let (pos, h) = item.map_err(|e| replay(e.to_string()))?;
                last = last.max(h.last_offset());
                // Markers carry no coordinator state.
                if h.is_control() {
                    continue;
                }
                let set = BatchRecords::decode(&buf[pos..pos + h.total_size()], &h)
                    .map_err(|e| replay(e.to_string()))?;
                for r in &set.records {
                    let Some(key) = set.key(r) else { continue };
                    let key = Bytes::copy_from_slice(key);
                    let value = set.value(r).map(Bytes::copy_from_slice);
                    let at = set.offset(r);
                    match RecordKey::decode(key) {
                        Ok(RecordKey::Group(g)) => {
                            let v = match value {
                                Some(v) if consumer::stored::is_consumer_value(&v) => {
                                    let c = ConsumerGroup::decode(v, now, session)
                                        .map_err(|e| replay(e.to_string()))?;
                                    Some(Group::restore_consumer(&g, c))
                                }
                                Some(v) => Some(Group::restore(
                                    &g,
                                    StoredGroup::decode(v).map_err(|e| replay(e.to_string()))?,
                                    now,
                                )),
                                None => None,
                            };
                            if v.is_none() {
                                deleted_at.insert(g.clone(), at);
                            }
                            stored_groups.insert(g, v);
                        }
                        Ok(RecordKey::Offset {
                            group,
                            topic,
                            partition,
                        }) => {
                            let v = match value {
                                Some(v) => Some(
                                    StoredOffset::decode(v).map_err(|e| replay(e.to_string()))?,
                                ),
                                None => None,
                            };
                            offsets.push((group, (topic, partition), v, at));
                        }
                        Ok(RecordKey::Txn(tid)) => match value {
                            Some(v) => {
                                let m = TxnMetadata::decode(&tid, v)
                                    .map_err(|e| replay(e.to_string()))?;
                                txns.insert(tid, m);
                            }
                            None => {
                                txns.remove(&tid);
                            }
                        },
                        Ok(RecordKey::TxnOffset {
                            group,
                            producer_id,
                            topic,
                            partition,
                        }) => {
                            let k = (group, producer_id);
                            match value {
                                Some(v) => {
                                    let o = StoredOffset::decode(v)
                                        .map_err(|e| replay(e.to_string()))?;
                                    txn_offsets
                                        .entry(k)
                                        .or_default()
                                        .insert((topic, partition), o);
                                }
                                None => {
                                    if let Some(m) = txn_offsets.get_mut(&k) {
                                        m.remove(&(topic, partition));
                                        if m.is_empty() {
                                            txn_offsets.remove(&k);
                                        }
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(shard = id, offset = at, error = %e, "skipping unreadable coordinator record")
                        }
                    }
                }
            }
            if last < offset {
                break;
            }
            offset = last + 1;
        }
        for (g, stored) in stored_groups {
            if let Some(restored) = stored {
                groups.insert(g.clone(), restored);
            } else {
                groups.remove(&g);
            }
        }
        for (g, tp, v, at) in offsets {
            if deleted_at.get(&g).is_some_and(|d| at < *d) {
                continue;
            }
            match v {
                Some(o) => {
                    groups
                        .entry(g.clone())
                        .or_insert_with(|| Group::new(&g))
                        .offsets
                        .insert(tp, o);
                }
                None => {
                    if let Some(group) = groups.get_mut(&g) {
                        group.offsets.remove(&tp);
                    }
                }
            }
        }
        let since_checkpoint = AtomicU64::new(log.size_bytes());
        let shard = Shard {
            since_checkpoint,
            id,
            log,
            seq,
            cfg,
            state: Mutex::new(ShardState {
                groups,
                txns,
                txn_writes: HashMap::new(),
                txn_offsets,
                unflushed_offsets: BTreeMap::new(),
            }),
            timers: Mutex::new(Timers::default()),
            timer_changed: Notify::new(),
            leader_epoch: 0,
            replication: None,
            fenced: AtomicBool::new(false),
            stop: tokio::sync::watch::channel(false).0,
        };
        {
            let st = shard.lock();
            for g in st.groups.values() {
                shard.arm(g);
            }
        }
        Ok(shard)
    }

    pub fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self, g: &Group) {
        if let Some(d) = g.next_deadline() {
            let mut t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            if t.armed.get(&g.id).is_some_and(|pending| *pending <= d) {
                return;
            }
            let earlier = t.heap.peek().is_none_or(|Reverse((head, _))| d < *head);
            t.heap.push(Reverse((d, g.id.clone())));
            t.armed.insert(g.id.clone(), d);
            if earlier {
                self.timer_changed.notify_one();
            }
        }
    }

    /// Persists what changed and re-arms the group's timer. Called with
    /// the shard lock held, so records land in the order changes happened.
    fn after_change(&self, g: &mut Group) {
        if let Some(value) = g.take_persistable() {
            let written = self.append(vec![(RecordKey::Group(g.id.clone()), Some(value))]);
            if let Err(e) = &written {
                tracing::error!(shard = self.id, group = %g.id, error = %e, "could not persist group metadata");
            }
            g.record = Some(written.map_err(|_| ()));
        }
        self.arm(g);
    }

    /// Resolves once the group's newest record is durable (see
    /// [`Self::wait_durable`]): awaited before a SyncGroup answer goes
    /// out, as Kafka's coordinator answers only once the group's
    /// assignment is written with acks=all. A coordinator that failed over
    /// to a replica without it would hand the same generation out again,
    /// with other assignments, and take commits from members it had
    /// fenced.
    pub async fn group_durable(&self, group_id: &str) -> Result<(), ShardError> {
        let record = self.lock().groups.get(group_id).and_then(|g| g.record);
        match record {
            None => Ok(()),
            Some(Ok(last)) => self.wait_durable(last, self.cfg.durable_commits).await,
            Some(Err(())) => Err(ShardError::NotCoordinator { shard: self.id }),
        }
    }

    /// Resolves once the record at `last` is fsynced (with `sync`) and, in
    /// a cluster, held by the in-sync replicas: for records others rely on
    /// across a crash or a failover (transaction state, the offsets a
    /// transaction commits). A transaction coordinator that wrote commit
    /// markers after a prepare record only it held would leave its
    /// successor free to abort the same transaction. Awaited without the
    /// shard lock: the caller appended under it and marked what it wrote
    /// as pending, so other groups and transactions of the shard are
    /// served meanwhile.
    pub(crate) async fn wait_durable(&self, last: i64, sync: bool) -> Result<(), ShardError> {
        // Already covered by an earlier fsync (a group flush, another
        // waiter's): no hop through the blocking pool.
        if sync && self.log.durable_offset() <= last {
            let log = self.log.clone();
            karnak_storage::blocking::spawn(move || log.flush_up_to(last + 1))
                .await
                .unwrap_or_else(|e| {
                    Err(karnak_storage::StorageError::Io {
                        context: "the fsync task of a coordinator shard".into(),
                        source: std::io::Error::other(e.to_string()),
                    })
                })
                .map_err(|source| ShardError::Storage {
                    shard: self.id,
                    source,
                })?;
        }
        if let Some(r) = &self.replication {
            r.wait_replicated(&self.log, last + 1)
                .await
                .map_err(|e| match e {
                    NotReplicated::NotLeader => ShardError::NotCoordinator { shard: self.id },
                    NotReplicated::Refused(reason) => ShardError::NotReplicated {
                        shard: self.id,
                        reason,
                    },
                })?;
        }
        Ok(())
    }

    pub(crate) fn append(
        &self,
        records: Vec<(RecordKey, Option<Bytes>)>,
    ) -> Result<i64, ShardError> {
        if self.is_fenced() {
            return Err(ShardError::NotCoordinator { shard: self.id });
        }
        let ts = now_ms();
        let recs: Vec<Record> = records
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| plain_record(i as i64, ts, Some(k.encode()), v, Default::default()))
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| ShardError::Replay {
            shard: self.id,
            offset: -1,
            reason: format!("encoding: {e:#}"),
        })?;
        self.since_checkpoint
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let info = self
            .log
            .append(&buf.freeze(), self.leader_epoch, None)
            .map_err(|source| ShardError::Storage {
                shard: self.id,
                source,
            })?;
        if let Some(r) = &self.replication {
            r.after_append(&self.log);
        }
        Ok(info.last_offset)
    }

    /// Compaction by checkpoint: once enough has been appended, write every
    /// live record again (each group's metadata, each committed offset) and
    /// delete the segments wholly behind that rewrite. Replay then reads at
    /// most a checkpoint plus `checkpoint_bytes`, however long the shard has
    /// lived. Called with the shard lock held, so nothing interleaves.
    pub(crate) fn maybe_checkpoint(&self, st: &mut ShardState) {
        if self.since_checkpoint.load(Ordering::Relaxed) < self.cfg.checkpoint_bytes {
            return;
        }
        if let Err(e) = self.checkpoint(st) {
            tracing::error!(shard = self.id, error = %e, "coordinator checkpoint failed; will retry");
        }
    }

    fn checkpoint(&self, st: &mut ShardState) -> Result<(), ShardError> {
        let storage = |source| ShardError::Storage {
            shard: self.id,
            source,
        };
        // Commits not yet shown are below the rewrite's first offset: make
        // them durable and show them, or the rewrite would leave them out.
        self.log.flush().map_err(storage)?;
        self.show_durable_offsets(st);
        self.log.roll().map_err(storage)?;
        let first = self.log.log_end_offset();
        let mut records: Vec<(RecordKey, Option<Bytes>)> = Vec::new();
        for g in st.groups.values() {
            if let Some(value) = g.persisted_value() {
                records.push((RecordKey::Group(g.id.clone()), Some(value.clone())));
            }
            for ((topic, partition), o) in &g.offsets {
                records.push((
                    RecordKey::Offset {
                        group: g.id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    Some(o.encode()),
                ));
            }
        }
        // A state still waiting for the replicas was appended before the
        // rewrite, which would drop it: the rewrite carries it instead.
        let settled = st
            .txns
            .iter()
            .filter(|(tid, _)| !st.txn_writes.contains_key(*tid));
        for (tid, m) in st.txn_writes.iter().chain(settled) {
            records.push((RecordKey::Txn(tid.clone()), Some(m.encode())));
        }
        for ((group, producer_id), offsets) in &st.txn_offsets {
            for ((topic, partition), o) in offsets {
                records.push((
                    RecordKey::TxnOffset {
                        group: group.clone(),
                        producer_id: *producer_id,
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    Some(o.encode()),
                ));
            }
        }
        let live = records.len();
        let mut it = records.into_iter().peekable();
        while it.peek().is_some() {
            self.append(it.by_ref().take(1000).collect())?;
        }
        // The rewrite must be durable before what it replaces is unlinked.
        self.log.flush().map_err(storage)?;
        let deleted = self.log.delete_segments_below(first).map_err(storage)?;
        self.since_checkpoint.store(0, Ordering::Relaxed);
        tracing::info!(
            shard = self.id,
            live,
            deleted_segments = deleted,
            from_offset = first,
            "coordinator shard checkpointed"
        );
        Ok(())
    }

    /// Leases member ids ahead if the shard's sequencer has none left, so
    /// the join that follows mints one without blocking its thread on the
    /// lease. A failure is left for the join to report.
    pub async fn reserve_member_id(&self) {
        if let Err(e) = self.seq.reserve().await {
            tracing::warn!(shard = self.id, error = %e, "leasing member ids ahead failed");
        }
    }

    /// A fresh member id, from the ids leased ahead
    /// ([`Self::reserve_member_id`]) when the lease is the cluster
    /// metadata's: that one is never taken in place, so joins that used the
    /// ids up meanwhile get COORDINATOR_NOT_AVAILABLE (retried by clients)
    /// rather than block the runtime.
    fn mint_member_id(&self, client_id: &str) -> Result<String, i16> {
        match self.seq.next() {
            // Kafka's form is "<client.id>-<uuid>"; ours carries the shard in
            // the high bits of a never-repeating 64-bit id instead.
            Ok(n) => Ok(format!(
                "{}-{:016x}",
                client_id,
                ((self.id as u64) << 48) | (n & ((1 << 48) - 1))
            )),
            Err(e) => {
                tracing::error!(shard = self.id, error = %e, "member id sequencer failed");
                Err(COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// Runs due timers; returns when the next one is due (None: none armed).
    pub fn fire_timers(&self) -> Option<Instant> {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            let mut due = Vec::new();
            while let Some(Reverse((d, _))) = t.heap.peek() {
                if *d > now {
                    break;
                }
                if let Some(Reverse((d, g))) = t.heap.pop() {
                    if t.armed.get(&g) == Some(&d) {
                        t.armed.remove(&g);
                    }
                    due.push(g);
                }
            }
            due
        };
        if !due.is_empty() {
            let mut st = self.lock();
            for gid in due {
                if let Some(g) = st.groups.get_mut(&gid) {
                    g.on_timer(&self.cfg, now);
                    self.after_change(g);
                }
            }
        }
        let t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
        t.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// The shard's timer loop: sleeps until the next deadline, wakes early
    /// when an earlier one is armed. Idle shards cost nothing.
    /// Unloads the shard: its leadership moved. Writes fail with
    /// NotCoordinator from now on and its timers stop; the state stays for
    /// holders of the `Arc` but nothing changes it.
    pub fn fence(&self) {
        let _st = self.lock(); // no write is half done
        self.fenced.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub async fn run_timers(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut fenced = self.stop.subscribe();
        loop {
            if *fenced.borrow() {
                return;
            }
            let next = self.fire_timers();
            let sleep = async {
                match next {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.timer_changed.notified() => {}
                _ = stop.changed() => return,
                _ = fenced.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use karnak_storage::LogConfig;

    fn open(dir: &std::path::Path, cfg: &GroupConfig) -> Shard {
        let log_cfg = LogConfig {
            segment_bytes: 16 << 10,
            ..LogConfig::default()
        };
        let log = Arc::new(Log::open(&dir.join("p-0"), "p", 0, log_cfg).unwrap());
        let seq = Sequencer::open(&dir.join("seq"), 1, 16, 1 << 48).unwrap();
        Shard::open(0, log, seq, cfg.clone()).unwrap()
    }

    #[test]
    fn checkpoints_bound_the_log_and_replay_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GroupConfig {
            checkpoint_bytes: 64 << 10,
            ..GroupConfig::default()
        };
        let shard = open(dir.path(), &cfg);
        let exists = |_: &str, _: i32| true;
        for round in 0..3000i64 {
            for g in ["a", "b"] {
                let commits = (0..10)
                    .map(|p| OffsetCommit {
                        topic: "t".into(),
                        partition: p,
                        offset: round * 100 + p as i64,
                        leader_epoch: -1,
                        metadata: None,
                    })
                    .collect();
                let (codes, _) = shard.commit(g, &Committer::SIMPLE, commits, &exists);
                assert!(codes.iter().all(|c| *c == NONE));
            }
        }
        let size = shard.log.size_bytes();
        assert!(
            size < 256 << 10,
            "log grew to {size} bytes despite checkpoints"
        );
        assert!(
            shard.log.log_start_offset() > 0,
            "old segments were deleted"
        );
        drop(shard);
        let shard = open(dir.path(), &cfg);
        for g in ["a", "b"] {
            let got = shard.fetch_offsets(g, Some((0..10).map(|p| ("t".to_string(), p)).collect()));
            let offsets: Vec<i64> = got
                .iter()
                .map(|(_, o)| o.as_ref().unwrap().offset)
                .collect();
            assert_eq!(offsets, (0..10).map(|p| 2999 * 100 + p).collect::<Vec<_>>());
        }
    }
}
