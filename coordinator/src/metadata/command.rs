//! What the metadata log records: one command per change, as proposed to
//! the Raft leader and applied by every voter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::Listener;

/// A config change's target (Kafka's ConfigResource for the types the
/// metadata log stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// `None`: the cluster-wide default (`kafka-configs --entity-default`).
    Broker(Option<i32>),
}

/// How ElectLeaders picks (Kafka's ElectionType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionKind {
    /// The first replica, if it is live and in sync.
    Preferred,
    /// Any live replica when no in-sync one is: may lose acknowledged data.
    Unclean,
}

/// The controller's flags that decide elections where neither the topic
/// nor the cluster's dynamic configs do (`--min-insync-replicas`,
/// `--unclean-leader-election`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerDefaults {
    pub min_insync_replicas: i32,
    #[serde(default)]
    pub unclean_leader_election: bool,
}

impl Default for ControllerDefaults {
    fn default() -> Self {
        ControllerDefaults {
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// A partition leader's request to change its in-sync set (Kafka's
/// AlterPartition): accepted only against the epochs it was based on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// A broker starts (or restarts: a new incarnation). It stays fenced
    /// until it has caught up and heartbeats ([`Self::UnfenceBroker`]).
    RegisterBroker {
        id: i32,
        incarnation: [u8; 16],
        listeners: Vec<Listener>,
        rack: Option<String>,
        /// Its logs were not all closed cleanly last time: it leaves every
        /// eligible-leader set (KIP-966).
        #[serde(default)]
        unclean_shutdown: bool,
    },
    /// The controller's own defaults, recorded so that every voter applies
    /// the election rules alike.
    SetControllerDefaults(ControllerDefaults),
    /// Missed heartbeats or a controlled shutdown: it leads nothing and
    /// leaves every in-sync set it can leave.
    FenceBroker {
        id: i32,
    },
    UnfenceBroker {
        id: i32,
    },
    /// Assignments are decided by the proposer (one replica list per
    /// partition); the first live replica of each leads.
    CreateTopic {
        name: String,
        id: [u8; 16],
        configs: BTreeMap<String, String>,
        assignments: Vec<Vec<i32>>,
    },
    DeleteTopic {
        name: String,
    },
    /// New partitions appended, one replica list each.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
    },
    /// Set (`Some`) or remove (`None`) config keys.
    AlterConfigs {
        resource: ConfigResource,
        changes: BTreeMap<String, Option<String>>,
    },
    AlterPartition(AlterPartition),
    ElectLeader {
        topic: String,
        partition: i32,
        kind: ElectionKind,
    },
    /// Moves a partition to `target` replicas, copying first (KIP-455);
    /// `None` cancels the reassignment under way.
    AlterReassignment {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Leases the next `size` ids of `sequencer`, none below `from`; the
    /// reply carries the first. Ids below the lease end are never handed
    /// out again. (`from` lets a sequencer that leased elsewhere before,
    /// a single node's file, continue above what it gave.)
    AllocateIdBlock {
        sequencer: String,
        size: u64,
        #[serde(default)]
        from: u64,
    },
    /// AlterUserScramCredentials: (user, mechanism) pairs deleted, then
    /// credentials set.
    AlterScramCredentials {
        upserts: Vec<super::scram::ScramUpsert>,
        deletions: Vec<(String, String)>,
    },
    /// CreateAcls: bindings added (one already there is kept as it is).
    CreateAcls {
        bindings: Vec<super::acls::AclBinding>,
    },
    /// AlterClientQuotas: validated changes of entities' quotas.
    AlterClientQuotas {
        alterations: Vec<super::quotas::QuotaAlteration>,
    },
    /// DeleteAcls: each filter removes what it matches when applied; the
    /// reply lists what each removed.
    DeleteAcls {
        filters: Vec<super::acls::AclFilter>,
    },
}

/// What applying a command answers the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataReply {
    Done,
    /// The partition's state after an AlterPartition or election.
    Partition {
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    IdBlock {
        first: u64,
    },
    /// Per DeleteAcls filter, the bindings it removed.
    AclsDeleted(Vec<Vec<super::acls::AclBinding>>),
}
