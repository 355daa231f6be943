//! OffsetForLeaderEpoch (key 23): for each partition, the end offset of
//! the requested leader epoch, from the log's leader-epoch cache. Consumers
//! use it to validate their position after a leader change (KIP-320);
//! followers to find where to truncate (KIP-101, KIP-279).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: OffsetForLeaderEpochRequest = decode(body, "OffsetForLeaderEpoch", version)?;
    // A follower (replica id >= 0) needs CLUSTER_ACTION; a consumer
    // DESCRIBE on each topic.
    let follower_ok = request.replica_id.0 < 0 || authz.cluster(AclOperation::ClusterAction);
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.as_str();
            let allowed = follower_ok
                && (request.replica_id.0 >= 0 || authz.topic(AclOperation::Describe, name));
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !allowed {
                        return result
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    // Only the leader answers, at the epoch the asker
                    // believes current (-1: unknown).
                    let log =
                        match broker
                            .replicas
                            .leader_log(name, p.partition, p.current_leader_epoch)
                        {
                            Ok(log) => log,
                            Err(code) => return result.with_error_code(code),
                        };
                    let (epoch, end) = log.end_offset_for_epoch(p.leader_epoch);
                    result.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetForLeaderEpochResponse::default().with_topics(topics);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}
