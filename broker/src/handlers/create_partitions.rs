//! CreatePartitions (key 37): grows a topic through the metadata log.
//! Partitions are only ever added, placed as Kafka places them unless the
//! request names their replicas.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use karnak_storage::StorageError;

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::handlers::{storage_error_code, topic_common};
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let request: CreatePartitionsRequest = decode(body, "CreatePartitions", version)?;
    let mut names = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !names.insert(t.name.as_str()))
        .map(|t| t.name.as_str().to_string())
        .collect();
    let meta = broker.cluster.metadata();
    let added: u64 = request
        .topics
        .iter()
        .map(|t| {
            let current = meta
                .topics
                .get(t.name.as_str())
                .map_or(0, |t| t.partitions.len());
            u64::try_from(i64::from(t.count) - current as i64).unwrap_or(0)
        })
        .sum();
    if added > topic_common::MAX_RECORDS_PER_REQUEST {
        let refused = request
            .topics
            .into_iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(ResponseError::PolicyViolation.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        topic_common::EXCESSIVE_BATCH,
                    )))
            })
            .collect();
        let response = CreatePartitionsResponse::default().with_results(refused);
        return Ok(Reply::Ready(Response::encode(&response, version, 0)?));
    }
    // Each topic is either answered now or grown through the metadata
    // group below (awaited in request order).
    let steps: Vec<Step> = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.as_str().to_string();
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let fail = |e: ResponseError, msg: String| {
                Step::Answered(result
                    .clone()
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(msg))))
            };
            if duplicates.contains(&name) {
                return fail(
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.".into(),
                );
            }
            if !authz.topic(AclOperation::Alter, &name) {
                return fail(
                    ResponseError::TopicAuthorizationFailed,
                    "ALTER on the topic is needed".into(),
                );
            }
            if crate::topics::is_internal(&name) {
                // Its partition count is the number of coordinator shards.
                return fail(
                    ResponseError::InvalidRequest,
                    format!("{name} is an internal topic: its partitions cannot be changed"),
                );
            }
            let Some(current) = broker
                .cluster
                .metadata()
                .topics
                .get(&name)
                .map(|t| t.partitions.len() as i32)
            else {
                return fail(
                    ResponseError::UnknownTopicOrPartition,
                    format!("This server does not host this topic: {name}"),
                );
            };
            if t.count < current {
                return fail(
                    ResponseError::InvalidPartitions,
                    format!(
                        "The topic {name} currently has {current} partition(s); {} would not be an increase.",
                        t.count
                    ),
                );
            }
            if t.count == current {
                return fail(
                    ResponseError::InvalidPartitions,
                    format!("Topic already has {current} partition(s)."),
                );
            }
            if let Some(assignments) = t.assignments.as_ref().filter(|a| !a.is_empty()) {
                let added = (t.count - current) as usize;
                if assignments.len() != added {
                    return fail(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "Increasing the number of partitions by {added} but {} assignments provided.",
                            assignments.len()
                        ),
                    );
                }
            }
            if request.validate_only {
                return Step::Answered(match karnak_storage::manager::check_partition_count(t.count) {
                    Ok(()) => result,
                    Err(e) => fail_storage(result, &e),
                });
            }
            let assignments = t.assignments.filter(|a| !a.is_empty()).map(|a| {
                a.into_iter()
                    .map(|p| p.broker_ids.into_iter().map(|b| b.0).collect())
                    .collect()
            });
            Step::Grow(Growth {
                result,
                name,
                count: t.count,
                assignments,
            })
        })
        .collect();
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(steps.len());
        for step in steps {
            results.push(match step {
                Step::Answered(done) => done,
                Step::Grow(g) => {
                    match crate::topics::add_partitions(&broker, &g.name, g.count, g.assignments)
                        .await
                    {
                        Ok(()) => g.result,
                        Err(e) => g
                            .result
                            .with_error_code(e.code())
                            .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                    }
                }
            });
        }
        let response = CreatePartitionsResponse::default().with_results(results);
        Response::encode(&response, version, 0)
    })))
}

/// A topic of the request: answered at once, or to grow.
enum Step {
    Answered(CreatePartitionsTopicResult),
    Grow(Growth),
}

/// A topic's partitions to add, once the request's checks passed.
struct Growth {
    result: CreatePartitionsTopicResult,
    name: String,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
}

fn fail_storage(
    result: CreatePartitionsTopicResult,
    e: &StorageError,
) -> CreatePartitionsTopicResult {
    result
        .with_error_code(storage_error_code(e))
        .with_error_message(Some(StrBytes::from_string(e.to_string())))
}
