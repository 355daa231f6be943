//! Topic administration shared by CreateTopics, DeleteTopics,
//! CreatePartitions, topic config changes, Metadata and Produce
//! auto-creation, and the SQL gateway's DDL. Every change is a command in
//! the metadata log, committed through the Raft leader; the call returns
//! once this broker has applied it and its logs follow (reconcile.rs).
//!
//! Every change is awaited: no runtime thread is held while the metadata
//! group commits (a handler making one answers later).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use karnak_coordinator::metadata::placement::{PlacementError, assign_replicas};
use karnak_coordinator::metadata::{ConfigResource, MetadataCommand};
use karnak_storage::StorageError;
use tracing::warn;

use crate::broker::Broker;
use crate::cluster::ClusterError;
use crate::handlers::storage_error_code;

/// How long a metadata change may wait for the Raft leader.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("Replication factor: {factor} larger than available brokers: {brokers}.")]
    ReplicationFactor { factor: i32, brokers: usize },
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error("applying the change to this broker's logs: {0}")]
    Apply(String),
}

impl TopicError {
    pub fn code(&self) -> i16 {
        match self {
            TopicError::Storage(e) => storage_error_code(e),
            TopicError::Cluster(e) => e.code().code(),
            TopicError::ReplicationFactor { .. } => ResponseError::InvalidReplicationFactor.code(),
            TopicError::Placement(e) => e.code().code(),
            TopicError::Apply(_) => ResponseError::UnknownServerError.code(),
        }
    }
}

/// What CreateTopics (or auto-creation) asks for.
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i32,
    /// One replica list per partition, if the request gave them.
    pub assignments: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

/// Creates `name` with the broker's `num.partitions` and replication
/// factor, as Kafka's `auto.create.topics.enable` does. A concurrent
/// creation is not an error.
pub async fn auto_create(broker: &Arc<Broker>, name: &str) -> Result<(), i16> {
    let new = NewTopic {
        name: name.to_string(),
        partitions: broker.config.num_partitions,
        replication_factor: -1,
        assignments: None,
        configs: BTreeMap::new(),
    };
    match create(broker, new).await {
        Ok(()) => Ok(()),
        Err(TopicError::Cluster(ClusterError::Refused(
            karnak_coordinator::metadata::MetadataError::TopicExists(_),
        ))) => Ok(()),
        Err(e) => Err(e.code()),
    }
}

/// The replication factor a topic gets when the request leaves it to us.
fn default_replication_factor(broker: &Broker, live: usize) -> i32 {
    match broker.config.cluster.default_replication_factor {
        Some(rf) => i32::from(rf),
        None => live.clamp(1, 3) as i32,
    }
}

/// Replica lists for `count` new partitions from `first`, over the live brokers.
fn place(
    broker: &Broker,
    count: usize,
    factor: i32,
    first: usize,
) -> Result<Vec<Vec<i32>>, TopicError> {
    let live: Vec<(i32, Option<String>)> = broker
        .live_brokers(broker.inter_broker_listener())
        .into_iter()
        .map(|b| (b.id, b.rack))
        .collect();
    let factor = if factor == -1 {
        default_replication_factor(broker, live.len())
    } else {
        factor
    };
    if factor < 1 || factor as usize > live.len() {
        return Err(TopicError::ReplicationFactor {
            factor,
            brokers: live.len(),
        });
    }
    Ok(assign_replicas(
        &live,
        count,
        factor as usize,
        first,
        rand_seed(),
    )?)
}

fn rand_seed() -> u64 {
    u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    )
}

/// Commits `cmd` and makes this broker's logs follow before returning:
/// the metadata group awaited, the logs' changes on the blocking pool.
async fn commit(broker: &Arc<Broker>, cmd: MetadataCommand) -> Result<(), TopicError> {
    broker.cluster.propose(cmd, COMMIT_TIMEOUT).await?;
    let b = broker.clone();
    let failures = karnak_storage::blocking::spawn(move || b.reconciler.run(b.cluster.metadata()))
        .await
        .map_err(|e| TopicError::Apply(e.to_string()))?;
    first_failure(failures)
}

fn first_failure(failures: crate::cluster::reconcile::Failures) -> Result<(), TopicError> {
    match failures.into_iter().next() {
        Some((_, e)) => Err(e.into()),
        None => Ok(()),
    }
}

/// Creates a topic in the metadata; this broker's replicas of it (if it
/// holds any) exist when this returns.
pub async fn create(broker: &Arc<Broker>, t: NewTopic) -> Result<(), TopicError> {
    let name = t.name.clone();
    let cmd = creation(broker, t)?;
    logged(&name, commit(broker, cmd).await)
}

