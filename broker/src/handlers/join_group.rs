//! JoinGroup (key 11): parked until the group's rebalance completes.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use karnak_coordinator::{JoinOutcome, JoinRequest};

use super::group_common::{Caller, check_group, s};
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    caller: &Caller,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: JoinGroupRequest = decode(body, "JoinGroup", version)?;
    let member_id = req.member_id.to_string();
    if let Err(code) = check_group(authz, AclOperation::Read, req.group_id.as_str()) {
        return encode(JoinOutcome::error(code, &member_id), version).map(Reply::Ready);
    }
    let join = JoinRequest {
        group_id: req.group_id.to_string(),
        member_id,
        instance_id: req.group_instance_id.map(|i| i.to_string()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        client_id: caller.client_id.clone(),
        client_host: caller.host.clone(),
        require_known_member_id: version >= 4,
    };
    let shard = match broker.groups.shard(&join.group_id) {
        Ok(s) => s,
        Err(code) => return encode(JoinOutcome::error(code, ""), version).map(Reply::Ready),
    };
    let mut stopping = broker.stopping.clone();
    Ok(Reply::Later(Box::pin(async move {
        if join.member_id.is_empty() {
            // A member id may need a lease from the metadata group: awaited
            // here rather than inside the join, which holds the shard.
            shard.reserve_member_id().await;
        }
        let rx = shard.join(join);
        let outcome = tokio::select! {
            r = rx => r.unwrap_or_else(|_| JoinOutcome::error(karnak_coordinator::errors::COORDINATOR_NOT_AVAILABLE, "")),
            // A parked join answers at shutdown, so the client moves on.
            _ = stopping.wait_for(|s| *s) => JoinOutcome::error(karnak_coordinator::errors::COORDINATOR_NOT_AVAILABLE, ""),
        };
        encode(outcome, version)
    })))
}

fn encode(o: JoinOutcome, version: i16) -> Result<Response, HandlerError> {
    let resp = JoinGroupResponse::default()
        .with_error_code(o.error)
        .with_generation_id(o.generation)
        .with_protocol_type(o.protocol_type.map(s))
        .with_protocol_name(o.protocol.map(s))
        .with_leader(s(o.leader))
        .with_skip_assignment(o.skip_assignment && version >= 9)
        .with_member_id(s(o.member_id))
        .with_members(
            o.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(m.member_id))
                        .with_group_instance_id(m.instance_id.map(s))
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    // Before v7 the protocol name is not nullable.
    let resp = if version < 7 && resp.protocol_name.is_none() {
        resp.with_protocol_name(Some(s("")))
    } else {
        resp
    };
    Response::encode(&resp, version, o.error)
}
