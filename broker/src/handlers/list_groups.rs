//! ListGroups (key 16): every shard's groups, with KIP-518's state filter
//! and KIP-848's type filter.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
use karnak_coordinator::errors::NONE;

use super::group_common::s;
use crate::authz::{AclOperation, Authz, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: ListGroupsRequest = decode(body, "ListGroups", version)?;
    if !broker.cluster.holds_lease() {
        // Cut off from the metadata quorum, it may list groups whose
        // shards moved on: the client asks again (as while shards load).
        let resp = ListGroupsResponse::default()
            .with_error_code(karnak_coordinator::errors::COORDINATOR_NOT_AVAILABLE);
        return Ok(Reply::Ready(Response::encode(&resp, version, NONE)?));
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut groups = Vec::new();
    // DESCRIBE on the cluster lists every group; else those the caller may
    // DESCRIBE, as Kafka does.
    let all = authz.allows(
        AclOperation::Describe,
        ResourceType::Cluster,
        crate::authz::CLUSTER_NAME,
    );
    // The shards loaded here; clients ask every broker (as with Kafka).
    for shard in broker.groups.shards() {
        let st = shard.lock();
        for g in st.groups.values() {
            let (state, kind) = match &g.consumer {
                Some(c) => (c.state_name(), "consumer"),
                None => (g.state.name(), "classic"),
            };
            if !states.is_empty() && !states.iter().any(|s| s == &state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == kind) {
                continue;
            }
            if !all && !authz.allows(AclOperation::Describe, ResourceType::Group, &g.id) {
                continue;
            }
            groups.push(
                ListedGroup::default()
                    .with_group_id(s(g.id.clone()).into())
                    .with_protocol_type(s(g.protocol_type.clone().unwrap_or_default()))
                    .with_group_state(s(state))
                    .with_group_type(s(kind)),
            );
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let resp = ListGroupsResponse::default().with_groups(groups);
    Ok(Reply::Ready(Response::encode(&resp, version, NONE)?))
}
