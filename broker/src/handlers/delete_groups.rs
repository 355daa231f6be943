//! DeleteGroups (key 42): only groups without members; their offsets go too.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use karnak_coordinator::errors::NONE;

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
    let req: DeleteGroupsRequest = decode(body, "DeleteGroups", version)?;
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let code = match check_group(authz, AclOperation::Delete, id.as_str()) {
                Err(code) => code,
                Ok(()) => match broker.groups.shard(id.as_str()) {
                    Ok(shard) => shard.delete_group(id.as_str()),
                    Err(code) => code,
                },
            };
            if code == NONE {
                tracing::info!(group = id.as_str(), "deleted group");
            }
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    let resp = DeleteGroupsResponse::default().with_results(results);
    Ok(Reply::Ready(Response::encode(&resp, version, NONE)?))
}
