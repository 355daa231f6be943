//! Consumer groups on the wire: the classic protocol's happy path at every
//! version, its errors, bounds, timers and persistence across restarts.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use support::{Broker, Client, create_topic};

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();
const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();
const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
const INVALID_SESSION_TIMEOUT: i16 = ResponseError::InvalidSessionTimeout.code();
const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();
const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
const GROUP_MAX_SIZE_REACHED: i16 = ResponseError::GroupMaxSizeReached.code();
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = ResponseError::GroupSubscribedToTopic.code();

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn start() -> Broker {
    Broker::start(&["--group-initial-rebalance-delay-ms", "0"])
}

/// ConsumerProtocolSubscription bytes (version prefix + body), as clients send.
fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut b = BytesMut::new();
    b.put_i16(1);
    sub.encode(&mut b, 1).unwrap();
    b.freeze()
}

fn join_req(group: &str, member: &str, protocol_type: &str, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(s(group).into())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s(protocol_type))
        .with_protocols(vec![
            join_group_request::JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(topics)),
        ])
}

/// Joins with the v4+ two-step (MEMBER_ID_REQUIRED, then the real join).
fn join(c: &mut Client, group: &str, topics: &[&str]) -> JoinGroupResponse {
    let r: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        9,
        &join_req(group, "", "consumer", topics),
    );
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    assert!(!r.member_id.is_empty());
    c.call(
        ApiKey::JoinGroup,
        9,
        &join_req(group, r.member_id.as_str(), "consumer", topics),
    )
}

fn sync(
    c: &mut Client,
    group: &str,
    gen_id: i32,
    member: &str,
    assignments: Vec<(&str, &[u8])>,
) -> SyncGroupResponse {
    let req = SyncGroupRequest::default()
        .with_group_id(s(group).into())
        .with_generation_id(gen_id)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(m, a)| {
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        );
    c.call(ApiKey::SyncGroup, 5, &req)
}

fn heartbeat(c: &mut Client, group: &str, gen_id: i32, member: &str) -> i16 {
    let r: HeartbeatResponse = c.call(
        ApiKey::Heartbeat,
        4,
        &HeartbeatRequest::default()
            .with_group_id(s(group).into())
            .with_generation_id(gen_id)
            .with_member_id(s(member)),
    );
    r.error_code
}

fn commit(
    c: &mut Client,
    version: i16,
    group: &str,
    gen_id: i32,
    member: &str,
    topic: &str,
    parts: &[(i32, i64)],
) -> Vec<i16> {
    let req = OffsetCommitRequest::default()
        .with_group_id(s(group).into())
        .with_generation_id_or_member_epoch(gen_id)
        .with_member_id(s(member))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(s(topic).into())
                .with_partitions(
                    parts
                        .iter()
                        .map(|(p, o)| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_metadata(Some(s("meta")))
                        })
                        .collect(),
                ),
        ]);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, version, &req);
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Committed offsets of `parts` through OffsetFetch `version`.
fn fetch_offsets(
    c: &mut Client,
    version: i16,
    group: &str,
    topic: &str,
    parts: &[i32],
) -> Vec<i64> {
    if version >= 8 {
        let req = OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(s(group).into())
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(s(topic).into())
                        .with_partition_indexes(parts.to_vec()),
                ])),
        ]);
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, version, &req);
        assert_eq!(r.groups[0].error_code, NONE);
        return r.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(s(group).into())
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(s(topic).into())
                .with_partition_indexes(parts.to_vec()),
        ]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, version, &req);
    assert_eq!(r.error_code, NONE);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

fn describe(c: &mut Client, version: i16, group: &str) -> describe_groups_response::DescribedGroup {
    let r: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        version,
        &DescribeGroupsRequest::default().with_groups(vec![s(group).into()]),
    );
    r.groups.into_iter().next().unwrap()
}

