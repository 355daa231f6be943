//! Fetch (key 1): per partition an index lookup to a file region, sent with
//! `sendfile`; long-polls on `max_wait_ms`/`min_bytes`, woken by appends.
//!
//! Fetch sessions (KIP-227) are answered "no session" (session id 0), which
//! clients handle by sending full fetches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;
use karnak_protocol::fetch_response::{
    AbortedTransaction, FetchPartition, FetchResponseBody, FetchTopic,
};
use karnak_storage::{FileSlice, Log};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::handlers::storage_error_code;
use crate::metrics as m;
use crate::response::{HandlerError, Reply, Response, decode};

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const UNKNOWN_TOPIC_ID: i16 = 100;
/// Upper bound on a long poll, whatever the client asks (Kafka has none, but
/// a bound keeps a misbehaving client from parking a request forever).
const MAX_WAIT_CAP: Duration = Duration::from_secs(300);

/// One requested partition, resolved to its log or to an error.
struct Wanted {
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    log: Result<Arc<Log>, i16>,
}

struct WantedTopic {
    name: Bytes,
    topic_id: [u8; 16],
    partitions: Vec<Wanted>,
}

pub fn handle(broker: &Arc<Broker>, body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let request: FetchRequest = decode(body, "Fetch", version)?;
    let session_error = match (request.session_id, request.session_epoch) {
        (0, -1) | (0, 0) => 0, // no session, or asking for one: we answer "none"
        (0, _) => INVALID_FETCH_SESSION_EPOCH,
        _ => FETCH_SESSION_ID_NOT_FOUND,
    };
    if session_error != 0 {
        let body = FetchResponseBody::<FileSlice> {
            throttle_time_ms: 0,
            error_code: session_error,
            session_id: 0,
            topics: vec![],
        };
        let (parts, len) = body.encode(version);
        return Ok(Reply::Ready(Response {
            parts,
            len,
            error_code: session_error,
        }));
    }

    let topics: Vec<WantedTopic> = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = if version >= 13 {
                broker
                    .logs
                    .topic_by_id(t.topic_id.as_bytes())
                    .ok_or(UNKNOWN_TOPIC_ID)
            } else {
                broker.logs.topic(t.topic.as_str()).ok_or(3)
            };
            let name = match &topic {
                Ok(tp) => Bytes::from(tp.meta.name.clone().into_bytes()),
                Err(_) => t.topic.0.clone().into_bytes(),
            };
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| Wanted {
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    log: match &topic {
                        Err(code) => Err(*code),
                        Ok(tp) => usize::try_from(p.partition)
                            .ok()
                            .and_then(|i| tp.logs.get(i).cloned())
                            .ok_or(3),
                    },
                })
                .collect();
            WantedTopic {
                name,
                topic_id: *t.topic_id.as_bytes(),
                partitions,
            }
        })
        .collect();

    let max_bytes = request.max_bytes.max(0) as usize;
    let min_bytes = request.min_bytes.max(0) as usize;
    let read_committed = request.isolation_level == 1;
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);

    // Fast path: enough data now (or the client does not want to wait).
    let mut watchers: Vec<watch::Receiver<i64>> = Vec::new();
    if !wait.is_zero() {
        watchers = topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|w| w.log.as_ref().ok().map(|l| l.subscribe()))
            .collect();
    }
    let (body, bytes, has_error) = read_all(&topics, max_bytes, read_committed);
    if wait.is_zero() || bytes >= min_bytes || has_error || watchers.is_empty() {
        let (parts, len) = body.encode(version);
        return Ok(Reply::Ready(Response {
            parts,
            len,
            error_code: 0,
        }));
    }
    drop(body);
    let deadline = Instant::now() + wait;
    let mut stopping = broker.stopping.clone();
    Ok(Reply::Later(Box::pin(async move {
        let _parked = Parked::new();
        loop {
            for w in &mut watchers {
                w.borrow_and_update();
            }
            let timed_out = tokio::select! {
                r = tokio::time::timeout_at(deadline, any_changed(&mut watchers)) => r.is_err(),
                // Shutting down: answer with what there is now.
                _ = stopping.wait_for(|s| *s) => true,
            };
            let (body, bytes, has_error) = read_all(&topics, max_bytes, read_committed);
            if timed_out || bytes >= min_bytes || has_error {
                let (parts, len) = body.encode(version);
                return Ok(Response {
                    parts,
                    len,
                    error_code: 0,
                });
            }
        }
    })))
}

/// Counts a fetch in the purgatory gauge for as long as it is parked.
struct Parked;

impl Parked {
    fn new() -> Self {
        metrics::gauge!(m::FETCH_PURGATORY).increment(1.0);
        Parked
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        metrics::gauge!(m::FETCH_PURGATORY).decrement(1.0);
    }
}

/// Resolves when any watched high watermark moves (or its log goes away).
async fn any_changed(watchers: &mut [watch::Receiver<i64>]) {
    let mut futures: Vec<Pin<Box<dyn Future<Output = _> + Send + '_>>> = watchers
        .iter_mut()
        .map(|w| Box::pin(w.changed()) as Pin<Box<dyn Future<Output = _> + Send>>)
        .collect();
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads every partition once. Returns the response body, the record bytes
/// it carries, and whether any partition has an error (which ends a long poll).
fn read_all(
    topics: &[WantedTopic],
    max_bytes: usize,
    read_committed: bool,
) -> (FetchResponseBody<FileSlice>, usize, bool) {
    let mut total = 0usize;
    let mut has_error = false;
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for w in &t.partitions {
            let mut p = FetchPartition {
                partition_index: w.partition,
                error_code: 0,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                aborted_transactions: read_committed.then(Vec::new),
                records: None,
            };
            match &w.log {
                Err(code) => {
                    p.error_code = *code;
                    has_error = true;
                }
                Ok(log) => {
                    let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
                    // KIP-74: the first batch of the first partition with data
                    // is returned even when it is larger than the limits.
                    // read_committed stops at the last stable offset and is
                    // told which aborted transactions the records overlap.
                    let lso = log.last_stable_offset();
                    let upto = if read_committed { lso } else { i64::MAX };
                    match log.read_upto(w.fetch_offset, budget, total == 0, upto) {
                        Ok(r) => {
                            p.high_watermark = r.high_watermark;
                            p.last_stable_offset = lso;
                            p.log_start_offset = r.log_start_offset;
                            if read_committed && r.slice.is_some() {
                                p.aborted_transactions = Some(
                                    log.aborted_txns(w.fetch_offset, lso)
                                        .into_iter()
                                        .map(|a| AbortedTransaction {
                                            producer_id: a.producer_id,
                                            first_offset: a.first_offset,
                                        })
                                        .collect(),
                                );
                            }
                            if let Some(slice) = r.slice.filter(|s| s.len > 0) {
                                total += slice.len;
                                let len = slice.len;
                                p.records = Some((slice, len));
                            }
                        }
                        Err(e) => {
                            p.error_code = storage_error_code(&e);
                            p.high_watermark = log.high_watermark();
                            p.last_stable_offset = log.last_stable_offset();
                            p.log_start_offset = log.log_start_offset();
                            has_error = true;
                        }
                    }
                }
            }
            partitions.push(p);
        }
        out.push(FetchTopic {
            name: t.name.clone(),
            topic_id: t.topic_id,
            partitions,
        });
    }
    (
        FetchResponseBody {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: out,
        },
        total,
        has_error,
    )
}
