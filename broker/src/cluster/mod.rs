//! The cluster (issue 18): the only place with sockets between brokers.
//! The metadata group (its voter, network and controller role), this
//! broker's registration in it, its logs following the metadata, the
//! coordinator shards following their partitions' leaders, and transaction
//! markers sent to partition leaders.

pub mod config;
pub mod controller;
pub mod lease;
pub mod markers;
pub mod node;
pub mod raft_net;
#[cfg(test)]
mod raft_net_tests;
pub mod reconcile;
pub mod shards;

pub use node::{ClusterError, ClusterNode};
