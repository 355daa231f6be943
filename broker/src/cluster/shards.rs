//! The Pharaoh shards over the cluster: shard `i` is partition `i` of
//! `__karnak_coordinator`, a topic in the metadata log like any other
//! (compacted, replicated over min(3, voters) brokers, as Kafka's
//! `offsets.topic.replication.factor`). The broker leading a shard's
//! partition loads the shard (replays its log) and coordinates its groups
//! and transactional ids; when leadership moves, the old leader unloads it
//! and the new one loads it. Obelisk sequencers lease their id blocks in
//! the metadata log, so ids never repeat across brokers or failovers.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use karnak_coordinator::metadata::{ClusterMetadata, MetadataCommand, MetadataReply};
use karnak_coordinator::{
    COORDINATOR_TOPIC, CoordinatorError, FileLease, LeaseFactory, LeaseFuture, LeaseStore,
    Sequencer, SequencerError, coordinator_topic_configs,
};

use super::ClusterNode;
use crate::broker::Broker;

const LEASE_TIMEOUT: Duration = Duration::from_secs(15);
/// Producer ids per metadata lease (Kafka's KIP-730 block size).
const PRODUCER_ID_BLOCK: u64 = 1000;
/// How often a broker waiting for enough brokers to place the
/// coordinator topic looks again.
const PLACEMENT_RETRY: Duration = Duration::from_millis(200);

/// A sequencer's leases as metadata records.
struct MetadataLease {
    cluster: Arc<ClusterNode>,
    sequencer: String,
}

impl LeaseStore for MetadataLease {
    fn name(&self) -> String {
        format!("metadata id lease {}", self.sequencer)
    }

    /// Never blocks a thread on the metadata group: the coordinator takes
    /// its ids with `Sequencer::reserve` and `try_next`, which await it.
    fn lease(&self, _from: u64, _size: u64) -> Result<Range<u64>, SequencerError> {
        Err(SequencerError::Lease {
            name: self.sequencer.clone(),
            reason: "a metadata lease is awaited (Sequencer::reserve), never taken in place".into(),
        })
    }

    fn lease_async(&self, from: u64, size: u64) -> LeaseFuture<'_> {
        Box::pin(async move {
            let cmd = MetadataCommand::AllocateIdBlock {
                sequencer: self.sequencer.clone(),
                size,
                from,
            };
            let failed = |reason: String| SequencerError::Lease {
                name: self.sequencer.clone(),
                reason,
            };
            match self.cluster.propose(cmd, LEASE_TIMEOUT).await {
                Ok(MetadataReply::IdBlock { first }) => Ok(first..first.saturating_add(size)),
                Ok(other) => Err(failed(format!("the metadata answered {other:?}"))),
                Err(e) => Err(failed(e.to_string())),
            }
        })
    }
}

/// Shard `i`'s member-id sequencer: leased in the metadata, above what the
/// shard's file handed out when one node kept it there.
pub fn shard_leases(cluster: Arc<ClusterNode>, data_dir: &std::path::Path) -> LeaseFactory {
    let dir = karnak_coordinator::coordinator::legacy_sequencer_dir(data_dir);
    Arc::new(move |i| {
        let floor = FileLease::read(&dir.join(format!("group-shard-{i}.seq")))?.unwrap_or(1);
        let store = MetadataLease {
            cluster: cluster.clone(),
            sequencer: format!("group-shard-{i}"),
        };
        Ok((Box::new(store) as Box<dyn LeaseStore>, floor))
    })
}

/// The cluster's producer ids. A data dir whose shards handed out producer
/// ids themselves (the shard number in bits 48 and up) starts above all of
/// them: partitions keep those producers' state.
pub fn producer_ids(
    cluster: Arc<ClusterNode>,
    data_dir: &std::path::Path,
    shards: u32,
) -> Result<Sequencer, SequencerError> {
    let dir = karnak_coordinator::coordinator::legacy_sequencer_dir(data_dir);
    let mut floor = 0;
    for i in 0..shards {
        if FileLease::read(&dir.join(format!("group-shard-{i}.seq")))?.is_some() {
            floor = u64::from(shards) << 48;
            break;
        }
    }
    let store = MetadataLease {
        cluster,
        sequencer: "producer-ids".into(),
    };
    Ok(Sequencer::with_store(
        Box::new(store),
        floor,
        PRODUCER_ID_BLOCK,
        i64::MAX as u64,
    ))
}

