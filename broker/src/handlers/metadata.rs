//! Metadata (key 3): the live brokers, and topics with each partition's
//! leader, replicas and in-sync set, from the metadata log.

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
pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    listener: &str,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: MetadataRequest = decode(body, "Metadata", version)?;
    // Before v4 there is no flag and Kafka auto-creates; v0 sends [] for "all topics".
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let requested = match request.topics {
        Some(t) if version == 0 && t.is_empty() => None,
        other => other,
    };
    let meta = broker.cluster.metadata();
    let ops = request.include_topic_authorized_operations.then_some(authz);
    let mut topics: Vec<MetadataResponseTopic> = match requested {
        // Topics the caller may not DESCRIBE are left out, as in Kafka.
        None => topic_common::topic_names(broker, &meta)
            .iter()
            .filter(|n| authz.allows(AclOperation::Describe, ResourceType::Topic, n))
            .filter_map(|n| topic_common::topic(broker, &meta, n))
            .map(|t| topic_entry(broker, &meta, &t))
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            // v10+ may name a topic by id; Kafka 4.x's AdminClient then
            // sends an empty name rather than null.
            .map(|w| match w.name {
                Some(name) if w.topic_id.is_nil() || !name.is_empty() => {
                    by_name(broker, &meta, &name, allow_create, authz)
                }
                _ => by_id(broker, &meta, w.topic_id, authz),
            })
            .collect(),
    };
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
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}

fn by_name(
    broker: &Broker,
    meta: &ClusterMetadata,
    name: &TopicName,
    allow_create: bool,
    authz: &Authz,
) -> MetadataResponseTopic {
    let name_str = name.as_str();
    let error = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(code)
            .with_topic_authorized_operations(i32::MIN)
    };
    // Whether the topic exists is not told to a caller who may not see it.
    if !authz.topic(AclOperation::Describe, name_str) {
        return error(ResponseError::TopicAuthorizationFailed.code());
    }
    if let Some(t) = topic_common::topic(broker, meta, name_str) {
        return topic_entry(broker, meta, &t);
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
    if let Err(code) = crate::topics::auto_create(broker, name_str) {
        return error(code);
    }
    let meta = broker.cluster.metadata();
    match topic_common::topic(broker, &meta, name_str) {
        Some(t) => topic_entry(broker, &meta, &t),
        None => error(ResponseError::LeaderNotAvailable.code()),
    }
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
