//! The GroupCoordinator: N Pharaoh shards, each owning the groups (and
//! transactional ids) whose ids hash to it. Shard `i` is partition `i` of
//! the internal topic `__karnak_coordinator`, placed and replicated like any
//! partition; the broker leading that partition loads the shard (replays its
//! log) and coordinates its groups, and FindCoordinator points there. When
//! leadership moves the shard is unloaded here and loaded there. Nothing in
//! a shard talks to another shard.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use karnak_storage::Log;

use crate::errors::{COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR};
use crate::group::GroupConfig;
use crate::obelisk::{LeaseStore, Sequencer, SequencerError};
use crate::shard::{Shard, ShardError, ShardReplication};

/// The internal topic whose partition `i` is shard `i`'s log.
pub const COORDINATOR_TOPIC: &str = "__karnak_coordinator";

/// Ids leased per durable lease of a shard's member-id sequencer.
const SEQUENCER_BLOCK: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(
        "{COORDINATOR_TOPIC} has {found} partitions but the coordinator is configured for {want} shards; the shard count of a data dir cannot change (group ids would route to other shards)"
    )]
    ShardCountChanged { found: i32, want: u32 },
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Sequencer(#[from] SequencerError),
    #[error("shard {0} is not one of this coordinator's")]
    NoSuchShard(u32),
}

/// The documented, stable key → shard map: FNV-1a (64-bit) over the key's
/// UTF-8 bytes, modulo the shard count. Never change it: persisted state is
/// found through it.
pub fn shard_for(key: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// The coordinator topic's configs: compacted (the shards' checkpoints
/// delete whole segments behind them), small segments.
pub fn coordinator_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), (16u64 << 20).to_string()),
    ])
}

/// Where shard `i`'s member-id sequencer leases its ids, and the first id
/// it may hand out (above any an earlier version of the shard gave).
pub type LeaseFactory =
    Arc<dyn Fn(u32) -> Result<(Box<dyn LeaseStore>, u64), SequencerError> + Send + Sync>;

/// Where a single node kept its shards' sequencer files before the
/// cluster metadata leased ids; their values are floors for the leases.
pub fn legacy_sequencer_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("__karnak_meta").join("obelisk")
}

enum Slot {
    /// Led by another broker (or by none).
    Away,
    /// Being loaded here for this leader epoch.
    Loading(i32),
    Loaded(Arc<Shard>),
}

pub struct GroupCoordinator {
    cfg: GroupConfig,
    slots: Vec<Mutex<Slot>>,
    leases: LeaseFactory,
    replication: Option<Arc<dyn ShardReplication>>,
}

