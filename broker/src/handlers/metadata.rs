//! Metadata (key 3): brokers, topics and partition leaders. On one node every
//! partition is led by this node with itself as the only replica.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use karnak_storage::Topic;
use uuid::Uuid;

use crate::broker::Broker;
use crate::handlers::{leadership, storage_error_code};
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(broker: &Arc<Broker>, body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let request: MetadataRequest = decode(body, "Metadata", version)?;
    // Before v4 there is no flag and Kafka auto-creates; v0 sends [] for "all topics".
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let requested = match request.topics {
        Some(t) if version == 0 && t.is_empty() => None,
        other => other,
    };
    let topics = match requested {
        None => broker
            .logs
            .topics()
            .iter()
            .map(|t| topic_entry(broker, t, version))
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            // v10+ may name a topic by id; Kafka 4.x's AdminClient then
            // sends an empty name rather than null.
            .map(|w| match w.name {
                Some(name) if w.topic_id.is_nil() || !name.is_empty() => {
                    by_name(broker, &name, allow_create, version)
                }
                _ => by_id(broker, w.topic_id, version),
            })
            .collect(),
    };
    let brokers = broker
        .live_brokers()
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
        .with_cluster_authorized_operations(i32::MIN)
        .with_topics(topics);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}

fn by_name(
    broker: &Broker,
    name: &TopicName,
    allow_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    let name_str = name.as_str();
    if let Some(topic) = broker.logs.topic(name_str) {
        return topic_entry(broker, &topic, version);
    }
    let error = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(code)
            .with_topic_authorized_operations(i32::MIN)
    };
    if let Err(e) = karnak_storage::validate_topic_name(name_str) {
        return error(storage_error_code(&e));
    }
    if !(allow_create && broker.config.auto_create_topics) {
        return error(ResponseError::UnknownTopicOrPartition.code());
    }
    match crate::topics::auto_create(broker, name_str) {
        Ok(topic) => topic_entry(broker, &topic, version),
        Err(code) => error(code),
    }
}

fn by_id(broker: &Broker, id: Uuid, version: i16) -> MetadataResponseTopic {
    match broker.logs.topic_by_id(id.as_bytes()) {
        Some(topic) => topic_entry(broker, &topic, version),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_authorized_operations(i32::MIN),
    }
}

fn topic_entry(broker: &Broker, topic: &Topic, _version: i16) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id());
    let partitions = topic
        .logs
        .iter()
        .map(|log| {
            let (error, leader, offline) = leadership(log, node);
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(log.partition())
                .with_leader_id(leader)
                .with_leader_epoch(log.latest_epoch())
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.meta.name.clone(),
        ))))
        .with_topic_id(Uuid::from_bytes(topic.meta.id))
        .with_is_internal(crate::topics::is_internal(&topic.meta.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}
