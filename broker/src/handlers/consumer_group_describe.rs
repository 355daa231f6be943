//! ConsumerGroupDescribe (key 69, KIP-848): a consumer-protocol group's
//! epochs, assignor and members with their current and target assignments.
//! Classic groups answer GROUP_ID_NOT_FOUND, as in Kafka, which is what
//! makes admin clients fall back to DescribeGroups.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use karnak_coordinator::TopicView;
use karnak_coordinator::errors::{GROUP_ID_NOT_FOUND, NONE};
use uuid::Uuid;

use super::group_common::{BrokerTopics, check_group, s};
use crate::authz::{AclOperation, Authz, GROUP_OPERATIONS, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: ConsumerGroupDescribeRequest = decode(body, "ConsumerGroupDescribe", version)?;
    let include_ops = req.include_authorized_operations;
    let topics = BrokerTopics(broker);
    let assignment = |a: karnak_coordinator::Assignment| {
        Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(Uuid::from_bytes(t))
                        .with_topic_name(s(topics.name_of(&t).unwrap_or_default()).into())
                        .with_partitions(ps.into_iter().collect())
                })
                .collect(),
        )
    };
    let groups = req
        .group_ids
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
            match shard.describe_consumer(id.as_str()) {
                Err(_) => out
                    .with_error_code(GROUP_ID_NOT_FOUND)
                    .with_group_state(s("Dead"))
                    .with_error_message(Some(s(format!("Group {} not found.", id.as_str())))),
                Ok(d) => out
                    .with_error_code(NONE)
                    .with_group_state(s(d.state))
                    .with_group_epoch(d.epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(s(d.assignor))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(s(m.member_id))
                                    .with_instance_id(m.instance_id.map(s))
                                    .with_rack_id(m.rack_id.map(s))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names
                                            .into_iter()
                                            .map(|n| s(n).into())
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(m.subscribed_topic_regex.map(s))
                                    .with_assignment(assignment(m.assignment))
                                    .with_target_assignment(assignment(m.target_assignment))
                                    // v1: 1 = consumer protocol member (0 would be classic).
                                    .with_member_type(if version >= 1 { 1 } else { -1 })
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    let resp = ConsumerGroupDescribeResponse::default().with_groups(groups);
    Ok(Reply::Ready(Response::encode(&resp, version, NONE)?))
}
