//! Per-partition producer state: what idempotence and transactions need to
//! know about each producer id that wrote to this partition.
//!
//! For every producer the state keeps its epoch and the last five batches'
//! sequence ranges and offsets (Kafka keeps five because a producer has at
//! most five requests in flight per connection): a retried batch that
//! matches one of them is a duplicate and is answered with its original
//! offsets instead of being written twice; any other batch must continue
//! the sequence. Transactional producers also have an open transaction's
//! first offset here, which is what holds the last stable offset back.
//!
//! The state is rebuilt on start from the newest snapshot (written when a
//! segment rolls and on clean shutdown) plus the batch headers after it, so
//! start-up reads one segment's headers, not the whole log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use std::sync::Arc;

use karnak_protocol::control::{ControlType, parse_marker};
use karnak_protocol::record_batch::BatchHeader;

use crate::error::StorageError;
use crate::segment::LogSegment;

/// Batches per producer kept for duplicate detection.
pub const MAX_BATCHES: usize = 5;
const NO_OFFSET: i64 = -1;

/// One batch a producer wrote: its sequence range and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Newest last; at most [`MAX_BATCHES`], all of the current epoch.
    pub batches: VecDeque<BatchMeta>,
    /// Wall time of the last write (ms), for `producer.id.expiration.ms`.
    pub last_timestamp: i64,
    /// Epoch of the transaction coordinator that wrote the last marker.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction on this partition.
    pub txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp: -1,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }

    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn duplicate_of(&self, first_seq: i32, last_seq: i32) -> Option<BatchMeta> {
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }

    fn push(&mut self, b: BatchMeta) {
        if self.batches.len() == MAX_BATCHES {
            self.batches.pop_front();
        }
        self.batches.push_back(b);
        self.last_timestamp = self.last_timestamp.max(b.timestamp);
    }
}

/// Why a producer's batch or marker was refused. Each maps to the Kafka
/// error the client expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error(
        "out of order sequence for producer {producer_id} epoch {epoch}: got {got}, expected {expected}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        got: i32,
        expected: i32,
    },
    #[error("producer {producer_id} epoch {got} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        got: i16,
        current: i16,
    },
    #[error("producer {producer_id}: {reason}")]
    InvalidTxnState { producer_id: i64, reason: String },
    #[error(
        "transaction marker for producer {producer_id} from coordinator epoch {got}, but epoch {current} already wrote one"
    )]
    CoordinatorFenced {
        producer_id: i64,
        got: i32,
        current: i32,
    },
}

/// The outcome of checking one append against the producer state.
#[derive(Debug)]
pub enum Checked {
    /// Write it; apply `updates` once it is written.
    Append(Vec<(i64, ProducerEntry)>),
    /// A retry of batches already in the log: answer with these offsets.
    Duplicate(BatchMeta),
}

/// A transaction completed by a marker on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the marker.
    pub last_offset: i64,
    pub aborted: bool,
}

/// A batch as the producer state sees it: header fields with offsets assigned.
#[derive(Debug, Clone, Copy)]
pub struct BatchInfo {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
    pub transactional: bool,
    /// Set on control batches (transaction markers).
    pub control: Option<(ControlType, i32)>,
}

impl BatchInfo {
    /// From a header whose base offset is already assigned.
    pub fn from_header(h: &BatchHeader, control: Option<(ControlType, i32)>) -> Self {
        let last_seq = if h.base_sequence < 0 {
            h.base_sequence
        } else {
            // Sequences wrap at i32::MAX back to 0, as Kafka's do.
            ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
        };
        BatchInfo {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq,
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
            transactional: h.is_transactional(),
            control,
        }
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next as i64 == last as i64 + 1 || (next == 0 && last == i32::MAX)
}

#[derive(Debug, Default)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Verification guards (KIP-890 part 1): a transactional produce takes
    /// a token before asking the coordinator whether this partition is in
    /// the producer's transaction; a marker written meanwhile removes every
    /// token of the producer, so an answer that went stale cannot open a
    /// transaction here that nobody will end. In memory only.
    guards: HashMap<i64, Vec<u64>>,
    next_guard: u64,
}

