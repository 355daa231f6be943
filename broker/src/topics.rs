//! Topic creation shared by CreateTopics, Metadata and Produce auto-creation.

use std::collections::BTreeMap;
use std::sync::Arc;

use karnak_storage::{StorageError, Topic};
use tracing::warn;

use crate::broker::Broker;
use crate::handlers::storage_error_code;

/// Creates `name` with the broker's `num.partitions`, as Kafka's
/// `auto.create.topics.enable` does. A concurrent creation is not an error.
pub fn auto_create(broker: &Broker, name: &str) -> Result<Arc<Topic>, i16> {
    match create(broker, name, broker.config.num_partitions, BTreeMap::new()) {
        Ok(t) => Ok(t),
        Err(StorageError::TopicAlreadyExists(_)) => broker.logs.topic(name).ok_or(3),
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

/// Kafka's config sources, as DescribeConfigs and CreateTopics report them.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One config as Kafka describes it.
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    /// Kafka's ConfigType: 1 boolean, 2 string, 5 long, 7 list.
    pub config_type: i8,
}

fn config_type(name: &str, value: &str) -> i8 {
    if name == "cleanup.policy" || name.ends_with(".replicas") {
        7
    } else if value == "true" || value == "false" {
        1
    } else if value.parse::<i64>().is_ok() {
        5
    } else {
        2
    }
}

/// Every topic config with its effective value; overrides are marked as topic-level.
pub fn topic_configs(
    config: &karnak_storage::LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    config
        .describe()
        .into_iter()
        .map(|(name, value)| ConfigEntry {
            source: if overrides.contains_key(&name) {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            },
            config_type: config_type(&name, &value),
            read_only: false,
            name,
            value,
        })
        .collect()
}

/// The broker settings a Kafka operator looks for, under Kafka's names.
pub fn broker_configs(broker: &Broker) -> Vec<ConfigEntry> {
    let c = &broker.config;
    let d = &c.log_defaults;
    let never = |v: Option<u64>| v.map_or(i64::MAX.to_string(), |v| v.to_string());
    [
        ("node.id", c.node_id.to_string()),
        ("log.dirs", c.data_dir.display().to_string()),
        ("listeners", format!("PLAINTEXT://{}", c.kafka_addr)),
        (
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}:{}",
                broker.advertised.0, broker.advertised.1
            ),
        ),
        ("num.partitions", c.num_partitions.to_string()),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        (
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
        ),
        ("log.segment.bytes", d.segment_bytes.to_string()),
        ("log.roll.ms", d.segment_ms.to_string()),
        ("log.flush.interval.messages", never(d.flush_messages)),
        ("log.flush.interval.ms", never(d.flush_ms)),
        (
            "log.message.timestamp.type",
            format!("{:?}", d.message_timestamp_type),
        ),
    ]
    .into_iter()
    .map(|(name, value)| ConfigEntry {
        config_type: config_type(name, &value),
        name: name.to_string(),
        value,
        source: SOURCE_STATIC_BROKER,
        read_only: true,
    })
    .collect()
}

/// Topics the broker keeps for itself (the coordinator shards' logs).
pub fn is_internal(name: &str) -> bool {
    name == karnak_coordinator::COORDINATOR_TOPIC
}
