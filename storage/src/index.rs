//! Sparse, memory-mapped, fixed-width indexes of a segment: `OffsetIndex`
//! (relative offset u32 BE + position u32 BE) and `TimeIndex` (timestamp i64
//! BE + relative offset u32 BE). Files are preallocated while the segment is
//! active and trimmed to the used size when it is sealed or the log closed;
//! the used prefix is found on open as the entries before the first all-zero one.
//!
//! The preallocated length is a hole: blocks are reserved (`fallocate`) a page
//! at a time just before an entry is written into a page without them. A
//! mapped write into a hole on a full disk is not an error a write call can
//! return but SIGBUS, which would kill the broker; a reservation that fails
//! instead drops that one entry, which only makes the sparse index sparser.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{IoContext, StorageError};

/// A growable-in-place array of `W`-byte entries in a memory-mapped file.
struct IndexFile<const W: usize> {
    path: PathBuf,
    file: File,
    /// None when the file is empty: a zero-length mapping is not portable.
    mmap: Option<MmapMut>,
    entries: usize,
    /// Bytes from the start known to have blocks behind them.
    allocated: u64,
    /// The file system has no fallocate: mapped writes go unreserved.
    no_fallocate: bool,
}

/// Blocks are reserved for an index a page at a time: the page an entry is
/// about to be written into (100,000 partitions' indexes hold no more).
const RESERVE_STEP: u64 = 4096;

