//! Topics in the metadata: creation with replica assignments the proposer
//! decided, new partitions, and config changes (topic, cluster default,
//! per broker), with the checks that refuse a bad command before it
//! changes anything.

use std::collections::{BTreeMap, BTreeSet};

use super::command::{ConfigResource, MetadataReply};
use super::elr::{MIN_INSYNC_REPLICAS, UNCLEAN_LEADER_ELECTION};
use super::state::{ClusterMetadata, MetadataError, PartitionState, TopicRecord};

/// Most partitions one topic may have, and most replicas one may list:
/// a command is validated before it changes anything.
const MAX_PARTITIONS: usize = 1 << 20;
const MAX_REPLICAS: usize = 1 << 10;

type Applied = Result<MetadataReply, MetadataError>;

impl ClusterMetadata {
    pub(super) fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<(), MetadataError> {
        if assignments.is_empty() || assignments.len() > MAX_PARTITIONS {
            return Err(MetadataError::InvalidPartitions(format!(
                "{} partitions",
                assignments.len()
            )));
        }
        let width = assignments[0].len();
        for (i, replicas) in assignments.iter().enumerate() {
            self.check_replicas(replicas, &format!("partition {i}"))?;
            if replicas.len() != width {
                return Err(MetadataError::InvalidAssignment(
                    "every partition needs the same number of replicas".into(),
                ));
            }
            if !replicas.iter().any(|b| self.is_live(*b)) {
                return Err(MetadataError::InvalidAssignment(format!(
                    "partition {i} has no live replica"
                )));
            }
        }
        Ok(())
    }

    /// One replica list (`what` names it in the refusal): 1 to
    /// MAX_REPLICAS registered brokers, none twice.
    pub(super) fn check_replicas(&self, replicas: &[i32], what: &str) -> Result<(), MetadataError> {
        if replicas.is_empty() || replicas.len() > MAX_REPLICAS {
            return Err(MetadataError::InvalidAssignment(format!(
                "{what} has {} replicas",
                replicas.len()
            )));
        }
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if distinct.len() != replicas.len() {
            return Err(MetadataError::InvalidAssignment(format!(
                "{what} lists a broker twice"
            )));
        }
        if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
            return Err(MetadataError::InvalidAssignment(format!(
                "{what} names broker {b}, which is not registered"
            )));
        }
        Ok(())
    }

    /// A new partition: in sync are its live replicas, led by the first.
    fn new_partition(&self, replicas: &[i32]) -> PartitionState {
        let isr: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|b| self.is_live(*b))
            .collect();
        PartitionState {
            replicas: replicas.to_vec(),
            leader: isr[0],
            isr,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
            elr: Vec::new(),
            last_known_elr: Vec::new(),
        }
    }

    pub(super) fn create_topic(
        &mut self,
        name: &str,
        id: [u8; 16],
        configs: &BTreeMap<String, String>,
        assignments: &[Vec<i32>],
    ) -> Applied {
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        if self.topics.values().any(|t| t.id == id) {
            return Err(MetadataError::TopicIdExists(name.to_string()));
        }
        self.check_assignments(assignments)?;
        let partitions = assignments.iter().map(|r| self.new_partition(r)).collect();
        self.topics.insert(
            name.to_string(),
            TopicRecord {
                id,
                configs: configs.clone(),
                partitions,
            },
        );
        Ok(MetadataReply::Done)
    }

    pub(super) fn create_partitions(&mut self, name: &str, assignments: &[Vec<i32>]) -> Applied {
        let t = self
            .topics
            .get(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.check_assignments(assignments)?;
        let width = t.partitions[0].replicas.len();
        if assignments[0].len() != width {
            return Err(MetadataError::InvalidAssignment(format!(
                "the topic's partitions have {width} replicas"
            )));
        }
        if t.partitions.len() + assignments.len() > MAX_PARTITIONS {
            return Err(MetadataError::InvalidPartitions(
                "too many partitions".into(),
            ));
        }
        let new: Vec<PartitionState> = assignments.iter().map(|r| self.new_partition(r)).collect();
        if let Some(t) = self.topics.get_mut(name) {
            t.partitions.extend(new);
        }
        Ok(MetadataReply::Done)
    }

    pub(super) fn alter_configs(
        &mut self,
        resource: &ConfigResource,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Applied {
        let target = match resource {
            ConfigResource::Topic(name) => {
                &mut self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?
                    .configs
            }
            ConfigResource::Broker(None) => &mut self.default_broker_configs,
            ConfigResource::Broker(Some(id)) => {
                self.broker(*id)?;
                self.broker_configs.entry(*id).or_default()
            }
        };
        let (mut min_isr_changed, mut unclean_changed) = (false, false);
        for (k, v) in changes {
            let old = match v {
                Some(v) => target.insert(k.clone(), v.clone()),
                None => target.remove(k),
            };
            let changed = old.as_ref() != v.as_ref();
            min_isr_changed |= k == MIN_INSYNC_REPLICAS && changed;
            unclean_changed |= k == UNCLEAN_LEADER_ELECTION && changed;
        }
        let topic = match resource {
            ConfigResource::Topic(name) => Some(name.as_str()),
            ConfigResource::Broker(None) => None,
            ConfigResource::Broker(Some(_)) => return Ok(MetadataReply::Done),
        };
        if min_isr_changed {
            self.clear_elrs(topic);
        }
        if unclean_changed {
            // Turning unclean elections on elects at once, as Kafka does.
            self.elect_leaderless(topic);
        }
        Ok(MetadataReply::Done)
    }
}
