//! The leader-epoch cache (Kafka's `LeaderEpochFileCache`): for each leader
//! epoch, the first offset written in it, kept in the partition directory as
//! `leader-epoch-checkpoint` in Kafka's format. OffsetForLeaderEpoch answers
//! from it, and after a leader change a follower truncates by it (KIP-101,
//! KIP-279) rather than by the high watermark.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::checkpoint::{read_checkpoint, write_checkpoint};
use crate::error::StorageError;
use crate::segment::LogSegment;

pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

pub struct LeaderEpochCache {
    path: PathBuf,
    /// Ascending in both epoch and start offset.
    entries: Mutex<Vec<EpochEntry>>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`. Entries that are not ascending (a
    /// file we did not write) are a corruption error.
    pub fn load(dir: &Path) -> Result<LeaderEpochCache, StorageError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let raw = read_checkpoint(&path, 2)?.unwrap_or_default();
        let mut entries = Vec::with_capacity(raw.len());
        for e in raw {
            let epoch = i32::try_from(e[0]).ok().filter(|v| *v >= 0);
            let (Some(epoch), start_offset) = (epoch, e[1]) else {
                return Err(StorageError::Corrupt {
                    path,
                    reason: format!("bad epoch {}", e[0]),
                });
            };
            if start_offset < 0
                || entries
                    .last()
                    .is_some_and(|l: &EpochEntry| l.epoch >= epoch || l.start_offset > start_offset)
            {
                return Err(StorageError::Corrupt {
                    path,
                    reason: format!("entry {epoch} {start_offset} is out of order"),
                });
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        Ok(LeaderEpochCache {
            path,
            entries: Mutex::new(entries),
        })
    }

    /// Rebuilds the cache from the leader epochs stamped in the batches of
    /// `segments` (from `start` on), when the checkpoint is unreadable: the
    /// file is written whole and renamed, so only a damaged disk gets here.
    pub fn rebuild(
        dir: &Path,
        segments: &[Arc<LogSegment>],
        start: i64,
    ) -> Result<LeaderEpochCache, StorageError> {
        let cache = LeaderEpochCache {
            path: dir.join(LEADER_EPOCH_CHECKPOINT),
            entries: Mutex::new(Vec::new()),
        };
        let mut latest = -1;
        for seg in segments {
            let (mut pos, end) = (0, seg.size());
            while let Some(h) = seg.header_at(pos, end)? {
                if h.partition_leader_epoch > latest && h.last_offset() >= start {
                    latest = h.partition_leader_epoch;
                    cache.assign(latest, h.base_offset.max(start))?;
                }
                pos += h.total_size() as u64;
            }
        }
        let entries = cache.lock().clone();
        cache.persist(&entries)?;
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<EpochEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn entries(&self) -> Vec<EpochEntry> {
        self.lock().clone()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, if it is newer than
    /// the latest known epoch; persisted before returning (rare: once per
    /// leader change). An older or equal epoch is a no-op.
    pub fn assign(&self, epoch: i32, start_offset: i64) -> Result<(), StorageError> {
        if epoch < 0 {
            return Ok(());
        }
        let mut entries = self.lock();
        if entries.last().is_some_and(|l| l.epoch >= epoch) {
            return Ok(());
        }
        // An epoch that wrote nothing is superseded by the next one.
        while entries
            .last()
            .is_some_and(|l| l.start_offset >= start_offset)
        {
            entries.pop();
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist(&entries)
    }

    /// The log start offset moved to `offset`: entries wholly below it go,
    /// and the epoch in force there starts at it.
    pub fn truncate_from_start(&self, offset: i64) -> Result<(), StorageError> {
        let mut entries = self.lock();
        let keep_from = entries
            .iter()
            .rposition(|e| e.start_offset <= offset)
            .unwrap_or(0);
        if keep_from == 0 && entries.first().is_none_or(|e| e.start_offset >= offset) {
            return Ok(());
        }
        entries.drain(..keep_from);
        if let Some(first) = entries.first_mut() {
            first.start_offset = first.start_offset.max(offset);
        }
        self.persist(&entries)
    }

    /// The log ends at `end_offset` (recovery cut a torn tail): epochs that
    /// start at or past it wrote nothing that survived, so they go, as
    /// Kafka's `truncateFromEnd` (a follower comparing epochs must not be
    /// told of offsets this log no longer has).
    pub fn truncate_from_end(&self, end_offset: i64) -> Result<(), StorageError> {
        let mut entries = self.lock();
        let keep = entries.partition_point(|e| e.start_offset < end_offset);
        if keep == entries.len() {
            return Ok(());
        }
        entries.truncate(keep);
        self.persist(&entries)
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested`
    /// and the offset where the next epoch starts (the log end offset for
    /// the latest epoch); `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)` when
    /// `requested` is undefined or newer than any known epoch.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let entries = self.lock();
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if entries.last().is_some_and(|l| l.epoch == requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = entries.iter().find(|e| e.epoch > requested) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    fn persist(&self, entries: &[EpochEntry]) -> Result<(), StorageError> {
        let raw: Vec<Vec<i64>> = entries
            .iter()
            .map(|e| vec![e.epoch as i64, e.start_offset])
            .collect();
        write_checkpoint(&self.path, &raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let c = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(c.end_offset_for(0, 10), (-1, -1));
        c.assign(1, 0).unwrap();
        c.assign(1, 5).unwrap(); // same epoch: no-op
        c.assign(3, 100).unwrap();
        c.assign(2, 200).unwrap(); // older: no-op
        assert_eq!(c.end_offset_for(3, 250), (3, 250));
        assert_eq!(c.end_offset_for(2, 250), (1, 100));
        assert_eq!(c.end_offset_for(1, 250), (1, 100));
        assert_eq!(c.end_offset_for(0, 250), (0, 0));
        assert_eq!(c.end_offset_for(4, 250), (-1, -1));
        assert_eq!(c.end_offset_for(-1, 250), (-1, -1));
        // Persisted in Kafka's format and reloaded.
        let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n2\n1 0\n3 100\n");
        let again = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(again.entries(), c.entries());
        // The log start moving past epoch 1's records.
        c.truncate_from_start(120).unwrap();
        assert_eq!(
            c.entries(),
            vec![EpochEntry {
                epoch: 3,
                start_offset: 120
            }]
        );
        c.truncate_from_start(50).unwrap();
        assert_eq!(c.entries()[0].start_offset, 120);
    }

    #[test]
    fn truncating_from_the_end_drops_epochs_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = LeaderEpochCache::load(dir.path()).unwrap();
        c.assign(0, 0).unwrap();
        c.assign(2, 50).unwrap();
        c.assign(3, 80).unwrap();
        c.truncate_from_end(90).unwrap();
        assert_eq!(c.latest_epoch(), Some(3));
        c.truncate_from_end(80).unwrap();
        assert_eq!(c.latest_epoch(), Some(2));
        // Persisted: a reload sees the truncated cache.
        let again = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(again.latest_epoch(), Some(2));
        assert_eq!(again.end_offset_for(2, 60), (2, 60));
        c.truncate_from_end(0).unwrap();
        assert_eq!(
            LeaderEpochCache::load(dir.path()).unwrap().latest_epoch(),
            None
        );
    }

    #[test]
    fn an_epoch_that_wrote_nothing_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let c = LeaderEpochCache::load(dir.path()).unwrap();
        c.assign(0, 0).unwrap();
        c.assign(1, 10).unwrap();
        c.assign(2, 10).unwrap();
        assert_eq!(c.entries().len(), 2);
        assert_eq!(c.end_offset_for(1, 20), (0, 10));
    }

    #[test]
    fn out_of_order_files_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        for bad in [
            "0\n2\n3 0\n1 5\n",
            "0\n2\n1 9\n2 5\n",
            "0\n1\n-2 0\n",
            "0\n1\n1 -5\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(LeaderEpochCache::load(dir.path()).is_err(), "{bad:?}");
        }
    }
}
