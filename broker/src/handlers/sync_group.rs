//! SyncGroup (key 14): the leader's assignment, handed to every member.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use karnak_coordinator::errors::{COORDINATOR_NOT_AVAILABLE, NONE};
use karnak_coordinator::{SyncOutcome, SyncRequest};

use super::group_common::{check_group, s};
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: SyncGroupRequest = decode(body, "SyncGroup", version)?;
    if let Err(code) = check_group(authz, AclOperation::Read, req.group_id.as_str()) {
        return encode(SyncOutcome::error(code), version).map(Reply::Ready);
    }
    let shard = match broker.groups.shard(req.group_id.as_str()) {
        Ok(s) => s,
        Err(code) => return encode(SyncOutcome::error(code), version).map(Reply::Ready),
    };
    let group_id = req.group_id.to_string();
    let rx = shard.sync(SyncRequest {
        group_id: group_id.clone(),
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|i| i.to_string()),
        protocol_type: req.protocol_type.map(|p| p.to_string()),
        protocol: req.protocol_name.map(|p| p.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    });
    let mut stopping = broker.stopping.clone();
    Ok(Reply::Later(Box::pin(async move {
        let answered = async {
            let outcome = rx
                .await
                .unwrap_or_else(|_| SyncOutcome::error(COORDINATOR_NOT_AVAILABLE));
            if outcome.error != NONE {
                return outcome;
            }
            // The assignment goes out once the group's record holding it
            // is durable (with a cluster: on the in-sync replicas).
            match shard.group_durable(&group_id).await {
                Ok(()) => outcome,
                Err(e) => {
                    tracing::warn!(group = %group_id, error = %e, "SyncGroup: the group's assignment is not durable");
                    SyncOutcome::error(e.code())
                }
            }
        };
        let outcome = tokio::select! {
            o = answered => o,
            _ = stopping.wait_for(|s| *s) => SyncOutcome::error(COORDINATOR_NOT_AVAILABLE),
        };
        encode(outcome, version)
    })))
}

fn encode(o: SyncOutcome, version: i16) -> Result<Response, HandlerError> {
    let resp = SyncGroupResponse::default()
        .with_error_code(o.error)
        .with_protocol_type(o.protocol_type.map(s))
        .with_protocol_name(o.protocol.map(s))
        .with_assignment(o.assignment);
    Response::encode(&resp, version, o.error)
}
