//! ConsumerGroupHeartbeat (key 68, KIP-848): the consumer group protocol
//! where the coordinator assigns partitions. One request joins, heartbeats
//! or leaves; the answer carries the member's epoch and, when it changed,
//! its assignment.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use karnak_coordinator::errors::INVALID_REQUEST;
use karnak_coordinator::{ConsumerHeartbeat, HeartbeatOutcome};
use uuid::Uuid;

use super::group_common::{BrokerTopics, Caller, MAX_GROUP_ID_BYTES, s};
use crate::authz::{AclOperation, Authz};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

/// Longest member id, instance id, rack id or regex accepted: they are
/// persisted with the group, so they are bounded like group ids.
const MAX_ID_BYTES: usize = 1024;
const MAX_REGEX_BYTES: usize = 16 << 10;
/// Topic names a member may subscribe to by name.
const MAX_SUBSCRIBED_TOPICS: usize = 10_000;

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    caller: &Caller,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: ConsumerGroupHeartbeatRequest = decode(body, "ConsumerGroupHeartbeat", version)?;
    let refused = match bounds(&req) {
        _ if !authz.group(AclOperation::Read, req.group_id.as_str()) => {
            Some(HeartbeatOutcome::error(
                ResponseError::GroupAuthorizationFailed.code(),
                "READ on the group is needed",
            ))
        }
        Err(message) => Some(HeartbeatOutcome::error(INVALID_REQUEST, message)),
        Ok(()) => None,
    };
    if let Some(outcome) = refused {
        return encode(outcome, version).map(Reply::Ready);
    }
    let hb = ConsumerHeartbeat {
        version,
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|i| i.to_string()),
        rack_id: req.rack_id.map(|r| r.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|v| v.into_iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|r| r.to_string()),
        server_assignor: req.server_assignor.map(|a| a.to_string()),
        owned: req.topic_partitions.map(|tps| {
            let mut a = karnak_coordinator::Assignment::new();
            for tp in tps {
                a.entry(*tp.topic_id.as_bytes())
                    .or_default()
                    .extend(tp.partitions);
            }
            a
        }),
        client_id: caller.client_id.clone(),
        client_host: caller.host.clone(),
    };
    let shard = match broker.groups.shard(&hb.group_id) {
        Ok(shard) => shard,
        Err(code) => {
            let outcome = HeartbeatOutcome::error(code, "the group's shard is not led here");
            return encode(outcome, version).map(Reply::Ready);
        }
    };
    let broker = broker.clone();
    // A v0 member is named by the broker: its id may need a lease from the
    // metadata group, awaited rather than taken under the shard lock.
    let named_here = hb.member_id.is_empty();
    Ok(Reply::Later(Box::pin(async move {
        if named_here {
            shard.reserve_member_id().await;
        }
        let outcome = shard.consumer_heartbeat(&hb, &BrokerTopics(&broker));
        if outcome.error != 0 || outcome.assignment.is_none() {
            return encode(outcome, version);
        }
        // A new assignment (and member epoch) goes out once the group's
        // record holding it is durable, as SyncGroup's does.
        match shard.group_durable(&hb.group_id).await {
            Ok(()) => encode(outcome, version),
            Err(e) => encode(
                HeartbeatOutcome::error(e.code(), "the group's assignment is not durable"),
                version,
            ),
        }
    })))
}

fn encode(outcome: HeartbeatOutcome, version: i16) -> Result<Response, HandlerError> {
    if outcome.error != 0 {
        tracing::debug!(
            code = outcome.error,
            message = outcome.message.as_deref().unwrap_or(""),
            "ConsumerGroupHeartbeat refused"
        );
    }
    let resp = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(outcome.error)
        .with_error_message(outcome.message.map(s))
        .with_member_id(outcome.member_id.map(s))
        .with_member_epoch(outcome.member_epoch)
        .with_heartbeat_interval_ms(outcome.heartbeat_interval_ms)
        .with_assignment(outcome.assignment.map(|a| {
            Assignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(t, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(Uuid::from_bytes(t))
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        }));
    Response::encode(&resp, version, outcome.error)
}

/// Bounds on what the request carries, before any of it is kept.
fn bounds(req: &ConsumerGroupHeartbeatRequest) -> Result<(), String> {
    if req.group_id.len() > MAX_GROUP_ID_BYTES {
        return Err(format!(
            "GroupId is longer than {MAX_GROUP_ID_BYTES} bytes."
        ));
    }
    let ids = [
        ("MemberId", Some(req.member_id.len())),
        ("InstanceId", req.instance_id.as_ref().map(|s| s.len())),
        ("RackId", req.rack_id.as_ref().map(|s| s.len())),
        (
            "ServerAssignor",
            req.server_assignor.as_ref().map(|s| s.len()),
        ),
    ];
    for (name, len) in ids {
        if len.is_some_and(|l| l > MAX_ID_BYTES) {
            return Err(format!("{name} is longer than {MAX_ID_BYTES} bytes."));
        }
    }
    if req
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REGEX_BYTES)
    {
        return Err(format!(
            "SubscribedTopicRegex is longer than {MAX_REGEX_BYTES} bytes."
        ));
    }
    if let Some(names) = &req.subscribed_topic_names {
        if names.len() > MAX_SUBSCRIBED_TOPICS {
            return Err(format!(
                "more than {MAX_SUBSCRIBED_TOPICS} subscribed topics."
            ));
        }
        if names.iter().any(|n| n.len() > 255) {
            return Err("a subscribed topic name is longer than 255 bytes.".into());
        }
    }
    Ok(())
}
