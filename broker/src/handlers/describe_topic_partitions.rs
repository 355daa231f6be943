//! DescribeTopicPartitions (key 75, KIP-966): what Kafka 4.x's AdminClient
//! asks for `describeTopics`, paged by a (topic, partition) cursor so a
//! topic with many partitions does not need one huge response.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::authz::{AclOperation, Authz, ResourceType, TOPIC_OPERATIONS};
use crate::broker::Broker;
use crate::handlers::topic_common;
use crate::response::{HandlerError, Reply, Response, decode};

/// Kafka's `max.request.partition.size.limit` default: the most partitions
/// one response carries, whatever the client asks for.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: DescribeTopicPartitionsRequest = decode(body, "DescribeTopicPartitions", version)?;
    let meta = broker.cluster.metadata();
    let mut names: Vec<String> = if request.topics.is_empty() {
        // All topics: those the caller may DESCRIBE.
        let mut all = topic_common::topic_names(broker, &meta);
        all.retain(|n| authz.allows(AclOperation::Describe, ResourceType::Topic, n));
        all
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.as_str().to_string())
            .collect()
    };
    names.sort_unstable();
    names.dedup();
    let (cursor_topic, mut first_partition) = match &request.cursor {
        Some(c) => (
            Some(c.topic_name.as_str().to_string()),
            c.partition_index.max(0),
        ),
        None => (None, 0),
    };
    if let Some(c) = &cursor_topic {
        if !names.contains(c) {
            // Kafka: the cursor must name one of the requested topics.
            let response = DescribeTopicPartitionsResponse::default().with_topics(vec![
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(c.clone()))))
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_topic_authorized_operations(i32::MIN),
            ]);
            return Ok(Reply::Ready(Response::encode(&response, version, 0)?));
        }
        names.retain(|n| n >= c);
    }
    let limit = match request.response_partition_limit {
        n if n <= 0 => MAX_PARTITIONS_PER_RESPONSE,
        n => n.min(MAX_PARTITIONS_PER_RESPONSE),
    };
    let mut budget = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        let topic_name = TopicName(StrBytes::from_string(name.clone()));
        if !authz.topic(AclOperation::Describe, &name) {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name))
                    .with_topic_id(Uuid::nil())
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_topic_authorized_operations(i32::MIN),
            );
            first_partition = 0;
            continue;
        }
        let Some(topic) = topic_common::topic(broker, &meta, &name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name))
                    .with_topic_id(Uuid::nil())
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_topic_authorized_operations(i32::MIN),
            );
            first_partition = 0;
            continue;
        };
        if budget == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name)
                    .with_partition_index(0),
            );
            break;
        }
        let count = topic.partitions;
        let end = count.min(first_partition.saturating_add(budget));
        // A cursor past the last partition yields none of this topic.
        let partitions: Vec<_> = (first_partition.min(end)..end)
            .map(|i| {
                let p = topic_common::partition(broker, &meta, &name, i);
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(p.error)
                    .with_partition_index(p.index)
                    .with_leader_id(p.leader)
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replicas)
                    .with_isr_nodes(p.isr)
                    .with_eligible_leader_replicas(Some(p.elr))
                    .with_last_known_elr(Some(p.last_known_elr))
                    .with_offline_replicas(p.offline)
            })
            .collect();
        budget -= partitions.len() as i32;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name.clone()))
                .with_topic_id(Uuid::from_bytes(topic.id))
                .with_is_internal(topic.internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(authz.authorized_operations(
                    ResourceType::Topic,
                    &name,
                    TOPIC_OPERATIONS,
                )),
        );
        if end < count {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name)
                    .with_partition_index(end),
            );
            break;
        }
        first_partition = 0;
    }
    let response = DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}
