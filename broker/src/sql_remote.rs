//! The SQL gateway's reads of partitions with no replica on this broker:
//! ListOffsets and Fetch to the partition's leader on its Kafka listener,
//! as a `read_committed` consumer would send them, over a small pool of
//! connections per leader. A leader change or an unreachable leader is
//! retried against the metadata until a deadline; the query fails after it
//! with a message naming the partition. INSERTs into a partition this
//! broker does not lead are forwarded to its leader as an acks=all Produce.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use karnak_coordinator::metadata::NO_LEADER;
use karnak_sql::ProduceError;
use karnak_sql::remote::{FetchedChunk, RemoteError, RemotePartitions, RemoteTopic};

use crate::broker::Broker;
use crate::replication::client::{PeerPool, PoolError};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits out a leader election or an unreachable leader
/// (a failover takes about 2 s) before the query fails.
const LEADER_DEADLINE: Duration = Duration::from_secs(15);
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Idle connections kept per leader (one per concurrently read partition).
const POOL_PER_LEADER: usize = 8;
const READ_COMMITTED: i8 = 1;
/// An INSERT forwarded to a leader waits for its in-sync replicas as long
/// as one on the leader's own broker (BrokerProducer's 30 s).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

pub struct BrokerRemote {
    broker: Arc<Broker>,
    pool: PeerPool,
}

/// Why one attempt failed: worth another try once the metadata moves, or not.
enum Attempt {
    Retry(String),
    Fail(RemoteError),
}

fn retriable(code: i16) -> bool {
    code == ResponseError::NotLeaderOrFollower.code()
        || code == ResponseError::LeaderNotAvailable.code()
        || code == ResponseError::FencedLeaderEpoch.code()
        || code == ResponseError::UnknownLeaderEpoch.code()
        || code == ResponseError::UnknownTopicOrPartition.code()
}

fn refused(what: &str, code: i16) -> Attempt {
    let text = ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"));
    let msg = format!("{what} answered {text}");
    if retriable(code) {
        Attempt::Retry(msg)
    } else {
        Attempt::Fail(RemoteError::Unavailable(msg))
    }
}

impl BrokerRemote {
    /// Whether this broker holds a replica of `t` to scan: the metadata
    /// places one here *and* the log exists. Between the metadata applying
    /// a new topic and this broker creating its replica (or while it
    /// replaces one deleted and created again), the topic is read from
    /// its leaders, not reported missing.
    fn held_here(&self, name: &str, t: &karnak_coordinator::metadata::TopicRecord) -> bool {
        let me = self.broker.node_id();
        t.partitions.iter().any(|p| p.replicas.contains(&me))
            && self
                .broker
                .logs
                .topic(name)
                .is_some_and(|l| l.meta.id == t.id)
    }

    pub fn new(broker: Arc<Broker>) -> Self {
        let pool = PeerPool::new(
            format!("karnak-sql-{}", broker.node_id()),
            POOL_PER_LEADER,
            broker.cluster.peer_tls(),
        );
        BrokerRemote { broker, pool }
    }

    /// The address of the partition's live leader.
    fn leader(&self, topic: &str, partition: i32) -> Result<String, Attempt> {
        let meta = self.broker.cluster.metadata();
        let state = meta.partition(topic, partition).ok_or_else(|| {
            Attempt::Fail(RemoteError::Unavailable(format!(
                "{topic}-{partition} does not exist"
            )))
        })?;
        if state.leader == NO_LEADER || !self.broker.cluster.is_live(&meta, state.leader) {
            return Err(Attempt::Retry(format!("{topic}-{partition} has no leader")));
        }
        meta.brokers
            .get(&state.leader)
            .and_then(|b| crate::listeners::address_of(b, self.broker.inter_broker_listener()))
            .map(|l| format!("{}:{}", l.host, l.port))
            .ok_or_else(|| {
                Attempt::Retry(format!(
                    "broker {} has no {} listener",
                    state.leader,
                    self.broker.inter_broker_listener()
                ))
            })
    }

