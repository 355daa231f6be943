//! The controller role, on every voter, active on the Raft leader: it takes
//! metadata changes (its own broker's and those forwarded by others), keeps
//! the brokers' sessions, and fences a broker whose heartbeats stop (as
//! KRaft's controller does with `broker.session.timeout.ms`). Sessions live
//! in the leader's memory only: a new leader gives every broker a whole
//! session before fencing it.
//!
//! A session is the bound, not the usual case: when a connection from a
//! peer closes, a replica fetch from it fails, or (on the leader) its
//! heartbeats are two intervals late, this node dials it. An address that
//! refuses the dial is a killed process: every node then stops naming it as
//! a leader in Metadata (LEADER_NOT_AVAILABLE, so clients look again soon
//! instead of waiting on a dead connection), and the leader fences it at
//! once. When the gone broker was the metadata leader, the survivors
//! campaign at once instead of waiting out its lease. A broker that is stopped or cut off leaves the dial hanging and
//! keeps its session to the end.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use karnak_coordinator::metadata::wire::{
    BrokerHeartbeat, HeartbeatAnswer, ProposeError, Proposed,
};
use karnak_coordinator::metadata::{
    ClusterMetadata, ControllerDefaults, ElectionKind, MetadataCommand, MetadataRaft,
    MetadataStateMachine,
};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, ServerState};
use tokio::sync::watch;

use super::raft_net::{self, Identity, Liveness};

/// How long a dial to a quiet broker may take before it counts as unknown.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// After a dead metadata leader, how often a survivor campaigns (plus half
/// of it per node id modulo 3), and for how long before leaving it to
/// openraft's own timers.
const CAMPAIGN_PACE: Duration = Duration::from_millis(80);
const CAMPAIGN_FOR: Duration = Duration::from_secs(3);

struct Sessions {
    /// The Raft term this node leads in, and since when: a new term
    /// starts every broker's session afresh.
    term: u64,
    leading_since: Instant,
    last_seen: HashMap<i32, Instant>,
    /// The term's first look at the brokers is still to come: a new leader
    /// dials every broker at once (the old leader's broker, often the one
    /// that died, sends it no heartbeat).
    first_look: bool,
}

pub struct Controller {
    pub raft: Raft<MetadataRaft>,
    pub me: Identity,
    metadata: watch::Receiver<std::sync::Arc<ClusterMetadata>>,
    sessions: Mutex<Sessions>,
    session_timeout: Duration,
    heartbeat_interval: Duration,
    /// Brokers being dialled, so a quiet broker gets one probe at a time.
    probing: Mutex<HashSet<i32>>,
    /// Brokers whose address refused a dial, with the incarnation they
    /// had then (a restarted broker is a new incarnation, never gone).
    gone: Mutex<HashMap<i32, [u8; 16]>>,
    /// This node's election flags, recorded in the metadata while it leads.
    defaults: ControllerDefaults,
}

impl Controller {
    pub fn new(
        raft: Raft<MetadataRaft>,
        me: Identity,
        sm: &MetadataStateMachine,
        session_timeout: Duration,
        heartbeat_interval: Duration,
        defaults: ControllerDefaults,
    ) -> Controller {
        Controller {
            raft,
            me,
            metadata: sm.subscribe(),
            sessions: Mutex::new(Sessions {
                term: 0,
                leading_since: Instant::now(),
                last_seen: HashMap::new(),
                first_look: true,
            }),
            session_timeout,
            heartbeat_interval,
            probing: Mutex::new(HashSet::new()),
            gone: Mutex::new(HashMap::new()),
            defaults,
        }
    }