/// A one-member group, Stable; returns (generation, member id).
fn stable_group(c: &mut Client, group: &str, topic: &str) -> (i32, String) {
    let j = join(c, group, &[topic]);
    assert_eq!(j.error_code, NONE);
    assert_eq!(j.leader, j.member_id, "a lone member leads");
    assert_eq!(j.members.len(), 1);
    let me = j.member_id.to_string();
    let sr = sync(c, group, j.generation_id, &me, vec![(&me, b"assignment")]);
    assert_eq!(sr.error_code, NONE);
    assert_eq!(&sr.assignment[..], b"assignment");
    (j.generation_id, me)
}

#[test]
fn find_coordinator_single_and_batched() {
    let b = start();
    let mut c = b.connect();
    for v in 0..=3 {
        let r: FindCoordinatorResponse = c.call(
            ApiKey::FindCoordinator,
            v,
            &FindCoordinatorRequest::default().with_key(s("g")),
        );
        assert_eq!(r.error_code, NONE, "v{v}");
        assert_eq!(r.port, b.kafka_port as i32);
        assert_eq!(r.host.as_str(), "127.0.0.1");
    }
    for v in 4..=6 {
        let r: FindCoordinatorResponse = c.call(
            ApiKey::FindCoordinator,
            v,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![
                s("a"),
                s("b"),
                s(""),
                s(&"x".repeat(2000)),
            ]),
        );
        let codes: Vec<i16> = r.coordinators.iter().map(|c| c.error_code).collect();
        // An empty group id gets the coordinator, as in Kafka (the group
        // APIs refuse it); one past our bound is refused here already.
        assert_eq!(codes, vec![NONE, NONE, NONE, INVALID_GROUP_ID], "v{v}");
        assert_eq!(r.coordinators[1].key.as_str(), "b");
    }
}

#[test]
fn group_lifecycle_and_offsets_at_every_version() {
    let b = start();
    let mut c = b.connect();
    create_topic(&mut c, "t", 3);
    let (gen_id, me) = stable_group(&mut c, "g1", "t");
    assert_eq!(heartbeat(&mut c, "g1", gen_id, &me), NONE);
    for v in 2..=9 {
        let off = 100 + v as i64;
        assert_eq!(
            commit(&mut c, v, "g1", gen_id, &me, "t", &[(0, off), (1, off + 1)]),
            vec![NONE, NONE],
            "commit v{v}"
        );
        for fv in [1, 5, 7, 8, 9] {
            assert_eq!(
                fetch_offsets(&mut c, fv, "g1", "t", &[0, 1, 2]),
                vec![off, off + 1, -1],
                "commit v{v} fetch v{fv}"
            );
        }
    }
    let d = describe(&mut c, 5, "g1");
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_type.as_str(), "consumer");
    assert_eq!(d.protocol_data.as_str(), "range");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].client_id.as_str(), "wire-test");
    assert_eq!(d.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(&d.members[0].member_assignment[..], b"assignment");

    let l: ListGroupsResponse = c.call(
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default().with_states_filter(vec![s("Stable")]),
    );
    assert!(l.groups.iter().any(|g| g.group_id.as_str() == "g1"));
    let l: ListGroupsResponse = c.call(
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
    );
    assert!(!l.groups.iter().any(|g| g.group_id.as_str() == "g1"));

    // Batch leave (v3+) empties the group; offsets stay.
    let r: LeaveGroupResponse = c.call(
        ApiKey::LeaveGroup,
        5,
        &LeaveGroupRequest::default()
            .with_group_id(s("g1").into())
            .with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(s(&me)),
                leave_group_request::MemberIdentity::default().with_member_id(s("stranger")),
            ]),
    );
    assert_eq!(r.error_code, NONE);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![NONE, UNKNOWN_MEMBER_ID]);
    assert_eq!(describe(&mut c, 5, "g1").group_state.as_str(), "Empty");
    assert_eq!(fetch_offsets(&mut c, 8, "g1", "t", &[0]), vec![109]);
    // All offsets of the group when no topics are named.
    let r: OffsetFetchResponse = c.call(
        ApiKey::OffsetFetch,
        5,
        &OffsetFetchRequest::default()
            .with_group_id(s("g1").into())
            .with_topics(None),
    );
    assert_eq!(r.topics[0].partitions.len(), 2);

    // A simple (generation -1) commit works on an empty group, as admin tools do.
    assert_eq!(commit(&mut c, 8, "g1", -1, "", "t", &[(2, 7)]), vec![NONE]);
    // OffsetDelete, then DeleteGroups.
    let r: OffsetDeleteResponse = c.call(
        ApiKey::OffsetDelete,
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(s("g1").into())
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(s("t").into())
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(2),
                    ]),
            ]),
    );
    assert_eq!(r.error_code, NONE);
    assert_eq!(fetch_offsets(&mut c, 8, "g1", "t", &[2]), vec![-1]);
    let r: DeleteGroupsResponse = c.call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![s("g1").into(), s("nope").into()]),
    );
    let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![NONE, GROUP_ID_NOT_FOUND]);
    assert_eq!(fetch_offsets(&mut c, 8, "g1", "t", &[0]), vec![-1]);
    let d = describe(&mut c, 6, "g1");
    assert_eq!(d.error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(describe(&mut c, 5, "g1").group_state.as_str(), "Dead");
}

