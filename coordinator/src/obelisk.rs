//! Obelisk: a crash-safe, persistent, monotonic counter.
//!
//! Handing out an id costs an atomic add. Durability is bought in blocks: the
//! file holds a *lease* (a value no id has reached yet), written and
//! `fdatasync`ed once per `block` ids. After a crash the counter restarts at
//! the last durable lease, so no id is ever handed out twice; the ids of the
//! unused rest of the block are skipped (gaps are fine, repeats are not).
//!
//! The lease is written to one of two 16-byte slots in turn (value, CRC32C), so
//! a write torn by a power cut leaves the other slot intact.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const SLOT: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error("sequencer {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("sequencer {path} is exhausted at {value}")]
    Exhausted { path: PathBuf, value: u64 },
}

struct Lease {
    /// Ids below this are covered by a durable lease.
    end: u64,
    /// Slot the next lease goes to.
    next_slot: u64,
}

pub struct Sequencer {
    path: PathBuf,
    file: File,
    next: AtomicU64,
    /// Mirror of `lease.end` readable without the lock.
    leased: AtomicU64,
    lease: Mutex<Lease>,
    block: u64,
    limit: u64,
    fsyncs: AtomicU64,
}

impl Sequencer {
    /// Opens (or creates) the counter at `path`. Ids start at `start` on a new
    /// file; `limit` is the first value that may never be handed out.
    pub fn open(path: &Path, start: u64, block: u64, limit: u64) -> Result<Self, SequencerError> {
        let io = |op| {
            let path = path.to_path_buf();
            move |source| SequencerError::Io { path, op, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        let mut best: Option<(u64, u64)> = None; // (value, slot)
        for slot in 0..2 {
            let mut buf = [0u8; SLOT as usize];
            if file.read_exact_at(&mut buf, slot * SLOT).is_err() {
                continue;
            }
            let value = u64::from_be_bytes(buf[0..8].try_into().unwrap_or_default());
            let crc = u32::from_be_bytes(buf[8..12].try_into().unwrap_or_default());
            if crc == crc32c::crc32c(&buf[0..8]) && best.is_none_or(|(v, _)| value > v) {
                best = Some((value, slot));
            }
        }
        let (first, next_slot) = match best {
            Some((v, slot)) => (v.max(start), 1 - slot),
            None => (start, 0),
        };
        let seq = Sequencer {
            path: path.to_path_buf(),
            file,
            next: AtomicU64::new(first),
            leased: AtomicU64::new(first),
            lease: Mutex::new(Lease {
                end: first,
                next_slot,
            }),
            block: block.max(1),
            limit,
            fsyncs: AtomicU64::new(0),
        };
        if best.is_none() {
            // Make the file's existence and first lease durable now, so a new
            // file is never mistaken for a lost one: its data, then its name
            // (a power cut could otherwise take the file away and restart
            // the counter at `start`).
            seq.extend_lease(first)?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            karnak_storage::sync_dir(dir).map_err(|e| {
                io("fsync the directory of a new sequencer")(std::io::Error::other(e))
            })?;
        }
        Ok(seq)
    }

    /// The next id. Never returns the same value twice, across crashes too.
    pub fn next(&self) -> Result<u64, SequencerError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if id >= self.limit {
            return Err(SequencerError::Exhausted {
                path: self.path.clone(),
                value: id,
            });
        }
        if id >= self.leased.load(Ordering::Acquire) {
            self.extend_lease(id)?;
        }
        Ok(id)
    }

    fn extend_lease(&self, id: u64) -> Result<(), SequencerError> {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        if id < lease.end {
            return Ok(()); // another caller extended it meanwhile
        }
        let end = id.saturating_add(self.block).min(self.limit);
        let mut buf = [0u8; SLOT as usize];
        buf[0..8].copy_from_slice(&end.to_be_bytes());
        let crc = crc32c::crc32c(&buf[0..8]);
        buf[8..12].copy_from_slice(&crc.to_be_bytes());
        let io = |op| {
            let path = self.path.clone();
            move |source| SequencerError::Io { path, op, source }
        };
        self.file
            .write_all_at(&buf, lease.next_slot * SLOT)
            .map_err(io("write lease"))?;
        self.file.sync_data().map_err(io("fdatasync lease"))?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        lease.end = end;
        lease.next_slot = 1 - lease.next_slot;
        self.leased.store(end, Ordering::Release);
        Ok(())
    }

    /// Durable writes so far (one per block of ids).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// The next value that would be handed out (for tests and metrics).
    pub fn peek(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_repeats_across_reopen_and_leases_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        let s = Sequencer::open(&path, 1, 100, u64::MAX).unwrap();
        let first: Vec<u64> = (0..250).map(|_| s.next().unwrap()).collect();
        assert_eq!(first[0], 1);
        assert!(first.windows(2).all(|w| w[1] == w[0] + 1));
        // 1 at open, then one per block of 100 crossed.
        assert_eq!(s.fsync_count(), 3);
        drop(s); // a crash: nothing beyond the file survives
        let s = Sequencer::open(&path, 1, 100, u64::MAX).unwrap();
        let after = s.next().unwrap();
        assert!(after > *first.last().unwrap(), "{after} repeats an id");
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        let s = Sequencer::open(&path, 0, 10, u64::MAX).unwrap();
        for _ in 0..35 {
            s.next().unwrap();
        }
        drop(s);
        // Leases so far: slot 0 = 10, slot 1 = 20, slot 0 = 30, slot 1 = 40.
        // A lease write torn by a crash hits the slot the next lease goes
        // to (slot 0); no id of that block was handed out yet, so the other
        // slot still covers every id given.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 8], 0).unwrap();
        let s = Sequencer::open(&path, 0, 10, u64::MAX).unwrap();
        assert_eq!(s.next().unwrap(), 40);
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sequencer::open(&dir.path().join("seq"), 0, 4, 3).unwrap();
        assert_eq!(s.next().unwrap(), 0);
        assert_eq!(s.next().unwrap(), 1);
        assert_eq!(s.next().unwrap(), 2);
        assert!(matches!(s.next(), Err(SequencerError::Exhausted { .. })));
    }
}
