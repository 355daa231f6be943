//! The cluster (issue 18): the only place with sockets between brokers.
//! So far the metadata group's Raft network; replica fetchers, forwarding
//! to the Raft leader and applying leadership to local logs come next.
// Not yet started by `main`: the cluster flags arrive with the broker side.
#![allow(dead_code)]

pub mod raft_net;
#[cfg(test)]
mod raft_net_tests;