    /// One request to the leader at `addr`. A request that must not be
    /// sent twice (`resend_safe` false: a produce) is not retried once it
    /// may have reached the leader.
    async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        addr: &str,
        key: ApiKey,
        version: i16,
        req: &Req,
        resend_safe: bool,
    ) -> Result<Resp, Attempt> {
        self.pool
            .call(addr, key, version, req, CALL_TIMEOUT)
            .await
            .map_err(|e| match e {
                PoolError::Exchange { .. } if !resend_safe => {
                    Attempt::Fail(RemoteError::Unavailable(format!(
                        "{e} (the write may or may not have been applied)"
                    )))
                }
                e => Attempt::Retry(e.to_string()),
            })
    }

    /// Runs `attempt` against the partition's leader until it succeeds,
    /// fails for good, or the deadline passes.
    async fn with_leader<T, F, Fut>(
        &self,
        topic: &str,
        partition: i32,
        attempt: F,
    ) -> Result<T, RemoteError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let deadline = Instant::now() + LEADER_DEADLINE;
        loop {
            let outcome = match self.leader(topic, partition) {
                Ok(addr) => attempt(addr).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) if Instant::now() >= deadline => {
                    return Err(RemoteError::Unavailable(format!(
                        "no answer from the leader of {topic}-{partition} in {} s: {why}",
                        LEADER_DEADLINE.as_secs()
                    )));
                }
                Err(Attempt::Retry(why)) => {
                    tracing::debug!(topic, partition, %why, "remote read retried");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }

    /// Produces `records` with acks=all to the partition's leader: an
    /// INSERT on a broker that does not lead the partition goes where a
    /// Kafka producer would send it. Retried only while nothing was sent
    /// or the leader refused it as not leading.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<i64, ProduceError> {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records)),
                    ]),
            ]);
        let outcome = self
            .with_leader(topic, partition, |addr| {
                let req = &req;
                async move {
                    let resp: ProduceResponse =
                        self.call(&addr, ApiKey::Produce, 9, req, false).await?;
                    let p = resp
                        .responses
                        .iter()
                        .flat_map(|t| t.partition_responses.iter())
                        .find(|p| p.index == partition)
                        .ok_or_else(|| {
                            Attempt::Fail(RemoteError::Unavailable(
                                "Produce answered without the partition".into(),
                            ))
                        })?;
                    match p.error_code {
                        0 => Ok(Ok(p.base_offset)),
                        code if retriable(code) => Err(refused("Produce", code)),
                        code => Ok(Err(ProduceError {
                            code,
                            message: p
                                .error_message
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_else(|| format!("the leader refused it (error {code})")),
                        })),
                    }
                }
            })
            .await;
        match outcome {
            Ok(answer) => answer,
            Err(e) => Err(ProduceError {
                code: ResponseError::NotLeaderOrFollower.code(),
                message: e.to_string(),
            }),
        }
    }

    /// One ListOffsets (read_committed) to `addr` in leader epoch `epoch`:
    /// the offset, or `None` when the leader answered anything else.
    async fn list_offset_in_epoch(
        &self,
        addr: &str,
        topic: &str,
        partition: i32,
        epoch: i32,
        at: i64,
    ) -> Option<i64> {
        let req = list_offsets(topic, partition, epoch, at);
        let resp: ListOffsetsResponse = self
            .call(addr, ApiKey::ListOffsets, 5, &req, true)
            .await
            .ok()?;
        let p = resp.topics.first()?.partitions.first()?;
        (p.error_code == 0 && p.partition_index == partition).then_some(p.offset)
    }

    async fn list_offset(&self, topic: &str, partition: i32, at: i64) -> Result<i64, RemoteError> {
        let req = list_offsets(topic, partition, -1, at);
        self.with_leader(topic, partition, |addr| {
            let req = &req;
            async move {
                let resp: ListOffsetsResponse =
                    self.call(&addr, ApiKey::ListOffsets, 5, req, true).await?;
                let p = resp
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition)
                    .ok_or_else(|| {
                        Attempt::Retry("ListOffsets answered without the partition".into())
                    })?;
                if p.error_code != 0 {
                    return Err(refused("ListOffsets", p.error_code));
                }
                Ok(p.offset)
            }
        })
        .await
    }
}

