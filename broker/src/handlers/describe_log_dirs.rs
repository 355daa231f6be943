//! DescribeLogDirs (key 35): the data dir, its partitions' sizes and the
//! file system's total and usable bytes (v4), as `kafka-log-dirs` shows.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: DescribeLogDirsRequest = decode(body, "DescribeLogDirs", version)?;
    if !authz.cluster(AclOperation::Describe) {
        // v0-2 have no error field: no log dirs at all, as Kafka answers.
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let response = DescribeLogDirsResponse::default().with_error_code(code);
        return Ok(Reply::Ready(Response::encode(&response, version, code)?));
    }
    // Null asks for every partition; a topic we do not have is left out,
    // as Kafka does.
    let wanted: Vec<(Arc<karnak_storage::Topic>, Vec<i32>)> = match request.topics {
        None => broker
            .logs
            .topics()
            .into_iter()
            .map(|t| {
                let all = (0..t.meta.partitions).collect();
                (t, all)
            })
            .collect(),
        Some(topics) => topics
            .into_iter()
            .filter_map(|t| {
                broker
                    .logs
                    .topic(t.topic.as_str())
                    .map(|topic| (topic, t.partitions))
            })
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .filter_map(|p| {
                    let log = topic.logs.get(usize::try_from(p).ok()?)?;
                    Some(
                        DescribeLogDirsPartition::default()
                            .with_partition_index(p)
                            .with_partition_size(log.size_bytes() as i64)
                            .with_offset_lag(0)
                            .with_is_future_key(false),
                    )
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.meta.name.clone())))
                .with_partitions(partitions)
        })
        .collect();
    let dir = broker.logs.data_dir();
    let dir_name = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir_name.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    match broker.logs.disk_space() {
        Ok((total, usable)) => {
            result = result
                .with_total_bytes(total as i64)
                .with_usable_bytes(usable as i64);
        }
        Err(e) => {
            tracing::warn!(error = %e, "DescribeLogDirs: cannot read the data dir's space");
            result = result.with_error_code(ResponseError::KafkaStorageError.code());
        }
    }
    let response = DescribeLogDirsResponse::default().with_results(vec![result]);
    Ok(Reply::Ready(Response::encode(&response, version, 0)?))
}
