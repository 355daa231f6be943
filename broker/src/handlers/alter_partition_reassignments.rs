//! AlterPartitionReassignments (key 45): `kafka-reassign-partitions
//! --execute` / `--cancel` and the AdminClient's alterPartitionReassignments
//! (KIP-455). Each partition's move is a command in the metadata log; the
//! answer says it started (or was cancelled), and the new replicas then
//! copy the log as followers before the old ones leave (reassign.rs in the
//! metadata). ListPartitionReassignments shows what is under way.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::metadata::MetadataCommand;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

/// Bounds what one request may ask for (each is a metadata commit).
const MAX_PARTITIONS: usize = 100_000;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: AlterPartitionReassignmentsRequest =
        decode(body, "AlterPartitionReassignments", version)?;
    // v0 has no flag and lets the replication factor change, as Kafka.
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let respond = move |resp: AlterPartitionReassignmentsResponse| {
        let resp = resp.with_allow_replication_factor_change(allow_rf_change);
        Response::encode(&resp, version, 0)
    };
    if !authz.cluster(AclOperation::Alter) {
        // As Kafka: the error at the top and on every partition asked for
        // (the Java client wants one answer per partition).
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let message = "ALTER on the cluster is needed to reassign partitions";
        let responses = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        ReassignablePartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_static_str(message)))
                    })
                    .collect();
                ReassignableTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        let resp = AlterPartitionReassignmentsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_static_str(message)))
            .with_responses(responses);
        return Ok(Reply::Ready(respond(resp)?));
    }
    if req.topics.iter().map(|t| t.partitions.len()).sum::<usize>() > MAX_PARTITIONS {
        let resp = AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "too many partitions in one request",
            )));
        return Ok(Reply::Ready(respond(resp)?));
    }
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 300_000) as u64);
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(req.topics.len());
        for topic in req.topics {
            let name = topic.name.to_string();
            let mut out = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let target: Option<Vec<i32>> =
                    p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
                let (code, message) =
                    match refusal(&broker, &name, p.partition_index, &target, allow_rf_change) {
                        Some(refused) => refused,
                        None => {
                            let cmd = MetadataCommand::AlterReassignment {
                                topic: name.clone(),
                                partition: p.partition_index,
                                target,
                            };
                            match broker.cluster.propose(cmd, timeout).await {
                                Ok(_) => (0, None),
                                Err(e) => (e.code().code(), Some(e.to_string())),
                            }
                        }
                    };
                out.push(
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(message.map(StrBytes::from_string)),
                );
            }
            responses.push(
                ReassignableTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(out),
            );
        }
        respond(AlterPartitionReassignmentsResponse::default().with_responses(responses))
    })))
}

/// What Kafka refuses before the metadata log sees it: a changed
/// replication factor when the client asked to keep it (v1).
fn refusal(
    broker: &Broker,
    topic: &str,
    partition: i32,
    target: &Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Option<(i16, Option<String>)> {
    let target = target.as_ref()?;
    if allow_rf_change {
        return None;
    }
    let meta = broker.cluster.metadata();
    let p = meta.partition(topic, partition)?;
    let current = p.replicas.len() - p.adding.len().min(p.replicas.len());
    (current != target.len()).then(|| {
        (
            ResponseError::InvalidReplicationFactor.code(),
            Some(format!(
                "the reassignment changes the replication factor from {current} to {}",
                target.len()
            )),
        )
    })
}
