//! What the log cleaner (`crate::cleaner`) needs from a log: its
//! cleaned-up-to offset, one cleaning at a time, the producers whose last
//! batch must survive, the compacted-topic key check on append, and the
//! swap of cleaned segments under the append lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};

use bytes::Bytes;
use karnak_protocol::record_batch::BatchHeader;

use super::txn_index::AbortedTxn;
use super::{Log, lock};
use crate::cleaner::swap::{commit_cleaned, install_swap};
use crate::cleaner::{CleanStats, Cleanable, Cleaner, CleanerConfig, records, segment_io};
use crate::config::LogConfig;
use crate::error::StorageError;
use crate::segment::LogSegment;

/// A producer's last write on this partition, as the cleaner sees it
/// (Kafka's LastRecord): the last offset of its last data batch, which
/// holds its last sequence number, and its epoch (for when only a marker
/// is left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRecord {
    pub last_data_offset: Option<i64>,
    pub epoch: i16,
}

impl Log {
    /// Cleans this log now if it is compacted and has a dirty section,
    /// whatever its dirty ratio (see [`Cleaner::clean`]); `now_ms` is the
    /// clock for delete horizons and compaction lags. For tests and
    /// admin tools; the data dir's cleaner thread does this by itself.
    pub fn compact(&self, now_ms: i64) -> Result<Option<CleanStats>, StorageError> {
        Cleaner::new(CleanerConfig::default()).clean(self, now_ms)
    }

    /// Where this log stands for the cleaner at `now_ms`.
    pub fn cleanable(&self, now_ms: i64) -> Result<Cleanable, StorageError> {
        crate::cleaner::assess(self, now_ms)
    }

    /// The offset the log is cleaned up to (the next cleaning's first dirty
    /// offset); None before any cleaning or checkpoint.
    pub fn clean_offset(&self) -> Option<i64> {
        let o = self.clean_offset.load(Ordering::Acquire);
        (o >= 0).then_some(o)
    }

    /// Sets the cleaned-up-to offset (from the cleaner checkpoint).
    pub fn set_clean_offset(&self, offset: i64) {
        self.clean_offset.store(offset, Ordering::Release);
    }

    /// Held for a whole cleaning; None once the log is closing.
    pub(crate) fn cleaning_guard(&self) -> Option<MutexGuard<'_, ()>> {
        if self.clean_abort.load(Ordering::Acquire) {
            return None;
        }
        let g = lock(&self.cleaning);
        (!self.clean_abort.load(Ordering::Acquire)).then_some(g)
    }

    /// A cleaning of this log failed: the cleaner thread leaves it alone
    /// until restart (Kafka's uncleanable partitions).
    /// How many times cleaned segments replaced records in place: a reader
    /// that kept decoded records (the SQL tail cache) drops them when this
    /// moves.
    pub fn rewrites(&self) -> u64 {
        self.rewrites.load(Ordering::Acquire)
    }

    pub fn is_uncleanable(&self) -> bool {
        self.uncleanable.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_uncleanable(&self) {
        self.uncleanable.store(true, Ordering::Relaxed);
    }

    /// Set when the log closes: a cleaning in progress gives up.
    pub(crate) fn cleaning_abort_flag(&self) -> &AtomicBool {
        &self.clean_abort
    }

    /// Makes a running cleaning give up and waits for it (closing, deleting).
    pub(crate) fn abort_cleaning(&self) {
        self.clean_abort.store(true, Ordering::Release);
        drop(lock(&self.cleaning));
    }

    /// Every producer with state here and its last write.
    pub(crate) fn producer_last_records(&self) -> HashMap<i64, LastRecord> {
        lock(&self.append)
            .producers
            .producers()
            .map(|(pid, e)| {
                let last = LastRecord {
                    last_data_offset: e.batches.back().map(|b| b.last_offset),
                    epoch: e.epoch,
                };
                (*pid, last)
            })
            .collect()
    }

    /// Refuses records without a key when the topic is compacted.
    pub(super) fn check_keys(
        &self,
        cfg: &LogConfig,
        records: &Bytes,
        batches: &[(usize, BatchHeader)],
    ) -> Result<(), StorageError> {
        if !cfg.cleanup_policy.compacts() {
            return Ok(());
        }
        for (pos, h) in batches {
            let batch = &records[*pos..pos + h.total_size()];
            let keyless =
                records::has_keyless_record(batch, h).map_err(|reason| StorageError::Corrupt {
                    path: self.dir.clone(),
                    reason: format!("records to append are malformed: {reason}"),
                })?;
            if keyless {
                return Err(StorageError::KeylessRecordOnCompactedTopic {
                    topic: self.topic.clone(),
                    partition: self.partition,
                });
            }
        }
        Ok(())
    }

    /// Swaps the cleaned segment `new` (its `.cleaned` files written and
    /// synced) in for `old`. Under the segment-removal lock, so retention
    /// sees the segments before or after, never between; appends never
    /// wait for it (they only touch the active segment). Readers holding
    /// an old segment keep reading its (unlinked) file. False when the
    /// swap was abandoned: an old segment is gone or the log is closing.
    pub(crate) fn replace_segments(
        &self,
        old: &[Arc<LogSegment>],
        new: LogSegment,
        txns: Vec<AbortedTxn>,
    ) -> Result<bool, StorageError> {
        let base = new.base_offset;
        let _removal = lock(&self.segment_removal);
        let all_there = old.iter().all(|s| self.holds_segment(s));
        if self.clean_abort.load(Ordering::Acquire)
            || !all_there
            || old.first().is_none_or(|s| s.base_offset != base)
        {
            segment_io::discard_cleaned(&self.dir, base);
            return Ok(false);
        }
        commit_cleaned(&self.dir, base)?;
        // Committed: from here a crash is finished by `recover_swaps`.
        for s in old {
            s.delete_files(&self.dir)?;
        }
        install_swap(&self.dir, base)?;
        let end = new.next_offset();
        {
            let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
            // Never the active segment: everything cleaned lies below it.
            debug_assert!(segs.last_key_value().is_some_and(|(b, _)| *b >= end));
            for s in old {
                segs.remove(&s.base_offset);
            }
            segs.insert(base, Arc::new(new));
        }
        self.txn_index.replace_range(base, end, txns);
        self.rewrites.fetch_add(1, Ordering::Release);
        tracing::debug!(topic = %self.topic, partition = self.partition, base_offset = base,
            replaced = old.len(), "swapped in a cleaned segment");
        Ok(true)
    }
}
