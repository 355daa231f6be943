//! `karnak-bench`: the end-to-end load tool and the machine's limits.
//! See `src/bin/karnak_bench.rs` for the command line.

pub mod client;
pub mod idle;
pub mod limits;
pub mod raw;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Width of the windows the slowest-window report groups samples into.
const WINDOW: Duration = Duration::from_millis(100);

/// The process's clock origin, so windows recorded on different threads line up.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Latency samples from the first seconds of a run are left out (set by
/// `--warmup`): a new partition's first fsync creates its files and syncs
/// the directory, a one-time cost that is not the steady state.
static WARMUP_NS: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds since `origin()` before which samples are dropped.
static RECORD_FROM_NS: AtomicU64 = AtomicU64::new(0);

pub fn set_latency_warmup(warmup: Duration) {
    WARMUP_NS.store(warmup.as_nanos() as u64, Ordering::Relaxed);
}

/// Called where a mode starts its clock: the warmup counts from here.
pub fn start_latency_clock() {
    let from = origin().elapsed().as_nanos() as u64 + WARMUP_NS.load(Ordering::Relaxed);
    RECORD_FROM_NS.store(from, Ordering::Relaxed);
}

/// Latency percentiles (nanosecond resolution, 3 significant digits), and
/// the worst latency in each 100 ms window of completion time: a p99 made
/// by one stall looks the same as a steady tail until you see when it came.
#[derive(Debug)]
pub struct Percentiles {
    h: Histogram<u64>,
    /// (max ns, samples) per window since `origin()`.
    windows: Vec<(u64, u64)>,
}

impl Default for Percentiles {
    fn default() -> Self {
        Self::new()
    }
}

impl Percentiles {
    pub fn new() -> Self {
        // 1 ns .. 10 min; bounds are constants, so this cannot fail.
        let h = Histogram::new_with_bounds(1, 600_000_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()));
        origin();
        Percentiles {
            h,
            windows: Vec::new(),
        }
    }

    /// Records one latency that ended now.
    pub fn record(&mut self, d: Duration) {
        let at = origin().elapsed().as_nanos();
        if at < RECORD_FROM_NS.load(Ordering::Relaxed) as u128 {
            return;
        }
        let ns = (d.as_nanos() as u64).clamp(1, self.h.high());
        let _ = self.h.record(ns);
        let w = (at / WINDOW.as_nanos()) as usize;
        // Bounded by the run's length: one slot per 100 ms.
        if w >= self.windows.len() {
            self.windows.resize(w + 1, (0, 0));
        }
        let slot = &mut self.windows[w];
        slot.0 = slot.0.max(ns);
        slot.1 += 1;
    }

    pub fn merge(&mut self, other: &Percentiles) {
        let _ = self.h.add(&other.h);
        if other.windows.len() > self.windows.len() {
            self.windows.resize(other.windows.len(), (0, 0));
        }
        for (mine, theirs) in self.windows.iter_mut().zip(&other.windows) {
            mine.0 = mine.0.max(theirs.0);
            mine.1 += theirs.1;
        }
    }

    /// The `n` windows with the worst latency: (seconds since the first
    /// window with samples, the warmup's end, worst ms, samples in the window).
    pub fn slowest_windows(&self, n: usize) -> Vec<(f64, f64, u64)> {
        let first = self.windows.iter().position(|w| w.1 > 0).unwrap_or(0);
        let mut w: Vec<(usize, (u64, u64))> = self.windows.iter().copied().enumerate().collect();
        w.retain(|(_, (_, count))| *count > 0);
        w.sort_by_key(|(_, (max, _))| std::cmp::Reverse(*max));
        w.truncate(n);
        w.into_iter()
            .map(|(i, (max, count))| {
                (
                    (i - first) as f64 * WINDOW.as_secs_f64(),
                    (max as f64 / 1e3).round() / 1e3,
                    count,
                )
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    fn ms(&self, q: f64) -> f64 {
        if self.h.is_empty() {
            return f64::NAN;
        }
        (self.h.value_at_quantile(q) as f64 / 1e6 * 1000.0).round() / 1000.0
    }

    pub fn p50_ms(&self) -> f64 {
        self.ms(0.5)
    }

    pub fn p99_ms(&self) -> f64 {
        self.ms(0.99)
    }

    pub fn p999_ms(&self) -> f64 {
        self.ms(0.999)
    }

    pub fn max_ms(&self) -> f64 {
        if self.h.is_empty() {
            return f64::NAN;
        }
        (self.h.max() as f64 / 1e6 * 1000.0).round() / 1000.0
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.count(),
            "p50_ms": self.p50_ms(),
            "p99_ms": self.p99_ms(),
            "p99_9_ms": self.p999_ms(),
            "max_ms": self.max_ms(),
            "slowest_100ms_windows": self
                .slowest_windows(3)
                .into_iter()
                .map(|(at_s, max_ms, samples)| serde_json::json!({
                    "at_s": at_s, "max_ms": max_ms, "samples": samples,
                }))
                .collect::<Vec<_>>(),
        })
    }
}

/// Open-loop pacing: event `i` is due at `start + i / rate`, late or not.
/// Waits by sleeping on a 1 µs timer slack (Linux's default 50 µs slack
/// would bunch events at 20 k/s); create it on the thread that waits.
pub struct Pacer {
    start: Instant,
    per_event: f64,
}

impl Pacer {
    pub fn new(start: Instant, rate: f64) -> Pacer {
        // Best effort (PR_SET_TIMERSLACK through /proc): without it, pacing
        // is only coarser.
        let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1000");
        Pacer {
            start,
            per_event: 1.0 / rate.max(1e-9),
        }
    }

    pub fn wait(&self, i: u64) {
        let due = self.start + Duration::from_secs_f64(i as f64 * self.per_event);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    cpu_seconds_from(&format!("/proc/{pid}/stat"))
}

/// CPU seconds the calling thread has used (`/proc/thread-self/stat`).
pub fn thread_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds_from("/proc/thread-self/stat")
}

fn cpu_seconds_from(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
    // The command name may hold spaces; fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("{path} has no command field"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow::anyhow!("{path} field {i} missing"))
    };
    // utime and stime are fields 14 and 15 of stat(5), 11 and 12 after ')'.
    let ticks = field(11)? + field(12)?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    Ok(ticks / hz)
}

/// Resident set size of a process in bytes, from `/proc/<pid>/status`.
pub fn process_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| anyhow::anyhow!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))
}