fn logged(name: &str, done: Result<(), TopicError>) -> Result<(), TopicError> {
    if let Err(e) = &done
        && !matches!(e, TopicError::Cluster(ClusterError::Refused(_)))
    {
        warn!(topic = %name, "topic creation failed: {e}");
    }
    done
}

/// Checks a new topic and places its replicas: the command that creates it.
fn creation(broker: &Broker, t: NewTopic) -> Result<MetadataCommand, TopicError> {
    karnak_storage::validate_topic_name(&t.name)?;
    if is_internal(&t.name) {
        return Err(StorageError::TopicAlreadyExists(t.name).into());
    }
    let assignments = match t.assignments {
        Some(a) => a,
        None => {
            karnak_storage::manager::check_partition_count(t.partitions)?;
            place(broker, t.partitions as usize, t.replication_factor, 0)?
        }
    };
    karnak_storage::manager::check_partition_count(assignments.len() as i32)?;
    broker.logs.defaults().with_overrides(&t.configs)?;
    Ok(MetadataCommand::CreateTopic {
        name: t.name,
        id: *uuid::Uuid::new_v4().as_bytes(),
        configs: t.configs,
        assignments,
    })
}

/// Deletes `name` everywhere; returns its id.
pub async fn delete(broker: &Arc<Broker>, name: &str) -> Result<[u8; 16], TopicError> {
    let id = broker
        .cluster
        .metadata()
        .topics
        .get(name)
        .map(|t| t.id)
        .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
    commit(
        broker,
        MetadataCommand::DeleteTopic {
            name: name.to_string(),
        },
    )
    .await?;
    Ok(id)
}

/// Grows `name` to `total` partitions, placed by us unless `assignments`
/// names the new partitions' replicas.
pub async fn add_partitions(
    broker: &Arc<Broker>,
    name: &str,
    total: i32,
    assignments: Option<Vec<Vec<i32>>>,
) -> Result<(), TopicError> {
    let meta = broker.cluster.metadata();
    let t = meta
        .topics
        .get(name)
        .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
    let current = t.partitions.len() as i32;
    if total <= current {
        return Err(StorageError::PartitionsNotIncreased {
            topic: name.to_string(),
            current,
            requested: total,
        }
        .into());
    }
    karnak_storage::manager::check_partition_count(total)?;
    let assignments = match assignments {
        Some(a) => a,
        None => {
            let factor = t.partitions[0].replicas.len() as i32;
            place(broker, (total - current) as usize, factor, current as usize)?
        }
    };
    commit(
        broker,
        MetadataCommand::CreatePartitions {
            name: name.to_string(),
            assignments,
        },
    )
    .await
}

/// Replaces a topic's config overrides with `configs` (validated first).
pub async fn set_configs(
    broker: &Arc<Broker>,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<(), TopicError> {
    broker.logs.defaults().with_overrides(&configs)?;
    let meta = broker.cluster.metadata();
    let old = &meta
        .topics
        .get(name)
        .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?
        .configs;
    let mut changes: BTreeMap<String, Option<String>> = old
        .keys()
        .filter(|k| !configs.contains_key(*k))
        .map(|k| (k.clone(), None))
        .collect();
    changes.extend(configs.into_iter().map(|(k, v)| (k, Some(v))));
    commit(
        broker,
        MetadataCommand::AlterConfigs {
            resource: ConfigResource::Topic(name.to_string()),
            changes,
        },
    )
    .await
}

/// Topics the broker keeps for itself (the coordinator shards' logs).
pub fn is_internal(name: &str) -> bool {
    name == karnak_coordinator::COORDINATOR_TOPIC
}

/// On a metadata group this start created, the topics already on disk
/// become the cluster's (with their ids and configs, replicas here only).
pub async fn adopt_strays(broker: &Broker) -> anyhow::Result<()> {
    for t in broker.reconciler.strays(&broker.cluster.metadata()) {
        let cmd = MetadataCommand::CreateTopic {
            name: t.meta.name.clone(),
            id: t.meta.id,
            configs: t.meta.configs.clone(),
            assignments: vec![vec![broker.node_id()]; t.meta.partitions as usize],
        };
        broker
            .cluster
            .propose(cmd, COMMIT_TIMEOUT)
            .await
            .map_err(|e| {
                anyhow::anyhow!("adopting topic {} into the metadata: {e}", t.meta.name)
            })?;
        tracing::info!(topic = %t.meta.name, "adopted a topic from before the metadata log");
    }
    Ok(())
}
