//! DescribeGroups (key 15): state, protocol and members with their
//! metadata and assignment, as `kafka-consumer-groups --describe` shows.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use karnak_coordinator::errors::{GROUP_ID_NOT_FOUND, NONE};

use super::group_common::{check_group, s};
use crate::authz::{AclOperation, Authz, GROUP_OPERATIONS, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: DescribeGroupsRequest = decode(body, "DescribeGroups", version)?;
    let include_ops = req.include_authorized_operations;
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let out = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(if include_ops {
                    authz.authorized_operations(ResourceType::Group, id.as_str(), GROUP_OPERATIONS)
                } else {
                    i32::MIN
                });
            if let Err(code) = check_group(authz, AclOperation::Describe, id.as_str()) {
                return out.with_error_code(code).with_group_state(s("Dead"));
            }
            let shard = match broker.groups.shard(id.as_str()) {
                Ok(s) => s,
                Err(code) => return out.with_error_code(code).with_group_state(s("Dead")),
            };
            let st = shard.lock();
            let Some(g) = st.groups.get(id.as_str()) else {
                // Kafka answers an unknown group as Dead; v6 adds the error.
                let out = out.with_group_state(s("Dead"));
                return if version >= 6 {
                    out.with_error_code(GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(s(format!("Group {} not found.", id.as_str()))))
                } else {
                    out
                };
            };
            if g.consumer.is_some() {
                // Kafka: a KIP-848 group is described by ConsumerGroupDescribe;
                // here it looks like an unknown group (Dead; v6 adds the error).
                let out = out.with_group_state(s("Dead"));
                return if version >= 6 {
                    out.with_error_code(GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(s(format!(
                            "Group {} is not a classic group.",
                            id.as_str()
                        ))))
                } else {
                    out
                };
            }
            let stable = g.state == karnak_coordinator::GroupState::Stable;
            out.with_error_code(NONE)
                .with_group_state(s(g.state.name()))
                .with_protocol_type(s(g.protocol_type.clone().unwrap_or_default()))
                .with_protocol_data(s(g.protocol.clone().unwrap_or_default()))
                .with_members(
                    g.members
                        .values()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(s(m.id.clone()))
                                .with_group_instance_id(m.instance_id.clone().map(s))
                                .with_client_id(s(m.client_id.clone()))
                                .with_client_host(s(m.client_host.clone()))
                                .with_member_metadata(g.member_metadata(m))
                                // Kafka shows assignments only once they are final.
                                .with_member_assignment(if stable {
                                    m.assignment.clone()
                                } else {
                                    Bytes::new()
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    let resp = DescribeGroupsResponse::default().with_groups(groups);
    Ok(Reply::Ready(Response::encode(&resp, version, NONE)?))
}
