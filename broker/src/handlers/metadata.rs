//! Metadata (key 3): the live brokers, and topics with each partition's
//! leader, replicas and in-sync set, from the metadata log.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::ClusterMetadata;
use uuid::Uuid;

use crate::authz::{
    AclOperation, Authz, CLUSTER_NAME, CLUSTER_OPERATIONS, ResourceType, TOPIC_OPERATIONS,
};
use crate::broker::Broker;
use crate::handlers::{storage_error_code, topic_common};
use crate::response::{HandlerError, Reply, Response, decode};

/// `listener`: the client's; brokers are listed with their address on it.
/// A topic to auto-create is created through the metadata group before
/// the answer (awaited: the answer comes later).
pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    listener: &str,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: MetadataRequest = decode(body, "Metadata", version)?;
    let to_create = match answer(broker, &request, version, listener, authz, None)? {
        Ok(response) => return Ok(Reply::Ready(response)),
        Err(names) => names,
    };
    let (broker, listener, authz) = (broker.clone(), listener.to_string(), authz.clone());
    Ok(Reply::Later(Box::pin(async move {
        let mut refused = HashMap::new();
        for name in to_create {
            if let Err(code) = crate::topics::auto_create(&broker, &name).await {
                refused.insert(name, code);
            }
        }
        match answer(
            &broker,
            &request,
            version,
            &listener,
            &authz,
            Some(&refused),
        )? {
            Ok(response) => Ok(response),
            // Not asked for again once creation was tried.
            Err(names) => Err(HandlerError::Internal(format!(
                "Metadata: topics {names:?} still to create"
            ))),
        }
    })))
}

/// The answer; or, before any creation was tried (`created` None), the
/// topics to auto-create first. `created`: the creations tried and the
/// error each was refused with.
fn answer(
    broker: &Broker,
    request: &MetadataRequest,
    version: i16,
    listener: &str,
    authz: &Authz,
    created: Option<&HashMap<String, i16>>,
) -> Result<Result<Response, Vec<String>>, HandlerError> {
    // Before v4 there is no flag and Kafka auto-creates; v0 sends [] for "all topics".
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let requested = match &request.topics {
        Some(t) if version == 0 && t.is_empty() => None,
        other => other.as_ref(),
    };
    let meta = broker.cluster.metadata();
    let ops = request.include_topic_authorized_operations.then_some(authz);
    let mut to_create = Vec::new();
    let mut topics: Vec<MetadataResponseTopic> = match requested {
        // Topics the caller may not DESCRIBE are left out, as in Kafka.
        None => topic_common::topic_names(broker, &meta)
            .iter()
            .filter(|n| authz.allows(AclOperation::Describe, ResourceType::Topic, n))
            .filter_map(|n| topic_common::topic(broker, &meta, n))
            .map(|t| topic_entry(broker, &meta, &t))
            .collect(),
        Some(wanted) => wanted
            .iter()
            // v10+ may name a topic by id; Kafka 4.x's AdminClient then
            // sends an empty name rather than null.
            .map(|w| match &w.name {
                Some(name) if w.topic_id.is_nil() || !name.is_empty() => {
                    match by_name(broker, &meta, name, allow_create, authz) {
                        Named::Topic(t) => t,
                        Named::ToCreate => {
                            let code = match created {
                                None => {
                                    to_create.push(name.as_str().to_string());
                                    ResponseError::LeaderNotAvailable.code()
                                }
                                // Created, with no replica here yet: the
                                // client asks again.
                                Some(c) => c
                                    .get(name.as_str())
                                    .copied()
                                    .unwrap_or(ResponseError::LeaderNotAvailable.code()),
                            };
                            topic_error(name, code)
                        }
                    }
                }
                _ => by_id(broker, &meta, w.topic_id, authz),
            })
            .collect(),
    };
    if !to_create.is_empty() {
        return Ok(Err(to_create));
    }
    if let Some(authz) = ops {
        for t in topics.iter_mut().filter(|t| t.error_code == 0) {
            if let Some(name) = &t.name {
                t.topic_authorized_operations =
                    authz.authorized_operations(ResourceType::Topic, name, TOPIC_OPERATIONS);
            }
        }
    }
    // v8-10 may ask for the cluster's too (v11 moved it to DescribeCluster).
    let cluster_ops =
        if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
            if authz.allows(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                authz.authorized_operations(ResourceType::Cluster, CLUSTER_NAME, CLUSTER_OPERATIONS)
            } else {
                0
            }
        } else {
            i32::MIN
        };
    let brokers = broker
        .live_brokers(listener)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    let response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_cluster_authorized_operations(cluster_ops)
        .with_topics(topics);
    Ok(Ok(Response::encode(&response, version, 0)?))
}

/// A named topic's entry, or that it is to be auto-created.
enum Named {
    Topic(MetadataResponseTopic),
    ToCreate,
}

fn topic_error(name: &TopicName, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(name.clone()))
        .with_error_code(code)
        .with_topic_authorized_operations(i32::MIN)
}

fn by_name(
    broker: &Broker,
    meta: &ClusterMetadata,
    name: &TopicName,
    allow_create: bool,
    authz: &Authz,
) -> Named {
    let name_str = name.as_str();
    let error = |code: i16| Named::Topic(topic_error(name, code));
    // Whether the topic exists is not told to a caller who may not see it.
    if !authz.topic(AclOperation::Describe, name_str) {
        return error(ResponseError::TopicAuthorizationFailed.code());
    }
    if let Some(t) = topic_common::topic(broker, meta, name_str) {
        return Named::Topic(topic_entry(broker, meta, &t));
    }
    if let Err(e) = karnak_storage::validate_topic_name(name_str) {
        return error(storage_error_code(&e));
    }
    if !(allow_create && broker.config.auto_create_topics) {
        return error(ResponseError::UnknownTopicOrPartition.code());
    }
    if !authz.may_create_topic(name_str) {
        return error(ResponseError::TopicAuthorizationFailed.code());
    }
    Named::ToCreate
}

fn by_id(
    broker: &Broker,
    meta: &ClusterMetadata,
    id: Uuid,
    authz: &Authz,
) -> MetadataResponseTopic {
    match topic_common::topic_by_id(broker, meta, id.as_bytes()) {
        // Topic ids are not secret: the denial names the id.
        Some(t) if !authz.topic(AclOperation::Describe, &t.name) => {
            MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_topic_authorized_operations(i32::MIN)
        }
        Some(t) => topic_entry(broker, meta, &t),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_authorized_operations(i32::MIN),
    }
}

fn topic_entry(
    broker: &Broker,
    meta: &ClusterMetadata,
    topic: &topic_common::TopicView,
) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|i| {
            let p = topic_common::partition(broker, meta, &topic.name, i);
            MetadataResponsePartition::default()
                .with_error_code(p.error)
                .with_partition_index(p.index)
                .with_leader_id(p.leader)
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas)
                .with_isr_nodes(p.isr)
                .with_offline_replicas(p.offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(Uuid::from_bytes(topic.id))
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}
