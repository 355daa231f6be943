//! Pharaoh coordinator shards and Obelisk sequencers.
//!
//! Group state (membership, generations, committed offsets) is split over N
//! shards by a stable hash of the group id. Each shard is a state machine
//! whose every change is a record in its own partition of an internal,
//! compacted, replicated topic, replayed by the broker that comes to lead
//! it; ids it hands out come from its own Obelisk sequencer (leased in the
//! cluster metadata) and carry the shard number, so shards never
//! coordinate. Transactions live in the same shards, keyed by
//! transactional id.

pub mod consumer;
pub mod consumer_protocol;
pub mod coordinator;
pub mod errors;
#[doc(hidden)]
pub mod fuzz;
pub mod group;
pub mod metadata;
pub mod obelisk;
pub mod records;
pub mod shard;
pub mod txn;

pub use consumer::{Assignment, ConsumerHeartbeat, HeartbeatOutcome, TopicId, TopicView};
pub use coordinator::{
    COORDINATOR_TOPIC, CoordinatorError, GroupCoordinator, LeaseFactory, coordinator_topic_configs,
    shard_for,
};
pub use group::{
    GroupConfig, GroupState, JoinOutcome, JoinRequest, JoinedMember, SyncOutcome, SyncRequest,
};
pub use obelisk::{FileLease, LeaseFuture, LeaseStore, Sequencer, SequencerError};
pub use shard::{
    Committer, NotReplicated, OffsetCommit, ReplicatedFuture, Shard, ShardError, ShardReplication,
};
pub use txn::{
    LocalMarkers, MarkerWriter, MarkersFuture, TransactionCoordinator, TxnConfig, TxnMarker,
    TxnMetadata, TxnState, append_marker,
};