#[async_trait::async_trait]
impl RemotePartitions for BrokerRemote {
    fn partitions_led_elsewhere(&self, topic: &str) -> Vec<i32> {
        let me = self.broker.node_id();
        self.broker
            .cluster
            .metadata()
            .topics
            .get(topic)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader != me)
                    .map(|(i, _)| i as i32)
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn catch_up(&self) {
        // Bounded: with no metadata leader, "does not exist" comes late,
        // not never.
        if let Err(e) = self.broker.cluster.catch_up(Duration::from_secs(2)).await {
            tracing::debug!(error = %e, "SQL catalog lookup without a read barrier");
        }
    }

    fn topics_elsewhere(&self) -> Vec<String> {
        self.broker
            .cluster
            .metadata()
            .topics
            .iter()
            .filter(|(name, t)| !self.held_here(name, t))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn topic_elsewhere(&self, name: &str) -> Option<RemoteTopic> {
        let meta = self.broker.cluster.metadata();
        let t = meta.topics.get(name)?;
        if self.held_here(name, t) {
            return None;
        }
        Some(RemoteTopic {
            name: name.to_string(),
            id: t.id,
            partitions: t.partitions.len() as i32,
            configs: t.configs.clone(),
        })
    }

    async fn follower_bounds(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, RemoteError> {
        let meta = self.broker.cluster.metadata();
        let Some(state) = meta.partition(topic, partition) else {
            return Ok(None);
        };
        let (leader, epoch) = (state.leader, state.leader_epoch);
        if leader == self.broker.node_id()
            || !self
                .broker
                .replicas
                .follows_in_step(topic, partition, leader, epoch)
        {
            return Ok(None);
        }
        let Ok(addr) = self.leader(topic, partition) else {
            return Ok(None);
        };
        // Asked in the epoch our replica follows: a leader that moved on
        // refuses, and the partition is read from the new leader instead.
        let (start, stable) = tokio::join!(
            self.list_offset_in_epoch(&addr, topic, partition, epoch, EARLIEST),
            self.list_offset_in_epoch(&addr, topic, partition, epoch, LATEST),
        );
        Ok(start.zip(stable))
    }

    async fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), RemoteError> {
        let start = self.list_offset(topic, partition, EARLIEST).await?;
        let stable = self.list_offset(topic, partition, LATEST).await?;
        Ok((start, stable))
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<i64>, RemoteError> {
        let off = self.list_offset(topic, partition, timestamp).await?;
        Ok((off >= 0).then_some(off))
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<FetchedChunk, RemoteError> {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(max_bytes)
            .with_isolation_level(READ_COMMITTED)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        self.with_leader(topic, partition, |addr| {
            let req = &req;
            async move {
                let resp: FetchResponse = self.call(&addr, ApiKey::Fetch, 12, req, true).await?;
                if resp.error_code != 0 {
                    return Err(refused("Fetch", resp.error_code));
                }
                let p = resp
                    .responses
                    .into_iter()
                    .flat_map(|t| t.partitions)
                    .find(|p| p.partition_index == partition)
                    .ok_or_else(|| Attempt::Retry("Fetch answered without the partition".into()))?;
                if p.error_code == ResponseError::OffsetOutOfRange.code() {
                    return Err(Attempt::Fail(RemoteError::OffsetOutOfRange {
                        log_start_offset: p.log_start_offset,
                    }));
                }
                if p.error_code != 0 {
                    return Err(refused("Fetch", p.error_code));
                }
                Ok(FetchedChunk {
                    records: p.records.unwrap_or_else(Bytes::new),
                    aborted: p
                        .aborted_transactions
                        .unwrap_or_default()
                        .iter()
                        .map(|a| (a.producer_id.0, a.first_offset))
                        .collect(),
                })
            }
        })
        .await
    }
}

/// A read_committed ListOffsets for one partition, at `at` (EARLIEST,
/// LATEST or a timestamp), in `epoch` (-1: whatever the leader's).
fn list_offsets(topic: &str, partition: i32, epoch: i32, at: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_current_leader_epoch(epoch)
                        .with_timestamp(at),
                ]),
        ])
}
