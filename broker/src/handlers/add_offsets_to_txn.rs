//! AddOffsetsToTxn (key 25): the group's offsets join the transaction, so
//! TxnOffsetCommit may follow (send_offsets_to_transaction).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use karnak_coordinator::errors::NONE;

use super::group_common::check_group_id;
use super::txn_common::{blocking, fenced_for_version};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(broker: &Arc<Broker>, body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let req: AddOffsetsToTxnRequest = decode(body, "AddOffsetsToTxn", version)?;
    let broker = broker.clone();
    Ok(blocking(move || {
        let group = req.group_id.as_str();
        let code = match check_group_id(group) {
            Err(code) => code,
            Ok(()) => match broker.txns.add_to_txn(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                &[],
                Some(group),
            ) {
                Ok(()) => NONE,
                Err(code) => code,
            },
        };
        let code = fenced_for_version(code, version, 2);
        let resp = AddOffsetsToTxnResponse::default().with_error_code(code);
        Response::encode(&resp, version, code)
    }))
}
