//! ListOffsets (key 2): earliest, latest, by timestamp, max timestamp.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::handlers::storage_error_code;
use crate::response::{HandlerError, Reply, Response, decode};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: ListOffsetsRequest = decode(body, "ListOffsets", version)?;
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let allowed = authz.topic(AclOperation::Describe, t.name.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if !allowed {
                        return resp
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    // Answered by the partition's leader only.
                    let log = match broker.replicas.leader_log(
                        t.name.as_str(),
                        p.partition_index,
                        p.current_leader_epoch,
                    ) {
                        Ok(log) => log,
                        Err(code) => return resp.with_error_code(code),
                    };
                    let found = match p.timestamp {
                        // read_committed consumers start at the last stable offset.
                        LATEST if request.isolation_level == 1 => {
                            Ok(Some((-1, log.last_stable_offset())))
                        }
                        LATEST => Ok(Some((-1, log.high_watermark()))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((-1, log.log_start_offset()))),
                        LATEST_TIERED => Ok(None), // no tiered storage
                        MAX_TIMESTAMP => log.max_timestamp_and_offset(),
                        ts => log
                            .offset_for_timestamp(ts)
                            .map(|o| o.map(|(off, ts)| (ts, off))),
                    };
                    match found {
                        Ok(Some((ts, offset))) => {
                            let resp = resp.with_timestamp(ts).with_offset(offset);
                            // v4+: the leader epoch (the latest one; Kafka
                            // gives the found offset's own).
                            if version >= 4 {
                                resp.with_leader_epoch(log.latest_epoch())
                            } else {
                                resp
                            }
                        }
                        Ok(None) => resp,
                        Err(e) => resp.with_error_code(storage_error_code(&e)),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    let response = ListOffsetsResponse::default().with_topics(topics);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}
