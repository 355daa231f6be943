//! InitProducerId (key 22): a producer id and epoch for an idempotent
//! producer, or for a transactional id (bumping its epoch fences the
//! previous producer and aborts its open transaction).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use karnak_coordinator::errors::NONE;

use super::txn_common::{fenced_for_version, later};
use crate::authz::{AclOperation, Authz, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: InitProducerIdRequest = decode(body, "InitProducerId", version)?;
    // A transactional producer needs WRITE on its id; an idempotent one
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
    let denied = match req.transactional_id.as_deref() {
        Some(tid) if !authz.transactional_id(AclOperation::Write, tid) => {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        }
        Some(_) => None,
        None if !authz.allows(
            AclOperation::IdempotentWrite,
            ResourceType::Cluster,
            crate::authz::CLUSTER_NAME,
        ) && !authz.any_of_type(AclOperation::Write, ResourceType::Topic) =>
        {
            Some(ResponseError::ClusterAuthorizationFailed)
        }
        None => None,
    };
    if let Some(e) = denied {
        let resp = InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        return Ok(Reply::Ready(Response::encode(&resp, version, e.code())?));
    }
    let broker = broker.clone();
    Ok(later(async move {
        let tid = req.transactional_id.as_ref().map(|t| t.as_str());
        let resp = match broker
            .txns
            .init_producer_id(
                tid,
                req.transaction_timeout_ms,
                req.producer_id.0,
                req.producer_epoch,
            )
            .await
        {
            Ok((pid, epoch)) => {
                tracing::debug!(transactional_id = ?tid, producer_id = pid, epoch, "producer id assigned");
                InitProducerIdResponse::default()
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
            }
            Err(code) => InitProducerIdResponse::default()
                .with_error_code(fenced_for_version(code, version, 4))
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        };
        let code = resp.error_code;
        Response::encode(&resp, version, if code == NONE { NONE } else { code })
    }))
}
