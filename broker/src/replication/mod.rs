//! Partition replication, the Kafka way, on the segment log (issue 18).
//!
//! Every partition this broker holds a replica of has a role from the
//! metadata log: its leader takes produce requests, stamps its leader epoch
//! into each batch, and serves its followers' fetches (the Kafka Fetch API
//! with a replica id, from the segment files as consumers are served);
//! followers pull from the leader ([`fetcher`]) and append the batches as
//! received. The leader keeps each follower's log end offset; the high
//! watermark is the lowest one of the in-sync set, and consumers read
//! below it. With fewer in-sync replicas than `min.insync.replicas` it
//! does not move (KIP-966's strict rule) and acks=all writes are refused.
//! A follower that has not caught up for `replica.lag.time.max.ms` leaves
//! the in-sync set, and one that catches up joins it, through the metadata
//! log (AlterPartition).

pub mod client;
pub mod fetcher;
pub mod throttle;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use karnak_coordinator::metadata::{
    AlterPartition, ClusterMetadata, MetadataCommand, NO_LEADER, PartitionState,
};
use karnak_storage::{Log, LogManager};

use crate::cluster::ClusterNode;

type Key = (String, i32);

struct Follower {
    /// Its log end offset, as its last fetch said.
    leo: i64,
    /// Last time its log end reached ours (Kafka's lastCaughtUpTime).
    caught_up: Instant,
}

/// One partition this broker holds, as the metadata last placed it.
struct Replica {
    state: PartitionState,
    min_insync: usize,
    /// Leader only: the other replicas' progress.
    followers: HashMap<i32, Follower>,
    /// An AlterPartition of ours is being committed.
    altering: bool,
}

pub struct ReplicaManager {
    node: i32,
    logs: Arc<LogManager>,
    cluster: Arc<ClusterNode>,
    replicas: Mutex<HashMap<Key, Replica>>,
    lag_max: Duration,
    min_insync_default: i32,
    fetchers: fetcher::Fetchers,
    /// Replication throttles (KIP-73): this broker's rates.
    pub throttles: throttle::Throttles,
}

/// How often a wait for the in-sync replicas checks that this broker still leads.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(100);

/// How long a refused in-sync set change waits before it is tried again.
const ALTER_RETRY: Duration = Duration::from_millis(500);

