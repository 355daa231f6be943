//! KIP-951: a Produce (v10+) or Fetch (v12+) answered NOT_LEADER_OR_FOLLOWER
//! or FENCED_LEADER_EPOCH for a partition carries the leader and epoch this
//! broker knows, and the response that leader's address (Produce v10+,
//! Fetch v16+), so the client goes there at once instead of asking Metadata
//! first. Only a live leader other than this broker is named.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::{LeaderIdAndEpoch, NodeEndpoint};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::ClusterMetadata;
use karnak_protocol::fetch_response::{self, FetchResponseBody};

use crate::broker::Broker;

/// A refusal that carries the leader (KIP-951).
fn refused(code: i16) -> bool {
    code == ResponseError::NotLeaderOrFollower.code()
        || code == ResponseError::FencedLeaderEpoch.code()
}

/// The leader to name for a partition refused with `code`, if any.
fn hint(
    broker: &Broker,
    meta: &ClusterMetadata,
    topic: &str,
    partition: i32,
    code: i16,
) -> Option<(i32, i32)> {
    if !refused(code) {
        return None;
    }
    let p = meta.partition(topic, partition)?;
    (p.leader >= 0 && p.leader != broker.node_id() && broker.cluster.is_live(meta, p.leader))
        .then_some((p.leader, p.leader_epoch))
}

/// Each named broker's address on the client's `listener`: (id, host, port, rack).
fn endpoints<'a>(
    meta: &'a ClusterMetadata,
    ids: BTreeSet<i32>,
    listener: &'a str,
) -> impl Iterator<Item = (i32, String, i32, Option<String>)> + 'a {
    ids.into_iter().filter_map(|id| {
        let b = meta.brokers.get(&id)?;
        let l = crate::listeners::address_of(b, listener)?;
        Some((id, l.host.clone(), i32::from(l.port), b.rack.clone()))
    })
}

pub fn produce(broker: &Broker, response: &mut ProduceResponse, version: i16, listener: &str) {
    // The produce path: nothing to look up unless a partition was refused.
    let any = || {
        response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| refused(p.error_code))
    };
    if version < 10 || !any() {
        return;
    }
    let meta = broker.cluster.metadata();
    let mut named = BTreeSet::new();
    for t in &mut response.responses {
        for p in &mut t.partition_responses {
            if let Some((leader, epoch)) =
                hint(broker, &meta, t.name.as_str(), p.index, p.error_code)
            {
                p.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(leader.into())
                    .with_leader_epoch(epoch);
                named.insert(leader);
            }
        }
    }
    response.node_endpoints = endpoints(&meta, named, listener)
        .map(|(id, host, port, rack)| {
            NodeEndpoint::default()
                .with_node_id(id.into())
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
}

pub fn fetch<R>(broker: &Broker, body: &mut FetchResponseBody<R>, version: i16, listener: &str) {
    let any = || {
        body.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| refused(p.error_code))
    };
    if version < 12 || !any() {
        return;
    }
    let meta = broker.cluster.metadata();
    let mut named = BTreeSet::new();
    for t in &mut body.topics {
        let Ok(name) = std::str::from_utf8(&t.name) else {
            continue;
        };
        for p in &mut t.partitions {
            p.current_leader = hint(broker, &meta, name, p.partition_index, p.error_code);
            named.extend(p.current_leader.map(|(leader, _)| leader));
        }
    }
    if version >= 16 {
        body.node_endpoints = endpoints(&meta, named, listener)
            .map(|(node_id, host, port, rack)| fetch_response::NodeEndpoint {
                node_id,
                host,
                port,
                rack,
            })
            .collect();
    }
}
