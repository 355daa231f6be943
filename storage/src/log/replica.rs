//! What replication needs from a partition log: a high watermark that the
//! leader moves (the lowest log end offset of the in-sync set) instead of
//! every append, a watch on the log end offset for followers' long polls,
//! and appends of a leader's batches exactly as received: offsets, leader
//! epochs and CRCs kept, nothing re-encoded.

use std::io::IoSlice;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use karnak_protocol::control::parse_marker;
use karnak_protocol::record_batch::{BatchHeader, BatchIter, check_crc};

use super::producer_state::BatchInfo;
use super::transactions::aborted_entry;
use super::{Log, lock, now_ms};
use crate::error::StorageError;

impl Log {
    /// Replicated: the high watermark moves only by [`Self::set_high_watermark`].
    /// Not replicated (one replica), it follows every append.
    /// Turned on for the first time since the log was opened, the high
    /// watermark starts at the last one checkpointed (see
    /// [`Self::restore_high_watermark`]), not at the log end: a restarted
    /// replica must not show records the in-sync set may not have.
    pub fn set_replicated(&self, on: bool) {
        let was = self.replicated.swap(on, Ordering::AcqRel);
        if on && !was {
            let checkpointed = self.hw_checkpoint.swap(-1, Ordering::AcqRel);
            let leo = self.log_end_offset();
            let hw = if checkpointed >= 0 {
                checkpointed.min(leo)
            } else {
                leo
            };
            self.hw.send_replace(hw);
        }
        if !on {
            let _ = self.set_high_watermark(self.log_end_offset());
        }
    }

    /// The high watermark the data dir's checkpoint recorded for this log.
    pub fn restore_high_watermark(&self, hw: i64) {
        self.hw_checkpoint.store(hw.max(0), Ordering::Release);
    }

    pub fn is_replicated(&self) -> bool {
        self.replicated.load(Ordering::Acquire)
    }

    /// Moves the high watermark to `hw` (at most the log end offset);
    /// returns where it is now. Readers waiting on it wake.
    pub fn set_high_watermark(&self, hw: i64) -> i64 {
        let hw = hw.min(self.log_end_offset()).max(0);
        self.hw.send_if_modified(|v| {
            let changed = *v != hw;
            *v = hw;
            changed
        });
        hw
    }

    /// This replica leads from now on in `epoch`: the epoch starts at the
    /// log end offset in the epoch cache (as Kafka's makeLeader does), so
    /// followers asking for an older epoch's end learn where it stopped.
    pub fn begin_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        let _st = lock(&self.append);
        if self
            .leader_epochs
            .latest_epoch()
            .is_some_and(|e| e >= epoch)
        {
            return Ok(());
        }
        self.leader_epochs.assign(epoch, self.log_end_offset())
    }

    /// Watch the log end offset (followers' fetches wait on it).
    pub fn subscribe_end(&self) -> tokio::sync::watch::Receiver<i64> {
        self.end.subscribe()
    }

    /// Appends batches as the leader wrote them. They must follow this
    /// log's end (a batch may start past it where the leader's cleaner
    /// removed offsets), each with a good CRC; the leader epochs in them
    /// enter the epoch cache. Returns the new log end offset.
    pub fn append_as_follower(&self, records: &Bytes) -> Result<i64, StorageError> {
        let cfg = self.config();
        let leo = self.log_end_offset();
        let mut batches: Vec<(usize, BatchHeader)> = Vec::new();
        let mut expected = leo;
        let mut count = 0u64;
        // A fetch response may end in part of a batch: the rest comes with
        // the next fetch.
        let whole = whole_batches(records);
        for item in BatchIter::new(&whole) {
            let (pos, h) = item.map_err(|e| self.malformed(format!("{e}")))?;
            let end = pos + h.total_size();
            check_crc(&records[pos..end], &h).map_err(|e| self.malformed(format!("{e}")))?;
            if h.base_offset < expected || h.last_offset_delta < 0 {
                return Err(self.malformed(format!(
                    "batch at offset {} where {expected} or later was expected",
                    h.base_offset
                )));
            }
            expected = h.next_offset();
            count += h.last_offset_delta as u64 + 1;
            batches.push((pos, h));
        }
        let Some(total) = batches.last().map(|(p, h)| p + h.total_size()) else {
            return Ok(leo);
        };
        let mut st = lock(&self.append);
        self.check_online()?;
        if st.closed || self.log_end_offset() != leo {
            return Err(self.malformed("the log changed under a follower append".into()));
        }
        let now = now_ms();
        let first = batches[0].1.base_offset;
        self.maybe_roll(&mut st, &cfg, total as u64, first, count, now)?;
        for (_, h) in &batches {
            self.leader_epochs
                .assign(h.partition_leader_epoch, h.base_offset)?;
        }
        let active = st.active.clone();
        let mut iov = [IoSlice::new(&records[..total])];
        active
            .append(
                &mut iov,
                &batches,
                cfg.index_interval_bytes,
                &mut st.cursor,
                cfg.preallocate_ahead_bytes,
                cfg.segment_bytes,
            )
            .map_err(|e| self.on_write_error(e))?;
        if active.created_ms.load(Ordering::Relaxed) < 0 {
            active.created_ms.store(now, Ordering::Relaxed);
        }
        let mut completed = Vec::new();
        for (pos, h) in batches.iter().filter(|(_, h)| h.producer_id >= 0) {
            let marker = h
                .is_control()
                .then(|| parse_marker(&records[*pos..pos + h.total_size()], h))
                .flatten();
            if let Some(c) = st.producers.replay(&BatchInfo::from_header(h, marker)) {
                completed.push(c);
            }
        }
        let lso = st.producers.first_unstable_offset().unwrap_or(expected);
        for c in completed.iter().filter(|c| c.aborted) {
            self.txn_index
                .add(&self.dir, active.base_offset, aborted_entry(c, lso))?;
        }
        self.last_stable_offset.store(lso, Ordering::Release);
        self.log_end_offset.store(expected, Ordering::Release);
        self.end.send_replace(expected);
        st.unflushed_messages += count;
        let flush_now = cfg
            .flush_messages
            .is_some_and(|n| st.unflushed_messages >= n);
        if flush_now {
            st.unflushed_messages = 0;
        }
        drop(st);
        if flush_now {
            self.flush_up_to(expected)?;
        }
        Ok(expected)
    }

    fn malformed(&self, reason: String) -> StorageError {
        StorageError::Corrupt {
            path: self.dir.clone(),
            reason: format!("replicated records: {reason}"),
        }
    }
}

