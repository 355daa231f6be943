//! DescribeProducers (key 61): the producers with state on each partition
//! (`kafka-transactions.sh describe-producers`).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use karnak_coordinator::errors::{NONE, UNKNOWN_TOPIC_OR_PARTITION};

use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: DescribeProducersRequest = decode(body, "DescribeProducers", version)?;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let allowed = authz.topic(AclOperation::Read, t.name.as_str());
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| {
                    let resp = PartitionResponse::default().with_partition_index(*p);
                    if !allowed {
                        return resp
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    // Internal partitions too: `kafka-transactions find-hanging`
                    // asks for every partition a broker leads.
                    let Some(log) = broker.logs.log(&t.name, *p) else {
                        return resp
                            .with_error_code(UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(super::group_common::s(format!(
                                "unknown partition {}-{p}",
                                t.name.as_str()
                            ))));
                    };
                    let mut producers: Vec<ProducerState> = log
                        .producer_entries()
                        .into_iter()
                        .map(|(pid, e)| {
                            ProducerState::default()
                                .with_producer_id(pid.into())
                                .with_producer_epoch(e.epoch as i32)
                                .with_last_sequence(e.batches.back().map_or(-1, |b| b.last_seq))
                                .with_last_timestamp(e.last_timestamp)
                                .with_coordinator_epoch(e.coordinator_epoch)
                                .with_current_txn_start_offset(e.txn_first_offset.unwrap_or(-1))
                        })
                        .collect();
                    producers.sort_by_key(|p| p.producer_id.0);
                    resp.with_error_code(NONE).with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let resp = DescribeProducersResponse::default().with_topics(topics);
    Ok(Reply::Ready(Response::encode(&resp, version, NONE)?))
}
