//! OffsetDelete (key 47): drop committed offsets of partitions the group no
//! longer consumes (GROUP_SUBSCRIBED_TO_TOPIC while members subscribe).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use karnak_coordinator::errors::NONE;

use super::group_common::check_group;
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: OffsetDeleteRequest = decode(body, "OffsetDelete", version)?;
    let group = req.group_id.as_str();
    let readable = authz.per_partition(
        AclOperation::Read,
        req.topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions.len())),
    );
    let mut readable_iter = readable.iter();
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .filter(|_| readable_iter.next().copied().unwrap_or(false))
        .collect();
    let result = check_group(authz, AclOperation::Delete, group).and_then(|()| {
        broker
            .groups
            .shard(group)
            .and_then(|s| s.delete_offsets(group, &partitions))
    });
    let result = result.map(|codes| super::offset_commit::merge_refused(&readable, codes));
    let mut resp = OffsetDeleteResponse::default();
    match result {
        Err(code) => resp.error_code = code,
        Ok(codes) => {
            let mut it = codes.into_iter();
            resp.topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let parts = t
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(it.next().unwrap_or(NONE))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(parts)
                })
                .collect();
        }
    }
    let code = resp.error_code;
    Ok(Reply::Ready(Response::encode(&resp, version, code)?))
}
