//! Produce (key 0): validate each partition's v2 batches, append them as
//! received (offsets assigned in place by storage), answer per `acks`.
//! v0-2 (clients before Kafka 0.11) send message sets, converted to one v2
//! batch per partition first, as Kafka 3.x did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_protocol::legacy;
use karnak_protocol::record_batch::{self, BatchesSummary, TimestampType, ValidationPolicy};
use karnak_storage::Log;
use tracing::warn;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::handlers::{leader_hint, now_ms, storage_error_code};
use crate::metrics as m;
use crate::quotas::{Kind, QuotaClient};
use crate::response::{HandlerError, Reply, Response, decode};

const INVALID_REQUIRED_ACKS: i16 = ResponseError::InvalidRequiredAcks.code();
const KAFKA_STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
    ResponseError::TransactionalIdAuthorizationFailed.code();
const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const INVALID_RECORD: i16 = ResponseError::InvalidRecord.code();

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    listener: &str,
    authz: &Authz,
    client: Option<&QuotaClient>,
) -> Result<Reply, HandlerError> {
    // producer_byte_rate counts the request's size.
    let request_bytes = body.len() as f64;
    let request: ProduceRequest = if version < 3 {
        legacy::produce::decode_request(body, version).map_err(|e| HandlerError::Decode {
            api: "Produce",
            version,
            reason: e.to_string(),
        })?
    } else {
        decode(body, "Produce", version)?
    };
    let to_create = to_auto_create(broker, &request, authz);
    if to_create.is_empty() {
        let none = HashMap::new();
        return produce(
            broker,
            request,
            request_bytes,
            version,
            listener,
            authz,
            client,
            &none,
        );
    }
    // Topics to auto-create first, through the metadata group: awaited,
    // then the request is served as if they had been there.
    let acks = request.acks;
    let (broker, listener) = (broker.clone(), listener.to_string());
    let (authz, client) = (authz.clone(), client.cloned());
    let answer = async move {
        let mut refused = HashMap::new();
        for name in to_create {
            if let Err(code) = crate::topics::auto_create(&broker, &name).await {
                refused.insert(name, code);
            }
        }
        let reply = produce(
            &broker,
            request,
            request_bytes,
            version,
            &listener,
            &authz,
            client.as_ref(),
            &refused,
        )?;
        match reply {
            Reply::Ready(r) => Ok(Some(r)),
            Reply::Later(f) => f.await.map(Some),
            Reply::Nothing => Ok(None),
        }
    };
    if acks == 0 {
        // Nothing is answered: the append happens once the topic exists.
        tokio::spawn(async move {
            if let Err(e) = answer.await {
                tracing::debug!(error = %e, "acks=0 produce after auto-creation");
            }
        });
        return Ok(Reply::Nothing);
    }
    Ok(Reply::Later(Box::pin(async move {
        answer
            .await?
            .ok_or_else(|| HandlerError::Internal("a Produce with acks answered nothing".into()))
    })))
}

