//! A consumer group (the classic protocol): members join (JoinGroup, with
//! the member id the broker asks for first), the leader assigns the
//! topic's partitions round robin (SyncGroup), members heartbeat, commit
//! offsets for what they were given with their generation, and now and
//! then leave and join again, so the group rebalances through crashes and
//! cut links. Checked:
//! - one assignment per generation: two members that completed SyncGroup
//!   for the same generation hold disjoint partitions, and a member never
//!   gets two assignments for one generation (a coordinator that forgot a
//!   generation it had answered would hand its number out again);
//! - fencing: a commit is never accepted from a generation older than one
//!   some member had completed before the commit was sent (a zombie's);
//! - once faults end the group settles: every member heartbeats in the
//!   same generation, and their assignments cover every partition once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rand::Rng;

use super::{PARTITIONS, TOPIC, Target, coordinator_moved, sleep_ms, timed};
use crate::wire::{Conn, Failed};
use crate::world::{Shared, lock};

const GROUP: &str = "sim-consumers";
/// Short, so members held or cut off are expelled between crashes (the
/// broker's restart gives every member a new session); the broker is run
/// with `group.min.session.timeout.ms` below it.
pub(super) const SESSION_TIMEOUT_MS: i32 = 2_500;
const REBALANCE_TIMEOUT_MS: i32 = 5_000;
/// A JoinGroup is parked until the rebalance completes.
const JOIN_TIMEOUT: Duration = Duration::from_millis(REBALANCE_TIMEOUT_MS as u64 + 2_000);

const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();

/// What the members saw, for the checks.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// generation -> member id -> partitions, from SyncGroup answers.
    synced: BTreeMap<i32, BTreeMap<String, Vec<i32>>>,
    /// The newest generation any member completed SyncGroup for.
    newest: i32,
    /// Member `i`'s last heartbeat answered without error: (generation,
    /// partitions); cleared when it rejoins.
    steady: Vec<Option<(i32, Vec<i32>)>>,
    /// OffsetCommits accepted.
    pub commits: usize,
    /// SyncGroup answers received (a member's share of a rebalance).
    pub syncs: usize,
    pub done: Vec<bool>,
}

pub(super) type Group = Arc<Mutex<Ledger>>;

pub(super) fn ledger(g: &Group) -> std::sync::MutexGuard<'_, Ledger> {
    g.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn new_group(members: usize) -> Group {
    Arc::new(Mutex::new(Ledger {
        steady: vec![None; members],
        done: vec![false; members],
        ..Ledger::default()
    }))
}

impl Ledger {
    /// Every member heartbeats in one generation, the newest synced.
    fn settled(&self) -> bool {
        let gens: BTreeSet<i32> = self.steady.iter().flatten().map(|(g, _)| *g).collect();
        self.steady.iter().all(Option::is_some)
            && gens.len() == 1
            && gens.first() == Some(&self.newest)
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A consumer protocol message: its version, then its body.
fn versioned<M: Encodable>(m: &M) -> Result<Bytes, Failed> {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    m.encode(&mut buf, 0)
        .map_err(|e| format!("encoding a consumer protocol message: {e}"))?;
    Ok(buf.freeze())
}

fn assignment_of(bytes: &Bytes) -> Result<Vec<i32>, Failed> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return Err("an assignment without its version".into());
    }
    let version = b.get_i16();
    let a = ConsumerProtocolAssignment::decode(&mut b, version.clamp(0, 3))
        .map_err(|e| format!("decoding an assignment: {e}"))?;
    let mut parts: Vec<i32> = a
        .assigned_partitions
        .iter()
        .filter(|tp| tp.topic.0.as_str() == TOPIC)
        .flat_map(|tp| tp.partitions.iter().copied())
        .collect();
    parts.sort_unstable();
    Ok(parts)
}

/// What a join ended in.
enum Joined {
    /// (generation, member id, leader's member list or empty)
    Member(i32, String, Vec<String>),
    /// Join again with this member id ("" for a new one).
    Again(String),
}

