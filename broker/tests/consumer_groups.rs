//! KIP-848 groups on the wire: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, their errors and bounds, OffsetCommit/OffsetFetch
//! member epochs, the boundary with classic groups, and persistence.

mod support;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use support::{Broker, Client, create_topic};

const NONE: i16 = 0;
const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();
const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();
const FENCED_MEMBER_EPOCH: i16 = ResponseError::FencedMemberEpoch.code();
const UNSUPPORTED_ASSIGNOR: i16 = ResponseError::UnsupportedAssignor.code();
const STALE_MEMBER_EPOCH: i16 = ResponseError::StaleMemberEpoch.code();
const INVALID_REGULAR_EXPRESSION: i16 = ResponseError::InvalidRegularExpression.code();

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_req(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(s(group).into())
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| s(t).into()).collect()))
        .with_topic_partitions(Some(vec![]))
}

fn beat_req(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(s(group).into())
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
}

fn hb(c: &mut Client, req: &ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    c.call(ApiKey::ConsumerGroupHeartbeat, 1, req)
}

fn owned(r: &ConsumerGroupHeartbeatResponse) -> Vec<TopicPartitions> {
    r.assignment
        .as_ref()
        .map(|a| {
            a.topic_partitions
                .iter()
                .map(|tp| {
                    TopicPartitions::default()
                        .with_topic_id(tp.topic_id)
                        .with_partitions(tp.partitions.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn count(tps: &[TopicPartitions]) -> usize {
    tps.iter().map(|t| t.partitions.len()).sum()
}

fn commit(c: &mut Client, version: i16, group: &str, epoch: i32, member: &str) -> i16 {
    let r: OffsetCommitResponse = c.call(
        ApiKey::OffsetCommit,
        version,
        &OffsetCommitRequest::default()
            .with_group_id(s(group).into())
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(s(member))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(s("t").into())
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5),
                    ]),
            ]),
    );
    r.topics[0].partitions[0].error_code
}

fn describe(c: &mut Client, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let r: ConsumerGroupDescribeResponse = c.call(
        ApiKey::ConsumerGroupDescribe,
        1,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![s(group).into()]),
    );
    r.groups.into_iter().next().unwrap()
}

/// A classic JoinGroup v3 (no MEMBER_ID_REQUIRED step); returns its code.
fn classic_join(c: &mut Client, group: &str) -> i16 {
    let j: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        3,
        &JoinGroupRequest::default()
            .with_group_id(s(group).into())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default().with_name(s("range")),
            ]),
    );
    j.error_code
}

/// Drives two members to a stable 3/3 split of `t`; returns their epochs.
fn stable_pair(c: &mut Client, group: &str) -> (i32, i32) {
    let a = hb(c, &join_req(group, "member-a", &["t"]));
    assert_eq!(a.error_code, NONE, "{:?}", a.error_message);
    assert_eq!(a.heartbeat_interval_ms, 5000);
    assert_eq!(count(&owned(&a)), 6);
    let b = hb(c, &join_req(group, "member-b", &["t"]));
    assert_eq!(b.error_code, NONE);
    // a gives three up first, then b receives them.
    let a2 = hb(c, &beat_req(group, "member-a", a.member_epoch));
    assert_eq!(count(&owned(&a2)), 3);
    let a3 = hb(
        c,
        &beat_req(group, "member-a", a2.member_epoch).with_topic_partitions(Some(owned(&a2))),
    );
    assert!(a3.member_epoch > a.member_epoch);
    let b2 = hb(
        c,
        &beat_req(group, "member-b", b.member_epoch).with_topic_partitions(Some(vec![])),
    );
    assert_eq!(count(&owned(&b2)), 3);
    (a3.member_epoch, b2.member_epoch)
}