    /// The Raft leader as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The index a linearizable read waits for: the commit index, once a
    /// quorum has confirmed this node still leads (openraft's read index).
    pub async fn read_index(&self) -> Result<u64, String> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Commits `cmd` if this node leads; returns once it is applied here.
    /// A command the current state refuses is answered without logging it.
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<Proposed, ProposeError> {
        if self.leading_term().is_some()
            && let Err(e) = self.metadata.borrow().precheck(&cmd)
        {
            let index = self
                .raft
                .metrics()
                .borrow()
                .last_applied
                .map_or(0, |l| l.index);
            return Ok(Proposed {
                result: Err(e),
                index,
            });
        }
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(Proposed {
                result: r.data,
                index: r.log_id.index,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    /// A broker's heartbeat: renews its session, and unfences it when it
    /// asks to be unfenced.
    pub async fn heartbeat(&self, hb: BrokerHeartbeat) -> HeartbeatAnswer {
        let Some(term) = self.leading_term() else {
            return HeartbeatAnswer::NotLeader {
                leader: self.leader(),
            };
        };
        let fenced = {
            let state = self.metadata.borrow();
            match state.brokers.get(&hb.broker) {
                Some(b) if b.incarnation == hb.incarnation => b.fenced,
                _ => return HeartbeatAnswer::NotRegistered,
            }
        };
        self.with_sessions(term, |s| {
            s.last_seen.insert(hb.broker, Instant::now());
        });
        let want = if hb.want_fence == fenced {
            None
        } else if hb.want_fence {
            Some(MetadataCommand::FenceBroker { id: hb.broker })
        } else {
            Some(MetadataCommand::UnfenceBroker { id: hb.broker })
        };
        let Some(cmd) = want else {
            if fenced {
                return HeartbeatAnswer::Ok { fenced, index: 0 };
            }
            // A leader cut off from the quorum may not know yet that it
            // was deposed: it answers only once a quorum confirms it still
            // leads, after this heartbeat came in. Then no successor can
            // have started this broker's session (and its fencing clock)
            // before the broker sent it.
            return match tokio::time::timeout(self.heartbeat_interval * 2, self.read_index()).await
            {
                Ok(Ok(index)) => HeartbeatAnswer::Ok { fenced, index },
                Ok(Err(e)) => HeartbeatAnswer::Failed(format!("leadership not confirmed: {e}")),
                Err(_) => HeartbeatAnswer::Failed(format!(
                    "no quorum confirmed this leader within {:?}",
                    self.heartbeat_interval * 2
                )),
            };
        };
        match self.propose(cmd).await {
            Ok(Proposed {
                result: Ok(_),
                index,
            }) => HeartbeatAnswer::Ok {
                fenced: hb.want_fence,
                index,
            },
            Ok(Proposed { result: Err(e), .. }) => HeartbeatAnswer::Failed(e.to_string()),
            Err(ProposeError::NotLeader { leader }) => HeartbeatAnswer::NotLeader { leader },
            Err(e) => HeartbeatAnswer::Failed(e.to_string()),
        }
    }

    /// The current term, if this node leads in it.
    fn leading_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.current_leader == Some(self.me.node_id)).then_some(m.current_term)
    }

    fn with_sessions<T>(&self, term: u64, f: impl FnOnce(&mut Sessions) -> T) -> T {
        let mut s = lock(&self.sessions);
        if s.term != term {
            s.term = term;
            s.leading_since = Instant::now();
            s.last_seen.clear();
            s.first_look = true;
        }
        f(&mut s)
    }

    /// Live brokers whose session has run out while this node leads, and
    /// those whose heartbeats are late (two intervals) but within it. Its
    /// own broker is never among them: this code running is its heartbeat.
    fn overdue(&self, term: u64) -> (Vec<i32>, Vec<i32>) {
        let live: Vec<i32> = self
            .metadata
            .borrow()
            .brokers
            .values()
            .filter(|b| !b.fenced && b.id as u64 != self.me.node_id)
            .map(|b| b.id)
            .collect();
        let now = Instant::now();
        let late = self.heartbeat_interval * 2;
        self.with_sessions(term, |s| {
            let first_look = std::mem::take(&mut s.first_look);
            let mut overdue = (Vec::new(), Vec::new());
            for id in live {
                let seen = s.last_seen.get(&id).copied();
                let silent = now.duration_since(seen.unwrap_or(s.leading_since));
                if silent > self.session_timeout {
                    overdue.0.push(id);
                } else if silent > late || (first_look && seen.is_none()) {
                    overdue.1.push(id);
                }
            }
            overdue
        })
    }

    /// A connection from voter `node` closed.
    pub fn peer_lost(self: Arc<Self>, node: u64) {
        self.suspect(node as i32, "its cluster connection closed");
    }

    /// Something this node had with broker `id` failed: dial it, and if
    /// its address refuses, take it as gone (and fence it, when leading).
    pub fn suspect(self: Arc<Self>, id: i32, why: &'static str) {
        let known = self.seen_gone(id);
        if id as u64 != self.me.node_id && (!known || self.leading_term().is_some()) {
            tokio::spawn(self.check(id, known, why));
        }
    }

    /// Broker `id`, registered and unfenced, was found gone by this node.
    pub fn seen_gone(&self, id: i32) -> bool {
        let Some(incarnation) = self.live_incarnation(id) else {
            return false;
        };
        lock(&self.gone).get(&id) == Some(&incarnation)
    }

    fn live_incarnation(&self, id: i32) -> Option<[u8; 16]> {
        self.metadata
            .borrow()
            .brokers
            .get(&id)
            .filter(|b| !b.fenced)
            .map(|b| b.incarnation)
    }

    /// Dials broker `id` (unless `known` gone already) and fences it when
    /// it is gone and this node leads; one check per broker at a time.
    async fn check(self: Arc<Self>, id: i32, known: bool, why: &'static str) {
        let Some(incarnation) = self.live_incarnation(id) else {
            return;
        };
        if !lock(&self.probing).insert(id) {
            return;
        }
        if known || self.probe(id, incarnation).await {
            if self.leader() == Some(id as u64) {
                tokio::spawn(self.clone().campaign_without(id as u64));
            }
            self.fence_gone(id, incarnation, why).await;
        }
        lock(&self.probing).remove(&id);
    }

    /// The metadata leader `dead` was found gone: campaign now rather than
    /// wait out its lease and then an election timeout (0.9-1.2 s after its
    /// last heartbeat). A voter still inside the dead leader's lease refuses
    /// the vote, so campaign again until another leader is known, each voter
    /// at its own pace so that two survivors do not split every vote. Safe
    /// whatever the dial meant: a vote is still a Raft vote.
    async fn campaign_without(self: Arc<Self>, dead: u64) {
        let pace = CAMPAIGN_PACE + CAMPAIGN_PACE / 2 * (self.me.node_id % 3) as u32;
        let deadline = Instant::now() + CAMPAIGN_FOR;
        while Instant::now() < deadline {
            let (leader, state) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (m.current_leader, m.state)
            };
            if leader.is_some_and(|l| l != dead) || state == ServerState::Leader {
                return;
            }
            tracing::info!(leader = dead, "the metadata leader is gone: campaigning");
            if self.raft.trigger().elect().await.is_err() {
                return;
            }
            tokio::time::sleep(pace).await;
        }
    }

