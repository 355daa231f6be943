//! The metadata state and how each command changes it, with the rules of
//! Kafka's KRaft controller (its ReplicationControlManager): the in-sync set
//! never becomes empty, a fenced broker leads nothing, every leader change
//! bumps the leader epoch and every change of a partition its partition
//! epoch, and an in-sync set change is accepted only from the current
//! leader at the current epochs.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

use super::command::{
    AlterPartition, ControllerDefaults, ElectionKind, MetadataCommand, MetadataReply,
};
use super::elr::ElectionPolicy;

/// Kafka's "no leader" (-1), shown in Metadata as LEADER_NOT_AVAILABLE.
pub const NO_LEADER: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// Changes at every start: tells a restart from a repeated registration.
    pub incarnation: [u8; 16],
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// During a reassignment: the target replicas, then those being removed.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// A reassignment under way (reassign.rs): replicas copying the log
    /// to join, and replicas to leave once they have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
    /// Replicas out of sync that hold everything below the high watermark
    /// and may lead cleanly (KIP-966; elr.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<i32>,
    /// Replicas that left the ELR after an unclean shutdown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_known_elr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: [u8; 16],
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataError {
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("{0}-{1} does not exist")]
    UnknownPartition(String, i32),
    #[error("Topic '{0}' already exists.")]
    TopicExists(String),
    #[error("topic id {0:?} is already used")]
    TopicIdExists(String),
    #[error("invalid replica assignment: {0}")]
    InvalidAssignment(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("leader epoch {got} is not the current {current}")]
    FencedLeaderEpoch { got: i32, current: i32 },
    #[error("partition epoch {got} is not the current {current}")]
    InvalidUpdateVersion { got: i32, current: i32 },
    #[error("broker {0} is not the leader")]
    NotLeader(i32),
    #[error("replica {0} is fenced or not registered and cannot join the in-sync set")]
    IneligibleReplica(i32),
    #[error("the election is not needed: {0}")]
    ElectionNotNeeded(String),
    #[error("the preferred leader {0} is not live and in sync")]
    PreferredLeaderNotAvailable(i32),
    #[error("no live replica can lead")]
    EligibleLeadersNotAvailable,
    #[error("sequencer {0:?} has no ids left")]
    IdsExhausted(String),
    #[error("no partition reassignment is in progress")]
    NoReassignment,
}

impl MetadataError {
    /// The Kafka error a client or peer is answered with.
    pub fn code(&self) -> ResponseError {
        use MetadataError::*;
        match self {
            UnknownBroker(_) => ResponseError::BrokerIdNotRegistered,
            UnknownTopic(_) | UnknownPartition(..) => ResponseError::UnknownTopicOrPartition,
            TopicExists(_) | TopicIdExists(_) => ResponseError::TopicAlreadyExists,
            InvalidAssignment(_) => ResponseError::InvalidReplicaAssignment,
            InvalidPartitions(_) => ResponseError::InvalidPartitions,
            InvalidRequest(_) => ResponseError::InvalidRequest,
            FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            InvalidUpdateVersion { .. } => ResponseError::InvalidUpdateVersion,
            NotLeader(_) => ResponseError::NotLeaderOrFollower,
            IneligibleReplica(_) => ResponseError::IneligibleReplica,
            ElectionNotNeeded(_) => ResponseError::ElectionNotNeeded,
            PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
            EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable,
            IdsExhausted(_) => ResponseError::UnknownServerError,
            NoReassignment => ResponseError::NoReassignmentInProgress,
        }
    }
}

/// Everything the metadata log has decided, as of its last applied entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// Dynamic broker configs, cluster-wide defaults and per broker.
    pub default_broker_configs: BTreeMap<String, String>,
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// Per sequencer, the first id no lease has covered.
    pub id_leases: BTreeMap<String, u64>,
    /// The flags of the controller that last set them: election rules
    /// for topics without their own or a cluster default config.
    #[serde(default)]
    pub controller_defaults: ControllerDefaults,
    /// SCRAM credentials: user -> mechanism -> credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<String, super::scram::ScramRecord>>,
    #[serde(default)]
    pub acls: super::acls::AclStore,
    #[serde(default)]
    pub quotas: super::quotas::QuotaStore,
    /// The metadata log index this state is as of (0: none applied). A
    /// broker's lease on its roles counts only once it has followed the
    /// metadata to the index the controller answered its heartbeat with.
    #[serde(default)]
    pub applied_index: u64,
}

type Applied = Result<MetadataReply, MetadataError>;

