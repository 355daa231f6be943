//! Free space in the data dir, and the floor below which clients' produce
//! is refused (`--log-dir-min-free-bytes`, as Redpanda's
//! `storage_min_free_bytes`; Kafka has none). Producers fill a disk; what
//! must still write when it is nearly full (the metadata log, committed
//! offsets, transaction markers, a topic deletion that would free space)
//! then finds the headroom left above the floor.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Free bytes in the data dir's file system, as last measured.
pub const LOG_DIR_FREE_BYTES: &str = "karnak_log_dir_free_bytes";
/// Client produce requests' partitions refused at the floor.
pub const PRODUCE_REFUSED: &str = "karnak_log_dir_produce_refused_total";

/// The default floor: 5 % of the file system, at most 1 GiB.
pub const DEFAULT_MAX_MIN_FREE: u64 = 1 << 30;

/// How stale the measurement may get before the next produce takes a new
/// one; between measurements, the bytes appended are subtracted.
const STALE_MS: i64 = 100;

/// Within this many bytes of the floor every produce measures afresh:
/// blocks reserved ahead of a segment's write position (fallocate, up to
/// half a segment) are taken between measurements without being counted,
/// and near the floor they would carry produce past it.
const NEAR_FLOOR: u64 = 64 << 20;

pub struct FreeSpace {
    dir: PathBuf,
    /// The floor in bytes; 0: off.
    min_free: AtomicU64,
    /// Free bytes at the last measurement, less what was appended since.
    free: AtomicU64,
    measured_ms: AtomicI64,
    /// What derived files (Arrow faces) leave free: the floor, or the
    /// default floor when the floor is off, so a rebuildable file never
    /// takes the space an operator freed for produce and metadata.
    derived_reserve: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// (bytes available to this process, total bytes) of the file system at `dir`.
pub fn statvfs(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

impl FreeSpace {
    /// `min_free`: the floor; None for the default (5 % of the file
    /// system, at most 1 GiB); Some(0) turns it off.
    pub fn new(dir: &Path, min_free: Option<u64>) -> FreeSpace {
        let (free, total) = statvfs(dir).unwrap_or((u64::MAX, 0));
        let default_min = (total / 20).min(DEFAULT_MAX_MIN_FREE);
        let min = min_free.unwrap_or(default_min);
        metrics::gauge!(LOG_DIR_FREE_BYTES).set(free as f64);
        FreeSpace {
            dir: dir.to_path_buf(),
            min_free: AtomicU64::new(min),
            free: AtomicU64::new(free),
            measured_ms: AtomicI64::new(now_ms()),
            derived_reserve: min.max(default_min),
        }
    }

    /// Whether a derived file of about `bytes` may be written now: it
    /// leaves the floor (or, with the floor off, the default floor) free.
    /// Measured now, not from the produce path's cached figure: builds
    /// follow one another faster than it goes stale.
    pub fn room_for_derived(&self, bytes: u64) -> bool {
        self.measure()
            .is_some_and(|free| free.saturating_sub(bytes) >= self.derived_reserve)
    }

    /// Measures the free bytes now and keeps the figure; None when the
    /// file system cannot be asked.
    fn measure(&self) -> Option<u64> {
        self.measured_ms.store(now_ms(), Ordering::Relaxed);
        let (free, _) = statvfs(&self.dir).ok()?;
        self.free.store(free, Ordering::Relaxed);
        metrics::gauge!(LOG_DIR_FREE_BYTES).set(free as f64);
        Some(free)
    }

    fn stale(&self) -> bool {
        now_ms() - self.measured_ms.load(Ordering::Relaxed) >= STALE_MS
    }

    pub fn min_free(&self) -> u64 {
        self.min_free.load(Ordering::Relaxed)
    }

    /// Free bytes now (measured at most `STALE_MS` ago, less appends since).
    pub fn free(&self) -> u64 {
        if self.stale() {
            self.measure();
        }
        self.free.load(Ordering::Relaxed)
    }

    /// Why a client's produce of `bytes` is refused, if it would take the
    /// file system below the floor.
    pub fn refuse_produce(&self, bytes: usize) -> Option<String> {
        let min = self.min_free();
        if min == 0 {
            return None;
        }
        let cached = self.free.load(Ordering::Relaxed);
        let near = cached.saturating_sub(bytes as u64) < min.saturating_add(NEAR_FLOOR);
        let free = if near || self.stale() {
            self.measure().unwrap_or(cached)
        } else {
            cached
        };
        if free.saturating_sub(bytes as u64) >= min {
            // Counted until the next measurement, so a burst between two
            // cannot run past the floor.
            let _ = self
                .free
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                    Some(f.saturating_sub(bytes as u64))
                });
            return None;
        }
        metrics::counter!(PRODUCE_REFUSED).increment(1);
        Some(format!(
            "the data dir {} has {free} bytes free, {min} are kept for metadata, \
             offsets and transactions (--log-dir-min-free-bytes)",
            self.dir.display()
        ))
    }
}
