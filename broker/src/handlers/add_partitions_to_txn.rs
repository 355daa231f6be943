//! AddPartitionsToTxn (key 24): partitions join a transaction before the
//! producer writes to them. v0-3 is the client form (one transaction); v4+
//! is the batched form brokers use to verify a transactional produce
//! (`verify_only`), answered per transaction.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TransactionalId,
};
use karnak_coordinator::errors::{NONE, OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION};

use super::txn_common::{fenced_for_version, later, partition_exists};
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

/// Per-partition codes for one transaction's topics, in request order.
/// The transaction partitions are added to.
struct Txn<'a> {
    id: &'a str,
    producer_id: i64,
    epoch: i16,
}

async fn add(
    broker: &Broker,
    version: i16,
    txn: Txn<'_>,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
    authz: &Authz,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let Txn {
        id: tid,
        producer_id,
        epoch,
    } = txn;
    let wanted: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let unknown: Vec<bool> = wanted
        .iter()
        .map(|(t, p)| !partition_exists(broker, t, *p))
        .collect();
    // v0-3 come from the producer, who must hold its transactional id;
    // (v4+ come from brokers, allowed CLUSTER_ACTION by the caller).
    let txn_denied = version < 4 && !authz.transactional_id(AclOperation::Write, tid);
    let writable: Vec<bool> = topics
        .iter()
        .flat_map(|t| {
            let ok = txn_denied || authz.topic(AclOperation::Write, t.name.as_str());
            t.partitions.iter().map(move |_| ok)
        })
        .collect();
    let codes: Vec<i16> = if txn_denied {
        vec![ResponseError::TransactionalIdAuthorizationFailed.code(); wanted.len()]
    } else if writable.iter().any(|w| !w) {
        // Kafka adds nothing when any topic is refused.
        writable
            .iter()
            .map(|w| match w {
                false => ResponseError::TopicAuthorizationFailed.code(),
                true => OPERATION_NOT_ATTEMPTED,
            })
            .collect()
    } else if verify_only {
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
            .await
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

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: AddPartitionsToTxnRequest = decode(body, "AddPartitionsToTxn", version)?;
    let broker = broker.clone();
    let authz = authz.clone();
    Ok(later(async move {
        let mut resp = AddPartitionsToTxnResponse::default();
        if version >= 4 && !authz.cluster(AclOperation::ClusterAction) {
            let code = ResponseError::ClusterAuthorizationFailed.code();
            resp.error_code = code;
            return Response::encode(&resp, version, code);
        }
        if version <= 3 {
            resp.results_by_topic_v3_and_below = add(
                &broker,
                version,
                Txn {
                    id: req.v3_and_below_transactional_id.as_str(),
                    producer_id: req.v3_and_below_producer_id.0,
                    epoch: req.v3_and_below_producer_epoch,
                },
                false,
                &req.v3_and_below_topics,
                &authz,
            )
            .await;
        } else {
            for t in &req.transactions {
                let topic_results = add(
                    &broker,
                    version,
                    Txn {
                        id: t.transactional_id.as_str(),
                        producer_id: t.producer_id.0,
                        epoch: t.producer_epoch,
                    },
                    t.verify_only,
                    &t.topics,
                    &authz,
                )
                .await;
                resp.results_by_transaction.push(
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(TransactionalId(t.transactional_id.0.clone()))
                        .with_topic_results(topic_results),
                );
            }
        }
        Response::encode(&resp, version, NONE)
    }))
}