/// Puts the coordinator topic in the metadata if it is not there: adopted
/// from this broker's disk (a single node from before the metadata log),
/// or placed once enough brokers are live for its replication factor.
/// Returns once the metadata has it with `shards` partitions.
pub async fn ensure_coordinator_topic(broker: &Broker, shards: u32) -> anyhow::Result<()> {
    let mut waiting_logged = false;
    loop {
        let meta = broker.cluster.metadata();
        if let Some(t) = meta.topics.get(COORDINATOR_TOPIC) {
            if t.partitions.len() != shards as usize {
                return Err(CoordinatorError::ShardCountChanged {
                    found: t.partitions.len() as i32,
                    want: shards,
                }
                .into());
            }
            return Ok(());
        }
        let cmd = if let Some(local) = broker.logs.topic(COORDINATOR_TOPIC) {
            Some(MetadataCommand::CreateTopic {
                name: COORDINATOR_TOPIC.to_string(),
                id: local.meta.id,
                configs: local.meta.configs.clone(),
                assignments: vec![vec![broker.node_id()]; local.meta.partitions as usize],
            })
        } else {
            let voters = broker.config.cluster.peers.len().max(1);
            let factor = voters.min(3);
            let live: Vec<(i32, Option<String>)> = broker
                .live_brokers(broker.inter_broker_listener())
                .into_iter()
                .map(|b| (b.id, b.rack))
                .collect();
            if live.len() >= factor {
                let seed = u64::from(shards) ^ live.iter().map(|b| b.0 as u64).sum::<u64>();
                let assignments = karnak_coordinator::metadata::placement::assign_replicas(
                    &live,
                    shards as usize,
                    factor,
                    0,
                    seed,
                )?;
                Some(MetadataCommand::CreateTopic {
                    name: COORDINATOR_TOPIC.to_string(),
                    id: *uuid::Uuid::new_v4().as_bytes(),
                    configs: coordinator_topic_configs(),
                    assignments,
                })
            } else {
                if !waiting_logged {
                    tracing::info!(
                        live = live.len(),
                        needed = factor,
                        "waiting for brokers to place the coordinator shards"
                    );
                    waiting_logged = true;
                }
                None
            }
        };
        if let Some(cmd) = cmd {
            match broker.cluster.propose(cmd, LEASE_TIMEOUT).await {
                Ok(_) => tracing::info!(shards, "coordinator shards placed in the metadata"),
                Err(super::ClusterError::Refused(
                    karnak_coordinator::metadata::MetadataError::TopicExists(_),
                )) => {}
                Err(e) => tracing::warn!(error = %e, "placing the coordinator shards; retrying"),
            }
        }
        if *broker.stopping.borrow() {
            anyhow::bail!("stopping before the coordinator shards were placed");
        }
        tokio::time::sleep(PLACEMENT_RETRY).await;
    }
}