#[test]
fn two_members_share_a_topic_and_describe_shows_it() {
    let b = Broker::start(&[]);
    let mut c = b.connect();
    let tid = create_topic(&mut c, "t", 6);
    let (ea, eb) = stable_pair(&mut c, "g1");
    let d = describe(&mut c, "g1");
    assert_eq!(d.error_code, NONE);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.assignor_name.as_str(), "uniform");
    assert_eq!(d.members.len(), 2);
    for m in &d.members {
        assert_eq!(m.member_type, 1);
        assert_eq!(m.assignment.topic_partitions[0].topic_id, tid);
        assert_eq!(m.assignment.topic_partitions[0].topic_name.as_str(), "t");
        assert_eq!(m.assignment.topic_partitions[0].partitions.len(), 3);
        assert!(m.client_host.starts_with("/127.0.0.1"));
    }
    assert_eq!(ea, eb);

    // ListGroups v5 types it "consumer"; DescribeGroups does not serve it.
    let l: ListGroupsResponse = c.call(
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
    );
    let g = l
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "g1")
        .unwrap();
    assert_eq!(g.group_type.as_str(), "consumer");
    assert_eq!(g.group_state.as_str(), "Stable");
    for (v, code) in [(5, NONE), (6, GROUP_ID_NOT_FOUND)] {
        let dg: DescribeGroupsResponse = c.call(
            ApiKey::DescribeGroups,
            v,
            &DescribeGroupsRequest::default().with_groups(vec![s("g1").into()]),
        );
        assert_eq!(dg.groups[0].error_code, code, "v{v}");
        assert_eq!(dg.groups[0].group_state.as_str(), "Dead");
        assert!(dg.groups[0].members.is_empty());
    }

    // Offsets: v9 with the member epoch; stale epochs and old versions refused.
    assert_eq!(commit(&mut c, 9, "g1", ea, "member-a"), NONE);
    assert_eq!(
        commit(&mut c, 9, "g1", ea - 1, "member-a"),
        STALE_MEMBER_EPOCH
    );
    assert_eq!(commit(&mut c, 8, "g1", ea, "member-a"), UNSUPPORTED_VERSION);
    assert_eq!(commit(&mut c, 9, "g1", ea, "nobody"), UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&mut c, 9, "g1", -1, ""), UNKNOWN_MEMBER_ID);
    let f: OffsetFetchResponse = c.call(
        ApiKey::OffsetFetch,
        9,
        &OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(s("g1").into())
                .with_member_id(Some(s("member-a")))
                .with_member_epoch(ea - 1),
        ]),
    );
    assert_eq!(f.groups[0].error_code, STALE_MEMBER_EPOCH);

    // A classic member cannot join a live consumer group; nor delete it.
    assert_eq!(classic_join(&mut c, "g1"), INCONSISTENT_GROUP_PROTOCOL);
    let del: DeleteGroupsResponse = c.call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![s("g1").into()]),
    );
    assert_eq!(del.results[0].error_code, NON_EMPTY_GROUP);

    // Leaving: the other member gets everything on its next heartbeat.
    let left = hb(&mut c, &beat_req("g1", "member-b", -1));
    assert_eq!((left.error_code, left.member_epoch), (NONE, -1));
    let a = hb(&mut c, &beat_req("g1", "member-a", ea));
    assert_eq!(count(&owned(&a)), 6);
    let a = hb(
        &mut c,
        &beat_req("g1", "member-a", a.member_epoch).with_member_epoch(-1),
    );
    assert_eq!(a.error_code, NONE);
    assert_eq!(describe(&mut c, "g1").group_state.as_str(), "Empty");
    // Empty: admin commits (epoch -1) work again.
    assert_eq!(commit(&mut c, 9, "g1", -1, ""), NONE);
}

