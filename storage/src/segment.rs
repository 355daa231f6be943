//! One segment of a partition log: `<base>.log` plus its offset and time
//! indexes. Appends happen under the log's append mutex; reads use pread and
//! the committed `size`, so they never see an in-progress append.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use karnak_protocol::record_batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, check_crc};

use crate::error::{IoContext, StorageError};
use crate::face::{Face, ValueFormat, face_files};
use crate::index::{OffsetIndex, TimeIndex};

mod check;
use check::Checked;
pub use check::{CORRUPT_BATCHES, Extent};

/// Kafka's limit on iovecs per writev.
const IOV_MAX: usize = 1024;

/// Default cap on the disk blocks reserved ahead of the write position
/// (fallocate with KEEP_SIZE, so readers and recovery still see only what
/// was written). On ext4 an append into reserved blocks skips the per-page
/// delayed-allocation reservation, about a third of the kernel's cost of
/// writing a page (see benches/RESULTS.md). Unlike Kafka's whole-segment
/// `log.preallocate`, the reservation never exceeds what the segment
/// already holds, so thousands of quiet partitions reserve little; it is
/// released when the segment is sealed.
pub const PREALLOCATE_AHEAD: u64 = 8 << 20;

pub fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}
pub fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}
pub fn time_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}
pub fn txn_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.txnindex"))
}

/// Largest batch timestamp in the segment and the last offset of its batch.
#[derive(Clone, Copy, Debug)]
pub struct MaxTs {
    pub timestamp: i64,
    pub offset: i64,
}

pub struct LogSegment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file: Arc<File>,
    index: RwLock<OffsetIndex>,
    time_index: RwLock<TimeIndex>,
    /// Committed end position: bytes below it are whole batches.
    size: AtomicU64,
    /// Offset after the last batch.
    next_offset: AtomicI64,
    max_ts: Mutex<MaxTs>,
    /// Wall time of the first append (ms), -1 before; drives segment.ms.
    pub created_ms: AtomicI64,
    /// The SQL face (`<base>.parquet`), once built (sealed segments only),
    /// and the value format a build failed for (scans read the log; no
    /// retry loop until the topic's format changes).
    face: Mutex<FaceSlot>,
    /// Blocks below this position are reserved (see [`PREALLOCATE_AHEAD`]);
    /// 0 after a seal.
    reserved_to: AtomicU64,
    /// The file system refused fallocate: plain appends from here on.
    no_reserve: AtomicBool,
    /// Which bytes have had their CRCs checked (see `check`).
    checked: Checked,
}

/// Index bookkeeping carried by the appender between batches.
#[derive(Default, Clone, Copy)]
pub struct IndexCursor {
    pub bytes_since_entry: u64,
}

/// A segment's face and the format a build failed for.
#[derive(Default)]
struct FaceSlot {
    face: Option<Arc<Face>>,
    failed_for: Option<ValueFormat>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn rlock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn wlock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl LogSegment {
    /// Creates an empty segment (files must not hold data).
    pub fn create(
        dir: &Path,
        base: i64,
        index_bytes: u64,
        now_ms: i64,
    ) -> Result<LogSegment, StorageError> {
        let path = log_path(dir, base);
        let file = open_rw(&path, true)?;
        let index = OffsetIndex::open(&index_path(dir, base), base, index_bytes, true)?;
        let time_index = TimeIndex::open(&time_index_path(dir, base), base, index_bytes, true)?;
        let seg = LogSegment::assemble(path, file, base, index, time_index);
        seg.created_ms.store(now_ms, Ordering::Relaxed);
        Ok(seg)
    }

    fn assemble(
        path: PathBuf,
        file: File,
        base: i64,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) -> LogSegment {
        LogSegment {
            base_offset: base,
            path,
            file: Arc::new(file),
            index: RwLock::new(index),
            time_index: RwLock::new(time_index),
            size: AtomicU64::new(0),
            next_offset: AtomicI64::new(base),
            max_ts: Mutex::new(MaxTs {
                timestamp: -1,
                offset: base,
            }),
            created_ms: AtomicI64::new(-1),
            face: Mutex::new(FaceSlot::default()),
            reserved_to: AtomicU64::new(0),
            no_reserve: AtomicBool::new(false),
            checked: Checked::all(),
        }
    }

    /// A sealed segment from files the log cleaner wrote (see
    /// `crate::cleaner`): `path` is where the `.log` will live once
    /// swapped in; the open handles stay valid across that rename.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_cleaned(
        path: PathBuf,
        file: File,
        base: i64,
        index: OffsetIndex,
        time_index: TimeIndex,
        size: u64,
        next_offset: i64,
        max_ts: MaxTs,
    ) -> LogSegment {
        let seg = LogSegment::assemble(path, file, base, index, time_index);
        seg.size.store(size, Ordering::Release);
        seg.next_offset.store(next_offset, Ordering::Release);
        *seg.max_ts.lock().unwrap_or_else(|e| e.into_inner()) = max_ts;
        seg
    }

