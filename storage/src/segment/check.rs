//! CRC checks of batches as reads serve them. Every batch is checked when
//! written (produce validates it; recovery after a crash checks the tail),
//! but a segment opened after a clean shutdown, or sealed below the
//! recovery point, is read as the disk returns it: a flipped bit would go
//! to consumers, whose own check (the Java client's `check.crcs`) then
//! stops them at that offset for good. So the bytes such a segment held at
//! open are checked once, the first time a read serves them; a corrupt
//! batch is left out of what reads serve (a gap in offsets, as compaction
//! leaves) and reported in the log and in `karnak_corrupt_batches_total`.

use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use karnak_protocol::record_batch::{BatchHeader, check_crc};

use super::{LogSegment, rlock};
use crate::error::{IoContext, StorageError};

/// Batches found corrupt when a read first served them.
pub const CORRUPT_BATCHES: &str = "karnak_corrupt_batches_total";

pub(super) struct Checked {
    /// Every byte was checked: written by this process, or checked whole.
    all: AtomicBool,
    /// Checked byte ranges, sorted and merged.
    ranges: Mutex<Vec<(u64, u64)>>,
    /// Corrupt ranges found, (start, resume): reads skip from one to the other.
    corrupt: Mutex<Vec<(u64, u64)>>,
    any_corrupt: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Checked {
    /// Written by this process (or checked whole by recovery).
    pub(super) fn all() -> Checked {
        Checked {
            all: AtomicBool::new(true),
            ranges: Mutex::new(Vec::new()),
            corrupt: Mutex::new(Vec::new()),
            any_corrupt: AtomicBool::new(false),
        }
    }

    /// The bytes below `end` came from disk unchecked; appends after it
    /// are validated as they are written.
    pub(super) fn unchecked_below(end: u64) -> Checked {
        let c = Checked::all();
        c.all.store(end == 0, Ordering::Relaxed);
        lock(&c.ranges).push((end, u64::MAX));
        c
    }

    /// The parts of [a, b) not checked yet.
    fn gaps(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let ranges = lock(&self.ranges);
        let mut out = Vec::new();
        let mut at = a;
        for &(s, e) in ranges.iter() {
            if e <= at {
                continue;
            }
            if s >= b {
                break;
            }
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
            if at >= b {
                break;
            }
        }
        if at < b {
            out.push((at, b));
        }
        out
    }

    /// Records [a, b) as checked; once that covers everything, says so.
    fn mark(&self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        let mut ranges = lock(&self.ranges);
        let i = ranges.partition_point(|r| r.0 < a);
        ranges.insert(i, (a, b));
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for &(s, e) in ranges.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        if merged.len() == 1 && merged[0].0 == 0 && merged[0].1 == u64::MAX {
            self.all.store(true, Ordering::Release);
        }
        *ranges = merged;
    }

    /// Where to resume when `pos` lies in a known corrupt range.
    fn skip(&self, pos: u64) -> Option<u64> {
        if !self.any_corrupt.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.corrupt)
            .iter()
            .find(|(s, e)| *s <= pos && pos < *e)
            .map(|r| r.1)
    }

    fn add_corrupt(&self, start: u64, resume: u64) -> bool {
        let mut c = lock(&self.corrupt);
        if c.iter().any(|r| r.0 == start) {
            return false;
        }
        c.push((start, resume));
        self.any_corrupt.store(true, Ordering::Release);
        true
    }
}

impl LogSegment {
    /// Whether every byte of this segment has had its CRC checked.
    pub fn fully_checked(&self) -> bool {
        self.checked.all.load(Ordering::Acquire)
    }

    /// Corrupt ranges found so far, (position, position reads resume at).
    pub fn corrupt_ranges(&self) -> Vec<(u64, u64)> {
        lock(&self.checked.corrupt).clone()
    }

    fn report(&self, start: u64, resume: u64, what: &str) {
        if self.checked.add_corrupt(start, resume) {
            tracing::error!(segment = %self.path.display(), position = start,
                resume_at = resume, %what,
                "corrupt batch on disk: left out of reads (its offsets are lost)");
            metrics::counter!(CORRUPT_BATCHES).increment(1);
        }
    }

    /// Where reads go on after a batch header at `pos` that does not parse:
    /// the next offset index entry past it (entries point at batch starts),
    /// else the end of the segment.
    fn resume_after_bad_header(&self, pos: u64) -> u64 {
        rlock(&self.index)
            .position_after(pos)
            .unwrap_or_else(|| self.size().max(pos + 1))
    }