impl ClusterMetadata {
    /// Applies one command. A refused command changes nothing.
    pub fn apply(&mut self, cmd: &MetadataCommand) -> Applied {
        use MetadataCommand::*;
        match cmd {
            RegisterBroker {
                id,
                incarnation,
                listeners,
                rack,
                unclean_shutdown,
            } => {
                self.register(*id, *incarnation, listeners, rack)?;
                if *unclean_shutdown {
                    self.drop_unclean_everywhere(*id);
                }
                Ok(MetadataReply::Done)
            }
            SetControllerDefaults(d) => {
                if d.min_insync_replicas < 1 {
                    return Err(MetadataError::InvalidRequest(format!(
                        "min.insync.replicas {}",
                        d.min_insync_replicas
                    )));
                }
                self.set_controller_defaults(d);
                Ok(MetadataReply::Done)
            }
            FenceBroker { id } => {
                self.broker(*id)?;
                self.fence(*id);
                Ok(MetadataReply::Done)
            }
            UnfenceBroker { id } => self.unfence(*id),
            CreateTopic {
                name,
                id,
                configs,
                assignments,
            } => self.create_topic(name, *id, configs, assignments),
            DeleteTopic { name } => self
                .topics
                .remove(name)
                .map(|_| MetadataReply::Done)
                .ok_or_else(|| MetadataError::UnknownTopic(name.clone())),
            CreatePartitions { name, assignments } => self.create_partitions(name, assignments),
            AlterConfigs { resource, changes } => self.alter_configs(resource, changes),
            AlterPartition(a) => self.alter_partition(a),
            ElectLeader {
                topic,
                partition,
                kind,
            } => self.elect(topic, *partition, *kind),
            AlterReassignment {
                topic,
                partition,
                target,
            } => self.reassign(topic, *partition, target.as_deref()),
            AllocateIdBlock {
                sequencer,
                size,
                from,
            } => {
                if *size == 0 {
                    return Err(MetadataError::InvalidRequest("an empty id block".into()));
                }
                let first = self
                    .id_leases
                    .get(sequencer)
                    .copied()
                    .unwrap_or(0)
                    .max(*from);
                let end = first
                    .checked_add(*size)
                    .ok_or_else(|| MetadataError::IdsExhausted(sequencer.clone()))?;
                self.id_leases.insert(sequencer.clone(), end);
                Ok(MetadataReply::IdBlock { first })
            }
            AlterScramCredentials { upserts, deletions } => {
                self.alter_scram(upserts, deletions);
                Ok(MetadataReply::Done)
            }
            CreateAcls { bindings } => {
                for b in bindings {
                    self.acls.insert(b.clone());
                }
                Ok(MetadataReply::Done)
            }
            AlterClientQuotas { alterations } => {
                self.quotas.alter(alterations);
                Ok(MetadataReply::Done)
            }
            // Each filter answers every binding it matches (as Kafka's
            // controller), even one an earlier filter matched too.
            DeleteAcls { filters } => {
                let matched: Vec<_> = filters.iter().map(|f| self.acls.matching(f)).collect();
                for f in filters {
                    self.acls.remove_matching(f);
                }
                Ok(MetadataReply::AclsDeleted(matched))
            }
        }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
    }

    /// Registered and not fenced: may lead and be in sync.
    pub fn is_live(&self, broker: i32) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    pub(super) fn live_brokers(&self) -> BTreeSet<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    pub(super) fn broker(&self, id: i32) -> Result<&BrokerRegistration, MetadataError> {
        self.brokers
            .get(&id)
            .ok_or(MetadataError::UnknownBroker(id))
    }

    pub(super) fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, MetadataError> {
        let unknown = || MetadataError::UnknownPartition(topic.to_string(), partition);
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        let p = usize::try_from(partition).map_err(|_| unknown())?;
        t.partitions.get_mut(p).ok_or_else(unknown)
    }

    fn register(
        &mut self,
        id: i32,
        incarnation: [u8; 16],
        listeners: &[Listener],
        rack: &Option<String>,
    ) -> Applied {
        if id < 0 {
            return Err(MetadataError::InvalidRequest(format!("broker id {id}")));
        }
        if let Some(b) = self.brokers.get(&id)
            && b.incarnation == incarnation
        {
            return Ok(MetadataReply::Done); // a repeated registration
        }
        // A new incarnation: the old process is gone, whatever it led.
        if self.brokers.contains_key(&id) {
            self.fence(id);
        }
        self.brokers.insert(
            id,
            BrokerRegistration {
                id,
                incarnation,
                listeners: listeners.to_vec(),
                rack: rack.clone(),
                fenced: true,
            },
        );
        Ok(MetadataReply::Done)
    }

