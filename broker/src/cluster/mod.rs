//! The cluster (issue 18): the only place with sockets between brokers.
//! The metadata group (its voter, network and controller role) and this
//! broker's registration in it; replica fetchers and applying leadership to
//! local logs come next.

pub mod config;
pub mod controller;
pub mod node;
pub mod raft_net;
#[cfg(test)]
mod raft_net_tests;
pub mod reconcile;

pub use node::{ClusterError, ClusterNode};
