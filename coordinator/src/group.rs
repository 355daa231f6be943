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

use crate::errors::*;
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
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
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

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn set_state(&mut self, s: GroupState) {
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
        let members = self.members.values().map(|m| m.session_deadline);
        let pending = self.pending.values().copied();
        members
            .chain(pending)
            .chain(self.join_deadline)
            .chain(self.sync_deadline)
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

    // ---------------------------------------------------------------- join

    /// JoinGroup. The outcome arrives on the returned receiver: at once, or
    /// when the rebalance completes. `new_member_id` mints an id when needed.
    pub fn join(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now: Instant,
        new_member_id: &mut dyn FnMut(&str) -> Result<String, i16>,
    ) -> oneshot::Receiver<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let reply = |tx: oneshot::Sender<JoinOutcome>, o: JoinOutcome| {
            let _ = tx.send(o);
        };
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            reply(
                tx,
                JoinOutcome::error(INVALID_SESSION_TIMEOUT, &req.member_id),
            );
            return rx;
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() || !self.supports(&req) {
            reply(
                tx,
                JoinOutcome::error(INCONSISTENT_GROUP_PROTOCOL, &req.member_id),
            );
            return rx;
        }
        if req.member_id.is_empty() {
            self.join_new(req, tx, cfg, now, new_member_id);
            return rx;
        }
        if self.fenced(&req.member_id, req.instance_id.as_deref()) {
            reply(tx, JoinOutcome::error(FENCED_INSTANCE_ID, &req.member_id));
            return rx;
        }
        if self.pending.remove(&req.member_id).is_some() {
            self.add_member(req, tx, cfg, now);
            return rx;
        }
        if !self.members.contains_key(&req.member_id) {
            reply(tx, JoinOutcome::error(UNKNOWN_MEMBER_ID, &req.member_id));
            return rx;
        }
        self.rejoin(req, tx, cfg, now);
        rx
    }

    fn join_new(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
        new_member_id: &mut dyn FnMut(&str) -> Result<String, i16>,
    ) {
        if self.members.len() + self.pending.len() >= cfg.max_size {
            let _ = tx.send(JoinOutcome::error(GROUP_MAX_SIZE_REACHED, ""));
            return;
        }
        let id = match new_member_id(&req.client_id) {
            Ok(id) => id,
            Err(code) => {
                let _ = tx.send(JoinOutcome::error(code, ""));
                return;
            }
        };
        if let Some(instance) = req.instance_id.clone()
            && let Some(old) = self.statics.get(&instance).cloned()
        {
            self.replace_static(req, tx, cfg, now, old, id);
            return;
        }
        if req.instance_id.is_none() && req.require_known_member_id {
            let session = Duration::from_millis(req.session_timeout_ms as u64);
            self.pending.insert(id.clone(), now + session);
            let _ = tx.send(JoinOutcome::error(MEMBER_ID_REQUIRED, &id));
            return;
        }
        let req = JoinRequest {
            member_id: id,
            ..req
        };
        self.add_member(req, tx, cfg, now);
    }

    /// A static member came back with a new member id: it takes over the
    /// old member's place and assignment; the old id is fenced.
    fn replace_static(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
        old: String,
        id: String,
    ) {
        let Some(mut m) = self.members.shift_remove(&old) else {
            return;
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(FENCED_INSTANCE_ID, &old));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncOutcome::error(FENCED_INSTANCE_ID));
        }
        m.id = id.clone();
        m.protocols = req.protocols;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_deadline = now + Duration::from_millis(m.session_timeout_ms as u64);
        if let Some(i) = &m.instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        if self.leader.as_deref() == Some(old.as_str()) {
            self.leader = Some(id.clone());
        }
        self.members.insert(id.clone(), m);
        self.dirty = true;
        // As Kafka: no rebalance unless the rejoin would change the group's
        // protocol (the member's metadata may differ, e.g. owned partitions).
        let unchanged = self.select_protocol() == self.protocol;
        match self.state {
            GroupState::Stable if unchanged => {
                // No rebalance: the member gets its old assignment back on
                // SyncGroup. A returning leader must not recompute it.
                let is_leader = self.leader.as_deref() == Some(id.as_str());
                let mut o = self.outcome_for(&id);
                o.skip_assignment = is_leader;
                if !is_leader {
                    o.members.clear();
                }
                let _ = tx.send(o);
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.join_waiter = Some(tx);
                }
                self.maybe_complete_join(now);
            }
            _ => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.join_waiter = Some(tx);
                }
                self.prepare_rebalance(cfg, now);
            }
        }
    }

    fn add_member(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.instance_id {
            self.statics.insert(i.clone(), req.member_id.clone());
        }
        let m = Member {
            id: req.member_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            session_deadline: now + Duration::from_millis(req.session_timeout_ms as u64),
            join_waiter: Some(tx),
            sync_waiter: None,
            synced: false,
        };
        self.members.insert(req.member_id, m);
        if self.state == GroupState::PreparingRebalance {
            if self.delaying {
                // Each newcomer during the initial delay buys more time for
                // the rest of a starting fleet, up to the rebalance timeout.
                let next = now + cfg.initial_rebalance_delay;
                self.join_deadline = Some(self.delay_limit.map_or(next, |l| next.min(l)));
            }
            self.maybe_complete_join(now);
        } else {
            self.prepare_rebalance(cfg, now);
        }
    }

    fn rejoin(
        &mut self,
        req: JoinRequest,
        tx: oneshot::Sender<JoinOutcome>,
        cfg: &GroupConfig,
        now: Instant,
    ) {
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        let Some(m) = self.members.get_mut(&req.member_id) else {
            return;
        };
        let changed = m.protocols != req.protocols;
        m.session_deadline = now + Duration::from_millis(req.session_timeout_ms as u64);
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.protocols = req.protocols;
        if let Some(old) = m.join_waiter.replace(tx) {
            let _ = old.send(JoinOutcome::error(REBALANCE_IN_PROGRESS, &req.member_id));
        }
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::CompletingRebalance if !changed => {
                // A lost JoinGroup response: answer it again.
                self.answer_join(&req.member_id);
            }
            GroupState::Stable if !changed && !is_leader => self.answer_join(&req.member_id),
            _ => self.prepare_rebalance(cfg, now),
        }
    }

    fn outcome_for(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn answer_join(&mut self, member_id: &str) {
        let o = self.outcome_for(member_id);
        if let Some(w) = self
            .members
            .get_mut(member_id)
            .and_then(|m| m.join_waiter.take())
        {
            let _ = w.send(o);
        }
    }

    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncOutcome::error(REBALANCE_IN_PROGRESS));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        let limit = now + Duration::from_millis(timeout);
        let was_empty = self.state == GroupState::Empty;
        self.sync_deadline = None;
        self.set_state(GroupState::PreparingRebalance);
        if was_empty && !cfg.initial_rebalance_delay.is_zero() {
            self.delaying = true;
            self.delay_limit = Some(limit);
            self.join_deadline = Some((now + cfg.initial_rebalance_delay).min(limit));
        } else {
            self.delaying = false;
            self.join_deadline = Some(limit);
            self.maybe_complete_join(now);
        }
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.delaying {
            return;
        }
        let all_in = self.members.values().all(|m| m.join_waiter.is_some());
        if all_in && self.pending.is_empty() {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.join_deadline = None;
        self.delaying = false;
        self.delay_limit = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty);
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance);
        let mut max_rebalance = 0u64;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.answer_join(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.synced = false;
                m.session_deadline = now + Duration::from_millis(m.session_timeout_ms as u64);
                max_rebalance = max_rebalance.max(m.rebalance_timeout_ms.max(0) as u64);
            }
        }
        self.sync_deadline = Some(now + Duration::from_millis(max_rebalance));
    }

    /// Kafka's vote: each member votes for its most preferred protocol that
    /// all members support; most votes wins (ties: the leader's order).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: IndexMap<&String, usize> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n))
                && let Some(v) = votes.get_mut(n)
            {
                *v += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(n, _)| n.clone())
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.shift_remove(id) {
            if let Some(i) = &m.instance_id
                && self.statics.get(i).is_some_and(|b| b == id)
            {
                self.statics.remove(i);
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(UNKNOWN_MEMBER_ID, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncOutcome::error(UNKNOWN_MEMBER_ID));
            }
            self.dirty = true;
        }
    }

    /// A member left or was expired: the rest rebalance.
    fn member_gone(&mut self, id: &str, cfg: &GroupConfig, now: Instant) {
        self.remove_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(cfg, now)
            }
            GroupState::PreparingRebalance => {
                if self.members.is_empty() {
                    self.delaying = false;
                }
                self.maybe_complete_join(now)
            }
            GroupState::Empty => {}
        }
    }

    // ---------------------------------------------------------------- sync

    pub fn sync(&mut self, req: SyncRequest) -> oneshot::Receiver<SyncOutcome> {
        let SyncRequest {
            generation,
            member_id,
            instance_id,
            protocol_type,
            protocol,
            assignments,
            ..
        } = req;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
        let (protocol_type, protocol) = (protocol_type.as_deref(), protocol.as_deref());
        let (tx, rx) = oneshot::channel();
        let code = self.check_member(member_id, instance_id, generation);
        let code = if code == NONE
            && (protocol_type.is_some_and(|p| Some(p) != self.protocol_type.as_deref())
                || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref()))
        {
            INCONSISTENT_GROUP_PROTOCOL
        } else {
            code
        };
        if code != NONE {
            let _ = tx.send(SyncOutcome::error(code));
            return rx;
        }
        match self.state {
            GroupState::Empty => {
                let _ = tx.send(SyncOutcome::error(UNKNOWN_MEMBER_ID));
            }
            GroupState::PreparingRebalance => {
                let _ = tx.send(SyncOutcome::error(REBALANCE_IN_PROGRESS));
            }
            GroupState::Stable => {
                let o = self.sync_outcome(member_id);
                let _ = tx.send(o);
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.synced = true;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncOutcome::error(REBALANCE_IN_PROGRESS));
                    }
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.sync_deadline = None;
                    self.set_state(GroupState::Stable);
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let o = self.sync_outcome(&id);
                        if let Some(w) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = w.send(o);
                        }
                    }
                }
            }
        }
        rx
    }

    fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: NONE,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Membership checks shared by SyncGroup, Heartbeat and OffsetCommit.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        if self.fenced(member_id, instance_id) {
            FENCED_INSTANCE_ID
        } else if !self.members.contains_key(member_id) {
            UNKNOWN_MEMBER_ID
        } else if generation != self.generation {
            ILLEGAL_GENERATION
        } else {
            NONE
        }
    }

    // ---------------------------------------------------------------- heartbeat, leave

    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        if self.state == GroupState::Empty {
            return UNKNOWN_MEMBER_ID;
        }
        let code = self.check_member(member_id, instance_id, generation);
        if code != NONE {
            return code;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.session_deadline = now + Duration::from_millis(m.session_timeout_ms as u64);
        }
        match self.state {
            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
            _ => NONE,
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id alone as
    /// the admin API's "remove members" sends it).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        cfg: &GroupConfig,
        now: Instant,
    ) -> i16 {
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(i)) => match self.statics.get(i) {
                Some(id) => id.clone(),
                None => return UNKNOWN_MEMBER_ID,
            },
            _ => {
                if self.fenced(member_id, instance_id) {
                    return FENCED_INSTANCE_ID;
                }
                member_id.to_string()
            }
        };
        if self.pending.remove(&id).is_some() {
            self.maybe_complete_join(now);
            return NONE;
        }
        if !self.members.contains_key(&id) {
            return UNKNOWN_MEMBER_ID;
        }
        self.member_gone(&id, cfg, now);
        NONE
    }

    /// Timers: expired sessions, pending members, the end of the join phase
    /// and the SyncGroup deadline.
    pub fn on_timer(&mut self, cfg: &GroupConfig, now: Instant) {
        self.pending.retain(|_, d| *d > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline <= now && m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired; rebalancing");
            self.member_gone(&id, cfg, now);
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            self.delaying = false;
            self.complete_join(now);
        } else {
            self.maybe_complete_join(now);
        }
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline.is_some_and(|d| d <= now)
        {
            let lazy: Vec<String> = self
                .members
                .values()
                .filter(|m| !m.synced)
                .map(|m| m.id.clone())
                .collect();
            tracing::info!(group = %self.id, members = ?lazy, "members did not SyncGroup in time; rebalancing");
            for id in &lazy {
                self.remove_member(id);
            }
            self.prepare_rebalance(cfg, now);
        }
    }

    // ---------------------------------------------------------------- offsets

    /// Whether an OffsetCommit from this caller may write. `generation` -1
    /// with no member id is a "simple" commit (standalone consumers, admin
    /// tools), allowed while the group has no members.
    pub fn check_commit(&self, generation: i32, member_id: &str, instance_id: Option<&str>) -> i16 {
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
        match self.state {
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                REBALANCE_IN_PROGRESS
            }
            _ => NONE,
        }
    }

    /// Topics the members subscribe to (consumer protocol only), for
    /// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC.
    pub fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
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
        self.members.is_empty()
    }

    pub fn member_metadata(&self, m: &Member) -> Bytes {
        m.metadata_for(self.protocol.as_deref())
    }
}