fn lock(m: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupCoordinator {
    /// `shards` shards, none loaded yet: the broker loads the ones whose
    /// partitions it leads ([`Self::load`]).
    pub fn new(
        shards: u32,
        cfg: GroupConfig,
        leases: LeaseFactory,
        replication: Option<Arc<dyn ShardReplication>>,
    ) -> Self {
        let shards = shards.clamp(1, 1024);
        GroupCoordinator {
            cfg,
            slots: (0..shards).map(|_| Mutex::new(Slot::Away)).collect(),
            leases,
            replication,
        }
    }

    /// One process owning every shard (tests, tools): the coordinator
    /// topic is created in `logs` if missing, each shard's sequencer keeps
    /// its leases in a file under the data dir, and every shard is loaded.
    pub fn open_local(
        logs: &karnak_storage::LogManager,
        data_dir: &std::path::Path,
        shards: u32,
        cfg: GroupConfig,
    ) -> Result<Arc<Self>, CoordinatorError> {
        Self::open_local_with(logs, data_dir, shards, cfg, None)
    }

    /// As `open_local`, the shards' writes held to `replication`.
    pub fn open_local_with(
        logs: &karnak_storage::LogManager,
        data_dir: &std::path::Path,
        shards: u32,
        cfg: GroupConfig,
        replication: Option<Arc<dyn ShardReplication>>,
    ) -> Result<Arc<Self>, CoordinatorError> {
        let shards = shards.clamp(1, 1024);
        let topic = match logs.topic(COORDINATOR_TOPIC) {
            Some(t) => t,
            None => logs
                .create_topic(
                    COORDINATOR_TOPIC,
                    shards as i32,
                    coordinator_topic_configs(),
                )
                .map_err(|e| ShardError::Storage {
                    shard: 0,
                    source: e,
                })?,
        };
        if topic.meta.partitions != shards as i32 {
            return Err(CoordinatorError::ShardCountChanged {
                found: topic.meta.partitions,
                want: shards,
            });
        }
        let dir = legacy_sequencer_dir(data_dir);
        karnak_storage::create_dir_durable(&dir).map_err(|e| ShardError::Storage {
            shard: 0,
            source: e,
        })?;
        let leases: LeaseFactory = Arc::new(move |i| {
            let (store, first) =
                crate::obelisk::FileLease::open(&dir.join(format!("group-shard-{i}.seq")), 1)?;
            Ok((Box::new(store) as Box<dyn LeaseStore>, first))
        });
        let gc = Arc::new(GroupCoordinator::new(shards, cfg, leases, replication));
        for (i, log) in topic.logs.iter().enumerate() {
            gc.begin_load(i as u32, 0);
            gc.load(i as u32, log.clone(), 0)?;
        }
        Ok(gc)
    }

    /// Marks shard `id` as loading for `leader_epoch`. False when it is
    /// already loaded or loading for that epoch (nothing to do).
    pub fn begin_load(&self, id: u32, leader_epoch: i32) -> bool {
        let Some(slot) = self.slots.get(id as usize) else {
            return false;
        };
        let mut slot = lock(slot);
        match &*slot {
            Slot::Loading(e) if *e == leader_epoch => false,
            Slot::Loaded(s) if s.leader_epoch == leader_epoch && !s.is_fenced() => false,
            Slot::Loaded(s) => {
                s.fence();
                *slot = Slot::Loading(leader_epoch);
                true
            }
            _ => {
                *slot = Slot::Loading(leader_epoch);
                true
            }
        }
    }

    /// Loads shard `id` from its partition's log (which this broker now
    /// leads at `leader_epoch`), replaying every record. Blocking: call it
    /// off the reactor. The shard serves once this returns, unless its
    /// leadership moved again meanwhile (then it is fenced at once).
    pub fn load(
        &self,
        id: u32,
        log: Arc<Log>,
        leader_epoch: i32,
    ) -> Result<Arc<Shard>, CoordinatorError> {
        let slot = self
            .slots
            .get(id as usize)
            .ok_or(CoordinatorError::NoSuchShard(id))?;
        let (store, start) = (self.leases)(id)?;
        let seq = Sequencer::with_store(store, start, SEQUENCER_BLOCK, 1 << 48);
        let started = std::time::Instant::now();
        let mut shard = Shard::open(id, log, seq, self.cfg.clone())?;
        shard.leader_epoch = leader_epoch;
        shard.replication = self.replication.clone();
        let shard = Arc::new(shard);
        let mut slot = lock(slot);
        if matches!(&*slot, Slot::Loading(e) if *e == leader_epoch) {
            *slot = Slot::Loaded(shard.clone());
            let groups = shard.lock().groups.len();
            tracing::info!(
                shard = id,
                leader_epoch,
                groups,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "coordinator shard loaded"
            );
        } else {
            shard.fence();
        }
        Ok(shard)
    }

    /// Gives up a load that failed, so a later leadership change retries.
    pub fn abandon_load(&self, id: u32, leader_epoch: i32) {
        if let Some(slot) = self.slots.get(id as usize) {
            let mut slot = lock(slot);
            if matches!(&*slot, Slot::Loading(e) if *e == leader_epoch) {
                *slot = Slot::Away;
            }
        }
    }

    /// Shard `id` is led elsewhere now: fence and forget it here.
    pub fn unload(&self, id: u32) {
        let Some(slot) = self.slots.get(id as usize) else {
            return;
        };
        let mut slot = lock(slot);
        if let Slot::Loaded(s) = &*slot {
            s.fence();
            tracing::info!(shard = id, "coordinator shard unloaded");
        }
        *slot = Slot::Away;
    }

    /// Expires committed offsets over the shards loaded here (Kafka's
    /// offsets retention pass); returns how many were dropped.
    pub fn expire_offsets(&self, now_ms: i64, retention_ms: i64) -> usize {
        self.shards()
            .iter()
            .map(|s| s.expire_offsets(now_ms, retention_ms))
            .sum()
    }

    pub fn shard_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The shard coordinating `key` (a group id or transactional id), if it
    /// is loaded here: NOT_COORDINATOR when it is led elsewhere,
    /// COORDINATOR_LOAD_IN_PROGRESS while it replays.
    pub fn shard(&self, key: &str) -> Result<Arc<Shard>, i16> {
        self.shard_by_id(shard_for(key, self.shard_count()))
    }

    pub fn shard_by_id(&self, id: u32) -> Result<Arc<Shard>, i16> {
        if self.replication.as_ref().is_some_and(|r| !r.may_serve()) {
            return Err(NOT_COORDINATOR);
        }
        match self.slots.get(id as usize).map(|s| {
            let slot = lock(s);
            match &*slot {
                Slot::Loaded(s) if !s.is_fenced() => Ok(s.clone()),
                Slot::Loading(_) => Err(COORDINATOR_LOAD_IN_PROGRESS),
                _ => Err(NOT_COORDINATOR),
            }
        }) {
            Some(r) => r,
            None => Err(NOT_COORDINATOR),
        }
    }

    /// How many shards are replaying here now.
    pub fn loading(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(&*lock(s), Slot::Loading(_)))
            .count()
    }

    /// The shards loaded here now.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        (0..self.shard_count())
            .filter_map(|i| self.shard_by_id(i).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_hash_is_stable() {
        // Pinned values: changing the hash would orphan persisted groups.
        assert_eq!(shard_for("", 64), (0xcbf2_9ce4_8422_2325u64 % 64) as u32);
        assert_eq!(shard_for("my-group", 64), shard_for("my-group", 64));
        let spread: std::collections::HashSet<u32> = (0..1000)
            .map(|i| shard_for(&format!("group-{i}"), 64))
            .collect();
        assert_eq!(spread.len(), 64, "1000 groups should touch every shard");
    }
}
