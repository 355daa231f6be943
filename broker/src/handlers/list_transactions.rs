//! ListTransactions (key 66): every transactional id this broker
//! coordinates, filtered by state, producer id and (v1) open duration.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, TransactionalId,
};
use karnak_coordinator::TxnState;
use karnak_coordinator::errors::NONE;

use super::group_common::s;
use super::now_ms;
use crate::authz::{AclOperation, Authz, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: ListTransactionsRequest = decode(body, "ListTransactions", version)?;
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for f in &req.state_filters {
        match TxnState::from_kafka_name(f.as_str()) {
            Some(st) => states.push(st),
            None => unknown.push(f.clone()),
        }
    }
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    // Only unknown states were asked for: nothing can match them.
    let listed = if states.is_empty() && !unknown.is_empty() {
        Vec::new()
    } else {
        broker.txns.list(&states, &pids)
    };
    let now = now_ms();
    let found = listed
        .into_iter()
        .filter(|m| {
            // v1: only transactions open at least this long (-1: any).
            req.duration_filter < 0
                || (m.start_ms >= 0 && now.saturating_sub(m.start_ms) >= req.duration_filter)
        })
        .filter(|m| {
            authz.allows(
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &m.transactional_id,
            )
        })
        .map(|m| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(s(m.transactional_id)))
                .with_producer_id(m.producer_id.into())
                .with_transaction_state(s(m.state.kafka_name()))
        })
        .collect();
    let resp = ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(found);
    Ok(Reply::Ready(Response::encode(&resp, version, NONE)?))
}
