//! Obelisk: a crash-safe, persistent, monotonic counter.
//!
//! Handing out an id costs an uncontended lock and an add. Durability is
//! bought in blocks: a [`LeaseStore`] durably records a *lease* (a range no
//! id has been handed out from yet) once per `block` ids. After a crash the
//! counter restarts past the last durable lease, so no id is ever handed out
//! twice; the unused rest of a block is skipped (gaps are fine, repeats are
//! not).
//!
//! Two stores: a file of its own ([`FileLease`], one node), and the cluster
//! metadata log (the broker's, as Kafka's KIP-730 producer-id blocks), where
//! a lease is a committed record, so ids never repeat across brokers or
//! failovers either.
//!
//! The file's lease is written to one of two 16-byte slots in turn (value,
//! CRC32C), so a write torn by a power cut leaves the other slot intact.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
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
    #[error("sequencer {name} is exhausted at {value}")]
    Exhausted { name: String, value: u64 },
    #[error("sequencer {name}: leasing ids: {reason}")]
    Lease { name: String, reason: String },
}

/// A lease being taken without blocking a thread on it.
pub type LeaseFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Range<u64>, SequencerError>> + Send + 'a>>;

/// Where a sequencer's leases are made durable.
pub trait LeaseStore: Send + Sync {
    /// A name for errors and logs.
    fn name(&self) -> String;
    /// Durably leases `size` ids, none below `from` (ids below it may have
    /// been handed out). Returns the leased range, at least one id long;
    /// once it returns, no later lease overlaps it, across crashes too.
    fn lease(&self, from: u64, size: u64) -> Result<Range<u64>, SequencerError>;
    /// [`LeaseStore::lease`] awaited rather than blocking its thread: a
    /// store that waits on other machines (the metadata group) overrides
    /// it. The default takes the lease in place (a file's fsync).
    fn lease_async(&self, from: u64, size: u64) -> LeaseFuture<'_> {
        Box::pin(std::future::ready(self.lease(from, size)))
    }
}

/// A lease in a file of its own: leases are contiguous, so ids are dense
/// until a crash.
pub struct FileLease {
    path: PathBuf,
    file: File,
    /// Slot the next lease goes to.
    next_slot: Mutex<u64>,
}

impl FileLease {
    /// The lease end a file holds, if it exists and either slot is whole.
    pub fn read(path: &Path) -> Result<Option<u64>, SequencerError> {
        match File::open(path) {
            Ok(f) => Ok(Self::best_slot(&f).map(|(v, _)| v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SequencerError::Io {
                path: path.to_path_buf(),
                op: "open",
                source,
            }),
        }
    }

    /// (value, slot) of the highest whole slot.
    fn best_slot(file: &File) -> Option<(u64, u64)> {
        let mut best: Option<(u64, u64)> = None;
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
        best
    }

    /// Opens (or creates) the file; returns it and the first id not
    /// covered by a lease it holds (`start` for a new file).
    pub fn open(path: &Path, start: u64) -> Result<(Self, u64), SequencerError> {
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
        let best = Self::best_slot(&file);
        let (first, next_slot) = match best {
            Some((v, slot)) => (v.max(start), 1 - slot),
            None => (start, 0),
        };
        let store = FileLease {
            path: path.to_path_buf(),
            file,
            next_slot: Mutex::new(next_slot),
        };
        if best.is_none() {
            // Make the file's existence and first lease durable now, so a new
            // file is never mistaken for a lost one: its data, then its name
            // (a power cut could otherwise take the file away and restart
            // the counter at `start`).
            store.write(first)?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            karnak_storage::sync_dir(dir).map_err(|e| {
                io("fsync the directory of a new sequencer")(std::io::Error::other(e))
            })?;
        }
        Ok((store, first))
    }

    fn write(&self, end: u64) -> Result<(), SequencerError> {
        let mut slot = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = [0u8; SLOT as usize];
        buf[0..8].copy_from_slice(&end.to_be_bytes());
        let crc = crc32c::crc32c(&buf[0..8]);
        buf[8..12].copy_from_slice(&crc.to_be_bytes());
        let io = |op| {
            let path = self.path.clone();
            move |source| SequencerError::Io { path, op, source }
        };
        self.file
            .write_all_at(&buf, *slot * SLOT)
            .map_err(io("write lease"))?;
        self.file.sync_data().map_err(io("fdatasync lease"))?;
        *slot = 1 - *slot;
        Ok(())
    }
}

impl LeaseStore for FileLease {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn lease(&self, from: u64, size: u64) -> Result<Range<u64>, SequencerError> {
        let end = from.saturating_add(size.max(1));
        self.write(end)?;
        Ok(from..end)
    }
}

/// Ids handed out so far and the lease they come from.
struct Lease {
    next: u64,
    end: u64,
}

pub struct Sequencer {
    store: Box<dyn LeaseStore>,
    lease: Mutex<Lease>,
    block: u64,
    limit: u64,
    fsyncs: AtomicU64,
}

impl Sequencer {
    /// Opens (or creates) a counter in its own file at `path`. Ids start at
    /// `start` on a new file; `limit` is the first value that may never be
    /// handed out.
    pub fn open(path: &Path, start: u64, block: u64, limit: u64) -> Result<Self, SequencerError> {
        let (store, first) = FileLease::open(path, start)?;
        let seq = Sequencer::with_store(Box::new(store), first, block, limit);
        seq.fsyncs.store(1, Ordering::Relaxed); // the file's first lease
        Ok(seq)
    }