#[test]
fn membership_errors_are_kafkas_and_leave_other_groups_alone() {
    let b = start();
    let mut c = b.connect();
    create_topic(&mut c, "t", 2);
    let (gen_id, me) = stable_group(&mut c, "good", "t");
    let (bgen, bme) = stable_group(&mut c, "bad", "t");

    // Unknown member id: join, sync, heartbeat, commit.
    let r: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        9,
        &join_req("bad", "ghost", "consumer", &["t"]),
    );
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    let r: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        9,
        &join_req("no-such-group", "ghost", "consumer", &["t"]),
    );
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(
        sync(&mut c, "bad", bgen, "ghost", vec![]).error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(heartbeat(&mut c, "bad", bgen, "ghost"), UNKNOWN_MEMBER_ID);
    assert_eq!(
        commit(&mut c, 8, "bad", bgen, "ghost", "t", &[(0, 1)]),
        vec![UNKNOWN_MEMBER_ID]
    );
    // Stale generation.
    assert_eq!(heartbeat(&mut c, "bad", bgen - 1, &bme), ILLEGAL_GENERATION);
    assert_eq!(
        sync(&mut c, "bad", bgen + 1, &bme, vec![]).error_code,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit(&mut c, 8, "bad", bgen - 1, &bme, "t", &[(0, 1)]),
        vec![ILLEGAL_GENERATION]
    );
    // A simple commit while the group has members.
    assert_eq!(
        commit(&mut c, 8, "bad", -1, "", "t", &[(0, 1)]),
        vec![UNKNOWN_MEMBER_ID]
    );
    // Wrong protocol type for a group that has members.
    let r: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        5,
        &join_req("bad", "", "connect", &["t"]),
    );
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL);
    // No protocols at all.
    let r: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        5,
        &join_req("x", "", "consumer", &["t"]).with_protocols(vec![]),
    );
    assert_eq!(r.error_code, INCONSISTENT_GROUP_PROTOCOL);
    // Session timeout outside the broker's bounds.
    let r: JoinGroupResponse = c.call(
        ApiKey::JoinGroup,
        5,
        &join_req("x", "", "consumer", &["t"]).with_session_timeout_ms(10),
    );
    assert_eq!(r.error_code, INVALID_SESSION_TIMEOUT);
    // Commits to partitions that do not exist, next to one that does.
    assert_eq!(
        commit(&mut c, 8, "bad", bgen, &bme, "t", &[(0, 5), (9, 5)]),
        vec![NONE, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(
        commit(&mut c, 8, "bad", bgen, &bme, "no-topic", &[(0, 5)]),
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(
        commit(
            &mut c,
            8,
            "bad",
            bgen,
            &bme,
            "__karnak_coordinator",
            &[(0, 5)]
        ),
        vec![UNKNOWN_TOPIC_OR_PARTITION]
    );
    // Empty and oversized group ids, on every group API.
    let long = "g".repeat(2000);
    for bad in ["", long.as_str()] {
        let r: JoinGroupResponse =
            c.call(ApiKey::JoinGroup, 9, &join_req(bad, "", "consumer", &["t"]));
        assert_eq!(r.error_code, INVALID_GROUP_ID);
        assert_eq!(heartbeat(&mut c, bad, 1, "m"), INVALID_GROUP_ID);
        assert_eq!(
            sync(&mut c, bad, 1, "m", vec![]).error_code,
            INVALID_GROUP_ID
        );
        assert_eq!(
            commit(&mut c, 8, bad, -1, "", "t", &[(0, 1)]),
            vec![INVALID_GROUP_ID]
        );
        let r: OffsetFetchResponse = c.call(
            ApiKey::OffsetFetch,
            5,
            &OffsetFetchRequest::default().with_group_id(s(bad).into()),
        );
        assert_eq!(r.error_code, INVALID_GROUP_ID);
        let r: DeleteGroupsResponse = c.call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![s(bad).into()]),
        );
        assert_eq!(r.results[0].error_code, INVALID_GROUP_ID);
    }
    // A non-empty group cannot be deleted; its subscribed offsets cannot either.
    let r: DeleteGroupsResponse = c.call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![s("bad").into()]),
    );
    assert_eq!(r.results[0].error_code, NON_EMPTY_GROUP);
    let r: OffsetDeleteResponse = c.call(
        ApiKey::OffsetDelete,
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(s("bad").into())
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(s("t").into())
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]),
    );
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        GROUP_SUBSCRIBED_TO_TOPIC
    );
    assert_eq!(fetch_offsets(&mut c, 8, "bad", "t", &[0]), vec![5]);

    // Through all of it the other group is untouched.
    assert_eq!(heartbeat(&mut c, "good", gen_id, &me), NONE);
    assert_eq!(heartbeat(&mut c, "bad", bgen, &bme), NONE);
    assert_eq!(describe(&mut c, 5, "good").group_state.as_str(), "Stable");
}

