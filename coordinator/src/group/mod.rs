//! One classic-protocol group: members, generations and the rebalance state
//! machine (Empty → PreparingRebalance → CompletingRebalance → Stable), as
//! Kafka's GroupCoordinator runs it. Pure state: no I/O, no clocks of its
//! own. The shard feeds it requests and the current time, and persists what
//! `take_dirty` says changed.

use bytes::Bytes;
use indexmap::IndexMap;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use crate::consumer::ConsumerGroup;
use crate::errors::*;
mod join;
mod membership;

use crate::records::{StoredGroup, StoredMember, StoredOffset};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Coordinator-wide settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_size: usize,
    pub offset_metadata_max_bytes: usize,
    /// Bytes a shard appends before it rewrites its live state and drops
    /// the segments behind it (compaction by checkpoint).
    pub checkpoint_bytes: u64,
    /// KIP-848 groups: the coordinator sets these, not the client
    /// (`group.consumer.session.timeout.ms`, `.heartbeat.interval.ms`).
    pub consumer_session_timeout_ms: i32,
    pub consumer_heartbeat_interval_ms: i32,
    /// A committed offset is shown (OffsetFetch, lag, the next checkpoint)
    /// only once its record is fsynced, so nothing read can be lost by a
    /// power cut. Off (the broker's `--flush-on-acks-all false`), a commit
    /// is shown as soon as it is written.
    pub durable_commits: bool,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: 10_000,
            offset_metadata_max_bytes: 4096,
            checkpoint_bytes: 32 << 20,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            durable_commits: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: i16, member_id: &str) -> Self {
        JoinOutcome {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// SyncGroup v5+ carries these; checked against the group's.
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: i16) -> Self {
        SyncOutcome {
            error,
            ..Default::default()
        }
    }
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    session_deadline: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    /// Sent SyncGroup for the current generation.
    synced: bool,
}

