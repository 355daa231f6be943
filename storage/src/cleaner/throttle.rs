//! Keeping the cleaner off the produce path's back: a bytes-per-second
//! bound on its reads and writes (Kafka's
//! `log.cleaner.io.max.bytes.per.second`), and a stop signal its sleeps
//! and loops watch so shutdown never waits for a whole cleaning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set once to stop a cleaner; wakes its sleeps at once.
#[derive(Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl StopSignal {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Sleeps `d` or until stopped; returns whether stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_stopped() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// How long the rate is averaged over before the window restarts: long
/// enough that per-batch sleeps are few, short enough that an idle spell
/// does not bank a burst.
const WINDOW: Duration = Duration::from_secs(1);

/// Sleeps whenever more bytes went through in the current window than
/// the rate allows.
pub struct Throttler {
    bytes_per_second: f64,
    window_start: Instant,
    bytes: f64,
    slept: Duration,
}

impl Throttler {
    /// `bytes_per_second` not finite or not positive: no limit.
    pub fn new(bytes_per_second: f64) -> Self {
        Throttler {
            bytes_per_second,
            window_start: Instant::now(),
            bytes: 0.0,
            slept: Duration::ZERO,
        }
    }

    fn unlimited(&self) -> bool {
        !(self.bytes_per_second.is_finite() && self.bytes_per_second > 0.0)
    }

    /// Total time spent sleeping so far.
    pub fn slept(&self) -> Duration {
        self.slept
    }

    /// Accounts for `bytes` of I/O, sleeping as long as needed to stay at
    /// the rate (woken early by `stop`).
    pub fn maybe_throttle(&mut self, bytes: u64, stop: &StopSignal) {
        if self.unlimited() || bytes == 0 {
            return;
        }
        self.bytes += bytes as f64;
        let elapsed = self.window_start.elapsed();
        let due = Duration::from_secs_f64(self.bytes / self.bytes_per_second);
        if due > elapsed {
            let pause = due - elapsed;
            self.slept += pause;
            stop.sleep(pause);
        }
        if self.window_start.elapsed() >= WINDOW {
            self.window_start = Instant::now();
            self.bytes = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_held_and_stop_cuts_sleeps_short() {
        let stop = StopSignal::default();
        let mut t = Throttler::new(1_000_000.0);
        let start = Instant::now();
        for _ in 0..30 {
            t.maybe_throttle(10_000, &stop);
        }
        // 300 kB at 1 MB/s: about 0.3 s.
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
        let mut free = Throttler::new(f64::INFINITY);
        free.maybe_throttle(u64::MAX / 2, &stop);
        assert_eq!(free.slept(), Duration::ZERO);
        stop.stop();
        let start = Instant::now();
        t.maybe_throttle(100_000_000, &stop);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(stop.sleep(Duration::from_secs(10)));
    }
}
