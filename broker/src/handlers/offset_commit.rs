//! OffsetCommit (key 8): committed offsets become records in the group's
//! shard partition; with the default flush policy they are fsynced (group
//! commit) before the answer, like an acks=all produce.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use karnak_coordinator::errors::{NONE, NOT_COORDINATOR, UNKNOWN_SERVER_ERROR};
use karnak_coordinator::{Committer, OffsetCommit};

use super::group_common::check_group_id;
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(broker: &Arc<Broker>, body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let req: OffsetCommitRequest = decode(body, "OffsetCommit", version)?;
    let group = req.group_id.as_str();
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
        .collect();
    let (codes, flush_to) = match check_group_id(group) {
        Err(code) => (vec![code; commits.len()], None),
        Ok(()) => {
            // v0 had no generation; Kafka treats it as a simple commit.
            let logs = &broker.logs;
            broker.groups.shard(group).commit(
                group,
                &Committer {
                    generation: req.generation_id_or_member_epoch,
                    member_id: req.member_id.as_str(),
                    instance_id: req.group_instance_id.as_deref(),
                    version,
                },
                commits,
                &|t, p| !t.starts_with("__karnak") && logs.log(t, p).is_some(),
            )
        }
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
    match flush_to {
        Some(last) if broker.config.flush_on_acks_all => {
            let shard = broker.groups.shard(group).clone();
            // Queued now; grouped with produce's acks=all fsyncs.
            let flushed = broker.logs.flush_logs(vec![(shard.log.clone(), last + 1)]);
            Ok(Reply::Later(Box::pin(async move {
                let ok = match flushed.await {
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
                };
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
        _ => Ok(Reply::Ready(respond(codes)?)),
    }
}