    /// A counter whose leases `store` keeps; the first lease is taken when
    /// the first id is asked for, from `start` on.
    pub fn with_store(store: Box<dyn LeaseStore>, start: u64, block: u64, limit: u64) -> Self {
        Sequencer {
            store,
            lease: Mutex::new(Lease {
                next: start,
                end: start,
            }),
            block: block.max(1),
            limit,
            fsyncs: AtomicU64::new(0),
        }
    }

    /// The next id. Never returns the same value twice, across crashes too.
    /// Takes a lease in place when the current one is used up (see
    /// [`Sequencer::reserve`] to take it without blocking).
    pub fn next(&self) -> Result<u64, SequencerError> {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        if lease.next >= lease.end && lease.next < self.limit {
            let size = self.block.min(self.limit - lease.next);
            let got = self.store.lease(lease.next, size)?;
            self.install(&mut lease, got)?;
        }
        let id = lease.next;
        if id >= self.limit {
            return Err(SequencerError::Exhausted {
                name: self.store.name(),
                value: id,
            });
        }
        lease.next += 1;
        Ok(id)
    }

    /// Makes sure the next [`Sequencer::next`] has an id leased, awaiting
    /// the store if the current lease is used up, so a caller that cannot
    /// block its thread (a single-threaded runtime) takes the lease first.
    /// A lease that another call installed meanwhile wins; this one's ids
    /// are skipped (a gap, never a repeat).
    pub async fn reserve(&self) -> Result<(), SequencerError> {
        let from = {
            let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
            if lease.next < lease.end || lease.next >= self.limit {
                return Ok(());
            }
            lease.next
        };
        let size = self.block.min(self.limit - from);
        let got = self.store.lease_async(from, size).await?;
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        if lease.next < lease.end || got.start < lease.next {
            return Ok(());
        }
        self.install(&mut lease, got)
    }

    /// Takes `got` as the current lease, after checking the store kept its
    /// promise (the range is not below ids handed out, and not empty).
    fn install(&self, lease: &mut Lease, got: Range<u64>) -> Result<(), SequencerError> {
        if got.start < lease.next || got.end <= got.start {
            return Err(SequencerError::Lease {
                name: self.store.name(),
                reason: format!("a lease {got:?} below {} or empty", lease.next),
            });
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        lease.next = got.start;
        lease.end = got.end;
        Ok(())
    }

    /// Durable lease writes so far (one per block of ids).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// The next value that would be handed out (for tests and metrics).
    pub fn peek(&self) -> u64 {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).next
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
        // 1 to create the file, then one per block of 100 begun.
        assert_eq!(s.fsync_count(), 4);
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
        // Leases so far: slot 0 = 0 (creation), slot 1 = 10, slot 0 = 20,
        // slot 1 = 30, slot 0 = 40. A lease write torn by a crash hits the
        // slot the next lease goes to (slot 1); no id of that block was
        // handed out yet, so the other slot still covers every id given.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 8], SLOT).unwrap();
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

    /// Leases from elsewhere (the cluster metadata) need not be contiguous.
    struct Blocks(Mutex<u64>);
    impl LeaseStore for Blocks {
        fn name(&self) -> String {
            "blocks".into()
        }
        fn lease(&self, from: u64, size: u64) -> Result<Range<u64>, SequencerError> {
            let mut next = self.0.lock().unwrap();
            let first = (*next).max(from);
            *next = first + size + 1000; // someone else took the next ids
            Ok(first..first + size)
        }
    }

    #[test]
    fn ids_jump_to_each_leased_block() {
        let s = Sequencer::with_store(Box::new(Blocks(Mutex::new(5))), 0, 3, u64::MAX);
        let ids: Vec<u64> = (0..7).map(|_| s.next().unwrap()).collect();
        assert_eq!(ids, [5, 6, 7, 1008, 1009, 1010, 2011]);
        assert_eq!(s.fsync_count(), 3);
    }

    /// A store whose leases can only be awaited: `lease` (the blocking
    /// path) fails, so every id below came through `reserve`.
    struct AwaitOnly(Blocks);
    impl LeaseStore for AwaitOnly {
        fn name(&self) -> String {
            "await-only".into()
        }
        fn lease(&self, _: u64, _: u64) -> Result<Range<u64>, SequencerError> {
            Err(SequencerError::Lease {
                name: self.name(),
                reason: "would block".into(),
            })
        }
        fn lease_async(&self, from: u64, size: u64) -> LeaseFuture<'_> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.lease(from, size)
            })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reserve_takes_the_lease_next_would_have_blocked_on() {
        let s = Sequencer::with_store(Box::new(AwaitOnly(Blocks(Mutex::new(5)))), 0, 2, u64::MAX);
        assert!(s.next().is_err(), "no lease yet: next must lease in place");
        let mut ids = Vec::new();
        for _ in 0..5 {
            s.reserve().await.unwrap();
            ids.push(s.next().unwrap());
        }
        assert_eq!(ids, [5, 6, 1007, 1008, 2009]);
        // Reserving with ids left takes no lease.
        s.reserve().await.unwrap();
        assert_eq!(s.fsync_count(), 3);
        // Two reserves racing: one lease is kept, the other's ids skipped,
        // and nothing repeats.
        s.next().unwrap();
        let (a, b) = tokio::join!(s.reserve(), s.reserve());
        a.unwrap();
        b.unwrap();
        let next = s.next().unwrap();
        assert!(next > 2010, "{next} repeats an id");
    }
}
