//! EndTxn (key 26): commit or abort. The answer goes out once every
//! partition of the transaction holds its marker and the transaction's
//! offsets are settled, so the producer's next transaction starts clean.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

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
    let req: EndTxnRequest = decode(body, "EndTxn", version)?;
    let denied = !authz.transactional_id(AclOperation::Write, req.transactional_id.as_str());
    let broker = broker.clone();
    Ok(later(async move {
        let code = if denied {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        } else {
            broker
                .txns
                .end_txn(
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    req.committed,
                )
                .await
        };
        let code = fenced_for_version(code, version, 2);
        let resp = EndTxnResponse::default()
            .with_error_code(code)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        Response::encode(&resp, version, code)
    }))
}