impl ProducerStateManager {
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn producers(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    /// First offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// A verification token for `producer_id` (see `guards`).
    pub fn add_guard(&mut self, producer_id: i64) -> u64 {
        self.next_guard += 1;
        let tokens = self.guards.entry(producer_id).or_default();
        // Bounded: a client keeps at most a few requests in flight.
        if tokens.len() >= 64 {
            tokens.remove(0);
        }
        tokens.push(self.next_guard);
        self.next_guard
    }

    /// Drops a token whose produce will not be appended (or was).
    pub fn remove_guard(&mut self, producer_id: i64, token: u64) {
        if let Some(tokens) = self.guards.get_mut(&producer_id) {
            tokens.retain(|t| *t != token);
            if tokens.is_empty() {
                self.guards.remove(&producer_id);
            }
        }
    }

    /// A marker for the producer was written: every verification before it
    /// is stale.
    pub fn clear_guards(&mut self, producer_id: i64) {
        self.guards.remove(&producer_id);
    }

    /// Checks a client's batches (offsets assigned) in order; nothing
    /// changes until [`Self::apply`] is given the updates. With `guard`,
    /// a transactional batch that would open a transaction here must hold a
    /// token still in place.
    pub fn check(
        &self,
        batches: &[BatchInfo],
        guard: Option<u64>,
    ) -> Result<Checked, ProducerError> {
        let mut updates: Vec<(i64, ProducerEntry)> = Vec::new();
        for b in batches.iter().filter(|b| b.producer_id >= 0) {
            let pos = updates.iter().position(|(p, _)| *p == b.producer_id);
            let current = match pos {
                Some(i) => Some(&updates[i].1),
                None => self.producers.get(&b.producer_id),
            };
            if let Some(e) = current
                && b.control.is_none()
                && b.epoch == e.epoch
                && let Some(dup) = e.duplicate_of(b.first_seq, b.last_seq)
            {
                return Ok(Checked::Duplicate(dup));
            }
            let opens_txn = b.transactional
                && b.control.is_none()
                && current.is_none_or(|e| e.txn_first_offset.is_none());
            if let Some(token) = guard
                && opens_txn
                && !self
                    .guards
                    .get(&b.producer_id)
                    .is_some_and(|t| t.contains(&token))
            {
                return Err(ProducerError::InvalidTxnState {
                    producer_id: b.producer_id,
                    reason: "its transaction ended while this produce was being verified".into(),
                });
            }
            let next = check_one(current, b)?;
            match pos {
                Some(i) => updates[i].1 = next,
                None => updates.push((b.producer_id, next)),
            }
        }
        Ok(Checked::Append(updates))
    }

    /// Installs checked updates after the batches were written; returns the
    /// transactions the appended markers completed.
    pub fn apply(&mut self, updates: Vec<(i64, ProducerEntry)>) {
        for (pid, next) in updates {
            let before = self.producers.get(&pid).and_then(|e| e.txn_first_offset);
            if before != next.txn_first_offset {
                if let Some(o) = before {
                    self.ongoing.remove(&o);
                }
                if let Some(o) = next.txn_first_offset {
                    self.ongoing.insert(o, pid);
                }
            }
            self.producers.insert(pid, next);
        }
    }

    /// Replays a batch already in the log (recovery): no checks.
    pub fn replay(&mut self, b: &BatchInfo) -> Option<CompletedTxn> {
        if b.producer_id < 0 {
            return None;
        }
        let current = self.producers.get(&b.producer_id);
        let completed = completed_by(current, b);
        let next = advance(current, b);
        self.apply(vec![(b.producer_id, next)]);
        completed
    }

    /// The transaction a marker completes (call before applying it).
    pub fn completes(&self, b: &BatchInfo) -> Option<CompletedTxn> {
        completed_by(self.producers.get(&b.producer_id), b)
    }

    /// Forgets producers idle longer than `expiration_ms` with no open
    /// transaction (`producer.id.expiration.ms`).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some()
                || e.last_timestamp < 0
                || now_ms.saturating_sub(e.last_timestamp) <= expiration_ms
        });
        before - self.producers.len()
    }

    /// Drops open transactions that start below `offset` (their data was
    /// deleted by retention) so they cannot hold the stable offset back.
    pub fn truncate_head(&mut self, offset: i64) {
        let gone: Vec<(i64, i64)> = self
            .ongoing
            .range(..offset)
            .map(|(o, p)| (*o, *p))
            .collect();
        for (o, pid) in gone {
            self.ongoing.remove(&o);
            if let Some(e) = self.producers.get_mut(&pid) {
                e.txn_first_offset = None;
            }
        }
    }
}

