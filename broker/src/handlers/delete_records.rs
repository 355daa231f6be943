//! DeleteRecords (key 21): moves partitions' log start offsets forward.
//! Fetch, ListOffsets (earliest) and SQL scans start from the new offset
//! at once; whole segments below it are deleted.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::handlers::storage_error_code;
use crate::response::{HandlerError, Reply, Response, decode};

/// Kafka's DeleteRecordsRequest.HIGH_WATERMARK: "everything up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: DeleteRecordsRequest = decode(body, "DeleteRecords", version)?;
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.as_str();
            let internal = crate::topics::is_internal(name);
            let allowed = authz.topic(AclOperation::Delete, name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if !allowed {
                        return result
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    if internal {
                        return result.with_error_code(ResponseError::InvalidTopicException.code());
                    }
                    // The leader moves the log start; followers follow it.
                    let log = match broker.replicas.leader_log(name, p.partition_index, -1) {
                        Ok(log) => log,
                        Err(code) => return result.with_error_code(code),
                    };
                    let offset = if p.offset == HIGH_WATERMARK {
                        log.high_watermark()
                    } else {
                        p.offset
                    };
                    match log.delete_records_before(offset) {
                        Ok(low) => result.with_low_watermark(low),
                        Err(e) => {
                            tracing::debug!(topic = name, partition = p.partition_index, error = %e, "DeleteRecords refused");
                            result.with_error_code(storage_error_code(&e))
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    let response = DeleteRecordsResponse::default().with_topics(topics);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}
