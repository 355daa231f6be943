//! AddOffsetsToTxn (key 25): the group's offsets join the transaction, so
//! TxnOffsetCommit may follow (send_offsets_to_transaction).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use karnak_coordinator::errors::NONE;

use super::group_common::check_group;
use super::txn_common::{fenced_for_version, later};
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: AddOffsetsToTxnRequest = decode(body, "AddOffsetsToTxn", version)?;
    let broker = broker.clone();
    let authz = authz.clone();
    Ok(later(async move {
        let group = req.group_id.as_str();
        let code = if !authz.transactional_id(AclOperation::Write, req.transactional_id.as_str()) {
            Err(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else {
            check_group(&authz, AclOperation::Read, group)
        };
        let code = match code {
            Err(code) => code,
            Ok(()) => match broker
                .txns
                .add_to_txn(
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    &[],
                    Some(group),
                )
                .await
            {
                Ok(()) => NONE,
                Err(code) => code,
            },
        };
        let code = fenced_for_version(code, version, 2);
        let resp = AddOffsetsToTxnResponse::default().with_error_code(code);
        Response::encode(&resp, version, code)
    }))
}