async fn join(conn: &mut Conn, member_id: &str) -> Result<Joined, Failed> {
    let subscription =
        versioned(&ConsumerProtocolSubscription::default().with_topics(vec![s(TOPIC)]))?;
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("roundrobin"))
                .with_metadata(subscription),
        ]);
    let resp: JoinGroupResponse =
        tokio::time::timeout(JOIN_TIMEOUT, conn.call(ApiKey::JoinGroup, 5, &req))
            .await
            .map_err(|_| format!("no JoinGroup answer within {JOIN_TIMEOUT:?}"))??;
    Ok(match resp.error_code {
        0 => Joined::Member(
            resp.generation_id,
            resp.member_id.to_string(),
            resp.members
                .iter()
                .map(|m| m.member_id.to_string())
                .collect(),
        ),
        c if coordinator_moved(c) => return Err(format!("JoinGroup: the coordinator moved ({c})")),
        MEMBER_ID_REQUIRED => Joined::Again(resp.member_id.to_string()),
        UNKNOWN_MEMBER_ID => Joined::Again(String::new()),
        _ => Joined::Again(member_id.to_string()),
    })
}

/// The leader's plan: partitions round robin over the members by id.
fn plan(members: &[String]) -> Result<Vec<SyncGroupRequestAssignment>, Failed> {
    let mut ids: Vec<&String> = members.iter().collect();
    ids.sort();
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<i32> = (0..PARTITIONS)
            .filter(|p| *p as usize % ids.len() == i)
            .collect();
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(s(TOPIC)))
                .with_partitions(mine),
        ]);
        out.push(
            SyncGroupRequestAssignment::default()
                .with_member_id(s(id))
                .with_assignment(versioned(&a)?),
        );
    }
    Ok(out)
}

/// SyncGroup: the member's partitions, or the error code.
async fn sync(
    conn: &mut Conn,
    generation: i32,
    member_id: &str,
    assignments: Vec<SyncGroupRequestAssignment>,
) -> Result<Result<Vec<i32>, i16>, Failed> {
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id(generation)
        .with_member_id(s(member_id))
        .with_assignments(assignments);
    let resp: SyncGroupResponse =
        tokio::time::timeout(JOIN_TIMEOUT, conn.call(ApiKey::SyncGroup, 3, &req))
            .await
            .map_err(|_| format!("no SyncGroup answer within {JOIN_TIMEOUT:?}"))??;
    if resp.error_code != 0 {
        return Ok(Err(resp.error_code));
    }
    Ok(Ok(assignment_of(&resp.assignment)?))
}

async fn heartbeat(conn: &mut Conn, generation: i32, member_id: &str) -> Result<i16, Failed> {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id(generation)
        .with_member_id(s(member_id));
    let resp: HeartbeatResponse = timed(conn.call(ApiKey::Heartbeat, 3, &req)).await?;
    Ok(resp.error_code)
}

async fn leave(conn: &mut Conn, member_id: &str) -> Result<i16, Failed> {
    let req = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(member_id))]);
    let resp: LeaveGroupResponse = timed(conn.call(ApiKey::LeaveGroup, 3, &req)).await?;
    Ok(resp.error_code)
}

/// OffsetCommit of `offset` for `partitions` as member `member_id` of
/// `generation`: the first partition's error code.
async fn commit(
    conn: &mut Conn,
    generation: i32,
    member_id: &str,
    partitions: &[i32],
    offset: i64,
) -> Result<i16, Failed> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(offset)
                        })
                        .collect(),
                ),
        ]);
    let resp: OffsetCommitResponse = timed(conn.call(ApiKey::OffsetCommit, 8, &req)).await?;
    resp.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .ok_or_else(|| "an OffsetCommit answer without a partition".into())
}

/// A SyncGroup answer, checked against every other one for its generation.
fn synced(world: &Shared, group: &Group, i: usize, generation: i32, member: &str, parts: &[i32]) {
    let mut g = ledger(group);
    g.syncs += 1;
    g.newest = g.newest.max(generation);
    let seen = g.synced.entry(generation).or_default();
    let mut w = lock(world);
    w.event(format!(
        "member {i} ({member}) has generation {generation}: partitions {parts:?}"
    ));
    if let Some(before) = seen.get(member) {
        w.check(before == parts, || {
            format!("member {member} got {before:?} and then {parts:?} for generation {generation}")
        });
    }
    for (other, theirs) in seen.iter().filter(|(m, _)| *m != member) {
        w.check(!theirs.iter().any(|p| parts.contains(p)), || {
            format!("generation {generation} gave {parts:?} to {member} and {theirs:?} to {other}")
        });
    }
    seen.insert(member.to_string(), parts.to_vec());
}

