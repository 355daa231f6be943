//! Moving the log start offset: whole sealed segments deleted by retention
//! (`retention.ms`, `retention.bytes`) and behind a coordinator checkpoint,
//! and DeleteRecords, which may move it inside a segment.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{AppendState, Log, PRODUCER_ID_EXPIRATION_MS, lock};
use crate::checkpoint::{read_checkpoint, write_checkpoint};
use crate::config::CleanupPolicy;
use crate::error::StorageError;
use crate::segment::LogSegment;

/// A log start offset inside the first segment (DeleteRecords), in the
/// partition directory. Whole-segment deletions need no record of their own:
/// the first segment's base says it.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";

pub(super) fn read_log_start_offset(dir: &Path) -> Result<Option<i64>, StorageError> {
    Ok(read_checkpoint(&dir.join(LOG_START_OFFSET_CHECKPOINT), 1)?
        .and_then(|e| e.first().map(|e| e[0])))
}

impl Log {
    /// Unlinks the files of segments already out of the segment map, with
    /// the append lock released: unlinking a segment of a GiB frees its
    /// blocks and cached pages, tens to hundreds of milliseconds that
    /// produce to this partition would otherwise wait (a soak saw a
    /// 110-230 ms produce p99 at each retention pass). Readers holding a
    /// segment keep reading its open files. Still under `segment_removal`,
    /// so passes do not overlap. A crash before the unlink brings those
    /// segments back at restart (whole-segment deletions are recorded only
    /// by the first segment's base), as a crash in the middle of a pass
    /// always could; the next pass deletes them again.
    fn delete_files_of(&self, gone: Vec<Arc<LogSegment>>) -> Result<(), StorageError> {
        for seg in gone {
            seg.delete_files(&self.dir)?;
        }
        Ok(())
    }

    /// Open transactions whose data was deleted can no longer hold the
    /// stable offset back.
    fn after_head_truncated(&self, st: &mut AppendState) -> Result<(), StorageError> {
        st.producers.truncate_head(self.log_start_offset());
        self.txn_index.truncate_head(self.log_start_offset());
        self.leader_epochs
            .truncate_from_start(self.log_start_offset())?;
        let leo = self.log_end_offset();
        self.last_stable_offset.store(
            st.producers.first_unstable_offset().unwrap_or(leo),
            Ordering::Release,
        );
        Ok(())
    }

    /// DeleteRecords: makes `offset` the log start offset (records below it
    /// are gone for fetch, ListOffsets and SQL), deletes the sealed segments
    /// wholly below it, and returns the new log start offset (Kafka's low
    /// watermark). The new start is durable before this returns. Offsets
    /// past the high watermark are `OffsetOutOfRange`; one at or below the
    /// current start changes nothing.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let _removal = lock(&self.segment_removal);
        let mut st = lock(&self.append);
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        if offset < 0 || offset > hw {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: hw,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        write_checkpoint(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), &[vec![offset]])?;
        self.log_start_offset.fetch_max(offset, Ordering::AcqRel);
        let mut gone = Vec::new();
        for seg in self.segment_list() {
            if Arc::ptr_eq(&seg, &st.active) || seg.next_offset() > offset {
                break;
            }
            self.segments
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&seg.base_offset);
            gone.push(seg);
        }
        self.after_head_truncated(&mut st)?;
        drop(st);
        self.delete_files_of(gone)?;
        Ok(self.log_start_offset())
    }

    /// Deletes sealed segments holding only offsets below `offset`: for a
    /// log whose live state has been rewritten past them (the coordinator's
    /// checkpoints). Returns how many were deleted.
    pub fn delete_segments_below(&self, offset: i64) -> Result<usize, StorageError> {
        let _removal = lock(&self.segment_removal);
        let mut st = lock(&self.append);
        let mut gone = Vec::new();
        for seg in self.segment_list() {
            if Arc::ptr_eq(&seg, &st.active) || seg.next_offset() > offset {
                break;
            }
            self.segments
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&seg.base_offset);
            self.log_start_offset
                .fetch_max(seg.next_offset(), Ordering::AcqRel);
            gone.push(seg);
        }
        let deleted = gone.len();
        if deleted > 0 {
            self.after_head_truncated(&mut st)?;
        }
        drop(st);
        self.delete_files_of(gone)?;
        Ok(deleted)
    }

    /// Deletes whole sealed segments past retention.ms / retention.bytes.
    /// Returns how many were deleted.
    /// Compacted topics (`cleanup.policy=compact` alone) keep everything.
    /// Also forgets producers idle past Kafka's `producer.id.expiration.ms`
    /// (a quiet partition may not roll for days).
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let _removal = lock(&self.segment_removal);
        let mut st = lock(&self.append);
        st.producers.expire(now_ms, PRODUCER_ID_EXPIRATION_MS);
        let cfg = self.config();
        if cfg.cleanup_policy == CleanupPolicy::Compact {
            return Ok(0);
        }
        let mut gone: Vec<Arc<LogSegment>> = Vec::new();
        loop {
            let segs = self.segment_list();
            let total: u64 = segs.iter().map(|s| s.size()).sum();
            let Some(first) = segs.first() else { break };
            if Arc::ptr_eq(first, &st.active) {
                break;
            }
            // A segment the cleaner emptied has no timestamp to age by and
            // nothing to keep.
            let by_time = cfg.retention_ms >= 0
                && (first.size() == 0
                    || first.max_ts().timestamp >= 0
                        && now_ms.saturating_sub(first.max_ts().timestamp) > cfg.retention_ms);
            let by_size = cfg.retention_bytes >= 0
                && total.saturating_sub(first.size()) >= cfg.retention_bytes as u64;
            if !(by_time || by_size) {
                break;
            }
            let next = segs.get(1).map_or(first.next_offset(), |s| s.base_offset);
            self.segments
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&first.base_offset);
            self.log_start_offset.fetch_max(next, Ordering::AcqRel);
            gone.push(first.clone());
        }
        let deleted = gone.len();
        if deleted > 0 {
            self.after_head_truncated(&mut st)?;
        }
        drop(st);
        self.delete_files_of(gone)?;
        Ok(deleted)
    }
}