    /// Opens an existing segment. Sealed segments (`next_base` is Some) are
    /// trusted and only their indexes rebuilt if missing or broken; the
    /// active one has its tail scanned from the last index entry, or all of
    /// it with CRC checks if `verify`. A sealed segment with `verify` (past the
    /// recovery point after a crash) is scanned whole and cut at its first
    /// bad batch; its next offset is where its batches end, which the
    /// caller compares with `next_base`.
    pub fn open(
        dir: &Path,
        base: i64,
        index_bytes: u64,
        next_base: Option<i64>,
        verify: bool,
        interval: u32,
        now_ms: i64,
    ) -> Result<LogSegment, StorageError> {
        let path = log_path(dir, base);
        let file = open_rw(&path, false)?;
        let file_len = file
            .metadata()
            .ctx(|| format!("stat {}", path.display()))?
            .len();
        let active = next_base.is_none();
        let (ip, tp) = (index_path(dir, base), time_index_path(dir, base));
        let missing = !ip.exists() || !tp.exists();
        let index = open_or_reset(&ip, |p| OffsetIndex::open(p, base, index_bytes, active))?;
        let time_index = open_or_reset(&tp, |p| TimeIndex::open(p, base, index_bytes, active))?;
        let mut seg = LogSegment::assemble(path, file, base, index, time_index);
        seg.size.store(file_len, Ordering::Release);
        // Whether recovery read every batch with its CRC.
        let mut checked_whole = false;
        let last = rlock(&seg.index).last();
        let index_ok = !missing && last.is_none_or(|(o, p)| p < file_len && o >= base);
        match next_base {
            // Its next offset stays where its batches end: the caller tells
            // a torn segment from a cleaned one with a gap after it.
            Some(_) if verify => {
                wlock(&seg.index).preallocate(index_bytes)?;
                wlock(&seg.time_index).preallocate(index_bytes)?;
                seg.recover(interval, 0, true)?;
                seg.seal()?;
                checked_whole = true;
            }
            Some(next)
                if file_len == 0
                    || index_ok
                        && seg.time_index_covers_tail(last.map_or(0, |(_, p)| p), file_len) =>
            {
                if let Some((timestamp, offset)) = rlock(&seg.time_index).last() {
                    *seg.max_ts.lock().unwrap_or_else(|e| e.into_inner()) =
                        MaxTs { timestamp, offset };
                }
                seg.next_offset.store(next, Ordering::Release);
            }
            Some(next) => {
                tracing::warn!(segment = %seg.path.display(), "rebuilding missing or corrupt index of sealed segment");
                wlock(&seg.index).preallocate(index_bytes)?;
                wlock(&seg.time_index).preallocate(index_bytes)?;
                seg.recover(interval, 0, false)?;
                seg.seal()?;
                // A cleaned segment's last batch may end before the next
                // segment's base; the offsets between belong to it.
                seg.next_offset.store(next, Ordering::Release);
            }
            None => {
                // After a crash the whole segment is checked: its index
                // (memory-mapped, written back whenever the kernel likes)
                // may point past data a power cut lost.
                let start = if index_ok && !verify {
                    last.map_or(0, |(_, p)| p)
                } else {
                    0
                };
                checked_whole = verify && start == 0;
                if !seg.recover(interval, start, verify)? && start > 0 {
                    // The index entry itself points at a bad batch: distrust it.
                    tracing::warn!(segment = %seg.path.display(), "index entry points at a bad batch; rescanning the whole segment");
                    seg.recover(interval, 0, true)?;
                    checked_whole = true;
                }
                if seg.size() > 0 {
                    seg.created_ms.store(now_ms, Ordering::Relaxed);
                }
            }
        }
        if !checked_whole {
            seg.checked = Checked::unchecked_below(seg.size());
        }
        Ok(seg)
    }

