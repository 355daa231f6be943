//! Log compaction (Kafka's log cleaner) for `cleanup.policy=compact` and
//! `compact,delete`: the newest record of each key survives, older ones
//! are removed, offsets never change.
//!
//! A cleaning of one log, off the produce path:
//! 1. [`assess`] finds the dirty section, from the cleaner checkpoint (the
//!    offset cleaned up to) to the first uncleanable offset: the smallest
//!    of the last stable offset, the active segment's base, and the first
//!    segment with a record newer than `min.compaction.lag.ms`, rounded
//!    down to a segment base. A log is picked when its dirty ratio is
//!    above `min.cleanable.dirty.ratio`, or a dirty record is older than
//!    `max.compaction.lag.ms`.
//! 2. An [`offset_map::OffsetMap`] of key → newest offset is built over
//!    the dirty section (bounded memory; a partial map cleans part of it).
//! 3. Every sealed segment below the map's end is rewritten, small
//!    neighbours grouped up to `segment.bytes`, keeping a record when it is
//!    the newest for its key (or past the map), dropping aborted
//!    transactions' batches, tombstones and markers whose delete horizon
//!    has passed; batches keep their base offset, last offset delta and
//!    producer fields, and a producer's last batch survives (empty if need
//!    be) so idempotence still knows its sequence.
//! 4. Each group's output is swapped in crash-safely ([`swap`]).
//!
//! [`service::LogCleaner`] runs this on one thread per data dir.

pub mod checkpoint;
mod clean;
pub(crate) mod offset_map;
pub(crate) mod records;
pub(crate) mod segment_io;
pub(crate) mod service;
pub(crate) mod swap;
pub(crate) mod throttle;
pub(crate) mod txn;

use std::sync::Arc;

use crate::error::StorageError;
use crate::log::Log;
use throttle::{StopSignal, Throttler};

pub use clean::assess;

/// Broker-level cleaner settings (Kafka's `log.cleaner.*`).
#[derive(Clone, Debug)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`: run the background cleaner thread.
    pub enabled: bool,
    /// `log.cleaner.dedupe.buffer.size`: most memory for one cleaning's
    /// offset map (allocated per cleaning, sized to the dirty section).
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.buffer.load.factor`: how full the map may get.
    pub dedupe_buffer_load_factor: f64,
    /// `log.cleaner.io.buffer.size`: bytes read from a segment at a time.
    pub io_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: reads plus writes; infinite
    /// (Kafka's default) means no limit.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: sleep when no log needs cleaning.
    pub backoff_ms: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        // Kafka 4.x defaults.
        CleanerConfig {
            enabled: true,
            dedupe_buffer_bytes: 128 << 20,
            dedupe_buffer_load_factor: 0.9,
            io_buffer_bytes: 512 << 10,
            io_max_bytes_per_second: f64::INFINITY,
            backoff_ms: 15_000,
        }
    }
}

/// Where a log stands for the cleaner (see [`assess`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Cleanable {
    pub first_dirty_offset: i64,
    /// A segment base: everything below is cleanable.
    pub first_uncleanable_offset: i64,
    /// Bytes of the segments below the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the segments from the first dirty offset's to the first
    /// uncleanable one.
    pub cleanable_bytes: u64,
    /// cleanable / (clean + cleanable).
    pub dirty_ratio: f64,
    /// How long past `max.compaction.lag.ms` the oldest dirty segment's
    /// first batch is (0: none is).
    pub compaction_delay_ms: i64,
}

impl Cleanable {
    /// Kafka's rule: the dirty ratio is above `min_ratio`, or something
    /// cleanable is overdue by `max.compaction.lag.ms`.
    pub fn should_clean(&self, min_ratio: f64) -> bool {
        self.cleanable_bytes > 0 && (self.compaction_delay_ms > 0 || self.dirty_ratio > min_ratio)
    }
}

/// What one cleaning did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanStats {
    pub topic: String,
    pub partition: i32,
    /// The dirty section cleaned: `[first_dirty_offset, end_offset)`; the
    /// next cleaning starts at `end_offset`.
    pub first_dirty_offset: i64,
    pub end_offset: i64,
    /// Segments replaced, and the cleaned segments that replaced them.
    pub segments_cleaned: usize,
    pub groups: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_retained: u64,
    /// Keys in the offset map, and how full it got.
    pub map_keys: usize,
    pub map_utilization: f64,
    /// Records without a key found in the log (dropped, as Kafka does).
    pub keyless_records: u64,
    /// Time the I/O limit made the cleaning wait.
    pub throttled: std::time::Duration,
}

/// One cleaner: its settings, I/O limit and stop signal. Cleanings of one
/// log never overlap (the log holds a lock for the duration).
pub struct Cleaner {
    config: CleanerConfig,
    throttler: Throttler,
    stop: Arc<StopSignal>,
}

impl Cleaner {
    pub fn new(config: CleanerConfig) -> Self {
        Self::with_stop(config, Arc::new(StopSignal::default()))
    }

    pub fn with_stop(config: CleanerConfig, stop: Arc<StopSignal>) -> Self {
        Cleaner {
            throttler: Throttler::new(config.io_max_bytes_per_second),
            config,
            stop,
        }
    }

    pub fn config(&self) -> &CleanerConfig {
        &self.config
    }

    /// Cleans `log`'s dirty section now when it has one, whatever its
    /// dirty ratio (`min.compaction.lag.ms`, the last stable offset and the
    /// active segment still bound it). `now_ms` is the clock for delete
    /// horizons and compaction lags. None: nothing to clean, or the log
    /// is not compacted.
    pub fn clean(&mut self, log: &Log, now_ms: i64) -> Result<Option<CleanStats>, StorageError> {
        self.clean_when(log, now_ms, |_| true)
    }

    /// As [`Self::clean`], only when `log` meets its topic's thresholds
    /// (see [`Cleanable::should_clean`]).
    pub fn clean_if_needed(
        &mut self,
        log: &Log,
        now_ms: i64,
    ) -> Result<Option<CleanStats>, StorageError> {
        let min_ratio = log.config().min_cleanable_dirty_ratio;
        self.clean_when(log, now_ms, |c| c.should_clean(min_ratio))
    }

    fn clean_when(
        &mut self,
        log: &Log,
        now_ms: i64,
        wanted: impl FnOnce(&Cleanable) -> bool,
    ) -> Result<Option<CleanStats>, StorageError> {
        if !log.config().cleanup_policy.compacts() {
            return Ok(None);
        }
        let Some(_one_at_a_time) = log.cleaning_guard() else {
            return Ok(None);
        };
        let c = assess(log, now_ms)?;
        if c.cleanable_bytes == 0 || !wanted(&c) {
            return Ok(None);
        }
        let stats = clean::clean_log(self, log, &c, now_ms)?;
        log.set_clean_offset(stats.end_offset);
        Ok(Some(stats))
    }
}
