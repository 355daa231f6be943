//! Topic creation shared by CreateTopics, Metadata and Produce auto-creation.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use karnak_storage::{StorageError, Topic};
use tracing::warn;

use crate::broker::Broker;
use crate::handlers::storage_error_code;

/// Creates `name` with the broker's `num.partitions`, as Kafka's
/// `auto.create.topics.enable` does. A concurrent creation is not an error.
pub fn auto_create(broker: &Broker, name: &str) -> Result<Arc<Topic>, i16> {
    match create(broker, name, broker.config.num_partitions, BTreeMap::new()) {
        Ok(t) => Ok(t),
        Err(StorageError::TopicAlreadyExists(_)) => broker
            .logs
            .topic(name)
            .ok_or(ResponseError::UnknownTopicOrPartition.code()),
        Err(e) => Err(storage_error_code(&e)),
    }
}

pub fn create(
    broker: &Broker,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<Arc<Topic>, StorageError> {
    match broker.logs.create_topic(name, partitions, configs) {
        Ok(topic) => Ok(topic),
        Err(e) => {
            if !matches!(
                e,
                StorageError::TopicAlreadyExists(_) | StorageError::InvalidTopic { .. }
            ) {
                warn!(topic = name, "topic creation failed: {e}");
            }
            Err(e)
        }
    }
}

/// Topics the broker keeps for itself (the coordinator shards' logs).
pub fn is_internal(name: &str) -> bool {
    name == karnak_coordinator::COORDINATOR_TOPIC
}
