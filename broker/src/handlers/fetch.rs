//! Fetch (key 1): per partition an index lookup to a file region, sent with
//! `sendfile`; long-polls on `max_wait_ms`/`min_bytes`, woken by appends.
//! Incremental fetch sessions (KIP-227) are kept in
//! [`crate::fetch_session`]: a session's fetch names only what changed and
//! is answered with only what changed.
//! v0-3 (clients before Kafka 0.11) are served as v4 and their answer is
//! down-converted to message sets by [`super::fetch_legacy`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use karnak_protocol::fetch_response::{
    AbortedTransaction, FetchPartition, FetchResponseBody, FetchTopic,
};
use karnak_storage::{FileSlice, Log};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::fetch_session::{
    CachedPartition, FINAL_EPOCH, INITIAL_EPOCH, MAX_PARTITIONS_PER_SESSION, PartitionKey,
    SessionError, TopicKey,
};
use crate::handlers::{fetch_legacy, leader_hint, storage_error_code, topic_common};
use crate::metrics as m;
use crate::quotas::{Kind, QuotaClient};
use crate::replication::throttle::Quota;
use crate::response::{HandlerError, Reply, Response, decode};

/// Upper bound on a long poll, whatever the client asks (Kafka has none, but
/// a bound keeps a misbehaving client from parking a request forever).
const MAX_WAIT_CAP: Duration = Duration::from_secs(300);

/// One requested partition, resolved to its log or to an error.
pub(super) struct Wanted {
    pub(super) partition: i32,
    pub(super) fetch_offset: i64,
    pub(super) max_bytes: usize,
    pub(super) log: Result<Arc<Log>, i16>,
    /// A follower's fetch that counts against the leader replication
    /// throttle (replication/throttle.rs).
    pub(super) throttled: bool,
}

pub(super) struct WantedTopic {
    key: TopicKey,
    pub(super) name: Bytes,
    topic_id: [u8; 16],
    pub(super) partitions: Vec<Wanted>,
}

/// What the request asked of fetch sessions.
#[derive(Clone, Copy)]
enum SessionMode {
    /// No session: a full answer with session id 0.
    None,
    /// Epoch 0: a full answer that opens a session.
    New,
    /// An incremental fetch in session `id`, at `epoch`.
    Incremental { id: i32, epoch: i32 },
}

fn session_error_response(code: ResponseError, version: i16) -> Response {
    let body = FetchResponseBody::<FileSlice> {
        throttle_time_ms: 0,
        error_code: code.code(),
        session_id: 0,
        topics: vec![],
        node_endpoints: vec![],
    };
    let (parts, len) = body.encode(version);
    Response {
        parts,
        len,
        error_code: code.code(),
    }
}

fn session_error(code: ResponseError, version: i16) -> Reply {
    Reply::Ready(session_error_response(code, version))
}