/// Kafka's answer for a request that reached the wrong replica.
const NOT_LEADER: i16 = ResponseError::NotLeaderOrFollower.code();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReplicaManager {
    pub fn new(
        node: i32,
        logs: Arc<LogManager>,
        cluster: Arc<ClusterNode>,
        lag_max: Duration,
        min_insync_default: i32,
        throttles: throttle::Throttles,
        inter_broker_listener: String,
    ) -> Arc<ReplicaManager> {
        Arc::new_cyclic(|me| ReplicaManager {
            throttles,
            node,
            logs,
            cluster,
            replicas: Mutex::new(HashMap::new()),
            lag_max,
            min_insync_default,
            fetchers: fetcher::Fetchers::new(node, inter_broker_listener, me.clone()),
        })
    }

    /// This broker leads the partition: in the role it took up, and still
    /// in the metadata as applied here. The metadata is asked too because
    /// roles stop following it at shutdown, while a controlled shutdown's
    /// own fence still moves every partition away: waits on a partition
    /// (acks=all) must see that and end.
    pub fn leads(&self, topic: &str, partition: i32) -> bool {
        let in_role = lock(&self.replicas)
            .get(&(topic.to_string(), partition))
            .is_some_and(|r| r.state.leader == self.node);
        in_role
            && self
                .cluster
                .metadata()
                .partition(topic, partition)
                .is_some_and(|p| p.leader == self.node)
    }

    /// Waits until the in-sync replicas hold `log` up to `target` (its high
    /// watermark reaches it), at most until `deadline`: 0, or
    /// REQUEST_TIMED_OUT, or NOT_LEADER_OR_FOLLOWER as soon as this broker
    /// no longer leads the partition (as Kafka's delayed produce: a leader
    /// that steps down, in a controlled shutdown or after a lost session,
    /// answers at once rather than at the timeout).
    /// The deadline is tokio's instant, the clock the wait runs on: a
    /// std one converted drifts from it where tokio's time is not the
    /// system's (paused, or the simulation's), and ended waits at once.
    pub async fn wait_replicated(
        &self,
        log: &Log,
        target: i64,
        deadline: tokio::time::Instant,
    ) -> i16 {
        let mut hw = log.subscribe();
        let stepped_down = async {
            loop {
                tokio::time::sleep(LEADERSHIP_CHECK).await;
                if !self.leads(log.topic(), log.partition()) {
                    return;
                }
            }
        };
        tokio::select! {
            r = tokio::time::timeout_at(deadline, hw.wait_for(|h| *h >= target)) => {
                if matches!(r, Ok(Ok(_))) { 0 } else { ResponseError::RequestTimedOut.code() }
            }
            _ = stepped_down => NOT_LEADER,
        }
    }

    /// This broker may answer as a leader or coordinator (its lease).
    pub fn holds_lease(&self) -> bool {
        self.cluster.holds_lease()
    }

    /// The replicas, and after them the coordinator shards, took their
    /// roles from the metadata at `index` (the lease counts from then).
    pub fn roles_follow(&self, index: u64) {
        self.cluster.roles_follow(index);
    }

    /// Shutting down: the fetchers stop before the logs close.
    pub fn stop_fetching(&self) {
        self.fetchers.stop();
    }

    /// A fetch from `leader` failed: the first sign, often, that it died.
    fn leader_unreachable(&self, leader: i32) {
        self.cluster
            .controller
            .clone()
            .suspect(leader, "a replica fetch from it failed");
    }

    fn log(&self, key: &Key) -> Option<Arc<Log>> {
        self.logs.log(&key.0, key.1)
    }

    /// Whether this broker's replica of `topic`-`partition` follows
    /// `leader` in `epoch` and agrees with its log (see the fetcher).
    pub fn follows_in_step(&self, topic: &str, partition: i32, leader: i32, epoch: i32) -> bool {
        self.fetchers
            .in_step(leader, &(topic.to_string(), partition), epoch)
    }

    /// Follows the metadata: new roles, epochs and in-sync sets. Called
    /// after the logs were made to match it (reconcile.rs).
    pub fn apply(&self, meta: &ClusterMetadata) {
        let mut replicas = lock(&self.replicas);
        let mut seen = std::collections::HashSet::new();
        let mut follow: BTreeMap<i32, Vec<(Key, i32)>> = BTreeMap::new();
        for (name, t) in &meta.topics {
            let min_insync = meta.min_insync_replicas(name, self.min_insync_default);
            for (i, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.node) {
                    continue;
                }
                let key = (name.clone(), i as i32);
                let Some(log) = self.log(&key) else { continue };
                seen.insert(key.clone());
                let old = replicas.get(&key).map(|r| r.state.clone());
                let became_leader = p.leader == self.node
                    && old
                        .as_ref()
                        .is_none_or(|o| o.leader != self.node || o.leader_epoch != p.leader_epoch);
                let r = replicas.entry(key.clone()).or_insert_with(|| Replica {
                    state: p.clone(),
                    min_insync,
                    followers: HashMap::new(),
                    altering: false,
                });
                r.state = p.clone();
                r.min_insync = min_insync;
                r.altering = false;
                if became_leader {
                    r.followers.clear();
                    if let Err(e) = log.begin_leader_epoch(p.leader_epoch) {
                        tracing::error!(topic = %name, partition = i, error = %e, "could not start a leader epoch");
                    }
                    tracing::info!(topic = %name, partition = i, epoch = p.leader_epoch, "leading");
                }
                if p.leader == self.node {
                    // The followers are the other replicas: a new leader's
                    // all, a reassignment's added ones joining and removed
                    // ones leaving without a new epoch. New ones count as
                    // caught up now.
                    let now = Instant::now();
                    r.followers.retain(|b, _| p.replicas.contains(b));
                    for b in p.replicas.iter().filter(|b| **b != self.node) {
                        r.followers.entry(*b).or_insert(Follower {
                            leo: -1,
                            caught_up: now,
                        });
                    }
                    log.set_replicated(p.replicas.len() > 1);
                    update_hw(&log, r, self.node);
                } else {
                    log.set_replicated(true);
                    r.followers.clear();
                    if p.leader != NO_LEADER {
                        follow
                            .entry(p.leader)
                            .or_default()
                            .push((key.clone(), p.leader_epoch));
                    }
                }
            }
        }
        replicas.retain(|k, _| seen.contains(k));
        drop(replicas);
        self.fetchers.assign(meta, follow);
    }

    /// The log of a partition this broker leads, for a client's produce,
    /// fetch or offset request. `epoch`: the client's current leader epoch
    /// (-1: unknown), checked as Kafka does.
    pub fn leader_log(&self, topic: &str, partition: i32, epoch: i32) -> Result<Arc<Log>, i16> {
        self.leased(self.leader(topic, partition, epoch, false))
            .map(|(log, _)| log)
    }

    /// [`Self::leader`]'s answer for clients and coordinators: refused
    /// while this broker's lease on its roles has lapsed (it may have been
    /// fenced and replaced without hearing of it). Followers' fetches are
    /// not: a leader that was replaced gets none but from followers as
    /// stale as it, and its high watermark cannot pass what its successor
    /// (one of its in-sync replicas) holds.
    fn leased<T>(&self, leader: Result<T, i16>) -> Result<T, i16> {
        let leader = leader?;
        if !self.cluster.holds_lease() {
            return Err(NOT_LEADER);
        }
        Ok(leader)
    }

    /// For an append: the leader's log and the epoch to stamp; with
    /// `acks_all`, refused when fewer than `min.insync.replicas` are in sync.
    pub fn leader_for_append(
        &self,
        topic: &str,
        partition: i32,
        acks_all: bool,
    ) -> Result<(Arc<Log>, i32), i16> {
        self.leased(self.leader(topic, partition, -1, acks_all))
    }

    fn leader(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
        acks_all: bool,
    ) -> Result<(Arc<Log>, i32), i16> {
        let key = (topic.to_string(), partition);
        let replicas = lock(&self.replicas);
        let Some(r) = replicas.get(&key) else {
            return Err(
                if self
                    .cluster
                    .metadata()
                    .partition(topic, partition)
                    .is_some()
                {
                    NOT_LEADER
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                },
            );
        };
        check_epoch(epoch, r.state.leader_epoch)?;
        if r.state.leader != self.node {
            return Err(NOT_LEADER);
        }
        if acks_all && r.state.isr.len() < r.min_insync {
            return Err(ResponseError::NotEnoughReplicas.code());
        }
        let leader_epoch = r.state.leader_epoch;
        drop(replicas);
        Ok((self.log(&key).ok_or(NOT_LEADER)?, leader_epoch))
    }

    /// After an append as leader: the high watermark may move (at once
    /// when no other replica is in sync).
    pub fn after_append(&self, topic: &str, partition: i32, log: &Log) {
        if !log.is_replicated() {
            return; // its high watermark followed the append
        }
        if let Some(r) = lock(&self.replicas).get_mut(&(topic.to_string(), partition)) {
            update_hw(log, r, self.node);
        }
    }

    /// Whether serving `replica` this partition counts against the leader
    /// throttle: the topic lists the partition on this broker under
    /// `leader.replication.throttled.replicas` and the replica is not in
    /// sync (in-sync replicas, which acks=all waits on, are never slowed).
    /// Asked only when a leader rate is set (the caller checks, once per fetch).
    pub fn leader_throttled(&self, topic: &str, partition: i32, replica: i32) -> bool {
        self.topic_lists(topic, throttle::LEADER_REPLICAS, partition)
            && lock(&self.replicas)
                .get(&(topic.to_string(), partition))
                .is_some_and(|r| !r.state.isr.contains(&replica))
    }

    /// The follower side of [`Self::leader_throttled`]: this broker's
    /// replica is listed under `follower.replication.throttled.replicas`
    /// and not in sync. Asked only when a follower rate is set.
    fn follower_throttled(&self, key: &Key) -> bool {
        self.topic_lists(&key.0, throttle::FOLLOWER_REPLICAS, key.1)
            && lock(&self.replicas)
                .get(key)
                .is_some_and(|r| !r.state.isr.contains(&self.node))
    }

    fn topic_lists(&self, topic: &str, config: &str, partition: i32) -> bool {
        self.logs.topic(topic).is_some_and(|t| {
            t.meta
                .configs
                .get(config)
                .is_some_and(|v| throttle::lists(v, partition, self.node))
        })
    }

    /// A follower's fetch from `fetch_offset`: its progress is recorded,
    /// the high watermark moves, and it joins the in-sync set once caught
    /// up. Returns the log to serve it from.
    pub fn follower_fetch(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        replica: i32,
        fetch_offset: i64,
        epoch: i32,
    ) -> Result<Arc<Log>, i16> {
        let (log, _) = self.leader(topic, partition, epoch, false)?;
        let key = (topic.to_string(), partition);
        let mut replicas = lock(&self.replicas);
        let Some(r) = replicas.get_mut(&key) else {
            return Err(NOT_LEADER);
        };
        let leo = log.log_end_offset();
        if fetch_offset > leo || fetch_offset < 0 {
            // Ahead of us: its log diverged; it must align before it counts.
            return Err(ResponseError::OffsetOutOfRange.code());
        }
        let Some(f) = r.followers.get_mut(&replica) else {
            return Err(NOT_LEADER);
        };
        f.leo = fetch_offset;
        if fetch_offset >= leo {
            f.caught_up = Instant::now();
        }
        let hw = update_hw(&log, r, self.node);
        tracing::trace!(topic, partition, replica, fetch_offset, leo, hw, isr = ?r.state.isr, "follower fetch");
        // Kafka's rule to join: caught up to the high watermark, and to
        // where this leader's epoch began.
        let epoch_start = log.end_offset_for_epoch(r.state.leader_epoch - 1).1;
        if !r.state.isr.contains(&replica)
            && !r.altering
            && self.cluster.metadata().is_live(replica)
            && fetch_offset >= hw
            && fetch_offset >= epoch_start.min(leo)
        {
            let mut isr = r.state.isr.clone();
            isr.push(replica);
            self.alter_isr(key, r, isr);
        }
        Ok(log)
    }

    fn alter_isr(self: &Arc<Self>, key: Key, r: &mut Replica, isr: Vec<i32>) {
        r.altering = true;
        let cmd = MetadataCommand::AlterPartition(AlterPartition {
            topic: key.0.clone(),
            partition: key.1,
            leader: self.node,
            leader_epoch: r.state.leader_epoch,
            partition_epoch: r.state.partition_epoch,
            isr: isr.clone(),
        });
        let me = self.clone();
        tokio::spawn(async move {
            let outcome = me.cluster.propose(cmd, Duration::from_secs(5)).await;
            match &outcome {
                Ok(_) => {
                    tracing::info!(topic = %key.0, partition = key.1, ?isr, "in-sync set changed")
                }
                Err(e) => {
                    tracing::warn!(topic = %key.0, partition = key.1, ?isr, error = %e, "in-sync set change refused")
                }
            }
            // The metadata watch brings the new state (and clears the
            // flag); a refusal is retried after a pause, not at the next
            // fetch: this broker's metadata may lag the controller's.
            if outcome.is_err() {
                tokio::time::sleep(ALTER_RETRY).await;
            }
            if let Some(r) = lock(&me.replicas).get_mut(&key) {
                r.altering = false;
            }
        });
    }

    /// Followers that have not caught up for `replica.lag.time.max.ms`
    /// leave the in-sync set of the partitions this broker leads.
    pub fn shrink_lagging(self: &Arc<Self>) {
        let mut replicas = lock(&self.replicas);
        let keys: Vec<Key> = replicas.keys().cloned().collect();
        for key in keys {
            let Some(r) = replicas.get_mut(&key) else {
                continue;
            };
            if r.state.leader != self.node || r.altering {
                continue;
            }
            let lagging: Vec<i32> = r
                .state
                .isr
                .iter()
                .copied()
                .filter(|b| {
                    r.followers
                        .get(b)
                        .is_some_and(|f| f.caught_up.elapsed() > self.lag_max)
                })
                .collect();
            if lagging.is_empty() {
                continue;
            }
            let isr: Vec<i32> = r
                .state
                .isr
                .iter()
                .copied()
                .filter(|b| !lagging.contains(b))
                .collect();
            tracing::warn!(topic = %key.0, partition = key.1, ?lagging, "followers fell behind; leaving the in-sync set");
            self.alter_isr(key, r, isr);
        }
    }
}

/// FENCED_LEADER_EPOCH for an older epoch than ours, UNKNOWN_LEADER_EPOCH
/// for a newer one (we have not heard of it yet); -1 checks nothing.
fn check_epoch(client: i32, ours: i32) -> Result<(), i16> {
    if client < 0 || client == ours {
        Ok(())
    } else if client < ours {
        Err(ResponseError::FencedLeaderEpoch.code())
    } else {
        Err(ResponseError::UnknownLeaderEpoch.code())
    }
}

/// The leader's high watermark: the lowest log end offset of the in-sync
/// set, never moving back, and not moving at all while the set is smaller
/// than `min.insync.replicas`.
fn update_hw(log: &Log, r: &Replica, me: i32) -> i64 {
    let current = log.high_watermark();
    if !log.is_replicated() {
        return current;
    }
    if r.state.isr.len() < r.min_insync {
        return current;
    }
    let mut hw = log.log_end_offset();
    for b in r.state.isr.iter().filter(|b| **b != me) {
        match r.followers.get(b) {
            Some(f) if f.leo >= 0 => hw = hw.min(f.leo),
            // Not heard from since we lead: hold.
            _ => return current,
        }
    }
    if hw > current {
        log.set_high_watermark(hw)
    } else {
        current
    }
}
