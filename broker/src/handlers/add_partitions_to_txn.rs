//! AddPartitionsToTxn (key 24): partitions join a transaction before the
//! producer writes to them. v0-3 is the client form (one transaction); v4+
//! is the batched form brokers use to verify a transactional produce
//! (`verify_only`), answered per transaction.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TransactionalId,
};
use karnak_coordinator::errors::{NONE, OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION};

use super::txn_common::{blocking, fenced_for_version, partition_exists};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

/// Per-partition codes for one transaction's topics, in request order.
fn add(
    broker: &Broker,
    version: i16,
    tid: &str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let wanted: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let unknown: Vec<bool> = wanted
        .iter()
        .map(|(t, p)| !partition_exists(broker, t, *p))
        .collect();
    let codes: Vec<i16> = if verify_only {
        wanted
            .iter()
            .zip(&unknown)
            .map(|((t, p), unknown)| match unknown {
                true => UNKNOWN_TOPIC_OR_PARTITION,
                false => broker
                    .txns
                    .verify_partition(tid, producer_id, epoch, t, *p)
                    .err()
                    .unwrap_or(NONE),
            })
            .collect()
    } else if unknown.iter().any(|u| *u) {
        // Kafka adds nothing when any partition is unknown.
        unknown
            .iter()
            .map(|u| match u {
                true => UNKNOWN_TOPIC_OR_PARTITION,
                false => OPERATION_NOT_ATTEMPTED,
            })
            .collect()
    } else {
        let code = broker
            .txns
            .add_to_txn(tid, producer_id, epoch, &wanted, None)
            .err()
            .unwrap_or(NONE);
        vec![code; wanted.len()]
    };
    let mut it = codes.into_iter();
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(fenced_for_version(
                                    it.next().unwrap_or(NONE),
                                    version,
                                    2,
                                ))
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn handle(broker: &Arc<Broker>, body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let req: AddPartitionsToTxnRequest = decode(body, "AddPartitionsToTxn", version)?;
    let broker = broker.clone();
    Ok(blocking(move || {
        let mut resp = AddPartitionsToTxnResponse::default();
        if version <= 3 {
            resp.results_by_topic_v3_and_below = add(
                &broker,
                version,
                req.v3_and_below_transactional_id.as_str(),
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                false,
                &req.v3_and_below_topics,
            );
        } else {
            resp.results_by_transaction = req
                .transactions
                .iter()
                .map(|t| {
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(TransactionalId(t.transactional_id.0.clone()))
                        .with_topic_results(add(
                            &broker,
                            version,
                            t.transactional_id.as_str(),
                            t.producer_id.0,
                            t.producer_epoch,
                            t.verify_only,
                            &t.topics,
                        ))
                })
                .collect();
        }
        Response::encode(&resp, version, NONE)
    }))
}