    /// Scans batches from `start` to the end of the file, re-adding index
    /// entries after `start`, and truncates at the first torn, malformed,
    /// out-of-order or (with `verify`) CRC-bad batch. Returns false when the
    /// batch at `start` itself was bad (nothing read).
    fn recover(&self, interval: u32, start: u64, verify: bool) -> Result<bool, StorageError> {
        let ctx = || format!("recovering {}", self.path.display());
        let file_len = self.file.metadata().ctx(ctx)?.len();
        let mut index = wlock(&self.index);
        let mut tindex = wlock(&self.time_index);
        let mut expected = if start == 0 {
            index.truncate_entries(0);
            tindex.truncate_to_offset(self.base_offset);
            self.base_offset
        } else {
            index.truncate_to_position(start + 1);
            let (o, _) = index.lookup(i64::MAX);
            tindex.truncate_to_offset(o);
            o
        };
        let mut max = tindex.last().map_or(
            MaxTs {
                timestamp: -1,
                offset: self.base_offset,
            },
            |(t, o)| MaxTs {
                timestamp: t,
                offset: o,
            },
        );
        let mut reader = BufReader::with_capacity(64 * 1024, self.file.as_ref());
        reader.seek(SeekFrom::Start(start)).ctx(ctx)?;
        let mut pos = start;
        let mut since = 0u64;
        let mut buf = Vec::new();
        let mut first = true;
        let mut reason = None;
        while pos < file_len {
            let mut head = [0u8; HEADER_LEN];
            if file_len - pos < HEADER_LEN as u64 {
                reason = Some("torn batch header".to_string());
                break;
            }
            reader.read_exact(&mut head).ctx(ctx)?;
            let h = match BatchHeader::parse(&head) {
                Ok(h) => h,
                Err(e) => {
                    reason = Some(e.to_string());
                    break;
                }
            };
            let total = h.total_size() as u64;
            if total < HEADER_LEN as u64 || total > file_len - pos {
                reason = Some(format!(
                    "batch length {} runs past the end of the file",
                    h.batch_length
                ));
                break;
            }
            // A cleaned segment may start past its base offset (its first
            // records were compacted away), so only a scan from an index
            // entry knows the exact first offset.
            if h.base_offset < expected
                || h.last_offset_delta < 0
                || (first && start > 0 && h.base_offset != expected)
            {
                reason = Some(format!(
                    "batch base offset {} where {} was expected",
                    h.base_offset, expected
                ));
                break;
            }
            if verify {
                buf.clear();
                buf.extend_from_slice(&head);
                buf.resize(total as usize, 0);
                reader.read_exact(&mut buf[HEADER_LEN..]).ctx(ctx)?;
                if let Err(e) = check_crc(&buf, &h) {
                    reason = Some(e.to_string());
                    break;
                }
            } else {
                reader
                    .seek_relative(total as i64 - HEADER_LEN as i64)
                    .ctx(ctx)?;
            }
            if pos > start && since > interval as u64 {
                index.append(h.base_offset, pos);
                tindex.maybe_append(max.timestamp, max.offset);
                since = 0;
            }
            if h.max_timestamp > max.timestamp {
                max = MaxTs {
                    timestamp: h.max_timestamp,
                    offset: h.last_offset(),
                };
            }
            since += total;
            pos += total;
            expected = h.next_offset();
            first = false;
        }
        if let Some(reason) = &reason {
            if first && start > 0 {
                return Ok(false);
            }
            tracing::warn!(segment = %self.path.display(), position = pos, %reason,
                "truncating log segment at the first invalid batch");
            self.file.set_len(pos).ctx(ctx)?;
            self.file.sync_all().ctx(ctx)?;
            index.truncate_to_position(pos);
            tindex.truncate_to_offset(expected);
        }
        self.size.store(pos, Ordering::Release);
        self.next_offset.store(expected, Ordering::Release);
        *self.max_ts.lock().unwrap_or_else(|e| e.into_inner()) = max;
        Ok(true)
    }