    /// Whether broker `id`'s address refuses a dial; remembers the answer.
    async fn probe(&self, id: i32, incarnation: [u8; 16]) -> bool {
        match raft_net::probe(&self.me, id as u64, PROBE_TIMEOUT).await {
            Liveness::Gone => {
                lock(&self.gone).insert(id, incarnation);
                true
            }
            Liveness::Alive => {
                lock(&self.gone).remove(&id);
                false
            }
            Liveness::Unknown => false,
        }
    }

    async fn fence_gone(&self, id: i32, incarnation: [u8; 16], why: &str) {
        if self.leading_term().is_none() || self.live_incarnation(id) != Some(incarnation) {
            return;
        }
        tracing::warn!(
            broker = id,
            "fencing a broker: {why} and its cluster listener refuses connections"
        );
        if let Err(e) = self.propose(MetadataCommand::FenceBroker { id }).await {
            tracing::warn!(broker = id, error = %e, "could not fence a broker");
        }
    }

    /// Fences brokers whose sessions expire, every `tick`, until `stopping`.
    pub async fn run_session_expiry(
        self: Arc<Self>,
        tick: Duration,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stopping.changed() => return,
            }
            let Some(term) = self.leading_term() else {
                continue;
            };
            if self.metadata.borrow().controller_defaults != self.defaults {
                let cmd = MetadataCommand::SetControllerDefaults(self.defaults.clone());
                if let Err(e) = self.propose(cmd).await {
                    tracing::warn!(error = %e, "could not record this controller's defaults");
                }
            }
            let (expired, late) = self.overdue(term);
            for id in late {
                self.clone().suspect(id, "its heartbeats are late");
            }
            for id in expired {
                tracing::warn!(
                    broker = id,
                    timeout_ms = self.session_timeout.as_millis() as u64,
                    "fencing a broker whose heartbeats stopped"
                );
                if let Err(e) = self.propose(MetadataCommand::FenceBroker { id }).await {
                    tracing::warn!(broker = id, error = %e, "could not fence a broker");
                }
            }
        }
    }
}

impl Controller {
    /// Every `interval` while this node leads: gives leadership back to
    /// preferred replicas that are live and in sync (Kafka's
    /// `auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds`).
    pub async fn run_leader_rebalance(
        self: Arc<Self>,
        interval: Duration,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.changed() => return,
            }
            if self.leading_term().is_none() {
                continue;
            }
            let due = self.metadata.borrow().preferred_elections_due();
            if due.is_empty() {
                continue;
            }
            let mut moved = 0usize;
            for (topic, partition) in due {
                let cmd = MetadataCommand::ElectLeader {
                    topic,
                    partition,
                    kind: ElectionKind::Preferred,
                };
                match self.propose(cmd).await {
                    Ok(Proposed { result: Ok(_), .. }) => moved += 1,
                    // The state moved on since the look (a new leader, a
                    // fenced broker): the next check sees it.
                    Ok(Proposed { result: Err(_), .. }) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "leader rebalance stopped: not leading");
                        break;
                    }
                }
            }
            if moved > 0 {
                tracing::info!(
                    partitions = moved,
                    "leadership given back to preferred replicas (auto.leader.rebalance.enable)"
                );
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
