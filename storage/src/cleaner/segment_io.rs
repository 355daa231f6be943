//! The cleaner's file I/O: whole batches read from a sealed segment in
//! large chunks, and the replacement segment written beside the log as
//! `<base>.log.cleaned` with its offset, time and transaction indexes
//! (`.index.cleaned`, `.timeindex.cleaned`, `.txnindex.cleaned`), all
//! made durable before the swap.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use karnak_protocol::record_batch::{BatchHeader, HEADER_LEN};

use super::service::{CLEANER_BYTES_READ, CLEANER_BYTES_WRITTEN};
use super::throttle::{StopSignal, Throttler};
use crate::error::{IoContext, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::log::txn_index::AbortedTxn;
use crate::segment::{LogSegment, MaxTs, index_path, log_path, time_index_path, txn_index_path};

pub const CLEANED_SUFFIX: &str = ".cleaned";
pub const SWAP_SUFFIX: &str = ".swap";

/// `path` with `suffix` appended to its file name.
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The final paths of a segment's files, the `.log` last: renames go in
/// this order so the log's own rename is the step that commits.
pub fn segment_files(dir: &Path, base: i64) -> [PathBuf; 4] {
    [
        index_path(dir, base),
        time_index_path(dir, base),
        txn_index_path(dir, base),
        log_path(dir, base),
    ]
}

/// What every cleaner read and write goes through: the I/O rate limit,
/// and the checks that stop a cleaning (cleaner shutting down, log closed).
pub struct IoGate<'a> {
    pub throttler: &'a mut Throttler,
    pub stop: &'a StopSignal,
    pub abort: &'a AtomicBool,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl IoGate<'_> {
    fn check(&self) -> Result<(), StorageError> {
        if self.stop.is_stopped() || self.abort.load(Ordering::Acquire) {
            return Err(StorageError::io(
                "log cleaning",
                std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "aborted: the cleaner is stopping or the log was closed",
                ),
            ));
        }
        Ok(())
    }

    // The metrics move as the bytes flow, not at the end of a pass, so a
    // throttled pass that takes minutes is visible while it runs.
    pub fn read(&mut self, bytes: u64) -> Result<(), StorageError> {
        self.bytes_read += bytes;
        metrics::counter!(CLEANER_BYTES_READ).increment(bytes);
        self.throttler.maybe_throttle(bytes, self.stop);
        self.check()
    }

    pub fn wrote(&mut self, bytes: u64) -> Result<(), StorageError> {
        self.bytes_written += bytes;
        metrics::counter!(CLEANER_BYTES_WRITTEN).increment(bytes);
        self.throttler.maybe_throttle(bytes, self.stop);
        self.check()
    }
}

/// A batch as read: its position in the segment, header and bytes.
pub type ReadBatch<'b> = (u64, BatchHeader, &'b [u8]);

/// Whole batches of a sealed segment from a position, read `chunk` bytes
/// at a time (more for a batch larger than that). Every length comes from
/// the file, so each is checked against the segment's committed size.
pub struct BatchReader<'s> {
    seg: &'s LogSegment,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_pos: u64,
    chunk: usize,
}

impl<'s> BatchReader<'s> {
    pub fn new(seg: &'s LogSegment, start: u64, chunk: usize) -> Self {
        BatchReader {
            seg,
            end: seg.size(),
            pos: start,
            buf: Vec::new(),
            buf_pos: start,
            chunk: chunk.max(HEADER_LEN),
        }
    }

    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::Corrupt {
            path: self.seg.path.clone(),
            reason,
        }
    }

    fn ensure(&mut self, pos: u64, len: usize, gate: &mut IoGate<'_>) -> Result<(), StorageError> {
        let have = pos >= self.buf_pos && pos + len as u64 <= self.buf_pos + self.buf.len() as u64;
        if have {
            return Ok(());
        }
        // Bounded by the committed size, which the caller checked `len` against.
        let n = (self.chunk.max(len) as u64).min(self.end - pos) as usize;
        self.buf.resize(n, 0);
        self.seg
            .file
            .read_exact_at(&mut self.buf, pos)
            .ctx(|| format!("reading {n} bytes at {pos} of {}", self.seg.path.display()))?;
        self.buf_pos = pos;
        gate.read(n as u64)
    }

    /// The next batch: (position, header, the whole batch), or None at
    /// the segment's end.
    pub fn next_batch(
        &mut self,
        gate: &mut IoGate<'_>,
    ) -> Result<Option<ReadBatch<'_>>, StorageError> {
        let pos = self.pos;
        if pos >= self.end {
            return Ok(None);
        }
        if self.end - pos < HEADER_LEN as u64 {
            return Err(self.corrupt(format!("torn batch header at position {pos}")));
        }
        self.ensure(pos, HEADER_LEN, gate)?;
        let at = (pos - self.buf_pos) as usize;
        let h = BatchHeader::parse(&self.buf[at..])
            .map_err(|e| self.corrupt(format!("bad batch header at position {pos}: {e}")))?;
        let total = h.total_size();
        if total < HEADER_LEN || total as u64 > self.end - pos {
            return Err(self.corrupt(format!(
                "batch of {total} bytes at position {pos} runs past the segment's end {}",
                self.end
            )));
        }
        self.ensure(pos, total, gate)?;
        self.pos = pos + total as u64;
        let at = (pos - self.buf_pos) as usize;
        Ok(Some((pos, h, &self.buf[at..at + total])))
    }
}

