//! The aborted-transaction index: for each aborted transaction, the
//! producer id and the offsets it spans, so a read_committed fetch can tell
//! the consumer which batches to drop while the records themselves still go
//! out with `sendfile`. Kept per segment in `<base>.txnindex` (the segment
//! holding the ABORT marker), 32-byte big-endian entries as Kafka's:
//! producer id, first offset, last offset (the marker), last stable offset.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::RwLock;

use crate::error::{IoContext, StorageError};
use crate::segment::txn_index_path;

const ENTRY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub(crate) fn encode(&self) -> [u8; ENTRY] {
        let mut b = [0u8; ENTRY];
        b[0..8].copy_from_slice(&self.producer_id.to_be_bytes());
        b[8..16].copy_from_slice(&self.first_offset.to_be_bytes());
        b[16..24].copy_from_slice(&self.last_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Self {
        let at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            i64::from_be_bytes(a)
        };
        AbortedTxn {
            producer_id: at(0),
            first_offset: at(8),
            last_offset: at(16),
            last_stable_offset: at(24),
        }
    }
}

/// Every aborted transaction of a log, ordered by marker offset.
#[derive(Debug, Default)]
pub struct TxnIndex {
    entries: RwLock<Vec<AbortedTxn>>,
}

impl TxnIndex {
    /// Reads the index files of `bases` (segment base offsets, ascending)
    /// of a log ending at `log_end`. A file is read up to its first entry
    /// that cannot be one of its segment's (a power cut can leave a torn or
    /// zero-filled tail, or an entry whose marker the log lost) and cut
    /// there, so later appends line up; replay re-adds what was lost.
    pub fn load(dir: &Path, bases: &[i64], log_end: i64) -> Result<Self, StorageError> {
        let mut entries = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let end = bases.get(i + 1).copied().unwrap_or(log_end).min(log_end);
            let path = txn_index_path(dir, *base);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(format!("reading {}", path.display()), e)),
            };
            let mut good = 0;
            for e in bytes.chunks_exact(ENTRY).map(AbortedTxn::decode) {
                // A marker ends a transaction that wrote at least one batch.
                let plausible = e.producer_id >= 0
                    && 0 <= e.first_offset
                    && e.first_offset < e.last_offset
                    && (*base..end).contains(&e.last_offset);
                if !plausible {
                    break;
                }
                entries.push(e);
                good += ENTRY;
            }
            if good < bytes.len() {
                tracing::warn!(path = %path.display(), kept = good / ENTRY, dropped_bytes = bytes.len() - good,
                    "aborted-transaction index cut at its first implausible entry");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(good as u64))
                    .ctx(|| format!("truncating {}", path.display()))?;
            }
        }
        entries.sort_by_key(|e| e.last_offset);
        entries.dedup();
        Ok(TxnIndex {
            entries: RwLock::new(entries),
        })
    }

    /// Records an aborted transaction whose marker is in the segment at
    /// `segment_base`; a repeat (replay after a crash) is skipped.
    pub fn add(&self, dir: &Path, segment_base: i64, txn: AbortedTxn) -> Result<(), StorageError> {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries
            .iter()
            .rev()
            .take_while(|e| e.last_offset >= txn.last_offset)
            .any(|e| e.last_offset == txn.last_offset && e.producer_id == txn.producer_id)
        {
            return Ok(());
        }
        let path = txn_index_path(dir, segment_base);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&txn.encode()))
            .ctx(|| format!("appending to {}", path.display()))?;
        let at = entries.partition_point(|e| e.last_offset <= txn.last_offset);
        entries.insert(at, txn);
        Ok(())
    }

    /// Aborted transactions that overlap `[from, upto)`: what a
    /// read_committed fetch from `from` bounded by `upto` must be told.
    pub fn overlapping(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let start = entries.partition_point(|e| e.last_offset < from);
        entries[start..]
            .iter()
            .filter(|e| e.first_offset < upto)
            .copied()
            .collect()
    }

    /// Replaces the entries whose marker lies in `[from, to)` by `txns`
    /// (the segments there were cleaned; the files are already swapped).
    pub fn replace_range(&self, from: i64, to: i64, txns: Vec<AbortedTxn>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.last_offset < from || e.last_offset >= to);
        entries.extend(txns);
        entries.sort_by_key(|e| e.last_offset);
        entries.dedup();
    }

    /// Forgets transactions wholly below the log start (their segments are gone).
    pub fn truncate_head(&self, log_start: i64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.last_offset >= log_start);
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn persists_per_segment_skips_repeats_and_answers_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TxnIndex::default();
        idx.add(dir.path(), 0, txn(1, 0, 10)).unwrap();
        idx.add(dir.path(), 0, txn(2, 5, 20)).unwrap();
        idx.add(dir.path(), 100, txn(3, 90, 120)).unwrap();
        idx.add(dir.path(), 100, txn(3, 90, 120)).unwrap(); // replayed
        assert_eq!(idx.len(), 3);
        let got: Vec<i64> = idx
            .overlapping(11, 100)
            .iter()
            .map(|t| t.producer_id)
            .collect();
        assert_eq!(got, vec![2, 3]);
        assert!(idx.overlapping(121, 200).is_empty());
        // A torn last entry is ignored on load.
        let p = txn_index_path(dir.path(), 100);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        let back = TxnIndex::load(dir.path(), &[0, 100], 200).unwrap();
        assert_eq!(back.overlapping(0, i64::MAX), idx.overlapping(0, i64::MAX));
        back.truncate_head(50);
        assert_eq!(back.len(), 1);
    }

    #[test]
    fn a_torn_or_zero_filled_tail_and_entries_past_the_log_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TxnIndex::default();
        idx.add(dir.path(), 0, txn(1, 0, 10)).unwrap();
        idx.add(dir.path(), 0, txn(2, 5, 20)).unwrap();
        idx.add(dir.path(), 100, txn(3, 90, 120)).unwrap();
        idx.add(dir.path(), 100, txn(4, 121, 130)).unwrap();
        // Segment 0's file grew by a page the cut never wrote (zeros).
        let p0 = txn_index_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&p0).unwrap();
        f.write_all(&[0u8; 4096 - 64]).unwrap();
        // The log now ends at 125: the marker at 130 was lost.
        let back = TxnIndex::load(dir.path(), &[0, 100], 125).unwrap();
        let pids: Vec<i64> = back
            .overlapping(0, i64::MAX)
            .iter()
            .map(|t| t.producer_id)
            .collect();
        assert_eq!(pids, vec![1, 2, 3]);
        // The files were cut, so an append after them lines up.
        assert_eq!(std::fs::metadata(&p0).unwrap().len(), 64);
        back.add(dir.path(), 0, txn(5, 30, 40)).unwrap();
        let again = TxnIndex::load(dir.path(), &[0, 100], 125).unwrap();
        assert_eq!(again.len(), 4);
    }
}