/// The request's topics to auto-create before it is served: unknown,
/// writable by the caller, and creatable (Kafka's Metadata rules).
fn to_auto_create(broker: &Broker, request: &ProduceRequest, authz: &Authz) -> Vec<String> {
    if !broker.config.auto_create_topics
        || request
            .transactional_id
            .as_ref()
            .is_some_and(|id| !authz.transactional_id(AclOperation::Write, id))
    {
        return Vec::new();
    }
    let meta = broker.cluster.metadata();
    let mut names: Vec<String> = request
        .topic_data
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| {
            !crate::topics::is_internal(name)
                && !meta.topics.contains_key(*name)
                && karnak_storage::validate_topic_name(name).is_ok()
                && authz.topic(AclOperation::Write, name)
                && authz.may_create_topic(name)
        })
        .map(str::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Serves a decoded Produce request; `refused`: topics whose
/// auto-creation was just refused, with the error.
#[allow(clippy::too_many_arguments)]
fn produce(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    request_bytes: f64,
    version: i16,
    listener: &str,
    authz: &Authz,
    client: Option<&QuotaClient>,
    refused: &HashMap<String, i16>,
) -> Result<Reply, HandlerError> {
    let legacy = version < 3;
    let acks = request.acks;
    let now = now_ms();
    let transactional_id = request.transactional_id.as_ref().map(|t| t.to_string());
    // Kafka refuses the whole request when the transactional id is not the
    // caller's to write with.
    let txn_denied = transactional_id
        .as_deref()
        .is_some_and(|id| !authz.transactional_id(AclOperation::Write, id));
    // Logs that took an append, with the offset that must be durable before
    // acks=all is answered, and where each one's answer sits in the response.
    let mut to_flush: Vec<(Arc<Log>, i64)> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let name = topic_data.name.as_str();
        let topic = if txn_denied {
            Err(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else if !authz.topic(AclOperation::Write, name) {
            Err(ResponseError::TopicAuthorizationFailed.code())
        } else {
            resolve_topic(broker, name, refused)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            let mut resp = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let outcome = if !matches!(acks, -1..=1) {
                Err((INVALID_REQUIRED_ACKS, None))
            } else {
                match &topic {
                    Err(code) => Err((*code, None)),
                    Ok(()) => match leader_for_produce(broker, name, pd.index, acks) {
                        Err(code) => Err((code, None)),
                        Ok((log, epoch)) => {
                            let check = |s: &BatchesSummary| {
                                check_producer(
                                    broker,
                                    transactional_id.as_deref(),
                                    name,
                                    pd.index,
                                    s,
                                )
                            };
                            let records = pd.records.unwrap_or_default();
                            let appended = if let Some(why) =
                                broker.free_space.refuse_produce(records.len())
                            {
                                Err((KAFKA_STORAGE_ERROR, Some(why)))
                            } else if legacy {
                                up_convert(records)
                                    .and_then(|records| append(&log, records, now, epoch, &check))
                            } else {
                                append(&log, records, now, epoch, &check)
                            };
                            if appended.is_ok() {
                                broker.replicas.after_append(name, pd.index, &log);
                            }
                            appended
                        }
                    },
                }
            };
            match outcome {
                Ok((log, info)) => {
                    resp = resp
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time)
                        .with_log_start_offset(info.log_start_offset);
                    to_flush.push((log, info.last_offset + 1));
                    slots.push((responses.len(), partitions.len()));
                }
                Err((code, message)) => {
                    resp = resp
                        .with_error_code(code)
                        .with_error_message(message.map(StrBytes::from_string));
                }
            }
            partitions.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    let throttle = client.map_or(Duration::ZERO, |c| {
        broker.quotas.record(
            &broker.cluster.metadata(),
            Kind::Produce,
            c,
            request_bytes,
            false,
        )
    });
    if acks == 0 {
        return Ok(Reply::Nothing);
    }
    let mut response = ProduceResponse::default()
        .with_responses(responses)
        .with_throttle_time_ms(throttle.as_millis().min(i32::MAX as u128) as i32);
    leader_hint::produce(broker, &mut response, version, listener);
    let replicated: Vec<(Arc<Log>, i64)> = to_flush
        .iter()
        .filter(|(log, _)| log.is_replicated())
        .cloned()
        .collect();
    let fsync = broker.config.flush_on_acks_all;
    if acks == -1 && !to_flush.is_empty() && (fsync || !replicated.is_empty()) {
        // Durable before acknowledged: the flush is queued now, while the
        // response waits its turn on the connection; the data dir's flusher
        // groups it with every other waiter's fsync. Replicated partitions
        // also wait for their high watermark (every in-sync replica has the
        // records), at most the request's timeout.
        let flushed = fsync.then(|| broker.logs.flush_logs(to_flush.clone()));
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        let broker = broker.clone();
        return Ok(Reply::Later(Box::pin(async move {
            if let Some(flushed) = flushed {
                let outcome = flushed
                    .await
                    .map_err(|e| HandlerError::Internal(format!("acks=all flush: {e}")))?;
                for (result, (t, p)) in outcome.into_iter().zip(&slots) {
                    if let Err(e) = result {
                        warn!("fsync failed, produce not acknowledged: {e}");
                        let part = &mut response.responses[*t].partition_responses[*p];
                        part.error_code = KAFKA_STORAGE_ERROR;
                        part.base_offset = -1;
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + timeout;
            for ((log, target), (t, p)) in to_flush.iter().zip(&slots) {
                if !replicated.iter().any(|(l, _)| Arc::ptr_eq(l, log)) {
                    continue;
                }
                let code = broker
                    .replicas
                    .wait_replicated(log, *target, deadline)
                    .await;
                let part = &mut response.responses[*t].partition_responses[*p];
                if code != 0 && part.error_code == 0 {
                    part.error_code = code;
                    part.base_offset = -1;
                }
            }
            encode(&response, version)
        })));
    }
    Ok(Reply::Ready(encode(&response, version)?))
}

/// The log to append to, if this broker leads the partition, with the
/// leader epoch to stamp; acks=all also needs enough in-sync replicas.
fn leader_for_produce(
    broker: &Broker,
    topic: &str,
    partition: i32,
    acks: i16,
) -> Result<(Arc<Log>, i32), i16> {
    broker
        .replicas
        .leader_for_append(topic, partition, acks == -1)
}

fn encode(response: &ProduceResponse, version: i16) -> Result<Response, HandlerError> {
    if version < 3 {
        return Ok(Response::from_bytes(
            legacy::produce::encode_response(response, version),
            0,
        ));
    }
    Response::encode(response, version, 0)
}

/// A v0-2 partition's records as one v2 batch: message sets (magic 0/1)
/// are converted; v2 batches, which Kafka took in v0-2 too, pass as sent.
fn up_convert(records: Bytes) -> Result<Bytes, Refusal> {
    if legacy::message_set::is_v2(&records) {
        return Ok(records);
    }
    legacy::message_set::decode(&records)
        .and_then(|set| legacy::message_set::to_batch(&set))
        .map_err(|e| (e.kafka_error_code(), Some(e.to_string())))
}

/// Whether the topic exists (auto-created before, if it could be: see
/// [`to_auto_create`]); which broker leads each partition is checked per
/// partition.
fn resolve_topic(broker: &Broker, name: &str, refused: &HashMap<String, i16>) -> Result<(), i16> {
    if crate::topics::is_internal(name) {
        // Only the coordinator writes its own partitions, as in Kafka.
        return Err(ResponseError::InvalidTopicException.code());
    }
    if broker.cluster.metadata().topics.contains_key(name) {
        return Ok(());
    }
    if let Err(e) = karnak_storage::validate_topic_name(name) {
        return Err(storage_error_code(&e));
    }
    match refused.get(name) {
        // Created, with no replica here: the client asks the leader.
        Some(&code) if code == ResponseError::LeaderNotAvailable.code() => Ok(()),
        Some(&code) => Err(code),
        None => Err(UNKNOWN_TOPIC_OR_PARTITION),
    }
}

/// A refusal: Kafka error code and message.
pub(crate) type Refusal = (i16, Option<String>);

pub(crate) type AppendOutcome =
    Result<(Arc<Log>, karnak_storage::AppendInfo), (i16, Option<String>)>;

/// Kafka's rules for who may write what: no control batches from clients,
/// and a transactional batch only into a partition its transaction added.
fn check_producer(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    s: &BatchesSummary,
) -> Result<(), Refusal> {
    if s.control {
        return Err((
            INVALID_RECORD,
            Some("clients may not write control batches".into()),
        ));
    }
    if !s.transactional {
        return Ok(());
    }
    let Some(tid) = transactional_id else {
        return Err((
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            Some("transactional batches need a transactional id on the request".into()),
        ));
    };
    if broker.groups.shard(tid).is_err() {
        // The transaction's coordinator is another broker. Kafka's leaders
        // ask it (KIP-890's AddPartitionsToTxn verify_only); ours do not
        // yet, and take the producer's epoch checks alone, as Kafka did
        // before KIP-890.
        return Ok(());
    }
    broker
        .txns
        .verify_partition(tid, s.producer_id, s.producer_epoch, topic, partition)
        .map_err(|code| {
            (
                code,
                Some(format!(
                    "{topic}-{partition} is not in the open transaction of {tid:?} (producer {} epoch {})",
                    s.producer_id, s.producer_epoch
                )),
            )
        })
}

/// Validates and appends one partition's batches; the SQL gateway's INSERTs
/// come through here too (with a check that passes everything they build).
pub(crate) fn append(
    log: &Arc<Log>,
    records: Bytes,
    now: i64,
    leader_epoch: i32,
    check: &dyn Fn(&BatchesSummary) -> Result<(), Refusal>,
) -> AppendOutcome {
    let config = log.config();
    let policy = ValidationPolicy {
        timestamp_type: config.message_timestamp_type,
        timestamp_before_max_ms: config.timestamp_before_max_ms,
        timestamp_after_max_ms: config.timestamp_after_max_ms,
    };
    let summary = record_batch::validate_batches(&records, &policy, now)
        .map_err(|e| (e.kafka_error_code(), Some(e.to_string())))?;
    // A transactional batch takes a verification token before its
    // transaction is checked, so an EndTxn that lands in between is seen.
    let guard = (summary.transactional && summary.producer_id >= 0)
        .then(|| log.txn_verification_guard(summary.producer_id));
    if let Err(refused) = check(&summary) {
        if let Some(token) = guard {
            log.release_txn_verification_guard(summary.producer_id, token);
        }
        return Err(refused);
    }
    let append_time =
        (config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now);
    match log.append_guarded(&records, leader_epoch, append_time, guard) {
        Ok(info) => {
            if info.duplicate {
                metrics::counter!(m::DUPLICATE_BATCHES).increment(1);
                tracing::debug!(
                    topic = log.topic(),
                    partition = log.partition(),
                    producer_id = summary.producer_id,
                    base_offset = info.base_offset,
                    "duplicate batch from an idempotent producer answered with its first offsets"
                );
            } else {
                metrics::counter!(m::PRODUCED_RECORDS).increment(summary.records as u64);
            }
            Ok((log.clone(), info))
        }
        Err(e) => {
            let code = storage_error_code(&e);
            if code == -1 {
                warn!(
                    topic = log.topic(),
                    partition = log.partition(),
                    "append failed: {e}"
                );
            }
            Err((code, Some(e.to_string())))
        }
    }
}