/// Rebuilds the state from the newest snapshot plus the batch headers
/// after it. Returns the state and
/// the transactions the replayed markers completed.
pub fn rebuild(
    dir: &Path,
    segments: &[Arc<LogSegment>],
    log_start: i64,
    log_end: i64,
) -> Result<(ProducerStateManager, Vec<CompletedTxn>), StorageError> {
    // Without a snapshot (a data dir from before producer state existed, or
    // snapshots lost) only the last two segments are replayed, as Kafka does
    // on upgrade: start-up never scans a whole log.
    let fallback = segments
        .len()
        .checked_sub(2)
        .and_then(|i| segments.get(i))
        .map_or(log_start, |s| s.base_offset.max(log_start));
    let (mut mgr, from) = match load_snapshot(dir, log_end)? {
        Some((m, o)) if o >= log_start => (m, o),
        _ => (ProducerStateManager::default(), fallback),
    };
    let mut completed = Vec::new();
    for seg in segments.iter().filter(|s| s.next_offset() > from) {
        let end = seg.size();
        let Some((mut pos, _)) = seg.find_batch(from, end)? else {
            continue;
        };
        while let Some(h) = seg.header_at(pos, end)? {
            if h.producer_id >= 0 {
                let control = if h.is_control() && h.record_count == 0 {
                    // A marker the cleaner emptied, kept for the producer's
                    // epoch: it ended a transaction with nothing left.
                    let epoch = mgr.entry(h.producer_id).map_or(-1, |e| e.coordinator_epoch);
                    Some((ControlType::Commit, epoch))
                } else if h.is_control() {
                    let batch = seg.read_at(pos, h.total_size())?;
                    parse_marker(&batch, &h)
                } else {
                    None
                };
                if !h.is_control() || control.is_some() {
                    let info = BatchInfo::from_header(&h, control);
                    completed.extend(mgr.replay(&info));
                }
            }
            pos += h.total_size() as u64;
        }
    }
    Ok((mgr, completed))
}

/// Kafka's rules for one batch, against the producer's current entry.
fn check_one(
    current: Option<&ProducerEntry>,
    b: &BatchInfo,
) -> Result<ProducerEntry, ProducerError> {
    if let Some(e) = current {
        if b.epoch < e.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id: b.producer_id,
                got: b.epoch,
                current: e.epoch,
            });
        }
        match b.control {
            Some((_, coordinator_epoch)) => {
                if coordinator_epoch < e.coordinator_epoch {
                    return Err(ProducerError::CoordinatorFenced {
                        producer_id: b.producer_id,
                        got: coordinator_epoch,
                        current: e.coordinator_epoch,
                    });
                }
            }
            None if b.epoch != e.epoch => {
                // A new epoch starts its sequence at 0.
                if b.first_seq != 0 {
                    return Err(ProducerError::OutOfOrderSequence {
                        producer_id: b.producer_id,
                        epoch: b.epoch,
                        got: b.first_seq,
                        expected: 0,
                    });
                }
            }
            None => {
                if let Some(last) = e.last_seq()
                    && !in_sequence(last, b.first_seq)
                {
                    return Err(ProducerError::OutOfOrderSequence {
                        producer_id: b.producer_id,
                        epoch: b.epoch,
                        got: b.first_seq,
                        expected: last.wrapping_add(1).max(0),
                    });
                }
            }
        }
        if b.control.is_none() && e.txn_first_offset.is_some() && !b.transactional {
            return Err(ProducerError::InvalidTxnState {
                producer_id: b.producer_id,
                reason: "a non-transactional batch while its transaction is open".into(),
            });
        }
    }
    // Unknown producers may start at any sequence: their earlier batches may
    // have been removed by retention (Kafka accepts them the same way).
    Ok(advance(current, b))
}

/// The entry after `b` is in the log.
fn advance(current: Option<&ProducerEntry>, b: &BatchInfo) -> ProducerEntry {
    let mut e = current
        .cloned()
        .unwrap_or_else(|| ProducerEntry::new(b.epoch));
    if b.epoch != e.epoch {
        e.epoch = b.epoch;
        e.batches.clear();
    }
    match b.control {
        Some((_, coordinator_epoch)) => {
            e.coordinator_epoch = coordinator_epoch;
            e.txn_first_offset = None;
            e.last_timestamp = e.last_timestamp.max(b.timestamp);
        }
        None => {
            if b.transactional && e.txn_first_offset.is_none() {
                e.txn_first_offset = Some(b.first_offset);
            }
            e.push(BatchMeta {
                first_seq: b.first_seq,
                last_seq: b.last_seq,
                first_offset: b.first_offset,
                last_offset: b.last_offset,
                timestamp: b.timestamp,
            });
        }
    }
    e
}

fn completed_by(current: Option<&ProducerEntry>, b: &BatchInfo) -> Option<CompletedTxn> {
    let (kind, _) = b.control?;
    let first = current?.txn_first_offset?;
    Some(CompletedTxn {
        producer_id: b.producer_id,
        first_offset: first,
        last_offset: b.first_offset,
        aborted: kind == ControlType::Abort,
    })
}

mod snapshot;

pub use snapshot::{list_snapshots, load_snapshot, snapshot_path, sync_snapshot};

#[cfg(test)]
mod tests;
