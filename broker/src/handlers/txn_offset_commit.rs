//! TxnOffsetCommit (key 28): a transaction's consumed offsets, held in the
//! group's shard until EndTxn settles them (send_offsets_to_transaction).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use karnak_coordinator::OffsetCommit;
use karnak_coordinator::errors::{NONE, UNKNOWN_SERVER_ERROR};

use super::group_common::check_group;
use super::txn_common::{later, partition_exists};
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: TxnOffsetCommitRequest = decode(body, "TxnOffsetCommit", version)?;
    let broker = broker.clone();
    let authz = authz.clone();
    Ok(later(async move {
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
                    leader_epoch: if version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
            })
            .filter(|_| readable_iter.next().copied().unwrap_or(false))
            .collect();
        let group = req.group_id.as_str();
        let checked = if !authz.transactional_id(AclOperation::Write, req.transactional_id.as_str())
        {
            Err(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else {
            check_group(&authz, AclOperation::Read, group)
        };
        let codes = match checked {
            Err(code) => vec![code; readable.len()],
            Ok(()) => super::offset_commit::merge_refused(
                &readable,
                broker
                    .txns
                    .txn_offset_commit(
                        req.transactional_id.as_str(),
                        group,
                        req.producer_id.0,
                        req.producer_epoch,
                        commits,
                        &|t, p| partition_exists(&broker, t, p),
                    )
                    .await,
            ),
        };
        let mut it = codes.into_iter();
        let topics = req
            .topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(it.next().unwrap_or(UNKNOWN_SERVER_ERROR))
                            })
                            .collect(),
                    )
            })
            .collect();
        let resp = TxnOffsetCommitResponse::default().with_topics(topics);
        Response::encode(&resp, version, NONE)
    }))
}