    /// The header of the batch at `*pos`, skipping corrupt ranges (known,
    /// or found here when a header does not parse in a segment not checked
    /// whole; `*pos` moves past them). None at `end`.
    pub(crate) fn next_header(
        &self,
        pos: &mut u64,
        end: u64,
    ) -> Result<Option<BatchHeader>, StorageError> {
        loop {
            if let Some(resume) = self.checked.skip(*pos) {
                *pos = resume;
                continue;
            }
            if *pos >= end {
                return Ok(None);
            }
            match self.header_at(*pos, self.size()) {
                Ok(Some(h)) if *pos + h.total_size() as u64 <= end => return Ok(Some(h)),
                Ok(_) => return Ok(None),
                Err(StorageError::Corrupt { reason, .. }) if !self.fully_checked() => {
                    let resume = self.resume_after_bad_header(*pos);
                    self.report(*pos, resume, &reason);
                    *pos = resume;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Checks the batch at `q` (header, offsets, CRC) unless a read did
    /// before. Ok(None): good, with its size; Ok(Some(resume)): corrupt,
    /// reported, reads go on at `resume`.
    fn check_batch(&self, q: u64, buf: &mut Vec<u8>) -> Result<Result<u64, u64>, StorageError> {
        if let Some(resume) = self.checked.skip(q) {
            return Ok(Err(resume));
        }
        let size = self.size();
        let h = match self.header_at(q, size) {
            Ok(Some(h)) => h,
            // A torn header at the end of the file: nothing to serve there.
            Ok(None) => return Ok(Err(size.max(q + 1))),
            Err(StorageError::Corrupt { reason, .. }) => {
                let resume = self.resume_after_bad_header(q);
                self.report(q, resume, &reason);
                self.checked.mark(q, resume);
                return Ok(Err(resume));
            }
            Err(e) => return Err(e),
        };
        let total = h.total_size() as u64;
        if self.checked.gaps(q, q + total).is_empty() {
            return Ok(Ok(total));
        }
        buf.resize(total as usize, 0);
        self.file
            .read_exact_at(buf, q)
            .ctx(|| format!("reading {total} bytes at {q} of {}", self.path.display()))?;
        let bad = if h.base_offset < self.base_offset
            || h.last_offset_delta < 0
            || h.last_offset() >= self.next_offset()
        {
            Some(format!(
                "offsets {}-{} outside the segment's {}-{}",
                h.base_offset,
                h.last_offset(),
                self.base_offset,
                self.next_offset()
            ))
        } else {
            check_crc(buf, &h).err().map(|e| e.to_string())
        };
        let Some(what) = bad else {
            self.checked.mark(q, q + total);
            return Ok(Ok(total));
        };
        // The length may be what was damaged: trust it only if a batch
        // starts where it says the next one does.
        let mut resume = q + total;
        if resume != size && !matches!(self.header_at(resume, size), Ok(Some(_))) {
            resume = self.resume_after_bad_header(q);
        }
        self.report(q, resume, &what);
        self.checked.mark(q, resume);
        Ok(Err(resume))
    }

    /// For a read from `pos` (a batch start) of a segment not checked
    /// whole: walks its batches up to `end` and `max_bytes` (the first one
    /// whatever its size with `min_one_batch`, as KIP-74), checking each on
    /// the way, and stops before a corrupt one. Batch boundaries come from
    /// the batches themselves, not from an index that may be damaged too.
    pub fn checked_extent(
        &self,
        pos: u64,
        end: u64,
        max_bytes: u64,
        min_one_batch: bool,
    ) -> Result<Extent, StorageError> {
        let mut buf = Vec::new();
        let mut q = pos;
        while q < end {
            match self.check_batch(q, &mut buf)? {
                Err(resume) if q == pos => return Ok(Extent::CorruptAt { resume }),
                Err(_) => break,
                Ok(total) => {
                    let first = q == pos;
                    if q + total > end || (q + total - pos > max_bytes && !(first && min_one_batch))
                    {
                        break;
                    }
                    q += total;
                }
            }
        }
        Ok(Extent::Batches(q - pos))
    }
}

/// What a read from a position may serve of a segment not checked whole.
#[derive(Debug, PartialEq, Eq)]
pub enum Extent {
    /// This many bytes of whole, checked batches (0: the first batch is
    /// larger than the read may take).
    Batches(u64),
    /// The batch there is corrupt: the next batch starts at `resume`.
    CorruptAt { resume: u64 },
}