impl Member {
    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

pub type Waiters = Vec<(oneshot::Sender<JoinOutcome>, JoinOutcome)>;

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashMap<String, Instant>,
    /// group.instance.id → member id.
    statics: HashMap<String, String>,
    pub offsets: BTreeMap<(String, i32), StoredOffset>,
    /// PreparingRebalance: when the join phase ends regardless.
    join_deadline: Option<Instant>,
    /// The initial-rebalance delay of a new group is still running.
    delaying: bool,
    delay_limit: Option<Instant>,
    /// CompletingRebalance: when members that did not SyncGroup are dropped.
    sync_deadline: Option<Instant>,
    /// Group metadata changed and must be persisted.
    dirty: bool,
    /// The metadata value last written to the shard's log: what a new
    /// coordinator restores, and what a checkpoint rewrites. A classic group
    /// writes only settled states (Stable, Empty), as Kafka does: a group
    /// restored in the middle of a join would answer its members' rejoins
    /// with a generation that has no protocol or leader.
    persisted: Option<Bytes>,
    /// Where the shard's log holds `persisted`: Ok(offset of its record),
    /// Err once writing the newest failed; None before the first. What a
    /// SyncGroup answer waits on (see `Shard::group_durable`).
    pub(crate) record: Option<Result<i64, ()>>,
    /// Some: a KIP-848 group (ConsumerGroupHeartbeat), whose members live
    /// there; `members` above is then empty. Offsets are shared.
    pub consumer: Option<ConsumerGroup>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Group {
    pub fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            generation: 0,
            protocol: None,
            leader: None,
            state_timestamp_ms: now_ms(),
            members: IndexMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            offsets: BTreeMap::new(),
            join_deadline: None,
            delaying: false,
            delay_limit: None,
            sync_deadline: None,
            dirty: false,
            persisted: None,
            record: None,
            consumer: None,
        }
    }

    /// Rebuilds a group from its persisted record. Members come back as
    /// they were, with fresh session timers: the ones still alive carry on
    /// heartbeating, the others expire as after any coordinator failover.
    pub fn restore(id: &str, stored: StoredGroup, now: Instant) -> Self {
        let mut g = Group::new(id);
        g.protocol_type = stored.protocol_type;
        g.generation = stored.generation;
        g.protocol = stored.protocol;
        g.leader = stored.leader;
        g.state_timestamp_ms = stored.state_timestamp_ms;
        for m in stored.members {
            if let Some(i) = &m.instance_id {
                g.statics.insert(i.clone(), m.member_id.clone());
            }
            let deadline = now + Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: m.protocols,
                    assignment: m.assignment,
                    session_deadline: deadline,
                    join_waiter: None,
                    sync_waiter: None,
                    synced: true,
                },
            );
        }
        // A record written in the middle of a join (before the rule in
        // `persisted`'s doc) names members of a generation that never
        // completed: they rejoin as new members instead.
        if g.protocol.is_none() || g.leader.is_none() {
            g.members.clear();
            g.statics.clear();
            g.leader = None;
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g.persisted = Some(g.encode_value());
        g
    }

    pub fn to_stored(&self) -> StoredGroup {
        StoredGroup {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The metadata value to write now, if the group changed since its last
    /// write and is in a state worth restoring (see `persisted`); a classic
    /// group in a rebalance keeps its change for when the rebalance ends.
    pub fn take_persistable(&mut self) -> Option<Bytes> {
        if self.consumer.is_none()
            && matches!(
                self.state,
                GroupState::PreparingRebalance | GroupState::CompletingRebalance
            )
        {
            return None;
        }
        let consumer = self.consumer.as_mut().is_some_and(|c| c.take_dirty());
        if !(std::mem::take(&mut self.dirty) | consumer) {
            return None;
        }
        let value = self.encode_value();
        self.persisted = Some(value.clone());
        Some(value)
    }

    /// The value last written (see `persisted`), for a checkpoint.
    pub fn persisted_value(&self) -> Option<&Bytes> {
        self.persisted.as_ref()
    }

    /// Rebuilds a KIP-848 group from its persisted record.
    pub fn restore_consumer(id: &str, c: ConsumerGroup) -> Self {
        let mut g = Group::new(id);
        g.protocol_type = Some("consumer".to_string());
        g.consumer = Some(c);
        g.persisted = Some(g.encode_value());
        g
    }

    /// The KIP-848 side of this group, created if the group is a new or an
    /// empty classic one (Kafka converts empty groups between protocols).
    /// None: a classic group with members.
    pub fn consumer_mut(&mut self) -> Option<&mut ConsumerGroup> {
        if self.consumer.is_none() {
            if !self.members.is_empty() || !self.pending.is_empty() {
                return None;
            }
            self.protocol_type = Some("consumer".to_string());
            self.protocol = None;
            self.leader = None;
            self.state = GroupState::Empty;
            self.consumer = Some(ConsumerGroup::new());
            self.dirty = true;
        }
        self.consumer.as_mut()
    }

    /// The value persisted under this group's metadata key.
    pub fn encode_value(&self) -> Bytes {
        match &self.consumer {
            Some(c) => c.encode(),
            None => self.to_stored().encode(),
        }
    }

    fn set_state(&mut self, s: GroupState) {
        // As Kafka's GroupCoordinator: every transition is an INFO line, the
        // trail an operator follows when a group does not settle.
        tracing::info!(
            group = %self.id,
            from = ?self.state,
            to = ?s,
            generation = self.generation,
            members = self.members.len(),
            "group state"
        );
        self.state = s;
        self.state_timestamp_ms = now_ms();
        self.dirty = true;
    }

    /// Kafka's check for static members: an instance id bound to another
    /// member id means this caller has been replaced.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.statics.get(i))
            .is_some_and(|bound| bound != member_id)
    }

    /// The earliest moment something in this group is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        // A member parked in JoinGroup does not expire (`on_timer`), so its
        // session deadline arms nothing: it once armed the shard's timer in
        // the past, and the timer task spun until the join completed.
        let members = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.session_deadline);
        let pending = self.pending.values().copied();
        members
            .chain(pending)
            .chain(self.join_deadline)
            .chain(self.sync_deadline)
            .chain(self.consumer.as_ref().and_then(|c| c.next_deadline()))
            .min()
    }

    fn supports(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        // Some protocol every member (this one included) supports.
        req.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.id != req.member_id)
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    // ---------------------------------------------------------------- offsets

    /// Whether an OffsetCommit from this caller may write. `generation` -1
    /// with no member id is a "simple" commit (standalone consumers, admin
    /// tools), allowed while the group has no members.
    pub fn check_commit(
        &self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        version: i16,
    ) -> i16 {
        if let Some(c) = &self.consumer {
            return c.check_commit(generation, member_id, version);
        }
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                NONE
            } else {
                UNKNOWN_MEMBER_ID
            };
        }
        let code = self.check_member(member_id, instance_id, generation);
        if code != NONE {
            return code;
        }
        // While a rebalance is being prepared the current generation still
        // commits, as Kafka allows: consumers commit what they are about to
        // give up before they rejoin (onPartitionsRevoked, auto-commit), and
        // a refusal there loses those offsets. Between the join and the
        // sync a member holds no assignment yet.
        match self.state {
            GroupState::CompletingRebalance => REBALANCE_IN_PROGRESS,
            _ => NONE,
        }
    }

    /// Topics the members subscribe to (consumer protocol only), for
    /// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC.
    pub fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
        if let Some(c) = &self.consumer {
            return (!c.members.is_empty()).then(|| c.subscribed_topics().into_iter().collect());
        }
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let mut topics = std::collections::HashSet::new();
        for m in self.members.values() {
            let meta = m.metadata_for(self.protocol.as_deref());
            for t in crate::consumer_protocol::subscription_topics(&meta) {
                topics.insert(t);
            }
        }
        Some(topics)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    pub fn member_metadata(&self, m: &Member) -> Bytes {
        m.metadata_for(self.protocol.as_deref())
    }
}
