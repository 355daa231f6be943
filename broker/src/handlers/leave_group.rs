//! LeaveGroup (key 13): one member (v0-2) or a batch (v3+, KIP-345).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use karnak_coordinator::errors::NONE;

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
    let req: LeaveGroupRequest = decode(body, "LeaveGroup", version)?;
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let result = check_group(authz, AclOperation::Read, req.group_id.as_str()).and_then(|()| {
        broker
            .groups
            .shard(req.group_id.as_str())
            .and_then(|s| s.leave(req.group_id.as_str(), &members))
    });
    let mut resp = LeaveGroupResponse::default();
    match result {
        Err(code) => resp.error_code = code,
        Ok(codes) if version >= 3 => {
            resp.members = members
                .into_iter()
                .zip(codes)
                .map(|((m, i), code)| {
                    MemberResponse::default()
                        .with_member_id(s(m))
                        .with_group_instance_id(i.map(s))
                        .with_error_code(code)
                })
                .collect();
        }
        Ok(codes) => resp.error_code = codes.first().copied().unwrap_or(NONE),
    }
    let code = resp.error_code;
    Ok(Reply::Ready(Response::encode(&resp, version, code)?))
}
