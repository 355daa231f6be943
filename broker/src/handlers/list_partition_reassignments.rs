//! ListPartitionReassignments (key 46): `kafka-reassign-partitions
//! --verify`, `kafka-topics --describe`'s adding and removing replicas, and
//! the AdminClient's listPartitionReassignments. Answers only partitions
//! with a reassignment under way; unknown topics and partitions are left
//! out, as Kafka's controller does.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::{PartitionState, TopicRecord};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: ListPartitionReassignmentsRequest =
        decode(body, "ListPartitionReassignments", version)?;
    if !authz.cluster(AclOperation::Describe) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let resp = ListPartitionReassignmentsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_static_str(
                "DESCRIBE on the cluster is needed to list reassignments",
            )));
        return Ok(Reply::Ready(Response::encode(&resp, version, code)?));
    }
    let meta = broker.cluster.metadata();
    let ongoing = |name: &str, t: &TopicRecord, wanted: Option<&[i32]>| {
        let partitions: Vec<OngoingPartitionReassignment> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| p.reassigning() && wanted.is_none_or(|w| w.contains(&(*i as i32))))
            .map(|(i, p)| entry(i as i32, p))
            .collect();
        (!partitions.is_empty()).then(|| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(partitions)
        })
    };
    let topics = match req.topics {
        None => meta
            .topics
            .iter()
            .filter_map(|(name, t)| ongoing(name, t, None))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|w| {
                let t = meta.topics.get(w.name.as_str())?;
                ongoing(w.name.as_str(), t, Some(&w.partition_indexes))
            })
            .collect(),
    };
    let resp = ListPartitionReassignmentsResponse::default().with_topics(topics);
    Ok(Reply::Ready(Response::encode(&resp, version, 0)?))
}

fn entry(index: i32, p: &PartitionState) -> OngoingPartitionReassignment {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    OngoingPartitionReassignment::default()
        .with_partition_index(index)
        .with_replicas(ids(&p.replicas))
        .with_adding_replicas(ids(&p.adding))
        .with_removing_replicas(ids(&p.removing))
}
