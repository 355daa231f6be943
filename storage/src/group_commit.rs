//! Group commit: one flusher thread per data dir makes appended data durable
//! for every request waiting on it.
//!
//! A produce with acks=all hands its logs and end offsets to the flusher the
//! moment its append is done (not when its response comes up for writing),
//! then waits. The flusher takes every request queued since its last pass,
//! fsyncs each log once up to its log end offset at that moment (which
//! covers every waiter on that log, and anything appended meanwhile), and
//! wakes the waiters. Under load one fsync serves many requests; at low rate
//! the path is one thread hand-off each way, against a blocking-pool task per
//! request contending on the log's flush lock before.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::error::StorageError;
use crate::log::Log;

/// fsync passes the flusher made, and the requests they answered: their
/// ratio is how many requests one fsync served.
pub const GROUP_COMMIT_PASSES: &str = "karnak_group_commit_passes_total";
pub const GROUP_COMMIT_REQUESTS: &str = "karnak_group_commit_requests_total";

/// What a waiter gets back: per log of its request, the fsync's failure.
pub type FlushOutcome = Vec<Result<(), Arc<StorageError>>>;

struct FlushJob {
    logs: Vec<(Arc<Log>, i64)>,
    done: oneshot::Sender<FlushOutcome>,
}

/// The flusher thread of one data dir. Dropping it lets the thread finish the
/// queued jobs and exit.
pub struct GroupCommit {
    tx: Mutex<Option<mpsc::Sender<FlushJob>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// No thread: each flush is a pass on the caller's thread (the
    /// simulation, see [`crate::blocking`]); false once stopped.
    inline: std::sync::atomic::AtomicBool,
    /// Taken by the flusher for each pass; a test holds it to queue many
    /// jobs first and see them served by one pass.
    gate: Arc<Mutex<()>>,
}

/// The flusher stopped (broker shutting down) before the job was done.
#[derive(Debug, thiserror::Error)]
#[error("the log flusher has stopped")]
pub struct FlusherStopped;

impl GroupCommit {
    pub fn start(name: &str) -> std::io::Result<GroupCommit> {
        let gate = Arc::new(Mutex::new(()));
        if crate::blocking::inline() {
            return Ok(GroupCommit {
                tx: Mutex::new(None),
                thread: Mutex::new(None),
                inline: true.into(),
                gate,
            });
        }
        let (tx, rx) = mpsc::channel::<FlushJob>();
        let g = gate.clone();
        let thread = std::thread::Builder::new()
            .name(format!("flush-{name}"))
            .spawn(move || run(rx, &g))?;
        Ok(GroupCommit {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            inline: false.into(),
            gate,
        })
    }

    /// Holds the flusher before its next pass until the guard drops (tests:
    /// jobs queued meanwhile must share that pass's fsyncs).
    #[doc(hidden)]
    pub fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `logs` (each with the offset that must be durable) and returns
    /// the wait for them; the fsync starts whether or not the wait is polled.
    pub fn flush(
        &self,
        logs: Vec<(Arc<Log>, i64)>,
    ) -> impl std::future::Future<Output = Result<FlushOutcome, FlusherStopped>> + Send + 'static
    {
        let (done, wait) = oneshot::channel();
        let sent = if self.inline.load(std::sync::atomic::Ordering::Acquire) {
            pass(&mut vec![FlushJob { logs, done }], &mut Vec::new());
            true
        } else {
            match self.tx.lock() {
                Ok(tx) => tx
                    .as_ref()
                    .is_some_and(|tx| tx.send(FlushJob { logs, done }).is_ok()),
                Err(_) => false,
            }
        };
        async move {
            if !sent {
                return Err(FlusherStopped);
            }
            wait.await.map_err(|_| FlusherStopped)
        }
    }

    /// Stops taking jobs, lets the thread finish the queue, and joins it.
    pub fn stop(&self) {
        self.inline
            .store(false, std::sync::atomic::Ordering::Release);
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A log of the pass, the offset it is flushed to, and how that went.
type FlushTarget = (Arc<Log>, i64, Option<Arc<StorageError>>);

fn run(rx: mpsc::Receiver<FlushJob>, gate: &Mutex<()>) {
    let mut jobs = Vec::new();
    let mut targets = Vec::new();
    while let Ok(first) = rx.recv() {
        let _pass = gate.lock().unwrap_or_else(|e| e.into_inner());
        jobs.push(first);
        // Everything that queued up while the last pass ran joins this one.
        jobs.extend(rx.try_iter());
        pass(&mut jobs, &mut targets);
    }
}

/// One fsync per log up to the highest offset any of `jobs` waits for;
/// each job is told how its logs fared. Leaves both vectors empty.
fn pass(jobs: &mut Vec<FlushJob>, targets: &mut Vec<FlushTarget>) {
    metrics::counter!(GROUP_COMMIT_PASSES).increment(1);
    metrics::counter!(GROUP_COMMIT_REQUESTS).increment(jobs.len() as u64);
    for (log, upto) in jobs.iter().flat_map(|j| &j.logs) {
        match targets.iter_mut().find(|t| Arc::ptr_eq(&t.0, log)) {
            Some(t) => t.1 = t.1.max(*upto),
            None => targets.push((log.clone(), *upto, None)),
        }
    }
    for (log, upto, failed) in targets.iter_mut() {
        if let Err(e) = log.flush_up_to(*upto) {
            *failed = Some(Arc::new(e));
        }
    }
    for job in jobs.drain(..) {
        let outcome = job
            .logs
            .iter()
            .map(|(log, _)| {
                let failed = targets
                    .iter()
                    .find(|t| Arc::ptr_eq(&t.0, log))
                    .and_then(|t| t.2.clone());
                failed.map_or(Ok(()), Err)
            })
            .collect();
        // The requester may have gone (connection closed): nothing to tell.
        let _ = job.done.send(outcome);
    }
    targets.clear();
}
