//! OffsetFetch (key 9): committed offsets of one group (v1-7) or several
//! (v8+); -1 where nothing is committed, as Kafka answers.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use karnak_coordinator::errors::{NONE, UNSTABLE_OFFSET_COMMIT};
use karnak_coordinator::records::StoredOffset;

use super::group_common::{check_group, s};
use crate::authz::{AclOperation, Authz, ResourceType};
use crate::broker::Broker;
use crate::response::{HandlerError, Reply, Response, decode};

type Fetched = Vec<((String, i32), Option<StoredOffset>)>;
type TopicRows = Vec<(String, Vec<(i32, Option<StoredOffset>)>)>;

fn fetch(
    broker: &Broker,
    group: &str,
    member: Option<(&str, i32)>,
    wanted: Option<Vec<(String, i32)>>,
    authz: &Authz,
) -> Result<Fetched, i16> {
    check_group(authz, AclOperation::Describe, group)?;
    let shard = broker.groups.shard(group)?;
    if let Some((member_id, epoch)) = member {
        // v9 from a KIP-848 member: its epoch must be current.
        shard.check_offset_fetch(group, member_id, epoch)?;
    }
    let all = wanted.is_none();
    let mut rows = shard.fetch_offsets(group, wanted);
    if all && authz.enabled() {
        // "All of the group's offsets": those of topics the caller may see.
        rows.retain(|((t, _), _)| authz.allows(AclOperation::Describe, ResourceType::Topic, t));
    }
    Ok(rows)
}

/// Groups partitions by topic, keeping the order they came in.
fn by_topic(rows: Fetched) -> TopicRows {
    let mut out: TopicRows = Vec::new();
    for ((t, p), o) in rows {
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, v)) => v.push((p, o)),
            None => out.push((t, vec![(p, o)])),
        }
    }
    out
}

/// One partition's answer, before it takes the shape of the request's version.
struct Answer {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    error: i16,
}

/// Kafka's answer for one partition: the committed offset, or -1 with an
/// error: TOPIC_AUTHORIZATION_FAILED, or UNSTABLE_OFFSET_COMMIT while an
/// open transaction is about to change it.
fn answer(partition: i32, o: Option<StoredOffset>, refused: Option<i16>) -> Answer {
    match o {
        _ if let Some(error) = refused => Answer {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error,
        },
        Some(o) => Answer {
            partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: Some(o.metadata.unwrap_or_default()),
            error: NONE,
        },
        None => Answer {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error: NONE,
        },
    }
}

/// The (topic, partition) pairs a request names, or None for all. The v8+
/// per-group and the v0-7 request shapes hold the same fields in different
/// generated types, hence a macro.
macro_rules! wanted {
    ($topics:expr) => {
        $topics.map(|ts| {
            ts.into_iter()
                .flat_map(|t| {
                    let name = t.name.to_string();
                    t.partition_indexes
                        .into_iter()
                        .map(move |p| (name.clone(), p))
                })
                .collect::<Vec<_>>()
        })
    };
}

/// The fetched rows as response topics of either version's generated types,
/// each partition given the shared `answer`.
macro_rules! answered_topics {
    ($rows:expr, $group:expr, $refused:expr, $Topic:ident, $Partition:ident) => {
        by_topic($rows)
            .into_iter()
            .map(|(t, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(p, o)| {
                        let a = answer(p, o, ($refused)($group, &t, p));
                        $Partition::default()
                            .with_partition_index(a.partition)
                            .with_committed_offset(a.offset)
                            .with_committed_leader_epoch(a.leader_epoch)
                            .with_metadata(a.metadata.map(s))
                            .with_error_code(a.error)
                    })
                    .collect();
                $Topic::default()
                    .with_name(s(t).into())
                    .with_partitions(partitions)
            })
            .collect()
    };
}

pub fn handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    version: i16,
    authz: &Authz,
) -> Result<Reply, HandlerError> {
    let req: OffsetFetchRequest = decode(body, "OffsetFetch", version)?;
    let mut resp = OffsetFetchResponse::default();
    // require_stable (v7+): an offset an open transaction is about to
    // change is not answered yet; the consumer retries (KIP-447).
    let require_stable = req.require_stable;
    let unstable = |group: &str, topic: &str, p: i32| {
        if !authz.allows(AclOperation::Describe, ResourceType::Topic, topic) {
            Some(ResponseError::TopicAuthorizationFailed.code())
        } else if require_stable && broker.txns.has_pending_offsets(group, topic, p) {
            Some(UNSTABLE_OFFSET_COMMIT)
        } else {
            None
        }
    };
    if version >= 8 {
        for g in req.groups {
            let wanted = wanted!(g.topics);
            let mut group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            let member = g.member_id.as_deref().map(|m| (m, g.member_epoch));
            let gid = g.group_id.as_str();
            match fetch(broker, gid, member, wanted, authz) {
                Err(code) => group.error_code = code,
                Ok(rows) => {
                    group.topics = answered_topics!(
                        rows,
                        gid,
                        unstable,
                        OffsetFetchResponseTopics,
                        OffsetFetchResponsePartitions
                    );
                }
            }
            resp.groups.push(group);
        }
        return Ok(Reply::Ready(Response::encode(&resp, version, NONE)?));
    }
    let gid = req.group_id.as_str();
    match fetch(broker, gid, None, wanted!(req.topics), authz) {
        Err(code) => resp.error_code = code,
        Ok(rows) => {
            resp.topics = answered_topics!(
                rows,
                gid,
                unstable,
                OffsetFetchResponseTopic,
                OffsetFetchResponsePartition
            );
        }
    }
    let code = resp.error_code;
    Ok(Reply::Ready(Response::encode(&resp, version, code)?))
}