/// `listener`: the client's, whose addresses KIP-951 leader hints carry.
pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    listener: &Arc<str>,
    authz: &Authz,
    client: Option<&QuotaClient>,
    hangup: &watch::Receiver<bool>,
) -> Result<Reply, HandlerError> {
    // v0-3 read as v4 (same meaning), answered in their own format.
    let legacy = (version < 4).then_some(version);
    let request: FetchRequest = match legacy {
        Some(v) => fetch_legacy::decode(body, v)?,
        None => decode(body, "Fetch", version)?,
    };
    let version = version.max(4);
    let by_id = version >= 13;
    let topic_key = |name: &kafka_protocol::messages::TopicName, id: &uuid::Uuid| {
        if by_id {
            TopicKey::Id(*id.as_bytes())
        } else {
            TopicKey::Name(name.0.clone().into_bytes())
        }
    };
    let mode = match (request.session_id, request.session_epoch) {
        (0, FINAL_EPOCH) => SessionMode::None,
        (0, INITIAL_EPOCH) => SessionMode::New,
        (0, _) => {
            return Ok(session_error(
                ResponseError::InvalidFetchSessionEpoch,
                version,
            ));
        }
        (id, FINAL_EPOCH) => {
            broker.fetch_sessions.remove(id);
            metrics::gauge!(m::FETCH_SESSIONS).set(broker.fetch_sessions.len() as f64);
            SessionMode::None
        }
        (id, epoch) => SessionMode::Incremental { id, epoch },
    };
    let mut requested: Vec<(PartitionKey, i64, usize)> = Vec::new();
    let mut names: HashMap<TopicKey, Bytes> = HashMap::new();
    // Each partition's current leader epoch as the client knows it.
    let mut epochs: HashMap<PartitionKey, i32> = HashMap::new();
    // A follower's fetch names its broker id (v15+: in the replica state).
    let replica = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    for t in &request.topics {
        let key = topic_key(&t.topic, &t.topic_id);
        names
            .entry(key.clone())
            .or_insert_with(|| t.topic.0.clone().into_bytes());
        for p in &t.partitions {
            epochs.insert(
                PartitionKey {
                    topic: key.clone(),
                    partition: p.partition,
                },
                p.current_leader_epoch,
            );
            requested.push((
                PartitionKey {
                    topic: key.clone(),
                    partition: p.partition,
                },
                p.fetch_offset,
                p.partition_max_bytes.max(0) as usize,
            ));
        }
    }
    let wanted: Vec<(PartitionKey, i64, usize)> = match mode {
        SessionMode::None | SessionMode::New => requested,
        SessionMode::Incremental { id, epoch } => {
            let forgotten: Vec<PartitionKey> = request
                .forgotten_topics_data
                .iter()
                .flat_map(|f| {
                    let key = topic_key(&f.topic, &f.topic_id);
                    f.partitions.iter().map(move |p| PartitionKey {
                        topic: key.clone(),
                        partition: *p,
                    })
                })
                .collect();
            let updated = broker.fetch_sessions.with_session(id, epoch, |s| {
                let added = requested
                    .iter()
                    .filter(|(k, _, _)| !s.partitions.contains_key(k))
                    .count();
                if s.partitions.len() + added > MAX_PARTITIONS_PER_SESSION {
                    return None;
                }
                for (k, offset, max) in requested {
                    s.partitions
                        .entry(k)
                        .and_modify(|c| {
                            c.fetch_offset = offset;
                            c.max_bytes = max;
                        })
                        .or_insert_with(|| CachedPartition::new(offset, max));
                }
                for k in &forgotten {
                    s.partitions.shift_remove(k);
                }
                Some(
                    s.partitions
                        .iter()
                        .map(|(k, c)| (k.clone(), c.fetch_offset, c.max_bytes))
                        .collect(),
                )
            });
            match updated {
                Ok(Some(w)) => w,
                Ok(None) => {
                    // Grown past the bound: the session ends, and the client
                    // falls back to a full fetch.
                    broker.fetch_sessions.remove(id);
                    return Ok(session_error(
                        ResponseError::FetchSessionIdNotFound,
                        version,
                    ));
                }
                Err(SessionError::NotFound) => {
                    return Ok(session_error(
                        ResponseError::FetchSessionIdNotFound,
                        version,
                    ));
                }
                Err(SessionError::InvalidEpoch) => {
                    return Ok(session_error(
                        ResponseError::InvalidFetchSessionEpoch,
                        version,
                    ));
                }
            }
        }
    };
    // A follower's fetch needs CLUSTER_ACTION; a consumer's READ per topic.
    let access = if replica >= 0 && !authz.cluster(AclOperation::ClusterAction) {
        Access::Denied
    } else if replica >= 0 || !authz.enabled() {
        Access::Allowed
    } else {
        Access::PerTopic(authz)
    };
    let topics = resolve(broker, wanted, &names, &epochs, replica, access);

    let mut max_bytes = request.max_bytes.max(0) as usize;
    // A quota'd consumer gets at most its quota over the window but one
    // in a response (Kafka's cap), so one response cannot blow through it.
    if let Some(c) = client.filter(|_| replica < 0)
        && let Some(cap) = broker
            .quotas
            .window_bound(&broker.cluster.metadata(), Kind::Fetch, c)
    {
        max_bytes = max_bytes.min(cap.max(1.0) as usize);
    }
    let min_bytes = request.min_bytes.max(0) as usize;
    let read_committed = request.isolation_level == 1;
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);

    // Fast path: enough data now (or the client does not want to wait).
    let mut watchers: Vec<watch::Receiver<i64>> = Vec::new();
    if !wait.is_zero() {
        watchers = topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|w| {
                w.log.as_ref().ok().map(|l| {
                    // Followers wait for the log to grow; consumers for
                    // the high watermark to move.
                    if replica >= 0 {
                        l.subscribe_end()
                    } else {
                        l.subscribe()
                    }
                })
            })
            .collect();
    }
    // A follower's fetch reads to the log end, within the leader throttle.
    let follower = (replica >= 0).then_some(&broker.replicas.throttles.leader);
    let (mut body, bytes, has_error) = read_all(&topics, max_bytes, read_committed, follower);
    if wait.is_zero() || bytes >= min_bytes || has_error || watchers.is_empty() {
        if let Some(throttled) = count_quota(
            broker, replica, client, bytes, &mut body, mode, legacy, version,
        ) {
            return Ok(Reply::Ready(throttled));
        }
        return Ok(Reply::Ready(answer(
            broker, mode, &topics, body, version, legacy, listener,
        )));
    }
    drop(body);
    let deadline = Instant::now() + wait;
    let mut stopping = broker.stopping.clone();
    let mut hangup = hangup.clone();
    let broker = broker.clone();
    let listener = listener.clone();
    let client = client.cloned();
    Ok(Reply::Later(Box::pin(async move {
        let _parked = Parked::new();
        let follower = (replica >= 0).then_some(&broker.replicas.throttles.leader);
        loop {
            // A change since the last read (from the subscription on,
            // before the first) ends the wait at once: this future may
            // first be polled long after that read, behind the earlier
            // responses of its connection, and marking changes seen here
            // would sleep through an append made meanwhile.
            let timed_out = tokio::select! {
                r = tokio::time::timeout_at(deadline, any_changed(&mut watchers)) => r.is_err(),
                // Shutting down: answer with what there is now.
                _ = stopping.wait_for(|s| *s) => true,
                // The client has gone (Kafka drops its connection at once):
                // the answer is not waited for, so the connection and its
                // place under max.connections are freed now.
                _ = hangup.wait_for(|h| *h) => true,
            };
            // Seen before reading: what moves during the read wakes the next wait.
            for w in &mut watchers {
                w.borrow_and_update();
            }
            let (mut body, bytes, has_error) =
                read_all(&topics, max_bytes, read_committed, follower);
            if timed_out || bytes >= min_bytes || has_error {
                if let Some(throttled) = count_quota(
                    &broker,
                    replica,
                    client.as_ref(),
                    bytes,
                    &mut body,
                    mode,
                    legacy,
                    version,
                ) {
                    return Ok(throttled);
                }
                return Ok(answer(
                    &broker, mode, &topics, body, version, legacy, &listener,
                ));
            }
        }
    })))
}

