//! FindCoordinator (key 10): the broker leading the key's shard. On one node
//! that is this broker for every shard; the shard is still computed so logs
//! and a cluster see the same routing.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use karnak_coordinator::errors::{INVALID_REQUEST, NONE};

use super::group_common::{check_group_id, s};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

fn coordinator(broker: &Broker, key: &str, key_type: i8) -> Coordinator {
    let (host, port) = broker.advertised.clone();
    let error = match key_type {
        // Kafka answers an empty group id with the coordinator; the group
        // APIs then refuse it with INVALID_GROUP_ID.
        KEY_GROUP if key.is_empty() => NONE,
        KEY_GROUP => check_group_id(key).err().unwrap_or(NONE),
        KEY_TRANSACTION if key.is_empty() => INVALID_REQUEST,
        KEY_TRANSACTION => NONE,
        _ => INVALID_REQUEST,
    };
    if error != NONE {
        return Coordinator::default()
            .with_key(s(key))
            .with_node_id((-1).into())
            .with_host(s(""))
            .with_port(-1)
            .with_error_code(error)
            .with_error_message(Some(s(format!(
                "invalid coordinator key {key:?} (type {key_type})"
            ))));
    }
    let shard = karnak_coordinator::shard_for(key, broker.groups.shard_count());
    tracing::debug!(key, key_type, shard, "coordinator lookup");
    Coordinator::default()
        .with_key(s(key))
        .with_node_id(broker.node_id().into())
        .with_host(s(host))
        .with_port(port)
        .with_error_code(NONE)
}

pub fn handle(broker: &Arc<Broker>, body: &mut Bytes, version: i16) -> Result<Reply, HandlerError> {
    let req: FindCoordinatorRequest = decode(body, "FindCoordinator", version)?;
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| coordinator(broker, k.as_str(), req.key_type))
            .collect();
    } else {
        let c = coordinator(broker, req.key.as_str(), req.key_type);
        resp.error_code = c.error_code;
        resp.error_message = c.error_message;
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    let code = if version >= 4 { NONE } else { resp.error_code };
    Ok(Reply::Ready(Response::encode(&resp, version, code)?))
}