/// Member `i` of the group: joins, syncs, heartbeats and commits until
/// told to stop, then until the whole group has settled.
pub(super) async fn member_main(
    i: usize,
    seed: u64,
    world: Shared,
    group: Group,
    stop: Arc<AtomicBool>,
    target: Target,
) -> turmoil::Result {
    let mut rng = super::client_rng(seed, 0x94d0_49bb_1331_11eb, i);
    let who = format!("member {i}");
    let mut topic = false;
    let mut member_id = String::new();
    // (generation, partitions) once synced; None: join (again).
    let mut current: Option<(i32, Vec<i32>)> = None;
    let mut offset = 0i64;
    loop {
        let Some(mut conn) = target
            .connect_coordinator(GROUP, 0, &who, &world, &mut rng, &mut topic)
            .await
        else {
            continue;
        };
        loop {
            let Some((generation, parts)) = current.clone() else {
                ledger(&group).steady[i] = None;
                let (generation, leader_of) = match join(&mut conn, &member_id).await {
                    Ok(Joined::Member(g, id, members)) => {
                        member_id = id;
                        (g, members)
                    }
                    Ok(Joined::Again(id)) => {
                        member_id = id;
                        sleep_ms(&mut rng, 10, 100).await;
                        continue;
                    }
                    Err(_) => break,
                };
                let plan = if leader_of.is_empty() {
                    Vec::new()
                } else {
                    plan(&leader_of)?
                };
                match sync(&mut conn, generation, &member_id, plan).await {
                    Ok(Ok(parts)) => {
                        synced(&world, &group, i, generation, &member_id, &parts);
                        current = Some((generation, parts));
                    }
                    Ok(Err(code)) => {
                        if code == UNKNOWN_MEMBER_ID {
                            member_id.clear();
                        }
                        lock(&world).event(format!("{who} SyncGroup refused ({code})"));
                        if coordinator_moved(code) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
                continue;
            };
            if stop.load(Ordering::Relaxed) && ledger(&group).settled() {
                ledger(&group).done[i] = true;
                return Ok(());
            }
            // Commits for what it holds first, as a consumer coming back
            // does (a member expelled meanwhile is a zombie: fenced).
            if !parts.is_empty() {
                offset += 1;
                let newest = ledger(&group).newest;
                match commit(&mut conn, generation, &member_id, &parts, offset).await {
                    Ok(0) => {
                        ledger(&group).commits += 1;
                        let mut w = lock(&world);
                        w.check(generation >= newest, || {
                            format!(
                                "{who}'s commit as generation {generation} was accepted after generation {newest} was synced"
                            )
                        });
                    }
                    Ok(code) => {
                        lock(&world).event(format!("{who} commit refused ({code})"));
                        // A moved coordinator is asked again where it is;
                        // the member's generation stands until it says
                        // otherwise.
                        if coordinator_moved(code) {
                            break;
                        }
                        current = None;
                        continue;
                    }
                    Err(_) => break,
                }
            }
            match heartbeat(&mut conn, generation, &member_id).await {
                Ok(0) => ledger(&group).steady[i] = Some((generation, parts.clone())),
                Ok(code) => {
                    if code == UNKNOWN_MEMBER_ID {
                        member_id.clear();
                    }
                    if code != REBALANCE_IN_PROGRESS {
                        lock(&world).event(format!("{who} heartbeat refused ({code})"));
                    }
                    if coordinator_moved(code) {
                        break;
                    }
                    current = None;
                    continue;
                }
                Err(_) => break,
            }
            if !stop.load(Ordering::Relaxed) && rng.gen_bool(0.04) {
                // Leave and come back as a new member: a rebalance.
                lock(&world).event(format!("{who} leaves"));
                if leave(&mut conn, &member_id).await.is_err() {
                    break;
                }
                member_id.clear();
                current = None;
                continue;
            }
            sleep_ms(&mut rng, 100, 600).await;
        }
        sleep_ms(&mut rng, 10, 100).await;
    }
}

/// At the end: every member saw the group settle, some member completed
/// SyncGroup (when there are members), and the settled generation's
/// assignments cover every partition once. Returns the SyncGroup answers.
pub(super) fn check_settled(world: &Shared, group: &Group) -> usize {
    let g = ledger(group);
    let mut w = lock(world);
    for (i, done) in g.done.iter().enumerate() {
        w.check(*done, || format!("member {i} never saw the group settle"));
    }
    w.check(g.done.is_empty() || g.syncs > 0, || {
        "no group member completed SyncGroup".into()
    });
    if !g.settled() {
        return g.syncs;
    }
    let mut all: Vec<i32> = g
        .steady
        .iter()
        .flatten()
        .flat_map(|(_, p)| p.clone())
        .collect();
    all.sort_unstable();
    w.check(all.iter().copied().eq(0..PARTITIONS), || {
        format!("the settled group holds partitions {all:?}")
    });
    g.syncs
}