/// Resolves each wanted partition to the log it is served from: a
/// consumer's from the partition's leader (this broker, or
/// NOT_LEADER_OR_FOLLOWER), a follower's likewise, its progress recorded.
fn resolve(
    broker: &Broker,
    wanted: Vec<(PartitionKey, i64, usize)>,
    names: &HashMap<TopicKey, Bytes>,
    epochs: &HashMap<PartitionKey, i32>,
    replica: i32,
    access: Access<'_>,
) -> Vec<WantedTopic> {
    let meta = broker.cluster.metadata();
    // Looked at per partition only when a follower fetches from a throttled leader.
    let leader_throttle = replica >= 0 && broker.replicas.throttles.leader.rate().is_some();
    // Per topic: its name and id if it exists, and whether it may be read.
    type Found = (Option<(String, [u8; 16])>, bool);
    let mut found: HashMap<TopicKey, Found> = HashMap::new();
    let mut grouped: IndexMap<TopicKey, WantedTopic> = IndexMap::new();
    for (key, fetch_offset, max_bytes) in wanted {
        let (topic, allowed) = found
            .entry(key.topic.clone())
            .or_insert_with(|| {
                let t = match &key.topic {
                    TopicKey::Id(id) => topic_common::topic_by_id(broker, &meta, id),
                    TopicKey::Name(n) => std::str::from_utf8(n)
                        .ok()
                        .and_then(|n| topic_common::topic(broker, &meta, n)),
                };
                // Authorized by name before existence is told (an unknown
                // id can only be answered UNKNOWN_TOPIC_ID).
                let name = match (&t, &key.topic) {
                    (Some(t), _) => Some(t.name.as_str()),
                    (None, TopicKey::Name(n)) => std::str::from_utf8(n).ok(),
                    (None, TopicKey::Id(_)) => None,
                };
                let allowed = match access {
                    Access::Allowed => true,
                    Access::Denied => false,
                    Access::PerTopic(authz) => {
                        name.is_none_or(|n| authz.topic(AclOperation::Read, n))
                    }
                };
                (t.map(|t| (t.name, t.id)), allowed)
            })
            .clone();
        let unknown = match key.topic {
            TopicKey::Id(_) => ResponseError::UnknownTopicId.code(),
            TopicKey::Name(_) => ResponseError::UnknownTopicOrPartition.code(),
        };
        let entry = grouped.entry(key.topic.clone()).or_insert_with(|| {
            let (name, topic_id) = match (&topic, &key.topic) {
                (Some((n, id)), _) => (Bytes::from(n.clone().into_bytes()), *id),
                (None, TopicKey::Id(id)) => (Bytes::new(), *id),
                (None, TopicKey::Name(n)) => (n.clone(), [0; 16]),
            };
            let name = if name.is_empty() {
                names.get(&key.topic).cloned().unwrap_or_default()
            } else {
                name
            };
            WantedTopic {
                key: key.topic.clone(),
                name,
                topic_id,
                partitions: Vec::new(),
            }
        });
        let epoch = epochs.get(&key).copied().unwrap_or(-1);
        let log = match &topic {
            _ if !allowed => Err(ResponseError::TopicAuthorizationFailed.code()),
            None => Err(unknown),
            Some((name, _)) if replica >= 0 => {
                broker
                    .replicas
                    .follower_fetch(name, key.partition, replica, fetch_offset, epoch)
            }
            Some((name, _)) => broker.replicas.leader_log(name, key.partition, epoch),
        };
        let throttled = leader_throttle
            && log.is_ok()
            && topic.as_ref().is_some_and(|(name, _)| {
                broker
                    .replicas
                    .leader_throttled(name, key.partition, replica)
            });
        entry.partitions.push(Wanted {
            partition: key.partition,
            fetch_offset,
            max_bytes,
            log,
            throttled,
        });
    }
    grouped.into_values().collect()
}