    /// The offsets up to `next` belong to this segment (a cleaned one whose
    /// last batches were compacted away).
    pub(crate) fn set_next_offset(&self, next: i64) {
        self.next_offset.store(next, Ordering::Release);
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn max_ts(&self) -> MaxTs {
        *self.max_ts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn indexes_full(&self) -> bool {
        rlock(&self.index).is_full() || rlock(&self.time_index).is_full()
    }

    /// Writes `bufs` (whole batches, offsets assigned) at the end, then
    /// records index entries and publishes the new size. `batches` are
    /// (position within the append, header with final offsets). Up to
    /// `reserve_ahead` bytes of blocks past the end are reserved first,
    /// never past `segment_bytes` (the segment rolls there).
    pub fn append(
        &self,
        bufs: &mut [IoSlice<'_>],
        batches: &[(usize, BatchHeader)],
        interval: u32,
        cursor: &mut IndexCursor,
        reserve_ahead: u64,
        segment_bytes: u64,
    ) -> Result<(), StorageError> {
        let start = self.size();
        if reserve_ahead > 0
            && let Some((rel, last)) = batches.last()
        {
            // The batches tile the write: the last one's end is its length.
            let len = (*rel + last.total_size()) as u64;
            self.reserve_ahead(start, start + len, reserve_ahead, segment_bytes);
        }
        if let Err(e) = write_all_vectored(&self.file, bufs) {
            // Put the file back so the next append does not land after garbage
            // (which also releases any reservation past it).
            let _ = self.file.set_len(start);
            self.reserved_to.store(0, Ordering::Relaxed);
            let _ = (&*self.file).seek(SeekFrom::Start(start));
            return Err(StorageError::io(
                format!("appending to {}", self.path.display()),
                e,
            ));
        }
        let mut index = wlock(&self.index);
        let mut tindex = wlock(&self.time_index);
        let mut max = self.max_ts();
        let mut end = start;
        for (rel, h) in batches {
            let pos = start + *rel as u64;
            if pos > 0 && cursor.bytes_since_entry > interval as u64 {
                index.append(h.base_offset, pos);
                tindex.maybe_append(max.timestamp, max.offset);
                cursor.bytes_since_entry = 0;
            }
            if h.max_timestamp > max.timestamp {
                max = MaxTs {
                    timestamp: h.max_timestamp,
                    offset: h.last_offset(),
                };
            }
            cursor.bytes_since_entry += h.total_size() as u64;
            end = pos + h.total_size() as u64;
            self.next_offset.store(h.next_offset(), Ordering::Release);
        }
        *self.max_ts.lock().unwrap_or_else(|e| e.into_inner()) = max;
        self.size.store(end, Ordering::Release);
        Ok(())
    }

    /// Once a write reaches past the current reservation, reserves blocks
    /// up to `end` plus min(`cap`, `end`), and no further than `limit` (the
    /// segment's roll size: blocks past it would never be written, only
    /// taken from the disk until the seal). A segment never holds more
    /// reserved than written blocks, and a busy one calls fallocate once
    /// per `cap` bytes. Best effort: a file system without fallocate, or a
    /// full disk, leaves plain appends (the write itself reports ENOSPC).
    fn reserve_ahead(&self, start: u64, end: u64, cap: u64, limit: u64) {
        let reserved = self.reserved_to.load(Ordering::Relaxed);
        if end <= reserved || self.no_reserve.load(Ordering::Relaxed) {
            return;
        }
        let from = reserved.max(start);
        let to = (end + cap.min(end.max(4096))).min(limit);
        if to <= end {
            // At (or, for one oversized batch, past) the roll size: the
            // write takes its blocks itself.
            return;
        }
        match rustix::fs::fallocate(
            &*self.file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            from,
            to - from,
        ) {
            Ok(()) => self.reserved_to.store(to, Ordering::Relaxed),
            Err(rustix::io::Errno::NOSPC) => {}
            Err(e) => {
                tracing::debug!(segment = %self.path.display(), error = %e,
                    "fallocate refused; appending without reserving blocks");
                self.no_reserve.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Seals the segment: blocks reserved past the end released, final time
    /// index entry, indexes trimmed and flushed.
    pub fn seal(&self) -> Result<(), StorageError> {
        // ftruncate to the current length frees the blocks past it, also
        // those a crash left reserved before this segment was reopened.
        self.reserved_to.store(0, Ordering::Relaxed);
        self.file
            .set_len(self.size())
            .ctx(|| format!("releasing reserved blocks of {}", self.path.display()))?;
        let max = self.max_ts();
        let mut tindex = wlock(&self.time_index);
        tindex.maybe_append(max.timestamp, max.offset);
        tindex.trim()?;
        tindex.flush()?;
        let mut index = wlock(&self.index);
        index.trim()?;
        index.flush()
    }

    /// Positions the write cursor at the committed end (after open/recovery)
    /// and lets a reopened active segment's indexes grow again.
    pub fn prepare_active(&self, index_bytes: u64) -> Result<(), StorageError> {
        (&*self.file)
            .seek(SeekFrom::Start(self.size()))
            .ctx(|| format!("seeking {}", self.path.display()))?;
        wlock(&self.index).preallocate(index_bytes)?;
        wlock(&self.time_index).preallocate(index_bytes)
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .ctx(|| format!("fsync {}", self.path.display()))
    }

    /// Whether a sealed segment's time index ends with its max timestamp, as
    /// the seal wrote it: no batch from `from` (the last offset index
    /// entry's position) to `end` carries a later one. If one does, the time
    /// index was cut (a damaged disk) and the segment's max timestamp, which
    /// retention and time lookups go by, would be understated.
    fn time_index_covers_tail(&self, from: u64, end: u64) -> bool {
        let Some((last_ts, _)) = rlock(&self.time_index).last() else {
            return false;
        };
        let mut pos = from;
        loop {
            match self.header_at(pos, end) {
                Ok(Some(h)) if h.max_timestamp <= last_ts => pos += h.total_size() as u64,
                Ok(None) => return pos == end,
                Ok(Some(_)) | Err(_) => return false,
            }
        }
    }

    /// Reads the header of the batch at `pos`, if a whole header lies below `end`.
    pub fn header_at(&self, pos: u64, end: u64) -> Result<Option<BatchHeader>, StorageError> {
        if pos + HEADER_LEN as u64 > end {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        self.file
            .read_exact_at(&mut head, pos)
            .ctx(|| format!("reading batch header at {pos} of {}", self.path.display()))?;
        let h = BatchHeader::parse(&head).map_err(|e| StorageError::Corrupt {
            path: self.path.clone(),
            reason: format!("bad batch header at position {pos}: {e}"),
        })?;
        if h.total_size() < HEADER_LEN || pos + h.total_size() as u64 > end {
            return Err(StorageError::Corrupt {
                path: self.path.clone(),
                reason: format!("batch at position {pos} runs past the committed end {end}"),
            });
        }
        Ok(Some(h))
    }

    /// Reads `len` bytes at `pos` (a whole batch the caller located).
    pub fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .ctx(|| format!("reading {len} bytes at {pos} of {}", self.path.display()))?;
        Ok(buf)
    }

    /// The first batch below `end` whose last offset >= `offset`.
    pub fn find_batch(
        &self,
        offset: i64,
        end: u64,
    ) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        let (_, mut pos) = rlock(&self.index).lookup(offset);
        while let Some(h) = self.next_header(&mut pos, end)? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// The end of the last whole batch at or below `limit`, scanning from
    /// the index entry nearest below `limit` (but not before `start`).
    pub fn batch_boundary_below(
        &self,
        start: u64,
        limit: u64,
        end: u64,
    ) -> Result<u64, StorageError> {
        let mut pos = rlock(&self.index).floor_position(limit).max(start);
        let mut len_buf = [0u8; LOG_OVERHEAD];
        while pos + LOG_OVERHEAD as u64 <= end {
            self.file
                .read_exact_at(&mut len_buf, pos)
                .ctx(|| format!("reading batch length at {pos} of {}", self.path.display()))?;
            let len = i32::from_be_bytes([len_buf[8], len_buf[9], len_buf[10], len_buf[11]]);
            let next = pos + LOG_OVERHEAD as u64 + len.max(0) as u64;
            if len <= 0 || next > limit {
                break;
            }
            pos = next;
        }
        Ok(pos)
    }

    /// Time index lookup: the nearest position to start a timestamp scan.
    pub fn time_lookup_position(&self, ts: i64) -> u64 {
        match rlock(&self.time_index).lookup(ts) {
            Some((_, off)) => rlock(&self.index).lookup(off).1,
            None => 0,
        }
    }

    /// The segment's face, once built.
    pub fn face(&self) -> Option<Arc<Face>> {
        lock(&self.face).face.clone()
    }

    /// Attaches a face, in place of one built for another value format.
    pub fn set_face(&self, face: Arc<Face>) {
        let mut slot = lock(&self.face);
        slot.face = Some(face);
        slot.failed_for = None;
    }

    /// Whether a face is wanted for the topic's value format: none yet, or
    /// one built for another format, and no build failed for this format.
    pub fn wants_face(&self, format: &ValueFormat) -> bool {
        let slot = lock(&self.face);
        slot.failed_for.as_ref() != Some(format)
            && slot
                .face
                .as_ref()
                .is_none_or(|f| &f.manifest().value_format != format)
    }

    pub fn mark_face_failed(&self, format: &ValueFormat) {
        lock(&self.face).failed_for = Some(format.clone());
    }

    /// Deletes the segment's files.
    pub fn delete_files(&self, dir: &Path) -> Result<(), StorageError> {
        let face = face_files(dir, self.base_offset);
        for p in face.iter().cloned().chain([
            log_path(dir, self.base_offset),
            index_path(dir, self.base_offset),
            time_index_path(dir, self.base_offset),
            txn_index_path(dir, self.base_offset),
        ]) {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("deleting {}", p.display()), e)),
            }
        }
        Ok(())
    }
}

fn open_rw(path: &Path, create: bool) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .ctx(|| format!("opening {}", path.display()))
}

/// Opens an index, deleting and recreating it when it is corrupt.
fn open_or_reset<T>(
    path: &Path,
    open: impl Fn(&Path) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    match open(path) {
        Err(StorageError::Corrupt { reason, .. }) => {
            tracing::warn!(index = %path.display(), %reason, "deleting corrupt index");
            std::fs::remove_file(path).ctx(|| format!("deleting {}", path.display()))?;
            open(path)
        }
        other => other,
    }
}

/// writev in chunks of IOV_MAX, looping over short writes.
fn write_all_vectored(file: &File, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    let mut w = file;
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = bufs.len().min(IOV_MAX);
        match w.write_vectored(&bufs[..n]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "writev wrote 0 bytes",
                ));
            }
            Ok(written) => IoSlice::advance_slices(&mut bufs, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
