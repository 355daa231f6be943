//! CreateTopics (key 19).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::authz::{AclOperation, Authz, ResourceType};
use crate::broker::Broker;
use crate::handlers::{storage_error_code, topic_common};
use crate::response::{HandlerError, Reply, Response, decode};

const INVALID_REPLICATION_FACTOR: i16 = ResponseError::InvalidReplicationFactor.code();
const INVALID_REPLICA_ASSIGNMENT: i16 = ResponseError::InvalidReplicaAssignment.code();
const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();

/// Answered once every topic's creation is committed (the metadata group
/// is awaited, not blocked on).
pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: CreateTopicsRequest = decode(body, "CreateTopics", version)?;
    let records: u64 = request
        .topics
        .iter()
        .map(|t| {
            let partitions = if t.assignments.is_empty() {
                u64::try_from(asked_partitions(broker, t)).unwrap_or(0)
            } else {
                t.assignments.len() as u64
            };
            1 + partitions + t.configs.len() as u64
        })
        .sum();
    if records > topic_common::MAX_RECORDS_PER_REQUEST {
        let refused = request
            .topics
            .into_iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_error_code(ResponseError::PolicyViolation.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        topic_common::EXCESSIVE_BATCH,
                    )))
            })
            .collect();
        let response = CreateTopicsResponse::default().with_topics(refused);
        return Ok(Reply::Ready(Response::encode(&response, version, 0)?));
    }
    let (broker, authz) = (broker.clone(), authz.clone());
    Ok(Reply::Later(Box::pin(async move {
        let mut seen = std::collections::HashSet::new();
        let mut results = Vec::with_capacity(request.topics.len());
        for t in request.topics {
            let r = one(&broker, &authz, &mut seen, request.validate_only, t).await;
            results.push(r);
        }
        let response = CreateTopicsResponse::default().with_topics(results);
        Response::encode(&response, version, 0)
    })))
}

/// One topic of the request: created (or checked, with validate_only).
async fn one(
    broker: &Arc<Broker>,
    authz: &Authz,
    seen: &mut std::collections::HashSet<String>,
    validate_only: bool,
    t: CreatableTopic,
) -> CreatableTopicResult {
    let name = t.name.as_str().to_string();
    let result = CreatableTopicResult::default()
        .with_name(t.name.clone())
        .with_num_partitions(-1)
        .with_replication_factor(-1);
    let fail = |code: i16, msg: String| {
        result
            .clone()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(msg)))
    };
    if !seen.insert(name.clone()) {
        return fail(
            INVALID_REQUEST,
            format!("topic {name} appears more than once in the request"),
        );
    }
    if !authz.may_create_topic(&name) {
        return fail(
            ResponseError::TopicAuthorizationFailed.code(),
            "CREATE on the cluster or the topic is needed".into(),
        );
    }
    let (partitions, assignments) = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return fail(
                INVALID_REQUEST,
                "both assignments and partitions/replication factor given".into(),
            );
        }
        let mut sorted: Vec<_> = t.assignments.iter().collect();
        sorted.sort_by_key(|a| a.partition_index);
        if sorted
            .iter()
            .enumerate()
            .any(|(i, a)| a.partition_index != i as i32)
        {
            return fail(
                INVALID_REPLICA_ASSIGNMENT,
                "partitions must be numbered from 0 without gaps".into(),
            );
        }
        let lists: Vec<Vec<i32>> = sorted
            .iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        (lists.len() as i32, Some(lists))
    } else {
        (asked_partitions(broker, &t), None)
    };
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        match &c.value {
            Some(v) => {
                configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
            }
            None => {
                return fail(
                    ResponseError::InvalidConfig.code(),
                    format!("config {} has a null value", c.name.as_str()),
                );
            }
        }
    }
    let effective = match broker.logs.defaults().with_overrides(&configs) {
        Ok(c) => c,
        Err(e) => return fail(storage_error_code(&e), e.to_string()),
    };
    if let Err(e) = karnak_storage::validate_topic_name(&name) {
        return fail(storage_error_code(&e), e.to_string());
    }
    let (id, replication) = if validate_only {
        if topic_common::topic(broker, &broker.cluster.metadata(), &name).is_some() {
            return fail(
                ResponseError::TopicAlreadyExists.code(),
                format!("Topic '{name}' already exists."),
            );
        }
        if partitions < 1 {
            return fail(
                ResponseError::InvalidPartitions.code(),
                "Number of partitions must be larger than 0.".into(),
            );
        }
        let live = broker.live_brokers(broker.inter_broker_listener()).len() as i32;
        let rf = match (&assignments, t.replication_factor) {
            (Some(a), _) => a.first().map_or(0, |r| r.len() as i32),
            (None, -1) => live.min(3),
            (None, rf) => i32::from(rf),
        };
        if rf < 1 || rf > live {
            return fail(
                INVALID_REPLICATION_FACTOR,
                format!("Replication factor: {rf} larger than available brokers: {live}."),
            );
        }
        (Uuid::nil(), rf)
    } else {
        let new = crate::topics::NewTopic {
            name: name.clone(),
            partitions,
            replication_factor: i32::from(t.replication_factor),
            assignments,
            configs: configs.clone(),
        };
        if let Err(e) = crate::topics::create(broker, new).await {
            return fail(e.code(), e.to_string());
        }
        match broker.cluster.metadata().topics.get(&name) {
            Some(t) => (
                Uuid::from_bytes(t.id),
                t.partitions.first().map_or(0, |p| p.replicas.len() as i32),
            ),
            None => {
                return fail(
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("{name} was deleted as it was created"),
                );
            }
        }
    };
    let described = crate::configs::topic_configs(broker, &effective, &configs)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(e.name))
                .with_value(Some(StrBytes::from_string(e.value)))
                .with_config_source(e.source)
        })
        .collect();
    let result = result
        .with_topic_id(id)
        .with_num_partitions(partitions)
        .with_replication_factor(replication as i16);
    // Its configs are told to a caller who may describe them.
    if authz.allows(AclOperation::DescribeConfigs, ResourceType::Topic, &name) {
        result.with_configs(Some(described))
    } else {
        result.with_topic_config_error_code(ResponseError::TopicAuthorizationFailed.code())
    }
}

/// The partitions a topic without assignments asks for (-1: the default).
fn asked_partitions(broker: &Broker, t: &CreatableTopic) -> i32 {
    if t.num_partitions == -1 {
        broker.config.num_partitions
    } else {
        t.num_partitions
    }
}