/// The replacement segment being written.
pub struct CleanedWriter {
    dir: PathBuf,
    base: i64,
    out: BufWriter<File>,
    pos: u64,
    interval: u32,
    since_entry: u64,
    index: Vec<(i64, u64)>,
    times: Vec<(i64, i64)>,
    max: MaxTs,
    next_offset: i64,
}

impl CleanedWriter {
    /// Starts `<base>.log.cleaned` in `dir` (replacing a leftover one).
    pub fn create(dir: &Path, base: i64, interval: u32) -> Result<Self, StorageError> {
        let path = suffixed(&log_path(dir, base), CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        Ok(CleanedWriter {
            dir: dir.to_path_buf(),
            base,
            out: BufWriter::with_capacity(256 << 10, file),
            pos: 0,
            interval,
            since_entry: 0,
            index: Vec::new(),
            times: Vec::new(),
            max: MaxTs {
                timestamp: -1,
                offset: base,
            },
            next_offset: base,
        })
    }

    fn add_time(&mut self, ts: i64, offset: i64) {
        if ts >= 0 && self.times.last().is_none_or(|(t, _)| ts > *t) {
            self.times.push((ts, offset));
        }
    }

    /// Appends one batch (`h` is its header), indexing it as an append would.
    pub fn append(&mut self, batch: &[u8], h: &BatchHeader) -> Result<(), StorageError> {
        let len = batch.len() as u64;
        let corrupt = |reason: String| StorageError::Corrupt {
            path: log_path(&self.dir, self.base),
            reason,
        };
        // The source segments were recovered in order; a batch out of order
        // here would make the cleaned segment unreadable.
        if h.base_offset < self.next_offset || len != h.total_size() as u64 {
            return Err(corrupt(format!(
                "cleaned batch at offset {} follows offset {} or has the wrong length",
                h.base_offset, self.next_offset
            )));
        }
        // Positions and relative offsets are u32 in the indexes.
        if self.pos + len > u32::MAX as u64 || h.last_offset() - self.base > u32::MAX as i64 {
            return Err(corrupt(
                "cleaned segment would outgrow its 32-bit index".into(),
            ));
        }
        if self.pos > 0 && self.since_entry > self.interval as u64 {
            self.index.push((h.base_offset, self.pos));
            self.add_time(self.max.timestamp, self.max.offset);
            self.since_entry = 0;
        }
        if h.max_timestamp > self.max.timestamp {
            self.max = MaxTs {
                timestamp: h.max_timestamp,
                offset: h.last_offset(),
            };
        }
        self.out
            .write_all(batch)
            .ctx(|| format!("writing cleaned segment {}", self.base))?;
        self.since_entry += len;
        self.pos += len;
        self.next_offset = h.next_offset();
        Ok(())
    }

    /// Flushes and fsyncs the log, writes and fsyncs the indexes and the
    /// aborted transactions `txns`, and returns the segment (sealed, at
    /// its final path, covering offsets up to `next_offset`).
    pub fn finish(
        mut self,
        txns: &[AbortedTxn],
        next_offset: i64,
    ) -> Result<LogSegment, StorageError> {
        let (dir, base) = (self.dir.clone(), self.base);
        let ctx = || format!("finishing cleaned segment {base} in {}", dir.display());
        self.add_time(self.max.timestamp, self.max.offset);
        let file = self
            .out
            .into_inner()
            .map_err(|e| StorageError::io(ctx(), e.into_error()))?;
        file.sync_all().ctx(ctx)?;
        let ip = suffixed(&index_path(&dir, base), CLEANED_SUFFIX);
        let mut index = OffsetIndex::open(&ip, base, (self.index.len() * 8) as u64, true)?;
        for (o, p) in &self.index {
            index.append(*o, *p);
        }
        index.flush()?;
        let tp = suffixed(&time_index_path(&dir, base), CLEANED_SUFFIX);
        let mut time_index = TimeIndex::open(&tp, base, (self.times.len() * 12) as u64, true)?;
        for (t, o) in &self.times {
            time_index.maybe_append(*t, *o);
        }
        time_index.flush()?;
        // Written even when empty: the swap then replaces the old segment's
        // file instead of leaving its entries behind.
        let xp = suffixed(&txn_index_path(&dir, base), CLEANED_SUFFIX);
        let mut x = File::create(&xp).ctx(|| format!("creating {}", xp.display()))?;
        for t in txns {
            x.write_all(&t.encode())
                .ctx(|| format!("writing {}", xp.display()))?;
        }
        x.sync_all().ctx(|| format!("fsync {}", xp.display()))?;
        for p in [&ip, &tp] {
            File::open(p)
                .and_then(|f| f.sync_all())
                .ctx(|| format!("fsync {}", p.display()))?;
        }
        debug_assert!(next_offset >= self.next_offset);
        Ok(LogSegment::from_cleaned(
            log_path(&dir, base),
            file,
            base,
            index,
            time_index,
            self.pos,
            next_offset,
            self.max,
        ))
    }
}

/// Removes the `.cleaned` files of the segment at `base` (an abandoned
/// cleaning); missing ones are fine.
pub fn discard_cleaned(dir: &Path, base: i64) {
    for p in segment_files(dir, base) {
        let p = suffixed(&p, CLEANED_SUFFIX);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %p.display(), error = %e, "removing an abandoned cleaned file");
        }
    }
}