impl<const W: usize> IndexFile<W> {
    fn open(path: &Path, max_bytes: u64, preallocate: bool) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(|| format!("opening index {}", path.display()))?;
        let len = file
            .metadata()
            .ctx(|| format!("stat {}", path.display()))?
            .len();
        if len % W as u64 != 0 {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("size {len} is not a multiple of the {W}-byte entry size"),
            });
        }
        let mut idx = IndexFile {
            path: path.to_path_buf(),
            file,
            mmap: None,
            entries: 0,
            allocated: 0,
            no_fallocate: false,
        };
        idx.map()?;
        idx.entries = idx.used_entries();
        // Entries written hold blocks; the rest of the file may be a hole.
        idx.allocated = (idx.entries * W) as u64;
        if preallocate {
            let want = (max_bytes / W as u64) * W as u64;
            if want > len {
                idx.resize(want)?;
            }
        }
        Ok(idx)
    }

    fn map(&mut self) -> Result<(), StorageError> {
        let len = self
            .file
            .metadata()
            .ctx(|| format!("stat {}", self.path.display()))?
            .len();
        self.mmap = None;
        if len > 0 {
            // SAFETY: the file is private to this log (the data dir is flock'ed)
            // and only this process maps it; all access goes through `self`.
            let m = unsafe { MmapMut::map_mut(&self.file) }
                .ctx(|| format!("mapping index {}", self.path.display()))?;
            self.mmap = Some(m);
        }
        Ok(())
    }

    fn resize(&mut self, bytes: u64) -> Result<(), StorageError> {
        if let Some(m) = self.mmap.take() {
            m.flush()
                .ctx(|| format!("flushing index {}", self.path.display()))?;
        }
        self.file
            .set_len(bytes)
            .ctx(|| format!("resizing index {}", self.path.display()))?;
        self.allocated = self.allocated.min(bytes);
        self.map()
    }

    /// Makes sure the bytes up to `end` have blocks; false on a full disk.
    fn reserve(&mut self, end: u64) -> bool {
        if end <= self.allocated || self.no_fallocate {
            return true;
        }
        let size = self.bytes().len() as u64;
        let to = (end.next_multiple_of(RESERVE_STEP)).min(size).max(end);
        match rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            self.allocated,
            to - self.allocated,
        ) {
            Ok(()) => {
                self.allocated = to;
                true
            }
            Err(rustix::io::Errno::NOSPC) => false,
            Err(e) => {
                tracing::debug!(index = %self.path.display(), error = %e,
                    "fallocate refused; index pages are written unreserved");
                self.no_fallocate = true;
                true
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        self.mmap.as_deref().unwrap_or(&[])
    }

    fn capacity(&self) -> usize {
        self.bytes().len() / W
    }

    fn entry(&self, i: usize) -> &[u8] {
        &self.bytes()[i * W..(i + 1) * W]
    }

    /// Entries are written in order, so the used ones are a prefix followed
    /// by zeros; a binary search finds the first all-zero entry. It reads
    /// with pread, not through the mapping: the rest of the file is a hole,
    /// and on tmpfs even a mapped read of a hole takes a page, which on a
    /// full file system is SIGBUS.
    fn used_entries(&self) -> usize {
        let zero = |i: usize| {
            let mut e = [0u8; W];
            // An unreadable entry counts as unused: recovery rebuilds it.
            self.file.read_exact_at(&mut e, (i * W) as u64).is_err() || e.iter().all(|&b| b == 0)
        };
        let (mut lo, mut hi) = (0, self.capacity());
        // Entry 0 may legitimately be all zero only for a time index entry
        // (timestamp 0, relative offset 0); treating it as unused is harmless.
        while lo < hi {
            let mid = (lo + hi) / 2;
            if zero(mid) { hi = mid } else { lo = mid + 1 }
        }
        lo
    }

    fn is_full(&self) -> bool {
        self.entries >= self.capacity()
    }

    /// Writes the next entry; false when the index is full, or when the disk
    /// has no block for it (the entry is left out).
    fn push(&mut self, entry: [u8; W]) -> bool {
        if self.is_full() {
            return false;
        }
        let at = self.entries * W;
        if !self.reserve((at + W) as u64) {
            return false;
        }
        if let Some(m) = self.mmap.as_mut() {
            m[at..at + W].copy_from_slice(&entry);
            self.entries += 1;
            true
        } else {
            false
        }
    }

    /// Overwrites the last entry (its page has blocks already).
    fn replace_last(&mut self, entry: [u8; W]) -> bool {
        let Some(last) = self.entries.checked_sub(1) else {
            return false;
        };
        match self.mmap.as_mut() {
            Some(m) => {
                m[last * W..(last + 1) * W].copy_from_slice(&entry);
                true
            }
            None => false,
        }
    }

    /// Drops entries from `n` on, zeroing them so a later open agrees.
    fn truncate_entries(&mut self, n: usize) {
        if n >= self.entries {
            return;
        }
        let (from, to) = (n * W, self.entries * W);
        if let Some(m) = self.mmap.as_mut() {
            m[from..to].fill(0);
        }
        self.entries = n;
    }

    fn trim(&mut self) -> Result<(), StorageError> {
        self.resize((self.entries * W) as u64)
    }

    fn flush(&self) -> Result<(), StorageError> {
        if let Some(m) = &self.mmap {
            m.flush()
                .ctx(|| format!("flushing index {}", self.path.display()))?;
        }
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Offset -> file position, one entry every `index.interval.bytes` of log.
pub struct OffsetIndex {
    inner: IndexFile<8>,
    base_offset: i64,
}

impl OffsetIndex {
    pub fn open(
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
        preallocate: bool,
    ) -> Result<Self, StorageError> {
        Ok(OffsetIndex {
            inner: IndexFile::open(path, max_bytes, preallocate)?,
            base_offset,
        })
    }

    pub fn len(&self) -> usize {
        self.inner.entries
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries == 0
    }

    pub fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    /// (absolute offset, position) of entry `i`.
    pub fn entry(&self, i: usize) -> (i64, u64) {
        let e = self.inner.entry(i);
        (self.base_offset + u32_at(e, 0) as i64, u32_at(e, 4) as u64)
    }

    pub fn last(&self) -> Option<(i64, u64)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends (offset, position); false when full or left out (full disk).
    pub fn append(&mut self, offset: i64, position: u64) -> bool {
        let rel = (offset - self.base_offset) as u32;
        let mut e = [0u8; 8];
        e[..4].copy_from_slice(&rel.to_be_bytes());
        e[4..].copy_from_slice(&(position as u32).to_be_bytes());
        self.inner.push(e)
    }

    /// The entry with the largest offset <= `offset`, or (base, 0).
    pub fn lookup(&self, offset: i64) -> (i64, u64) {
        let n = self.len();
        let idx = partition_point(n, |i| self.entry(i).0 <= offset);
        if idx == 0 {
            (self.base_offset, 0)
        } else {
            self.entry(idx - 1)
        }
    }

    /// The largest indexed position <= `position`, or 0.
    pub fn floor_position(&self, position: u64) -> u64 {
        let idx = partition_point(self.len(), |i| self.entry(i).1 <= position);
        if idx == 0 { 0 } else { self.entry(idx - 1).1 }
    }

    /// The smallest indexed position > `position` (a batch start).
    pub fn position_after(&self, position: u64) -> Option<u64> {
        let idx = partition_point(self.len(), |i| self.entry(i).1 <= position);
        (idx < self.len()).then(|| self.entry(idx).1)
    }

    pub fn truncate_entries(&mut self, n: usize) {
        self.inner.truncate_entries(n)
    }

    /// Drops every entry pointing at `position` or beyond.
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = partition_point(self.len(), |i| self.entry(i).1 < position);
        self.inner.truncate_entries(keep)
    }

    pub fn trim(&mut self) -> Result<(), StorageError> {
        self.inner.trim()
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.flush()
    }

    /// Re-extends a trimmed index so a reopened active segment can grow.
    pub fn preallocate(&mut self, max_bytes: u64) -> Result<(), StorageError> {
        let want = (max_bytes / 8) * 8;
        if want > (self.inner.capacity() * 8) as u64 {
            self.inner.resize(want)
        } else {
            Ok(())
        }
    }
}

/// Timestamp -> offset: entries (max timestamp so far, last offset of the
/// batch carrying it), added only when the timestamp grows.
pub struct TimeIndex {
    inner: IndexFile<12>,
    base_offset: i64,
}

impl TimeIndex {
    pub fn open(
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
        preallocate: bool,
    ) -> Result<Self, StorageError> {
        Ok(TimeIndex {
            inner: IndexFile::open(path, max_bytes, preallocate)?,
            base_offset,
        })
    }

    pub fn len(&self) -> usize {
        self.inner.entries
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries == 0
    }

    pub fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    /// (timestamp, absolute offset) of entry `i`.
    pub fn entry(&self, i: usize) -> (i64, i64) {
        let e = self.inner.entry(i);
        (i64_at(e, 0), self.base_offset + u32_at(e, 8) as i64)
    }

    pub fn last(&self) -> Option<(i64, i64)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends when `timestamp` exceeds the last entry's; false if skipped
    /// (or left out on a full disk).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        if timestamp < 0 || self.last().is_some_and(|(ts, _)| timestamp <= ts) {
            return false;
        }
        let mut e = [0u8; 12];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&((offset - self.base_offset) as u32).to_be_bytes());
        if self.inner.push(e) {
            return true;
        }
        // No block for a new entry (a full disk): the last entry moves up
        // instead, so the segment's max timestamp (read back from here on
        // open, and what time retention goes by) stays exact; a lookup
        // between the two timestamps starts one entry earlier.
        !self.inner.is_full() && self.inner.replace_last(e)
    }

    /// The entry with the largest timestamp <= `timestamp`.
    pub fn lookup(&self, timestamp: i64) -> Option<(i64, i64)> {
        let idx = partition_point(self.len(), |i| self.entry(i).0 <= timestamp);
        idx.checked_sub(1).map(|i| self.entry(i))
    }

    /// Drops every entry with offset >= `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let keep = partition_point(self.len(), |i| self.entry(i).1 < offset);
        self.inner.truncate_entries(keep)
    }

    pub fn trim(&mut self) -> Result<(), StorageError> {
        self.inner.trim()
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.flush()
    }

    pub fn preallocate(&mut self, max_bytes: u64) -> Result<(), StorageError> {
        let want = (max_bytes / 12) * 12;
        if want > (self.inner.capacity() * 12) as u64 {
            self.inner.resize(want)
        } else {
            Ok(())
        }
    }
}