#[test]
fn a_join_storm_is_bounded_by_group_max_size() {
    let b = Broker::start(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--group-max-size",
        "50",
    ]);
    let mut c = b.connect();
    let mut required = 0;
    let mut full = 0;
    for _ in 0..500 {
        let r: JoinGroupResponse = c.call(
            ApiKey::JoinGroup,
            9,
            &join_req("storm", "", "consumer", &["t"]),
        );
        match r.error_code {
            MEMBER_ID_REQUIRED => required += 1,
            GROUP_MAX_SIZE_REACHED => full += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((required, full), (50, 450));
    // Other groups are served as usual.
    let (gen_id, me) = stable_group(&mut c, "calm", "t");
    assert_eq!(heartbeat(&mut c, "calm", gen_id, &me), NONE);
}

#[test]
fn two_members_rebalance_and_a_leader_that_never_syncs_is_dropped() {
    let b = start();
    let port = b.kafka_port;
    let mut c1 = b.connect();
    let (gen1, m1) = stable_group(&mut c1, "pair", "t");
    // A second member joins: the first learns of it through its heartbeat.
    let t = thread::spawn(move || {
        let mut c2 = support::connect(port);
        // Short rebalance timeouts all round: the SyncGroup deadline is the
        // longest of them, and must pass before this member's session does.
        let req = join_req("pair", "", "consumer", &["t"]).with_rebalance_timeout_ms(1000);
        let r: JoinGroupResponse = c2.call(ApiKey::JoinGroup, 9, &req);
        assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
        let req = req.with_member_id(r.member_id);
        let j: JoinGroupResponse = c2.call(ApiKey::JoinGroup, 9, &req);
        (c2, j)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = heartbeat(&mut c1, "pair", gen1, &m1);
        if code == REBALANCE_IN_PROGRESS {
            break;
        }
        assert_eq!(code, NONE);
        assert!(Instant::now() < deadline, "no rebalance signalled");
        thread::sleep(Duration::from_millis(20));
    }
    // The leader rejoins with a short rebalance timeout, then never syncs.
    let j1: JoinGroupResponse = c1.call(
        ApiKey::JoinGroup,
        9,
        &join_req("pair", &m1, "consumer", &["t"]).with_rebalance_timeout_ms(1000),
    );
    let (mut c2, j2) = t.join().unwrap();
    assert_eq!((j1.error_code, j2.error_code), (NONE, NONE));
    assert_eq!(j1.generation_id, gen1 + 1);
    assert_eq!(j1.leader.as_str(), m1);
    assert_eq!(j1.members.len(), 2, "the leader sees every member");
    assert!(j2.members.is_empty(), "followers see none");
    let m2 = j2.member_id.to_string();
    // The follower's SyncGroup waits for the leader, which never comes:
    // after the rebalance timeout the leader is dropped.
    let sr = sync(&mut c2, "pair", j2.generation_id, &m2, vec![]);
    assert_eq!(sr.error_code, REBALANCE_IN_PROGRESS);
    let j: JoinGroupResponse = c2.call(
        ApiKey::JoinGroup,
        9,
        &join_req("pair", &m2, "consumer", &["t"]),
    );
    assert_eq!(j.error_code, NONE);
    assert_eq!(j.leader.as_str(), m2, "the remaining member leads");
    assert_eq!(j.members.len(), 1);
    assert_eq!(
        heartbeat(&mut c1, "pair", j1.generation_id, &m1),
        UNKNOWN_MEMBER_ID
    );
}

/// As Kafka's classic groups: a member of the current generation commits
/// while a rebalance is being prepared (a consumer commits what it is about
/// to give up before it rejoins), an older generation never does, and
/// between the join and the sync the new generation is told to wait.
#[test]
fn a_member_commits_while_a_rebalance_is_prepared_as_kafka_allows() {
    let b = start();
    let port = b.kafka_port;
    let mut c1 = b.connect();
    create_topic(&mut c1, "t", 1);
    let (gen1, m1) = stable_group(&mut c1, "revoke", "t");
    assert_eq!(
        commit(&mut c1, 8, "revoke", gen1, &m1, "t", &[(0, 3)]),
        [NONE]
    );
    // A second member joins; its JoinGroup is parked until the first rejoins.
    let t = thread::spawn(move || {
        let mut c2 = support::connect(port);
        let req = join_req("revoke", "", "consumer", &["t"]);
        let r: JoinGroupResponse = c2.call(ApiKey::JoinGroup, 9, &req);
        assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
        let j: JoinGroupResponse = c2.call(ApiKey::JoinGroup, 9, &req.with_member_id(r.member_id));
        (c2, j)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat(&mut c1, "revoke", gen1, &m1) != REBALANCE_IN_PROGRESS {
        assert!(Instant::now() < deadline, "no rebalance signalled");
        thread::sleep(Duration::from_millis(20));
    }
    // PreparingRebalance: the current generation's commit is taken.
    assert_eq!(
        commit(&mut c1, 8, "revoke", gen1, &m1, "t", &[(0, 5)]),
        [NONE]
    );
    assert_eq!(
        commit(&mut c1, 8, "revoke", gen1 + 1, &m1, "t", &[(0, 6)]),
        [ILLEGAL_GENERATION]
    );
    // The first member rejoins: both are in the next generation, not synced.
    let j1: JoinGroupResponse = c1.call(
        ApiKey::JoinGroup,
        9,
        &join_req("revoke", &m1, "consumer", &["t"]),
    );
    let (_c2, j2) = t.join().unwrap();
    assert_eq!((j1.error_code, j2.error_code), (NONE, NONE));
    let gen2 = j1.generation_id;
    assert_eq!(gen2, gen1 + 1);
    // CompletingRebalance: the new generation waits, the old is fenced.
    assert_eq!(
        commit(&mut c1, 8, "revoke", gen2, &m1, "t", &[(0, 7)]),
        [REBALANCE_IN_PROGRESS]
    );
    assert_eq!(
        commit(&mut c1, 8, "revoke", gen1, &m1, "t", &[(0, 8)]),
        [ILLEGAL_GENERATION]
    );
    assert_eq!(fetch_offsets(&mut c1, 8, "revoke", "t", &[0]), [5]);
}

#[test]
fn offsets_and_groups_survive_restart_and_kill9() {
    let mut b = start();
    let mut c = b.connect();
    create_topic(&mut c, "t", 2);
    let (gen_id, me) = stable_group(&mut c, "durable", "t");
    assert_eq!(
        commit(&mut c, 9, "durable", gen_id, &me, "t", &[(0, 41), (1, 42)]),
        vec![NONE, NONE]
    );
    assert_eq!(
        commit(&mut c, 9, "simple", -1, "", "t", &[(0, 7)]),
        vec![NONE]
    );
    drop(c);
    b.kill9();
    b.spawn();
    let mut c = b.connect();
    assert_eq!(
        fetch_offsets(&mut c, 9, "durable", "t", &[0, 1]),
        vec![41, 42]
    );
    assert_eq!(fetch_offsets(&mut c, 9, "simple", "t", &[0]), vec![7]);
    // The member carries on where it was, as after a coordinator failover.
    assert_eq!(heartbeat(&mut c, "durable", gen_id, &me), NONE);
    let d = describe(&mut c, 5, "durable");
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(&d.members[0].member_assignment[..], b"assignment");
    // New member ids never repeat one handed out before the crash.
    let j = join(&mut c, "durable2", &["t"]);
    assert_ne!(j.member_id.as_str(), me);
    assert!(b.stop(), "clean stop");
    b.spawn();
    let mut c = b.connect();
    assert_eq!(
        fetch_offsets(&mut c, 1, "durable", "t", &[0, 1]),
        vec![41, 42]
    );
}

#[test]
fn join_and_sync_at_every_version() {
    let b = start();
    let mut c = b.connect();
    for v in 0..=9i16 {
        let group = format!("v{v}");
        let mut req = join_req(&group, "", "consumer", &["t"]);
        let mut j: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &req);
        if v >= 4 {
            assert_eq!(j.error_code, MEMBER_ID_REQUIRED, "v{v}");
            req = req.with_member_id(j.member_id.clone());
            j = c.call(ApiKey::JoinGroup, v, &req);
        }
        assert_eq!(j.error_code, NONE, "join v{v}");
        assert_eq!(j.generation_id, 1, "v{v}");
        assert_eq!(j.leader, j.member_id, "v{v}");
        assert!(
            j.member_id.starts_with("wire-test-"),
            "{}",
            j.member_id.as_str()
        );
        if v >= 7 {
            assert_eq!(j.protocol_name.as_deref(), Some("range"));
        }
        let sv = v.min(5);
        let sr: SyncGroupResponse = c.call(
            ApiKey::SyncGroup,
            sv,
            &SyncGroupRequest::default()
                .with_group_id(s(&group).into())
                .with_generation_id(j.generation_id)
                .with_member_id(j.member_id.clone())
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(j.member_id.clone())
                        .with_assignment(Bytes::from_static(b"a")),
                ]),
        );
        assert_eq!(sr.error_code, NONE, "sync v{sv}");
        assert_eq!(&sr.assignment[..], b"a");
        let hv = v.min(4);
        let h: HeartbeatResponse = c.call(
            ApiKey::Heartbeat,
            hv,
            &HeartbeatRequest::default()
                .with_group_id(s(&group).into())
                .with_generation_id(j.generation_id)
                .with_member_id(j.member_id.clone()),
        );
        assert_eq!(h.error_code, NONE, "heartbeat v{hv}");
        let lv = v.min(5);
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(s(&group).into())
                .with_members(vec![
                    leave_group_request::MemberIdentity::default()
                        .with_member_id(j.member_id.clone()),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(s(&group).into())
                .with_member_id(j.member_id.clone())
        };
        let l: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, lv, &leave);
        assert_eq!(l.error_code, NONE, "leave v{lv}");
        assert_eq!(describe(&mut c, 0, &group).group_state.as_str(), "Empty");
    }
}
