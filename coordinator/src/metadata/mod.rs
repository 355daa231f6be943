//! The cluster's metadata: the state machine that the one openraft group
//! replicates (issue 18). It holds what KRaft's metadata log holds in
//! Kafka: registered brokers and whether they are fenced, topics with their
//! configs, each partition's replicas, leader, leader epoch and in-sync set,
//! dynamic broker configs, and the Obelisk id-block leases that keep ids
//! unique across failovers (as KIP-730's producer-id blocks).
//!
//! Pure state transitions: a [`MetadataCommand`] is decided by the proposer
//! (topic ids, replica assignments and block sizes travel in the command),
//! so applying it is deterministic and every voter reaches the same state.
//! Tests replay commands without a socket or a Raft log.

pub mod acls;
mod balance;
mod command;
pub mod disk_full;
mod elr;
#[cfg(test)]
mod elr_tests;
mod files;
pub use files::{DiskFile, MetadataDisk, RealDisk};
pub mod log_store;
pub mod placement;
pub mod quotas;
pub mod raft;
#[cfg(test)]
mod raft_tests;
mod reassign;
#[cfg(test)]
mod reassign_tests;
mod runtime;
mod scram;
mod state;
pub mod state_machine;
#[cfg(test)]
mod tests;
mod topics;
pub mod wire;

pub use balance::MAX_ELECTIONS_PER_CHECK;
pub use command::{
    AlterPartition, ConfigResource, ControllerDefaults, ElectionKind, MetadataCommand,
    MetadataReply,
};
pub use elr::{MIN_INSYNC_REPLICAS, UNCLEAN_LEADER_ELECTION};
pub use log_store::RaftLogStore;

/// Opening the Raft log or the state machine's snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataStoreError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a metadata snapshot: {source}")]
    Decode {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Storage(#[from] karnak_storage::StorageError),
}
pub use raft::{MetadataRaft, MetadataResult};
pub use scram::{ScramRecord, ScramUpsert};
pub use state::{
    BrokerRegistration, ClusterMetadata, Listener, MetadataError, NO_LEADER, PartitionState,
    TopicRecord,
};
pub use state_machine::MetadataStateMachine;
