//! Deleting whole sealed segments: by retention (`retention.ms`,
//! `retention.bytes`) and behind a coordinator checkpoint.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{AppendState, Log, PRODUCER_ID_EXPIRATION_MS, lock};
use crate::config::CleanupPolicy;
use crate::error::StorageError;

impl Log {
    /// Open transactions whose data was deleted can no longer hold the
    /// stable offset back.
    fn after_head_truncated(&self, st: &mut AppendState) {
        st.producers.truncate_head(self.log_start_offset());
        self.txn_index.truncate_head(self.log_start_offset());
        let leo = self.log_end_offset();
        self.last_stable_offset.store(
            st.producers.first_unstable_offset().unwrap_or(leo),
            Ordering::Release,
        );
    }

    /// Deletes sealed segments holding only offsets below `offset`: for a
    /// log whose live state has been rewritten past them (the coordinator's
    /// checkpoints). Returns how many were deleted.
    pub fn delete_segments_below(&self, offset: i64) -> Result<usize, StorageError> {
        let _removal = lock(&self.segment_removal);
        let mut st = lock(&self.append);
        let mut deleted = 0;
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
            seg.delete_files(&self.dir)?;
            deleted += 1;
        }
        if deleted > 0 {
            self.after_head_truncated(&mut st);
        }
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
        if self.config.cleanup_policy == CleanupPolicy::Compact {
            return Ok(0);
        }
        let mut deleted = 0;
        loop {
            let segs = self.segment_list();
            let total: u64 = segs.iter().map(|s| s.size()).sum();
            let Some(first) = segs.first() else { break };
            if Arc::ptr_eq(first, &st.active) {
                break;
            }
            // A segment the cleaner emptied has no timestamp to age by and
            // nothing to keep.
            let by_time = self.config.retention_ms >= 0
                && (first.size() == 0
                    || first.max_ts().timestamp >= 0
                        && now_ms.saturating_sub(first.max_ts().timestamp)
                            > self.config.retention_ms);
            let by_size = self.config.retention_bytes >= 0
                && total.saturating_sub(first.size()) >= self.config.retention_bytes as u64;
            if !(by_time || by_size) {
                break;
            }
            let next = segs.get(1).map_or(first.next_offset(), |s| s.base_offset);
            self.segments
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&first.base_offset);
            self.log_start_offset.fetch_max(next, Ordering::AcqRel);
            first.delete_files(&self.dir)?;
            deleted += 1;
        }
        if deleted > 0 {
            self.after_head_truncated(&mut st);
        }
        Ok(deleted)
    }
}