/// Loads the shards whose partitions this broker leads now and unloads
/// the ones it no longer leads. Called after the replicas took their roles
/// from `meta`.
pub fn follow(broker: &Arc<Broker>, meta: &ClusterMetadata) {
    let Some(t) = meta.topics.get(COORDINATOR_TOPIC) else {
        return;
    };
    for (i, p) in t.partitions.iter().enumerate() {
        let i = i as u32;
        if p.leader != broker.node_id() {
            broker.groups.unload(i);
            continue;
        }
        if broker.groups.begin_load(i, p.leader_epoch) {
            let b = broker.clone();
            let epoch = p.leader_epoch;
            broker.shard_loads.fetch_add(1, Ordering::AcqRel);
            tokio::spawn(async move {
                let replay = b.clone();
                // The replay reads the shard's log: off the reactor.
                let loaded = karnak_storage::blocking::spawn(move || load(&replay, i, epoch))
                    .await
                    .ok()
                    .flatten();
                if let Some(s) = loaded {
                    tokio::spawn(s.clone().run_timers(b.stopping.clone()));
                    b.txns.shard_loaded(&s).await;
                }
                b.shard_loads.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }
}

/// Replays shard `shard`'s log; the shard, unless leadership moved on
/// meanwhile or it could not be loaded.
fn load(broker: &Arc<Broker>, shard: u32, epoch: i32) -> Option<Arc<karnak_coordinator::Shard>> {
    let Some(log) = broker.logs.log(COORDINATOR_TOPIC, shard as i32) else {
        tracing::error!(
            shard,
            "no local log for a coordinator shard this broker leads"
        );
        broker.groups.abandon_load(shard, epoch);
        return None;
    };
    match broker.groups.load(shard, log, epoch) {
        Ok(s) if !s.is_fenced() => Some(s),
        Ok(_) => None, // leadership moved on while it replayed
        Err(e) => {
            tracing::error!(shard, error = %e, "could not load a coordinator shard");
            broker.groups.abandon_load(shard, epoch);
            None
        }
    }
}

/// Waits until no shard this broker leads is still replaying or finishing
/// the transactions it left prepared.
pub async fn wait_loaded(broker: &Broker) {
    while broker.groups.loading() > 0 || broker.shard_loads.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How long a coordinator write waits for the in-sync replicas (without
/// its shard's lock; what it wrote is pending meanwhile): past it the
/// request answers COORDINATOR_NOT_AVAILABLE and the client retries, by
/// when a dead follower may have left the set.
const SHARD_REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The shards' logs replicated as any partition: the high watermark moves
/// after each append, and records a failover must not lose wait for the
/// in-sync replicas (Kafka's acks=all on its transaction log).
pub struct ShardLogReplication(pub Arc<crate::replication::ReplicaManager>);

impl karnak_coordinator::ShardReplication for ShardLogReplication {
    fn after_append(&self, log: &karnak_storage::Log) {
        self.0.after_append(log.topic(), log.partition(), log)
    }

    fn wait_replicated<'a>(
        &'a self,
        log: &'a karnak_storage::Log,
        end: i64,
    ) -> karnak_coordinator::ReplicatedFuture<'a> {
        Box::pin(self.wait(log, end))
    }

    fn may_serve(&self) -> bool {
        self.0.holds_lease()
    }
}

impl ShardLogReplication {
    async fn wait(
        &self,
        log: &karnak_storage::Log,
        end: i64,
    ) -> Result<(), karnak_coordinator::NotReplicated> {
        use kafka_protocol::error::ResponseError;
        use karnak_coordinator::NotReplicated;
        if !log.is_replicated() {
            return Ok(());
        }
        // Fewer in-sync replicas than min.insync.replicas: refuse at once
        // rather than hold the shard until the deadline.
        if let Err(code) = self.0.leader_for_append(log.topic(), log.partition(), true) {
            return Err(if code == ResponseError::NotEnoughReplicas.code() {
                NotReplicated::Refused("fewer in-sync replicas than min.insync.replicas".into())
            } else {
                NotReplicated::NotLeader
            });
        }
        let deadline = tokio::time::Instant::now() + SHARD_REPLICATION_TIMEOUT;
        match self.0.wait_replicated(log, end, deadline).await {
            0 => Ok(()),
            code if code == ResponseError::NotLeaderOrFollower.code() => {
                Err(NotReplicated::NotLeader)
            }
            _ => Err(NotReplicated::Refused(format!(
                "not held by the in-sync replicas within {SHARD_REPLICATION_TIMEOUT:?} \
                 (waiting for offset {end}; high watermark {}, log end {})",
                log.high_watermark(),
                log.log_end_offset()
            ))),
        }
    }
}