/// A consumer's fetch counts its records' bytes toward consumer_byte_rate
/// (followers are not counted: replication has its own throttles). One
/// that would take the consumer over its quota is answered, as Kafka
/// does, with no records and the throttle time, and its bytes are not
/// counted; the answer to send instead is returned. (v0-3 answers keep
/// their records: the throttle then only pauses the connection.)
#[allow(clippy::too_many_arguments)]
fn count_quota(
    broker: &Broker,
    replica: i32,
    client: Option<&QuotaClient>,
    bytes: usize,
    body: &mut FetchResponseBody<FileSlice>,
    mode: SessionMode,
    legacy: Option<i16>,
    version: i16,
) -> Option<Response> {
    let client = client.filter(|_| replica < 0)?;
    let t = broker.quotas.record(
        &broker.cluster.metadata(),
        Kind::Fetch,
        client,
        bytes as f64,
        legacy.is_none(),
    );
    let ms = t.as_millis().min(i32::MAX as u128) as i32;
    body.throttle_time_ms = ms;
    if t.is_zero() || legacy.is_some() {
        return None;
    }
    let empty = FetchResponseBody::<FileSlice> {
        throttle_time_ms: ms,
        error_code: 0,
        // An incremental session goes on to its next epoch (what it was
        // told is unchanged); a new one is not opened.
        session_id: match mode {
            SessionMode::Incremental { id, epoch } => {
                match broker
                    .fetch_sessions
                    .with_session(id, epoch, |s| s.bump_epoch())
                {
                    Ok(()) => id,
                    Err(_) => 0,
                }
            }
            SessionMode::None | SessionMode::New => 0,
        },
        topics: vec![],
        node_endpoints: vec![],
    };
    let (parts, len) = empty.encode(version);
    Some(Response {
        parts,
        len,
        error_code: 0,
    })
}

/// What the caller may fetch.
#[derive(Clone, Copy)]
enum Access<'a> {
    Allowed,
    Denied,
    PerTopic(&'a Authz),
}

fn answer(
    broker: &Broker,
    mode: SessionMode,
    topics: &[WantedTopic],
    body: FetchResponseBody<FileSlice>,
    version: i16,
    legacy: Option<i16>,
    listener: &str,
) -> Response {
    match legacy {
        Some(v) => fetch_legacy::answer(topics, body, v),
        None => finish(broker, mode, topics, body, version, listener),
    }
}

