//! ElectLeaders (key 43): `kafka-leader-election` and the AdminClient's
//! electLeaders. A preferred election gives a partition back to its first
//! replica if that one is live and in sync; an unclean one gives a
//! leaderless partition to a live replica, in sync or not (what the
//! old in-sync set had and it lacks is lost, as with Kafka). Each election
//! is a command in the metadata log.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::{ElectionKind, MetadataCommand, MetadataError};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::cluster::ClusterError;
use crate::response::{HandlerError, Reply, Response, decode};

/// Bounds what one request may ask for (each is a metadata commit).
const MAX_PARTITIONS: usize = 100_000;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: ElectLeadersRequest = decode(body, "ElectLeaders", version)?;
    if !authz.cluster(AclOperation::Alter) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let resp = ElectLeadersResponse::default().with_error_code(code);
        return Ok(Reply::Ready(Response::encode(&resp, version, code)?));
    }
    let kind = match req.election_type {
        0 => ElectionKind::Preferred,
        1 => ElectionKind::Unclean,
        _ => {
            let resp = ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code());
            return Ok(Reply::Ready(Response::encode(&resp, version, 0)?));
        }
    };
    let meta = broker.cluster.metadata();
    // Null: every partition, answering only those an election was tried for.
    let all = req.topic_partitions.is_none();
    let wanted: Vec<(String, Vec<i32>)> = match req.topic_partitions {
        Some(tps) => tps
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect(),
        None => meta
            .topics
            .iter()
            .map(|(name, t)| {
                let parts = t
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| match kind {
                        ElectionKind::Preferred => p.replicas.first() != Some(&p.leader),
                        ElectionKind::Unclean => p.leader < 0,
                    })
                    .map(|(i, _)| i as i32)
                    .collect();
                (name.clone(), parts)
            })
            .filter(|(_, parts): &(String, Vec<i32>)| !parts.is_empty())
            .collect(),
    };
    if wanted.iter().map(|(_, p)| p.len()).sum::<usize>() > MAX_PARTITIONS {
        let resp =
            ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        return Ok(Reply::Ready(Response::encode(&resp, version, 0)?));
    }
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 300_000) as u64);
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(wanted.len());
        for (topic, partitions) in wanted {
            let mut out = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let cmd = MetadataCommand::ElectLeader {
                    topic: topic.clone(),
                    partition,
                    kind,
                };
                let (code, message) = match broker.cluster.propose(cmd, timeout).await {
                    Ok(_) => (0, None),
                    Err(ClusterError::Refused(MetadataError::ElectionNotNeeded(_))) if all => {
                        continue;
                    }
                    Err(e) => (e.code().code(), Some(e.to_string())),
                };
                out.push(
                    PartitionResult::default()
                        .with_partition_id(partition)
                        .with_error_code(code)
                        .with_error_message(message.map(StrBytes::from_string)),
                );
            }
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(out),
            );
        }
        let resp = ElectLeadersResponse::default().with_replica_election_results(results);
        Response::encode(&resp, version, 0)
    })))
}
