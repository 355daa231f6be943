//! A KIP-848 ("consumer" protocol) group: members heartbeat with
//! ConsumerGroupHeartbeat, the coordinator computes the target assignment
//! with a server-side assignor and hands each member its share as the
//! member revokes what it must give up. Pure state, like the classic
//! `Group`: the shard feeds requests, topic metadata and the time, and
//! persists what `take_dirty` reports.
//!
//! Epochs: the group epoch moves when membership, a subscription or the
//! subscribed topics' metadata change; the target assignment is recomputed
//! for that epoch; each member's epoch reaches it once the member holds its
//! new share.

pub mod assignor;
pub mod heartbeat;
pub mod reconcile;
pub mod stored;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexmap::IndexMap;
use tokio::time::{Duration, Instant};

pub use heartbeat::{ConsumerHeartbeat, HeartbeatOutcome};

pub type TopicId = [u8; 16];
/// Partitions by topic id, as the KIP-848 APIs carry them.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// What a shard needs to know about topics: ids and partition counts
/// (subscriptions name topics, assignments carry ids) and the names a
/// regex subscription is matched against.
pub trait TopicView {
    fn lookup(&self, name: &str) -> Option<(TopicId, i32)>;
    fn name_of(&self, id: &TopicId) -> Option<String>;
    fn names(&self) -> Vec<String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Holds its whole target.
    Stable,
    /// Must give partitions up before it moves to the new epoch.
    UnrevokedPartitions,
    /// At the new epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn code(self) -> u8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(MemberState::Stable),
            1 => Some(MemberState::UnrevokedPartitions),
            2 => Some(MemberState::UnreleasedPartitions),
            _ => None,
        }
    }
}

/// Member epoch of a static member that left expecting to come back.
pub const STATIC_LEAVE_EPOCH: i32 = -2;
pub const LEAVE_EPOCH: i32 = -1;

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub revoking: Assignment,
    pub session_deadline: Instant,
    pub revoke_deadline: Option<Instant>,
}

impl ConsumerMember {
    fn new(id: &str, now: Instant) -> Self {
        ConsumerMember {
            id: id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 300_000,
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            session_deadline: now,
            revoke_deadline: None,
        }
    }

    fn holds(&self, t: &TopicId, p: i32) -> bool {
        self.assigned.get(t).is_some_and(|s| s.contains(&p))
            || self.revoking.get(t).is_some_and(|s| s.contains(&p))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: IndexMap<String, ConsumerMember>,
    pub target: HashMap<String, Assignment>,
    /// The subscribed topics' (id, partitions) the target was computed for.
    pub metadata: BTreeMap<String, (TopicId, i32)>,
    /// group.instance.id → member id.
    pub statics: HashMap<String, String>,
    /// Topic names each member's subscription resolves to (names and regex).
    resolved: HashMap<String, BTreeSet<String>>,
    dirty: bool,
}

impl ConsumerGroup {
    pub fn new() -> Self {
        ConsumerGroup::default()
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Kafka's consumer group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor in use: the one most members ask for, else the default.
    pub fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor.as_deref()
                && let Some(known) = assignor::ASSIGNORS.iter().find(|k| **k == a)
            {
                *votes.entry(known).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map(|(name, _)| name)
            .unwrap_or(assignor::ASSIGNORS[0])
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .flat_map(|m| std::iter::once(m.session_deadline).chain(m.revoke_deadline))
            .min()
    }

    /// Drops members whose session ran out or who did not revoke within
    /// their rebalance timeout (Kafka fences both).
    pub fn on_timer(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(member = %id, "consumer group member fenced (session or rebalance timeout)");
            self.remove_member(&id);
        }
    }

    pub fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.shift_remove(id) {
            if let Some(i) = &m.instance_id
                && self.statics.get(i).is_some_and(|b| b == id)
            {
                self.statics.remove(i);
            }
            self.target.remove(id);
            self.resolved.remove(id);
            self.epoch += 1;
            self.dirty = true;
        }
    }