/// First index in 0..n where `pred` turns false (pred must be monotone).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_trim_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::open(&p, 100, 80, true).unwrap();
        assert_eq!(idx.lookup(150), (100, 0));
        for i in 1..=10u64 {
            assert!(idx.append(100 + 10 * i as i64, 1000 * i));
        }
        assert!(idx.is_full());
        assert!(!idx.append(500, 99999));
        assert_eq!(idx.lookup(125), (120, 2000));
        assert_eq!(idx.lookup(120), (120, 2000));
        assert_eq!(idx.lookup(105), (100, 0));
        assert_eq!(idx.floor_position(3500), 3000);
        idx.truncate_to_position(5000);
        assert_eq!(idx.len(), 4);
        drop(idx);
        // Reopen: the used prefix is found by the zero search.
        let mut idx = OffsetIndex::open(&p, 100, 80, true).unwrap();
        assert_eq!(idx.len(), 4);
        idx.trim().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 32);
        assert_eq!(idx.last(), Some((140, 4000)));
    }

    #[test]
    fn time_index_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.timeindex");
        let mut t = TimeIndex::open(&p, 0, 120, true).unwrap();
        assert!(t.maybe_append(1000, 5));
        assert!(!t.maybe_append(900, 7));
        assert!(t.maybe_append(2000, 9));
        assert_eq!(t.lookup(1500), Some((1000, 5)));
        assert_eq!(t.lookup(999), None);
        t.truncate_to_offset(9);
        assert_eq!(t.len(), 1);
    }
}
