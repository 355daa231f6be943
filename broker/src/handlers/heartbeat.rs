//! Heartbeat (key 12): keeps a member's session alive; tells it to rejoin
//! when a rebalance is under way.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::group_common::check_group;
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: HeartbeatRequest = decode(body, "Heartbeat", version)?;
    let code = match check_group(authz, AclOperation::Read, req.group_id.as_str()) {
        Err(code) => code,
        Ok(()) => match broker.groups.shard(req.group_id.as_str()) {
            Err(code) => code,
            Ok(shard) => shard.heartbeat(
                req.group_id.as_str(),
                req.generation_id,
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
            ),
        },
    };
    let resp = HeartbeatResponse::default().with_error_code(code);
    Ok(Reply::Ready(Response::encode(&resp, version, code)?))
}
