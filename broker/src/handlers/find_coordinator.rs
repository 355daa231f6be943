//! FindCoordinator (key 10): the broker leading the key's shard, i.e. the
//! leader of that partition of `__karnak_coordinator` in the metadata.
//! With no leader (yet): COORDINATOR_NOT_AVAILABLE, and the client asks
//! again, as with Kafka.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use karnak_coordinator::COORDINATOR_TOPIC;
use karnak_coordinator::errors::{COORDINATOR_NOT_AVAILABLE, INVALID_REQUEST, NONE};

use super::group_common::{check_group_id, s};
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

fn coordinator(
    broker: &Broker,
    key: &str,
    key_type: i8,
    listener: &str,
    authz: &Authz,
) -> Coordinator {
    // DESCRIBE on the group or transactional id, before anything is told.
    let denied = match key_type {
        KEY_GROUP if !authz.group(AclOperation::Describe, key) => {
            Some(ResponseError::GroupAuthorizationFailed)
        }
        KEY_TRANSACTION if !authz.transactional_id(AclOperation::Describe, key) => {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        }
        _ => None,
    };
    if let Some(e) = denied {
        return refused(key, e.code(), e.to_string());
    }
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
        return refused(
            key,
            error,
            format!("invalid coordinator key {key:?} (type {key_type})"),
        );
    }
    let shard = karnak_coordinator::shard_for(key, broker.groups.shard_count());
    let meta = broker.cluster.metadata();
    let leader = meta
        .partition(COORDINATOR_TOPIC, shard as i32)
        .map(|p| p.leader)
        .filter(|l| broker.cluster.is_live(&meta, *l));
    let address = leader.and_then(|l| {
        let a = crate::listeners::address_of(meta.brokers.get(&l)?, listener)?;
        Some((l, (a.host.clone(), i32::from(a.port))))
    });
    tracing::debug!(key, key_type, shard, ?leader, "coordinator lookup");
    if leader == Some(broker.node_id()) && !broker.cluster.holds_lease() {
        // Its shard answers NOT_COORDINATOR until the lease is back: the
        // client looks again (elsewhere, or here once the metadata moved).
        return refused(
            key,
            COORDINATOR_NOT_AVAILABLE,
            format!(
                "coordinator shard {shard} is led here as far as this broker knows, \
                 but it has lost touch with the metadata quorum"
            ),
        );
    }
    match address {
        Some((node, (host, port))) => Coordinator::default()
            .with_key(s(key))
            .with_node_id(node.into())
            .with_host(s(host))
            .with_port(port)
            .with_error_code(NONE),
        None => refused(
            key,
            COORDINATOR_NOT_AVAILABLE,
            format!("coordinator shard {shard} has no leader yet"),
        ),
    }
}

/// An answer naming no coordinator.
fn refused(key: &str, error: i16, message: String) -> Coordinator {
    Coordinator::default()
        .with_key(s(key))
        .with_node_id((-1).into())
        .with_host(s(""))
        .with_port(-1)
        .with_error_code(error)
        .with_error_message(Some(s(message)))
}

/// `listener`: the client's; the coordinator's address is its address on it.
pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    listener: &str,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: FindCoordinatorRequest = decode(body, "FindCoordinator", version)?;
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| coordinator(broker, k.as_str(), req.key_type, listener, authz))
            .collect();
    } else {
        let c = coordinator(broker, req.key.as_str(), req.key_type, listener, authz);
        resp.error_code = c.error_code;
        resp.error_message = c.error_message;
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    let code = if version >= 4 { NONE } else { resp.error_code };
    Ok(Reply::Ready(Response::encode(&resp, version, code)?))
}
