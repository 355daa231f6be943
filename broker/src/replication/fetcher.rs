//! Replica fetchers: one task per leader broker pulls every partition this
//! broker follows from it (Kafka's replica fetcher threads), with the
//! Kafka Fetch API and a replica id, and appends what comes as received.
//!
//! Before a partition is fetched in a new leader epoch, its log is cut back
//! to where it agrees with the leader: OffsetForLeaderEpoch with our latest
//! epoch answers where that epoch ends on the leader (KIP-101, KIP-279),
//! never the high watermark alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::ClusterMetadata;
use tokio::sync::Notify;

use super::client::LeaderConn;
use super::{Key, ReplicaManager, lock};

/// Kafka's `replica.fetch.max.bytes` and `replica.fetch.response.max.bytes`.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Kafka's `replica.fetch.wait.max.ms`.
const MAX_WAIT_MS: i32 = 500;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
struct Fetching {
    epoch: i32,
    /// The log agrees with the leader's for this epoch (truncation done).
    aligned: bool,
}

struct Source {
    addr: String,
    partitions: Arc<Mutex<HashMap<Key, Fetching>>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// The fetcher tasks, by leader broker id.
pub struct Fetchers {
    node: i32,
    /// The inter-broker listener leaders are fetched from.
    listener: String,
    manager: Weak<ReplicaManager>,
    sources: Mutex<HashMap<i32, Source>>,
    /// Shut down: no fetcher runs or starts again.
    stopped: std::sync::atomic::AtomicBool,
}

impl Fetchers {
    pub(super) fn new(node: i32, listener: String, manager: Weak<ReplicaManager>) -> Fetchers {
        Fetchers {
            node,
            listener,
            manager,
            sources: Mutex::new(HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops every fetcher for good (shutdown).
    pub(super) fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        for (_, s) in lock(&self.sources).drain() {
            s.task.abort();
        }
    }

    /// Whether this broker follows `key` from `leader` in `epoch` with its
    /// log cut back to where it agrees with the leader's: what it holds is
    /// then the leader's records, byte for byte.
    pub(super) fn in_step(&self, leader: i32, key: &Key, epoch: i32) -> bool {
        lock(&self.sources).get(&leader).is_some_and(|s| {
            lock(&s.partitions)
                .get(key)
                .is_some_and(|f| f.aligned && f.epoch == epoch)
        })
    }

    /// The partitions to follow, by leader, with their leader epochs.
    pub(super) fn assign(&self, meta: &ClusterMetadata, follow: BTreeMap<i32, Vec<(Key, i32)>>) {
        let mut sources = lock(&self.sources);
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        sources.retain(|leader, s| {
            let keep = follow.contains_key(leader);
            if !keep {
                s.task.abort();
            }
            keep
        });
        for (leader, parts) in follow {
            let Some(addr) = meta
                .brokers
                .get(&leader)
                .and_then(|b| crate::listeners::address_of(b, &self.listener))
                .map(|l| format!("{}:{}", l.host, l.port))
            else {
                continue;
            };
            if sources.get(&leader).is_some_and(|s| s.addr != addr)
                && let Some(s) = sources.remove(&leader)
            {
                s.task.abort();
            }
            let source = sources.entry(leader).or_insert_with(|| {
                let partitions = Arc::new(Mutex::new(HashMap::new()));
                let wake = Arc::new(Notify::new());
                let task = tokio::spawn(run(
                    self.node,
                    leader,
                    addr.clone(),
                    self.manager.clone(),
                    partitions.clone(),
                    wake.clone(),
                ));
                Source {
                    addr,
                    partitions,
                    wake,
                    task,
                }
            });
            let mut current = lock(&source.partitions);
            let wanted: HashMap<Key, i32> = parts.into_iter().collect();
            current.retain(|k, _| wanted.contains_key(k));
            for (k, epoch) in wanted {
                let f = current.entry(k).or_insert(Fetching {
                    epoch,
                    aligned: false,
                });
                if f.epoch != epoch {
                    *f = Fetching {
                        epoch,
                        aligned: false,
                    };
                }
            }
            tracing::debug!(leader, partitions = ?current.iter().map(|(k, f)| (k, f.epoch, f.aligned)).collect::<Vec<_>>(), "following");
            drop(current);
            source.wake.notify_one();
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn run(
    node: i32,
    leader: i32,
    addr: String,
    manager: Weak<ReplicaManager>,
    partitions: Arc<Mutex<HashMap<Key, Fetching>>>,
    wake: Arc<Notify>,
) {
    let mut conn: Option<LeaderConn> = None;
    let mut failures = 0u32;
    loop {
        let parts: Vec<(Key, Fetching)> = lock(&partitions)
            .iter()
            .map(|(k, f)| (k.clone(), *f))
            .collect();
        if parts.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        let Some(manager) = manager.upgrade() else {
            return;
        };
        if conn.is_none() {
            let tls = manager.cluster.peer_tls();
            match LeaderConn::connect(&addr, node, CALL_TIMEOUT, tls.as_deref()).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    failures += 1;
                    if failures % 50 == 1 {
                        tracing::warn!(leader, %addr, error = %e, "cannot reach a partition leader");
                    }
                    manager.leader_unreachable(leader);
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let round = async {
            let unaligned: Vec<(Key, Fetching)> =
                parts.iter().filter(|(_, f)| !f.aligned).cloned().collect();
            if !unaligned.is_empty() {
                align(c, node, &manager, &partitions, &unaligned).await?;
            }
            let aligned: Vec<(Key, Fetching)> =
                parts.into_iter().filter(|(_, f)| f.aligned).collect();
            if aligned.is_empty() {
                tokio::time::sleep(BACKOFF).await;
                return Ok(());
            }
            fetch(c, node, &manager, &partitions, &aligned).await
        };
        match round.await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures % 50 == 1 {
                    tracing::warn!(leader, %addr, error = %e, "replica fetch failed");
                } else {
                    tracing::debug!(leader, %addr, error = %e, failures, "replica fetch failed");
                }
                manager.leader_unreachable(leader);
                conn = None;
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// One request entry per partition whose log is here, grouped by topic.
fn group_by_topic<'a, T>(
    manager: &ReplicaManager,
    parts: &'a [(Key, Fetching)],
    entry: impl Fn(i32, &Fetching, &karnak_storage::Log) -> T,
) -> BTreeMap<&'a str, Vec<T>> {
    let mut by_topic: BTreeMap<&str, Vec<T>> = BTreeMap::new();
    for ((topic, p), f) in parts {
        if let Some(log) = manager.logs.log(topic, *p) {
            by_topic.entry(topic).or_default().push(entry(*p, f, &log));
        }
    }
    by_topic
}

/// OffsetForLeaderEpoch for `parts`, then each log cut to where it agrees.
async fn align(
    c: &mut LeaderConn,
    node: i32,
    manager: &ReplicaManager,
    partitions: &Mutex<HashMap<Key, Fetching>>,
    parts: &[(Key, Fetching)],
) -> std::io::Result<()> {
    let by_topic = group_by_topic(manager, parts, |p, f, log| {
        OffsetForLeaderPartition::default()
            .with_partition(p)
            .with_current_leader_epoch(f.epoch)
            .with_leader_epoch(log.latest_epoch())
    });
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(node))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp: OffsetForLeaderEpochResponse = c
        .call(ApiKey::OffsetForLeaderEpoch, 4, &req, CALL_TIMEOUT)
        .await?;
    for t in resp.topics {
        for r in t.partitions {
            let key = (t.topic.as_str().to_string(), r.partition);
            if r.error_code != 0 {
                // A newer leader or epoch is on its way through the metadata.
                tracing::debug!(topic = %key.0, partition = key.1, code = r.error_code, epoch = ?lock(partitions).get(&key).map(|f| f.epoch), "the leader refused OffsetForLeaderEpoch");
                continue;
            }
            let Some(log) = manager.logs.log(&key.0, key.1) else {
                continue;
            };
            // Where the leader's copy of our latest epoch ends, or, when the
            // leader does not know that epoch, where its own latest one that
            // we also have ends on our side.
            let leo = log.log_end_offset();
            let target = if r.leader_epoch < 0 {
                leo.min(r.end_offset.max(0))
            } else {
                let (ours, our_end) = log.end_offset_for_epoch(r.leader_epoch);
                let mut t = r.end_offset.min(leo);
                if ours == r.leader_epoch {
                    t = t.min(our_end);
                }
                t
            };
            if target < leo {
                let (topic, p) = key.clone();
                let logs = manager.logs.clone();
                let cut = karnak_storage::blocking::spawn(move || {
                    logs.truncate_partition(&topic, p, target)
                })
                .await
                .map_err(std::io::Error::other)?;
                if let Err(e) = cut {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e, "could not truncate a diverged replica");
                    continue;
                }
            }
            if let Some(f) = lock(partitions).get_mut(&key) {
                f.aligned = true;
            }
        }
    }
    Ok(())
}

async fn fetch(
    c: &mut LeaderConn,
    node: i32,
    manager: &ReplicaManager,
    partitions: &Mutex<HashMap<Key, Fetching>>,
    parts: &[(Key, Fetching)],
) -> std::io::Result<()> {
    // Throttled replicas (KIP-73) sit a round out while the follower
    // rate is spent; the rest are fetched as ever.
    let throttling = manager.throttles.follower.rate().is_some();
    let throttled: std::collections::HashSet<&Key> = parts
        .iter()
        .filter(|(k, _)| throttling && manager.follower_throttled(k))
        .map(|(k, _)| k)
        .collect();
    let held: Vec<(Key, Fetching)>;
    let parts = if !throttled.is_empty() && manager.throttles.follower.exceeded() {
        held = parts
            .iter()
            .filter(|(k, _)| !throttled.contains(k))
            .cloned()
            .collect();
        for _ in 0..throttled.len() {
            manager.throttles.follower.held_back();
        }
        if held.is_empty() {
            tokio::time::sleep(BACKOFF).await;
            return Ok(());
        }
        held.as_slice()
    } else {
        parts
    };
    let by_topic = group_by_topic(manager, parts, |p, f, log| {
        FetchPartition::default()
            .with_partition(p)
            .with_current_leader_epoch(f.epoch)
            .with_fetch_offset(log.log_end_offset())
            .with_log_start_offset(log.log_start_offset())
            .with_partition_max_bytes(PARTITION_MAX_BYTES)
    });
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(node))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &req,
            CALL_TIMEOUT + Duration::from_millis(500),
        )
        .await?;
    if resp.error_code != 0 {
        return Err(std::io::Error::other(format!(
            "fetch answered error {}",
            resp.error_code
        )));
    }
    let mut refused = 0usize;
    let mut answered = 0usize;
    for t in resp.responses {
        for p in t.partitions {
            answered += 1;
            let key = (t.topic.as_str().to_string(), p.partition_index);
            let Some(log) = manager.logs.log(&key.0, key.1) else {
                continue;
            };
            match p.error_code {
                0 => {
                    let records = p.records.unwrap_or_else(Bytes::new);
                    if throttled.contains(&key) {
                        manager.throttles.follower.record(records.len());
                    }
                    if !records.is_empty() {
                        let log2 = log.clone();
                        let appended = karnak_storage::blocking::spawn(move || {
                            log2.append_as_follower(&records)
                        })
                        .await
                        .map_err(std::io::Error::other)?;
                        if let Err(e) = appended {
                            tracing::warn!(topic = %key.0, partition = key.1, error = %e, "could not append a leader's records; checking where the logs agree");
                            if let Some(f) = lock(partitions).get_mut(&key) {
                                f.aligned = false;
                            }
                            continue;
                        }
                    }
                    log.set_high_watermark(p.high_watermark);
                    // The leader's log start moved (DeleteRecords, retention,
                    // a coordinator shard's checkpoint): so does ours.
                    let start = p.log_start_offset.min(log.high_watermark());
                    if start > log.log_start_offset() {
                        let log2 = log.clone();
                        let moved = karnak_storage::blocking::spawn(move || {
                            log2.delete_records_before(start)
                        })
                        .await
                        .map_err(std::io::Error::other)?;
                        if let Err(e) = moved {
                            tracing::warn!(topic = %key.0, partition = key.1, error = %e, "could not follow the leader's log start offset");
                        }
                    }
                }
                code if code == ResponseError::OffsetOutOfRange.code()
                    && p.log_start_offset > log.log_end_offset() =>
                {
                    // Behind the leader's log start: what we lack is gone
                    // there too; start again at its start.
                    let (logs, topic, start) =
                        (manager.logs.clone(), key.0.clone(), p.log_start_offset);
                    let reset = karnak_storage::blocking::spawn(move || {
                        logs.reset_partition(&topic, key.1, start)
                    })
                    .await
                    .map_err(std::io::Error::other)?;
                    if let Err(e) = reset {
                        tracing::error!(topic = %key.0, partition = key.1, error = %e, "could not reset a replica to its leader's log start");
                    }
                }
                code if code == ResponseError::OffsetOutOfRange.code() => {
                    // Ahead of the leader: find where the logs agree again.
                    tracing::debug!(topic = %key.0, partition = key.1, leo = log.log_end_offset(), leader_start = p.log_start_offset, leader_hw = p.high_watermark, "ahead of the leader: aligning again");
                    if let Some(f) = lock(partitions).get_mut(&key) {
                        f.aligned = false;
                    }
                }
                code => {
                    refused += 1;
                    tracing::debug!(topic = %key.0, partition = key.1, code, "replica fetch refused; waiting for the metadata");
                }
            }
        }
    }
    if refused > 0 && refused == answered {
        // Nothing to fetch until the metadata moves: do not spin.
        tokio::time::sleep(BACKOFF).await;
    }
    Ok(())
}
