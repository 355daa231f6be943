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

mod command;
pub mod placement;
mod state;
#[cfg(test)]
mod tests;

pub use command::{AlterPartition, ConfigResource, ElectionKind, MetadataCommand, MetadataReply};
pub use state::{
    BrokerRegistration, ClusterMetadata, Listener, MetadataError, NO_LEADER, PartitionState,
    TopicRecord,
};
