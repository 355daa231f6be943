//! The metadata group's openraft types: commands are [`MetadataCommand`]s,
//! answers what applying them gave, nodes are broker ids with their
//! cluster-listener address, snapshots the state serialised whole.

use std::io::Cursor;

use super::command::{MetadataCommand, MetadataReply};
use super::state::MetadataError;

/// What a committed command gave the proposer.
pub type MetadataResult = Result<MetadataReply, MetadataError>;

openraft::declare_raft_types!(
    /// The one metadata Raft group of a Karnak cluster.
    pub MetadataRaft:
        D = MetadataCommand,
        R = MetadataResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<MetadataRaft>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = super::runtime::MetadataRuntime,
);