#[test]
fn bad_heartbeats_get_kafkas_errors_and_other_groups_carry_on() {
    let b = Broker::start(&[]);
    let mut c = b.connect();
    create_topic(&mut c, "t", 6);
    let (ea, _) = stable_pair(&mut c, "healthy");
    let cases: Vec<(ConsumerGroupHeartbeatRequest, i16)> = vec![
        (join_req("", "m", &["t"]), INVALID_REQUEST),
        (join_req("g", "", &["t"]), INVALID_REQUEST),
        (
            join_req("g", "m", &["t"]).with_rebalance_timeout_ms(-1),
            INVALID_REQUEST,
        ),
        (
            join_req("g", "m", &["t"]).with_topic_partitions(None),
            INVALID_REQUEST,
        ),
        (
            join_req("g", "m", &["t"]).with_subscribed_topic_names(None),
            INVALID_REQUEST,
        ),
        (
            join_req("g", "m", &["t"]).with_member_epoch(-3),
            INVALID_REQUEST,
        ),
        (beat_req("g", "m", -2), INVALID_REQUEST),
        (
            join_req("g", "m", &["t"]).with_server_assignor(Some(s("magic"))),
            UNSUPPORTED_ASSIGNOR,
        ),
        (
            join_req("g", "m", &[]).with_subscribed_topic_regex(Some(s("t("))),
            INVALID_REGULAR_EXPRESSION,
        ),
        (join_req(&"g".repeat(2000), "m", &["t"]), INVALID_REQUEST),
        (join_req("g", &"m".repeat(2000), &["t"]), INVALID_REQUEST),
        (beat_req("no-such-group", "m", 3), GROUP_ID_NOT_FOUND),
        (beat_req("healthy", "stranger", 1), UNKNOWN_MEMBER_ID),
        (beat_req("healthy", "member-a", ea + 1), FENCED_MEMBER_EPOCH),
        (beat_req("healthy", "member-a", ea - 1), FENCED_MEMBER_EPOCH),
    ];
    for (req, want) in cases {
        let r = hb(&mut c, &req);
        assert_eq!(r.error_code, want, "{req:?}: {:?}", r.error_message);
        assert!(r.error_message.is_some());
    }
    // A classic group with members is not taken over.
    assert_eq!(classic_join(&mut c, "classic"), NONE);
    assert_eq!(
        hb(&mut c, &join_req("classic", "m", &["t"])).error_code,
        GROUP_ID_NOT_FOUND
    );
    assert_eq!(describe(&mut c, "classic").error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(describe(&mut c, "unknown").error_code, GROUP_ID_NOT_FOUND);
    // Truncated request: an error frame or a closed connection, never a panic.
    let body = {
        let mut b = BytesMut::new();
        join_req("g", "m", &["t"]).encode(&mut b, 1).unwrap();
        Bytes::from(b[..b.len() / 2].to_vec())
    };
    let mut raw = b.connect();
    let frame = raw.frame(ApiKey::ConsumerGroupHeartbeat, 1, &body);
    raw.send_raw(&frame);
    let _ = raw.read_frame();
    // The healthy group is untouched.
    let r = hb(&mut c, &beat_req("healthy", "member-a", ea));
    assert_eq!((r.error_code, r.member_epoch), (NONE, ea));
    assert_eq!(describe(&mut c, "healthy").group_state.as_str(), "Stable");
}

#[test]
fn consumer_groups_survive_kill9() {
    let mut b = Broker::start(&[]);
    let mut c = b.connect();
    create_topic(&mut c, "t", 6);
    let (ea, eb) = stable_pair(&mut c, "durable");
    assert_eq!(commit(&mut c, 9, "durable", ea, "member-a"), NONE);
    drop(c);
    b.kill9();
    b.spawn();
    let mut c = b.connect();
    // Members carry on at their epochs with their partitions.
    let r = hb(&mut c, &beat_req("durable", "member-a", ea));
    assert_eq!((r.error_code, r.member_epoch), (NONE, ea));
    let r = hb(&mut c, &beat_req("durable", "member-b", eb));
    assert_eq!((r.error_code, r.member_epoch), (NONE, eb));
    let d = describe(&mut c, "durable");
    assert_eq!(d.group_state.as_str(), "Stable");
    assert!(
        d.members
            .iter()
            .all(|m| m.assignment.topic_partitions[0].partitions.len() == 3)
    );
    assert_eq!(commit(&mut c, 9, "durable", ea, "member-a"), NONE);
}
