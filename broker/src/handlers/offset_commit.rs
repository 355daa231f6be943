//! OffsetCommit (key 8): committed offsets become records in the group's
//! shard partition; with the default flush policy they are fsynced (group
//! commit) before the answer, like an acks=all produce.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use karnak_coordinator::errors::{NONE, NOT_COORDINATOR, UNKNOWN_SERVER_ERROR};
use karnak_coordinator::{Committer, OffsetCommit};

use super::group_common::check_group;
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

/// Kafka's `offsets.commit.timeout.ms`: how long a commit waits for the
/// shard's in-sync replicas.
const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: OffsetCommitRequest = decode(body, "OffsetCommit", version)?;
    let group = req.group_id.as_str();
    // Per partition: whether the caller may READ its topic (commits to
    // the others are refused one by one, as Kafka does).
    let readable = authz.per_partition(
        AclOperation::Read,
        req.topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions.len())),
    );
    let mut readable_iter = readable.iter();
    let commits: Vec<OffsetCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .filter(|_| readable_iter.next().copied().unwrap_or(false))
        .collect();
    let shard =
        check_group(authz, AclOperation::Read, group).and_then(|()| broker.groups.shard(group));
    let (codes, flush_to) = match &shard {
        Err(code) => (vec![*code; commits.len()], None),
        Ok(shard) => {
            // v0 had no generation; Kafka treats it as a simple commit.
            let meta = broker.cluster.metadata();
            shard.commit(
                group,
                &Committer {
                    generation: req.generation_id_or_member_epoch,
                    member_id: req.member_id.as_str(),
                    instance_id: req.group_instance_id.as_deref(),
                    version,
                },
                commits,
                &|t, p| !t.starts_with("__karnak") && meta.partition(t, p).is_some(),
            )
        }
    };
    let codes = match &shard {
        // The whole request fails alike (a refused group included).
        Err(code) => vec![*code; readable.len()],
        Ok(_) => merge_refused(&readable, codes),
    };
    let shape: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = req
        .topics
        .into_iter()
        .map(|t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let respond = move |codes: Vec<i16>| {
        let mut it = codes.into_iter();
        let topics = shape
            .into_iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(it.next().unwrap_or(UNKNOWN_SERVER_ERROR))
                            })
                            .collect(),
                    )
            })
            .collect();
        let resp = OffsetCommitResponse::default().with_topics(topics);
        Response::encode(&resp, version, NONE)
    };
    let (last, shard) = match (flush_to, shard) {
        (Some(last), Ok(shard)) if broker.config.flush_on_acks_all || shard.log.is_replicated() => {
            (last, shard)
        }
        _ => return Ok(Reply::Ready(respond(codes)?)),
    };
    // Queued now; grouped with produce's acks=all fsyncs.
    let flushed = broker
        .config
        .flush_on_acks_all
        .then(|| broker.logs.flush_logs(vec![(shard.log.clone(), last + 1)]));
    Ok(Reply::Later(Box::pin(async move {
        let mut ok = match flushed {
            None => true,
            Some(flushed) => match flushed.await {
                Ok(outcome) => match outcome.into_iter().find_map(Result::err) {
                    None => true,
                    Some(e) => {
                        tracing::error!(error = %e, "fsync of committed offsets failed");
                        false
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "fsync of committed offsets failed");
                    false
                }
            },
        };
        if ok && shard.log.is_replicated() {
            // Kafka writes commits with acks=all: answered once the shard's
            // in-sync replicas hold them, so a failover keeps them.
            let mut hw = shard.log.subscribe();
            let reached =
                tokio::time::timeout(OFFSETS_COMMIT_TIMEOUT, hw.wait_for(|h| *h > last)).await;
            ok = matches!(reached, Ok(Ok(_)));
        }
        // Shown to OffsetFetch only now that it is durable.
        shard.offsets_flushed();
        // As Kafka answers a commit its log could not store.
        let codes = codes
            .into_iter()
            .map(|c| if ok || c != NONE { c } else { NOT_COORDINATOR })
            .collect();
        respond(codes)
    })))
}

/// The shard's codes for the commits it was given, with
/// TOPIC_AUTHORIZATION_FAILED in the places of those it was not.
pub(crate) fn merge_refused(allowed: &[bool], codes: Vec<i16>) -> Vec<i16> {
    let mut codes = codes.into_iter();
    allowed
        .iter()
        .map(|ok| {
            if *ok {
                codes.next().unwrap_or(UNKNOWN_SERVER_ERROR)
            } else {
                kafka_protocol::error::ResponseError::TopicAuthorizationFailed.code()
            }
        })
        .collect()
}