/// The prefix of `records` made of whole batches (by their length fields).
fn whole_batches(records: &Bytes) -> Bytes {
    let mut pos = 0usize;
    while let Some(len) = records.get(pos + 8..pos + 12) {
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        let Some(end) = usize::try_from(len).ok().map(|l| pos + 12 + l) else {
            break;
        };
        if end > records.len() {
            break;
        }
        pos = end;
    }
    records.slice(..pos)
}

/// The base offsets of a log dir's segments, sorted.
fn segment_bases(dir: &std::path::Path) -> Result<Vec<i64>, StorageError> {
    use crate::error::IoContext;
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|s| s.parse::<i64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn remove_if_exists(p: std::path::PathBuf) -> Result<(), StorageError> {
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("removing {}", p.display()), e)),
    }
}

/// Removes every segment, index, snapshot and the leader epoch cache of a
/// closed log and makes `start` its log start offset: the log opens empty
/// at `start` (Kafka's truncateFullyAndStartAt, for a follower that fell
/// behind its leader's log start).
pub(crate) fn clear_files(dir: &std::path::Path, start: i64) -> Result<(), StorageError> {
    for base in segment_bases(dir)? {
        super::open::remove_segment_files(dir, base)?;
    }
    for snap in super::producer_state::list_snapshots(dir)? {
        remove_if_exists(super::producer_state::snapshot_path(dir, snap))?;
    }
    remove_if_exists(dir.join(super::leader_epoch::LEADER_EPOCH_CHECKPOINT))?;
    remove_if_exists(dir.join(super::CLEAN_SHUTDOWN_FILE))?;
    crate::checkpoint::write_checkpoint(
        &dir.join(super::retention::LOG_START_OFFSET_CHECKPOINT),
        &[vec![start]],
    )?;
    crate::log::sync_dir(dir)
}

/// Cuts a closed log's files at `offset` (a batch boundary): segments from
/// there on go, the one holding it is cut where its batch starts and loses
/// its indexes (rebuilt on open), producer snapshots past it go, and the
/// clean-shutdown marker goes so the next open checks what is left.
/// Opening the log afterwards rebuilds producer state, the aborted-txn
/// index and the epoch cache up to the new end.
pub(crate) fn truncate_files(dir: &std::path::Path, offset: i64) -> Result<(), StorageError> {
    use crate::error::IoContext;
    use crate::segment::{index_path, log_path, time_index_path};
    let bases = segment_bases(dir)?;
    let remove = remove_if_exists;
    for &base in bases.iter().filter(|b| **b >= offset && **b > bases[0]) {
        super::open::remove_segment_files(dir, base)?;
    }
    if let Some(&base) = bases.iter().rev().find(|b| **b < offset || **b == bases[0]) {
        let path = log_path(dir, base);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        let len = file
            .metadata()
            .ctx(|| format!("stat {}", path.display()))?
            .len();
        let mut pos = 0u64;
        let mut head = [0u8; karnak_protocol::record_batch::HEADER_LEN];
        while pos + head.len() as u64 <= len {
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, pos)
                .ctx(|| format!("reading {}", path.display()))?;
            let Ok(h) = BatchHeader::parse(&head) else {
                break;
            };
            if h.base_offset >= offset || h.next_offset() > offset {
                break;
            }
            pos += h.total_size() as u64;
        }
        file.set_len(pos.min(len))
            .and_then(|()| file.sync_all())
            .ctx(|| format!("truncating {}", path.display()))?;
        remove(index_path(dir, base))?;
        remove(time_index_path(dir, base))?;
        for p in crate::face::face_files(dir, base) {
            remove(p)?;
        }
    }
    for snap in super::producer_state::list_snapshots(dir)? {
        if snap > offset {
            remove(super::producer_state::snapshot_path(dir, snap))?;
        }
    }
    remove(dir.join(super::CLEAN_SHUTDOWN_FILE))?;
    crate::log::sync_dir(dir)
}
