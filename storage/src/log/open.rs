//! Opening a partition log: listing its segments, finishing what a crash
//! interrupted (a committed compaction swap, stray temporary files, orphan
//! Arrow faces), recovering the active segment's tail, and rebuilding the
//! producer state, the aborted-transaction index and the leader-epoch cache.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use super::*;
use crate::checkpoint::read_checkpoint;

impl Log {
    /// Opens or creates the log in `dir` and recovers it (see the crate docs).
    pub fn open(
        dir: &Path,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Log, StorageError> {
        create_dir_durable(dir)?;
        // Finish (or undo) a cleaner swap a crash interrupted, before the
        // segments are listed.
        crate::cleaner::swap::recover_swaps(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        let mut bases = Vec::new();
        let mut faces = Vec::new();
        for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let face = crate::face::is_face_file(name);
            if name.ends_with(".deleted")
                || name.ends_with(".snapshot.tmp")
                || face.is_some_and(|(_, temporary)| temporary)
            {
                std::fs::remove_file(entry.path()).ctx(|| format!("removing stray {name}"))?;
            } else if let Some(stem) = name.strip_suffix(".log")
                && let Ok(base) = stem.parse::<i64>()
            {
                bases.push(base);
            } else if let Some((base, _)) = face {
                faces.push((base, entry.path()));
            }
        }
        bases.sort_unstable();
        // A face whose segment is gone (deleted before a crash).
        for (base, path) in faces {
            if bases.binary_search(&base).is_err() {
                std::fs::remove_file(&path)
                    .ctx(|| format!("removing orphan {}", path.display()))?;
            }
        }
        let index_bytes = config.segment_index_bytes as u64;
        let now = now_ms();
        // After a crash, segments reaching past the recovery point may have
        // been torn by a power cut: each is checked batch by batch (none
        // without the file: a data dir from before it existed).
        let recovery_point = if clean {
            i64::MAX
        } else {
            // Unreadable: every segment is checked, as with no file.
            unless_corrupt(
                read_checkpoint(&dir.join(RECOVERY_POINT_FILE), 1),
                "checking every segment",
            )?
            .flatten()
            .and_then(|e| e.first().map(|e| e[0]))
            .unwrap_or(0)
        };
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            let verify = !clean && next.is_none_or(|n| n > recovery_point);
            let seg = LogSegment::open(
                dir,
                base,
                index_bytes,
                next,
                verify,
                config.index_interval_bytes,
                now,
            )?;
            // A checked sealed segment whose batches end before the next
            // segment starts lost its tail in the crash, unless compaction
            // removed those offsets (then the gap is the cleaner's).
            let mut torn = false;
            if let Some(n) = next
                && verify
                && seg.next_offset() < n
            {
                if config.cleanup_policy.compacts() {
                    seg.set_next_offset(n);
                } else {
                    torn = true;
                }
            }
            segments.insert(base, Arc::new(seg));
            if torn {
                // The offsets after a torn segment's last good batch are
                // gone, so the segments after it cannot stay (as Kafka
                // truncates the log at the first corrupt batch it recovers).
                for &later in &bases[i + 1..] {
                    tracing::warn!(dir = %dir.display(), base_offset = later,
                        "removing a log segment after a segment torn by a crash");
                    remove_segment_files(dir, later)?;
                }
                bases.truncate(i + 1);
                break;
            }
        }
        let active = match segments.last_key_value() {
            Some((_, s)) => s.clone(),
            None => {
                // Empty: from the log start offset (a replica reset to its
                // leader's start), else 0.
                let base = unless_corrupt(retention::read_log_start_offset(dir), "starting at 0")?
                    .flatten()
                    .unwrap_or(0)
                    .max(0);
                let s = Arc::new(LogSegment::create(dir, base, index_bytes, -1)?);
                segments.insert(base, s.clone());
                s
            }
        };
        active.prepare_active(index_bytes)?;
        if clean {
            // The marker's removal must reach the disk before anything is
            // appended: if a power cut brought it back, the next start would
            // trust a tail written after this one without checking it.
            std::fs::remove_file(&marker).ctx(|| format!("removing {}", marker.display()))?;
            sync_dir(dir)?;
        }
        let leo = active.next_offset();
        let first_base = segments.first_key_value().map_or(0, |(b, _)| *b);
        // DeleteRecords may have moved the start inside the first segment.
        // Unreadable: the log starts at its first segment, as Kafka resets it.
        let start = unless_corrupt(
            retention::read_log_start_offset(dir),
            "starting at the first segment",
        )?
        .flatten()
        .map_or(first_base, |s| s.max(first_base))
        .min(leo);
        let seg_list: Vec<Arc<LogSegment>> = segments.values().cloned().collect();
        let leader_epochs = match unless_corrupt(
            LeaderEpochCache::load(dir),
            "rebuilding it from the batches",
        )? {
            Some(cache) => cache,
            None => LeaderEpochCache::rebuild(dir, &seg_list, start)?,
        };
        leader_epochs.truncate_from_start(start)?;
        leader_epochs.truncate_from_end(leo)?;
        let (producers, completed) = producer_state::rebuild(dir, &seg_list, start, leo)?;
        let lso = producers.first_unstable_offset().unwrap_or(leo);
        let txn_index = TxnIndex::load(dir, &bases, leo)?;
        // Aborts whose index entry a crash lost are found again by replay.
        for c in completed.iter().filter(|c| c.aborted) {
            let seg_base = segments
                .range(..=c.last_offset)
                .next_back()
                .map_or(start, |(b, _)| *b);
            txn_index.add(dir, seg_base, aborted_entry(c, lso))?;
        }
        let (hw, _) = tokio::sync::watch::channel(leo);
        let (end, _) = tokio::sync::watch::channel(leo);
        Ok(Log {
            dir: dir.to_path_buf(),
            topic: topic.to_string(),
            partition,
            config: RwLock::new(Arc::new(config)),
            segments: RwLock::new(segments),
            append: Mutex::new(AppendState {
                active,
                cursor: IndexCursor::default(),
                unflushed_messages: 0,
                closed: false,
                producers,
            }),
            log_end_offset: AtomicI64::new(leo),
            log_start_offset: AtomicI64::new(start),
            last_stable_offset: AtomicI64::new(lso),
            txn_index,
            leader_epochs,
            // After a clean shutdown everything was fsynced. After a crash the
            // recovered tail (and recovery's own truncation) may live only in
            // the page cache: nothing counts as durable until the first flush
            // has synced every segment, so an acks=all retry answered as a
            // duplicate still waits for an fsync.
            flushed_offset: AtomicI64::new(if clean { leo } else { start.min(first_base) }),
            flush_lock: Mutex::new(()),
            fsyncs: AtomicU64::new(0),
            last_flush_ms: AtomicI64::new(now),
            // Recovery may have created, truncated or removed files.
            dirty_dir: AtomicBool::new(!clean),
            opened_after_crash: !clean,
            recovery_point: AtomicI64::new(if clean { leo } else { recovery_point.min(leo) }),
            health: Arc::new(super::PartitionHealth::new(topic, partition)),
            hw,
            replicated: AtomicBool::new(false),
            hw_checkpoint: AtomicI64::new(-1),
            end,
            clean_offset: AtomicI64::new(-1),
            cleaning: Mutex::new(()),
            clean_abort: AtomicBool::new(false),
            segment_removal: Mutex::new(()),
            uncleanable: AtomicBool::new(false),
            rewrites: AtomicU64::new(0),
        })
    }
}

/// Removes a segment's files (log, indexes, face), whichever exist.
pub(super) fn remove_segment_files(dir: &Path, base: i64) -> Result<(), StorageError> {
    for path in [
        crate::segment::log_path(dir, base),
        crate::segment::index_path(dir, base),
        crate::segment::time_index_path(dir, base),
        crate::segment::txn_index_path(dir, base),
    ]
    .into_iter()
    .chain(crate::face::face_files(dir, base))
    {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

/// A small metadata file that does not parse (they are written whole and
/// renamed into place, so only a damaged disk makes one): reported, and
/// `None` so the caller falls back to what the log itself says.
fn unless_corrupt<T>(
    read: Result<T, StorageError>,
    fallback: &str,
) -> Result<Option<T>, StorageError> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(StorageError::Corrupt { path, reason }) => {
            tracing::error!(file = %path.display(), %reason, "unreadable checkpoint; {fallback}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
