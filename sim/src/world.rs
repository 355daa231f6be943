//! What the simulated nodes and clients did, and the checks over it.
//!
//! Recorded as it happens (so a violation names the moment it occurred):
//! - a node's term never goes back, across its restarts too (its vote
//!   is durable before it answers);
//! - state machine safety: every node that applies an index applies the
//!   same entry (term and payload) there;
//!
//! and at the end, once every fault is healed:
//! - every acknowledged write is in every node's state;
//! - the id blocks handed out (Obelisk leases) never overlap;
//! - every node's state is the same.
//!
//! The trace is the ordered list of events; its hash is what a replay of
//! the same seed must reproduce.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use karnak_coordinator::metadata::state_machine::MetadataStateMachine;
use karnak_coordinator::metadata::{MetadataRaft, MetadataResult};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, LogId, OptionalSend, Snapshot, SnapshotMeta, StorageError, StoredMembership,
};

/// A write a client saw acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    Topic(String),
    IdBlock { first: u64, size: u64 },
}

#[derive(Default)]
pub struct World {
    /// Simulated time of the step being run, set by the harness.
    pub now: Duration,
    pub trace: Vec<String>,
    pub violations: Vec<String>,
    leaders: BTreeSet<(u64, u64)>,
    /// The highest term each node has been seen in.
    terms: BTreeMap<u64, u64>,
    /// index -> (term, payload digest, first node to apply it)
    applied: BTreeMap<u64, (u64, u64, u64)>,
    pub acks: Vec<Ack>,
    /// Proposals sent, answered with an error, and not answered.
    pub proposals: [u64; 3],
}

pub type Shared = Arc<Mutex<World>>;

pub fn lock(w: &Shared) -> std::sync::MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl World {
    pub fn event(&mut self, what: impl Into<String>) {
        let what = what.into();
        self.trace
            .push(format!("{:>9.3}s {what}", self.now.as_secs_f64()));
    }

    fn violation(&mut self, what: String) {
        self.event(format!("VIOLATION {what}"));
        self.violations
            .push(format!("at {:.3}s: {what}", self.now.as_secs_f64()));
    }

    /// A node leads in `term`. openraft's leader ids are (term, node id),
    /// so two nodes may lead the same term (their votes differ); what must
    /// hold is that each such leadership is one node's, once.
    pub fn leader(&mut self, term: u64, node: u64) {
        if self.leaders.insert((term, node)) {
            self.event(format!("node {node} leads term {term}"));
        }
    }

    /// A node's term never goes back, across its restarts too: a vote it
    /// gave is on disk before it answers (else it could vote twice).
    pub fn term(&mut self, node: u64, term: u64) {
        let seen = self.terms.entry(node).or_default();
        let was = std::mem::replace(seen, term);
        if term < was {
            self.violation(format!("node {node}'s term went back from {was} to {term}"));
        }
    }

    pub fn terms_with_a_leader(&self) -> usize {
        self.leaders.len()
    }

    fn apply(&mut self, node: u64, log_id: LogId<u64>, digest: u64) {
        let here = (log_id.leader_id.term, digest);
        match self.applied.get(&log_id.index) {
            Some(&(term, d, first)) if (term, d) != here => self.violation(format!(
                "node {node} applied {log_id} (digest {digest:x}) where node {first} applied \
                 term {term} digest {d:x}"
            )),
            Some(_) => {}
            None => {
                self.applied.insert(log_id.index, (here.0, here.1, node));
            }
        }
    }

    /// turmoil stopped the run (a host's task failed, or time ran out).
    pub fn stopped(&mut self, e: impl std::fmt::Display) {
        self.violations.push(format!("the simulation stopped: {e}"));
    }

    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            self.violation(what);
        }
    }

    pub fn trace_hash(&self) -> u64 {
        // SipHash with fixed keys: the same trace hashes the same in every run.
        let mut h = std::hash::DefaultHasher::new();
        self.trace.hash(&mut h);
        h.finish()
    }
}

fn digest(entry: &Entry<MetadataRaft>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    serde_json::to_vec(&entry.payload)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// The real state machine, with each applied entry recorded first.
#[derive(Clone)]
pub struct Recorded {
    pub inner: MetadataStateMachine,
    pub node: u64,
    pub world: Shared,
}

type Err = StorageError<u64>;
type Inner = MetadataStateMachine;

impl RaftStateMachine<MetadataRaft> for Recorded {
    type SnapshotBuilder = <Inner as RaftStateMachine<MetadataRaft>>::SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), Err> {
        self.inner.applied_state().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataResult>, Err>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        {
            let mut w = lock(&self.world);
            for e in &entries {
                w.apply(self.node, e.log_id, digest(e));
            }
        }
        self.inner.apply(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.inner.get_snapshot_builder().await
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<std::io::Cursor<Vec<u8>>>, Err> {
        self.inner.begin_receiving_snapshot().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> Result<(), Err> {
        lock(&self.world).event(format!(
            "node {} installs a snapshot as of {:?}",
            self.node, meta.last_log_id
        ));
        self.inner.install_snapshot(meta, snapshot).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetadataRaft>>, Err> {
        self.inner.get_current_snapshot().await
    }
}