    /// Takes `id` out of every leadership and in-sync set. The last member
    /// of an in-sync set stays in it (the set never empties, so a clean
    /// leader can come back); its partition is led by an eligible replica
    /// (elr.rs) if one is live, else left without a leader.
    fn fence(&mut self, id: i32) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = true;
        }
        let live = self.live_brokers();
        let (cluster, defaults) = (&self.default_broker_configs, &self.controller_defaults);
        for t in self.topics.values_mut() {
            let policy = ElectionPolicy::of(&t.configs, cluster, defaults);
            for p in &mut t.partitions {
                if !p.isr.contains(&id) {
                    continue;
                }
                let old_isr = p.isr.clone();
                let rest: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id).collect();
                let old_leader = p.leader;
                if !rest.is_empty() {
                    p.isr = rest;
                }
                if p.leader == id {
                    p.leader = first_of(&p.replicas, |r| p.isr.contains(&r) && live.contains(&r));
                }
                p.finish_reassignment(&live);
                p.track_elr(&old_isr, policy.min_isr);
                p.elect_if_leaderless(&live, policy);
                p.bump(old_leader);
            }
        }
    }

    fn unfence(&mut self, id: i32) -> Applied {
        let b = self
            .brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        if !b.fenced {
            return Ok(MetadataReply::Done);
        }
        b.fenced = false;
        // Leaderless partitions may have a leader again: it, if in sync or
        // eligible, or another the policy allows.
        self.elect_leaderless(None);
        Ok(MetadataReply::Done)
    }

    /// Refuses a command the current state would refuse, without changing
    /// anything: the controller answers such a proposal at once instead of
    /// logging it (a leader whose metadata lags retries stale in-sync set
    /// changes; each would otherwise become a metadata log entry).
    pub fn precheck(&self, cmd: &MetadataCommand) -> Result<(), MetadataError> {
        match cmd {
            MetadataCommand::AlterPartition(a) => {
                let p = self
                    .partition(&a.topic, a.partition)
                    .ok_or_else(|| MetadataError::UnknownPartition(a.topic.clone(), a.partition))?;
                self.check_alter(p, a)
            }
            _ => Ok(()),
        }
    }

    fn check_alter(&self, p: &PartitionState, a: &AlterPartition) -> Result<(), MetadataError> {
        if a.leader_epoch != p.leader_epoch {
            return Err(MetadataError::FencedLeaderEpoch {
                got: a.leader_epoch,
                current: p.leader_epoch,
            });
        }
        if a.leader != p.leader {
            return Err(MetadataError::NotLeader(a.leader));
        }
        if a.partition_epoch != p.partition_epoch {
            return Err(MetadataError::InvalidUpdateVersion {
                got: a.partition_epoch,
                current: p.partition_epoch,
            });
        }
        let distinct: BTreeSet<i32> = a.isr.iter().copied().collect();
        if distinct.len() != a.isr.len()
            || !a.isr.contains(&a.leader)
            || a.isr.iter().any(|r| !p.replicas.contains(r))
        {
            return Err(MetadataError::InvalidRequest(format!(
                "in-sync set {:?} must hold the leader and only replicas of {:?}",
                a.isr, p.replicas
            )));
        }
        // Only live brokers may join (a shrink may keep anyone already in).
        if let Some(r) = a
            .isr
            .iter()
            .find(|r| !p.isr.contains(r) && !self.is_live(**r))
        {
            return Err(MetadataError::IneligibleReplica(*r));
        }
        Ok(())
    }

    fn alter_partition(&mut self, a: &AlterPartition) -> Applied {
        let live = self.live_brokers();
        let current = self
            .partition(&a.topic, a.partition)
            .ok_or_else(|| MetadataError::UnknownPartition(a.topic.clone(), a.partition))?;
        self.check_alter(current, a)?;
        let min_isr = self.policy_of(&a.topic).min_isr;
        let p = self.partition_mut(&a.topic, a.partition)?;
        let old_leader = p.leader;
        let old_isr = std::mem::replace(&mut p.isr, a.isr.clone());
        // The last adding replica in sync completes a reassignment.
        p.finish_reassignment(&live);
        p.track_elr(&old_isr, min_isr);
        p.bump(old_leader);
        Ok(p.reply())
    }

    fn elect(&mut self, topic: &str, partition: i32, kind: ElectionKind) -> Applied {
        let live = self.live_brokers();
        let policy = self.policy_of(topic);
        let p = self.partition_mut(topic, partition)?;
        let old = p.leader;
        match kind {
            ElectionKind::Preferred => {
                let preferred = p.replicas[0];
                if old == preferred {
                    return Err(MetadataError::ElectionNotNeeded(format!(
                        "{preferred} already leads"
                    )));
                }
                if !(p.isr.contains(&preferred) && live.contains(&preferred)) {
                    return Err(MetadataError::PreferredLeaderNotAvailable(preferred));
                }
                p.leader = preferred;
            }
            ElectionKind::Unclean => {
                if old != NO_LEADER {
                    return Err(MetadataError::ElectionNotNeeded(format!("{old} leads")));
                }
                // A clean choice first: in sync, then eligible (KIP-966).
                let policy = ElectionPolicy {
                    unclean: true,
                    ..policy
                };
                if !p.elect_if_leaderless(&live, policy) {
                    return Err(MetadataError::EligibleLeadersNotAvailable);
                }
            }
        }
        p.bump(old);
        Ok(p.reply())
    }
}

impl PartitionState {
    /// Every change bumps the partition epoch; a new leader, the leader epoch.
    pub(super) fn bump(&mut self, old_leader: i32) {
        self.partition_epoch += 1;
        if self.leader != old_leader {
            self.leader_epoch += 1;
        }
    }

    fn reply(&self) -> MetadataReply {
        MetadataReply::Partition {
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr: self.isr.clone(),
        }
    }
}

/// The first replica (in assignment order, the preference) that `ok` takes.
fn first_of(replicas: &[i32], ok: impl Fn(i32) -> bool) -> i32 {
    replicas
        .iter()
        .copied()
        .find(|r| ok(*r))
        .unwrap_or(NO_LEADER)
}