/// Turns the last read into the answer the session calls for: a new
/// session is stored with what it was told; an incremental answer keeps
/// only the partitions with news, and the session remembers them.
fn finish(
    broker: &Broker,
    mode: SessionMode,
    topics: &[WantedTopic],
    mut body: FetchResponseBody<FileSlice>,
    version: i16,
    listener: &str,
) -> Response {
    let key_of = |ti: usize, p: &FetchPartition<FileSlice>| PartitionKey {
        topic: topics[ti].key.clone(),
        partition: p.partition_index,
    };
    match mode {
        SessionMode::None => {}
        SessionMode::New => {
            let mut partitions = IndexMap::new();
            for (ti, t) in body.topics.iter().enumerate() {
                for (p, w) in t.partitions.iter().zip(&topics[ti].partitions) {
                    partitions.insert(key_of(ti, p), told(w, p));
                }
            }
            body.session_id = broker.fetch_sessions.create(partitions).unwrap_or(0);
            metrics::gauge!(m::FETCH_SESSIONS).set(broker.fetch_sessions.len() as f64);
        }
        SessionMode::Incremental { id, epoch } => {
            let kept = broker.fetch_sessions.with_session(id, epoch, |s| {
                let mut with_data = Vec::new();
                for (ti, t) in body.topics.iter_mut().enumerate() {
                    let wanted = &topics[ti].partitions;
                    let mut keep = Vec::with_capacity(t.partitions.len());
                    for (p, w) in t.partitions.drain(..).zip(wanted) {
                        let key = key_of(ti, &p);
                        let now = told(w, &p);
                        let news = match s.partitions.get_mut(&key) {
                            Some(c) => {
                                let changed = c.high_watermark != now.high_watermark
                                    || c.last_stable_offset != now.last_stable_offset
                                    || c.log_start_offset != now.log_start_offset;
                                *c = now;
                                changed
                            }
                            None => true,
                        };
                        if p.records.is_some() {
                            with_data.push(key);
                        }
                        if news || p.records.is_some() || p.error_code != 0 {
                            keep.push(p);
                        }
                    }
                    t.partitions = keep;
                }
                // Round-robin: those that got data go to the back.
                for key in with_data {
                    if let Some(c) = s.partitions.shift_remove(&key) {
                        s.partitions.insert(key, c);
                    }
                }
                s.bump_epoch();
            });
            if kept.is_err() {
                // Evicted or advanced by another request meanwhile.
                return session_error_response(ResponseError::FetchSessionIdNotFound, version);
            }
            body.topics.retain(|t| !t.partitions.is_empty());
            body.session_id = id;
        }
    }
    leader_hint::fetch(broker, &mut body, version, listener);
    let (parts, len) = body.encode(version);
    Response {
        parts,
        len,
        error_code: 0,
    }
}

/// What a session remembers of a partition after an answer.
fn told(w: &Wanted, p: &FetchPartition<FileSlice>) -> CachedPartition {
    CachedPartition {
        fetch_offset: w.fetch_offset,
        max_bytes: w.max_bytes,
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        log_start_offset: p.log_start_offset,
    }
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
    follower: Option<&Quota>,
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
                current_leader: None,
            };
            match &w.log {
                Err(code) => {
                    p.error_code = *code;
                    has_error = true;
                }
                Ok(log) if w.throttled && follower.is_some_and(|q| q.exceeded()) => {
                    // The leader throttle is spent: positions, no records.
                    if let Some(q) = follower {
                        q.held_back();
                    }
                    p.high_watermark = log.high_watermark();
                    p.last_stable_offset = log.last_stable_offset();
                    p.log_start_offset = log.log_start_offset();
                }
                Ok(log) => {
                    let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
                    // KIP-74: the first batch of the first partition with data
                    // is returned even when it is larger than the limits.
                    // read_committed stops at the last stable offset and is
                    // told which aborted transactions the records overlap.
                    // Followers read to the log end; consumers below the
                    // high watermark, or the last stable offset.
                    let lso = log.last_stable_offset();
                    let upto = if follower.is_some() {
                        i64::MAX
                    } else if read_committed {
                        lso
                    } else if log.is_replicated() {
                        log.high_watermark()
                    } else {
                        // The end: no batch search at a bound.
                        i64::MAX
                    };
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
                                if w.throttled
                                    && let Some(q) = follower
                                {
                                    q.record(slice.len);
                                }
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
            node_endpoints: vec![],
        },
        total,
        has_error,
    )
}
