//! Where blocking file work runs: tokio's blocking pool, or (in the
//! deterministic simulation) the calling task itself.
//!
//! The simulation runs a whole broker on one thread under a seeded
//! scheduler; work handed to another thread would finish at a moment the
//! seed does not choose, and no seed would replay. A thread that sets
//! [`run_inline`] has every [`spawn`] run as a task on its own runtime,
//! the group-commit flusher fsync in the produce path, and the log cleaner
//! start no thread. Nothing else ever sets it.

use std::cell::Cell;

use tokio::task::JoinHandle;

thread_local! {
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Blocking work started from this thread runs on it from now on (the
/// simulation's thread only).
pub fn run_inline() {
    INLINE.with(|i| i.set(true));
}

/// Whether this thread runs blocking work inline.
pub fn inline() -> bool {
    INLINE.with(|i| i.get())
}

/// `tokio::task::spawn_blocking`, or a task of the current runtime when
/// this thread runs blocking work inline.
pub fn spawn<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if inline() {
        tokio::spawn(async move { f() })
    } else {
        tokio::task::spawn_blocking(f)
    }
}
