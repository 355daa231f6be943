//! DescribeTransactions (key 65): a transactional id's state, producer and
//! partitions (`kafka-transactions.sh describe`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, TopicName, TransactionalId,
};
use karnak_coordinator::errors::{NONE, TRANSACTIONAL_ID_NOT_FOUND};

use super::group_common::s;
use crate::authz::{AclOperation, Authz, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: DescribeTransactionsRequest = decode(body, "DescribeTransactions", version)?;
    let states = req
        .transactional_ids
        .iter()
        .map(|tid| {
            let base =
                TransactionState::default().with_transactional_id(TransactionalId(tid.0.clone()));
            if !authz.transactional_id(AclOperation::Describe, tid.as_str()) {
                return base
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                    .with_transaction_state(s(""))
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1);
            }
            let Some(m) = broker.txns.describe(tid.as_str()) else {
                return base
                    .with_error_code(TRANSACTIONAL_ID_NOT_FOUND)
                    .with_transaction_state(s(""))
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1);
            };
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            // Partitions of topics the caller may not DESCRIBE are left out.
            for (t, p) in &m.partitions {
                if authz.allows(AclOperation::Describe, ResourceType::Topic, t) {
                    by_topic.entry(t).or_default().push(*p);
                }
            }
            let topics = by_topic
                .into_iter()
                .map(|(t, parts)| {
                    TopicData::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(parts)
                })
                .collect();
            base.with_error_code(NONE)
                .with_transaction_state(s(m.state.kafka_name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(m.producer_id.into())
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    let resp = DescribeTransactionsResponse::default().with_transaction_states(states);
    Ok(Reply::Ready(Response::encode(&resp, version, NONE)?))
}