    /// Every topic some member subscribes to (for OffsetDelete's check).
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.resolved.values().flatten().cloned().collect()
    }

    /// Whether a partition is held (assigned or being revoked) by a member
    /// other than `except`.
    fn held_by_other(&self, except: &str, t: &TopicId, p: i32) -> bool {
        self.members
            .values()
            .any(|m| m.id != except && m.holds(t, p))
    }

    /// Resolves subscriptions against the topics now, and bumps the group
    /// epoch when what the group consumes changed (a topic created or grown).
    fn refresh_metadata(&mut self, topics: &dyn TopicView) {
        let mut names_cache: Option<Vec<String>> = None;
        let mut resolved = HashMap::new();
        for m in self.members.values() {
            let mut set: BTreeSet<String> = m.subscribed_topic_names.iter().cloned().collect();
            if let Some(re) = m
                .subscribed_topic_regex
                .as_deref()
                .filter(|r| !r.is_empty())
                && let Ok(re) = compile(re)
            {
                let names = names_cache.get_or_insert_with(|| topics.names());
                set.extend(names.iter().filter(|n| re.is_match(n)).cloned());
            }
            resolved.insert(m.id.clone(), set);
        }
        let mut metadata = BTreeMap::new();
        for name in resolved.values().flatten() {
            if let Some(meta) = topics.lookup(name) {
                metadata.insert(name.clone(), meta);
            }
        }
        self.resolved = resolved;
        if metadata != self.metadata {
            self.metadata = metadata;
            self.epoch += 1;
            self.dirty = true;
        }
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    fn maybe_assign(&mut self) {
        if self.epoch <= self.assignment_epoch && !self.members.is_empty() {
            return;
        }
        let topic_sets: Vec<(String, BTreeSet<TopicId>)> = self
            .members
            .keys()
            .map(|id| {
                let set = self
                    .resolved
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter_map(|n| self.metadata.get(n).map(|(tid, _)| *tid))
                    .collect();
                (id.clone(), set)
            })
            .collect();
        let subs: Vec<assignor::Subscriber> = topic_sets
            .iter()
            .map(|(id, t)| assignor::Subscriber {
                member_id: id,
                topics: t,
            })
            .collect();
        let counts: BTreeMap<TopicId, i32> = self.metadata.values().copied().collect();
        self.target = assignor::assign(self.assignor(), &subs, &counts, &self.target);
        self.assignment_epoch = self.epoch;
        self.dirty = true;
    }

    /// Reconciles one member against its target.
    fn reconcile_member(&mut self, id: &str, owned: Option<&Assignment>, now: Instant) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let Some(mut m) = self.members.get(id).cloned() else {
            return;
        };
        let changed = reconcile::reconcile(
            &mut m,
            self.assignment_epoch,
            &target,
            owned,
            &|t, p| self.held_by_other(id, t, p),
            now,
        );
        if changed {
            self.dirty = true;
        }
        self.members.insert(id.to_string(), m);
    }

    /// OffsetCommit (and OffsetFetch v9) from a member of this group:
    /// epoch -1 without a member is an admin or standalone commit, allowed
    /// while the group is empty; members must use v9 and their epoch.
    pub fn check_commit(&self, epoch: i32, member_id: &str, version: i16) -> i16 {
        use crate::errors::*;
        if epoch < 0 && self.members.is_empty() {
            return NONE;
        }
        let Some(m) = self.members.get(member_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if version < 9 {
            return UNSUPPORTED_VERSION;
        }
        if epoch != m.epoch {
            return STALE_MEMBER_EPOCH;
        }
        NONE
    }

    /// After a restart: subscriptions by name, until the next heartbeat
    /// resolves regexes against the topics again.
    fn resolve_names_only(&mut self) {
        self.resolved = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.subscribed_topic_names.iter().cloned().collect(),
                )
            })
            .collect();
    }
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: Assignment,
    pub target_assignment: Assignment,
}

#[derive(Debug, Clone)]
pub struct Described {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<DescribedMember>,
}

impl ConsumerGroup {
    pub fn describe(&self) -> Described {
        Described {
            state: self.state_name(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor(),
            members: self
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed_topic_names.clone(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    assignment: m.assigned.clone(),
                    target_assignment: self.target.get(&m.id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// Kafka matches subscriptions with RE2/J; Rust's `regex` is the same
/// family (no backreferences, linear time). The whole name must match.
pub fn compile(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(1 << 20)
        .build()
}

#[cfg(test)]
mod tests;
