//! The cleaner of one data dir (Kafka's LogCleaner thread): picks the
//! compacted log with the highest dirty ratio among those over their
//! thresholds, cleans it, checkpoints, and sleeps `log.cleaner.backoff.ms`
//! when none needs cleaning. Owned by the `LogManager`, started and stopped
//! with it; [`LogCleaner::clean_now`] runs the same pass on the caller's
//! thread.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::checkpoint::{self, Checkpoints};
use super::throttle::StopSignal;
use super::{CleanStats, Cleaner, CleanerConfig};
use crate::error::StorageError;
use crate::log::{Log, now_ms};

/// Cleanings done, and the bytes they read and wrote.
pub const CLEANER_RUNS: &str = "karnak_log_cleaner_runs_total";
pub const CLEANER_BYTES_READ: &str = "karnak_log_cleaner_read_bytes_total";
pub const CLEANER_BYTES_WRITTEN: &str = "karnak_log_cleaner_written_bytes_total";
/// Logs a cleaning error took out of cleaning until restart.
pub const CLEANER_UNCLEANABLE: &str = "karnak_log_cleaner_uncleanable_partitions_total";

/// Every log of the data dir, as the manager holds them now.
pub type LogSource = Box<dyn Fn() -> Vec<Arc<Log>> + Send + Sync>;

struct Shared {
    data_dir: PathBuf,
    logs: LogSource,
    stop: Arc<StopSignal>,
    /// One cleaning at a time per data dir (thread and `clean_now`).
    cleaner: Mutex<Cleaner>,
    backoff: Duration,
}

pub struct LogCleaner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn is_abort(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::Interrupted)
}

impl Shared {
    /// Cleans the filthiest log not in `done` that needs it. None: no log
    /// needs it; Some(None): one was picked but nothing came of it.
    fn clean_one(&self, now: i64, done: &mut HashSet<*const Log>) -> Option<Option<CleanStats>> {
        let mut best: Option<(f64, Arc<Log>)> = None;
        for log in (self.logs)() {
            let cfg = log.config();
            if !cfg.cleanup_policy.compacts()
                || log.is_uncleanable()
                || done.contains(&Arc::as_ptr(&log))
            {
                continue;
            }
            match log.cleanable(now) {
                Ok(c) if c.should_clean(cfg.min_cleanable_dirty_ratio) => {
                    if best.as_ref().is_none_or(|(r, _)| c.dirty_ratio > *r) {
                        best = Some((c.dirty_ratio, log));
                    }
                }
                Ok(_) => {}
                Err(e) => self.uncleanable(&log, &e),
            }
        }
        let (_, log) = best?;
        done.insert(Arc::as_ptr(&log));
        let mut cleaner = self.cleaner.lock().unwrap_or_else(|e| e.into_inner());
        Some(match cleaner.clean_if_needed(&log, now) {
            Ok(Some(stats)) => {
                drop(cleaner);
                metrics::counter!(CLEANER_RUNS).increment(1);
                if let Err(e) = self.write_checkpoint() {
                    tracing::warn!(error = %e, dir = %self.data_dir.display(), "writing the cleaner checkpoint");
                }
                // No progress (an offset map too small): not worth a retry now.
                (stats.end_offset > stats.first_dirty_offset).then_some(stats)
            }
            Ok(None) => None,
            Err(e) if is_abort(&e) => None,
            Err(e) => {
                self.uncleanable(&log, &e);
                None
            }
        })
    }

    fn uncleanable(&self, log: &Log, e: &StorageError) {
        tracing::error!(topic = %log.topic(), partition = log.partition(), error = %e,
            "log cleaning failed; the partition is not cleaned again until restart");
        metrics::counter!(CLEANER_UNCLEANABLE).increment(1);
        log.mark_uncleanable();
    }

    fn write_checkpoint(&self) -> Result<(), StorageError> {
        let entries: Checkpoints = (self.logs)()
            .iter()
            .filter_map(|l| Some(((l.topic().to_string(), l.partition()), l.clean_offset()?)))
            .collect();
        checkpoint::write(&self.data_dir, &entries)
    }

    fn run(&self) {
        while !self.stop.is_stopped() {
            let cleaned = self
                .clean_one(now_ms(), &mut HashSet::new())
                .flatten()
                .is_some();
            if !cleaned && self.stop.sleep(self.backoff) {
                break;
            }
        }
    }
}

impl LogCleaner {
    /// The cleaner of `data_dir` over the logs `logs` returns; each log's
    /// cleaned-up-to offset is set from the dir's checkpoint. Not started.
    pub fn new(data_dir: &Path, config: CleanerConfig, logs: LogSource) -> Self {
        match checkpoint::read(data_dir) {
            Ok(c) => {
                for log in logs() {
                    if let Some(o) = c.get(&(log.topic().to_string(), log.partition())) {
                        log.set_clean_offset(*o);
                    }
                }
            }
            // Cleaning from each log's start is slower, never wrong.
            Err(e) => tracing::warn!(error = %e, "ignoring the cleaner checkpoint"),
        }
        let stop = Arc::new(StopSignal::default());
        let backoff = Duration::from_millis(config.backoff_ms.max(1));
        LogCleaner {
            shared: Arc::new(Shared {
                data_dir: data_dir.to_path_buf(),
                logs,
                cleaner: Mutex::new(Cleaner::with_stop(config, stop.clone())),
                stop,
                backoff,
            }),
            thread: Mutex::new(None),
        }
    }

    /// Starts the background thread (once).
    pub fn start(&self, name: &str) -> std::io::Result<()> {
        let mut t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if t.is_some() || self.shared.stop.is_stopped() {
            return Ok(());
        }
        if crate::blocking::inline() {
            // The simulation does not clean (a thread of its own would end
            // each cleaning at a moment no seed chooses).
            tracing::info!("log cleaner not started: blocking work runs inline");
            return Ok(());
        }
        let shared = self.shared.clone();
        *t = Some(
            std::thread::Builder::new()
                .name(format!("log-cleaner-{name}"))
                .spawn(move || shared.run())?,
        );
        Ok(())
    }

    /// One pass on the caller's thread: every log that needs cleaning at
    /// `now_ms` is cleaned once, filthiest first.
    pub fn clean_now(&self, now_ms: i64) -> Vec<CleanStats> {
        let mut done = HashSet::new();
        let mut out = Vec::new();
        // Bounded: each log is picked at most once.
        while let Some(picked) = self.shared.clean_one(now_ms, &mut done) {
            out.extend(picked);
        }
        out
    }

    /// Rewrites the checkpoint from the logs as they are now (a topic was
    /// deleted, say).
    pub fn write_checkpoint(&self) -> Result<(), StorageError> {
        self.shared.write_checkpoint()
    }

    /// Stops the thread: a cleaning in progress is abandoned (its output
    /// discarded), then the thread is joined.
    pub fn stop(&self) {
        self.shared.stop.stop();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for LogCleaner {
    fn drop(&mut self) {
        self.stop();
    }
}
