//! The GroupCoordinator: N Pharaoh shards, each owning the groups whose ids
//! hash to it. On one node every shard lives here; in a cluster each shard
//! is led by one broker, and FindCoordinator points at it. The code path is
//! the same: nothing here talks across shards.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use karnak_storage::LogManager;

use crate::group::GroupConfig;
use crate::obelisk::Sequencer;
use crate::shard::{Shard, ShardError};

/// The internal topic whose partition `i` is shard `i`'s log.
pub const COORDINATOR_TOPIC: &str = "__karnak_coordinator";

/// Ids handed out per durable lease write of a shard's sequencer.
const SEQUENCER_BLOCK: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(
        "{COORDINATOR_TOPIC} has {found} partitions but the coordinator is configured for {want} shards; the shard count of a data dir cannot change (group ids would route to other shards)"
    )]
    ShardCountChanged { found: i32, want: u32 },
    #[error("creating {COORDINATOR_TOPIC}: {0}")]
    Create(#[source] karnak_storage::StorageError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Sequencer(#[from] crate::obelisk::SequencerError),
    #[error("creating the sequencer dir: {0}")]
    SequencerDir(#[source] karnak_storage::StorageError),
    #[error("creating {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
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

pub struct GroupCoordinator {
    shards: Vec<Arc<Shard>>,
}

impl GroupCoordinator {
    /// Opens (creating on first start) the shard partitions and replays them.
    pub fn open(
        logs: &LogManager,
        data_dir: &Path,
        shards: u32,
        cfg: GroupConfig,
    ) -> Result<Self, CoordinatorError> {
        let shards = shards.clamp(1, 1024);
        let topic = match logs.topic(COORDINATOR_TOPIC) {
            Some(t) => t,
            None => {
                let configs = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    // Small segments: checkpoints delete whole segments behind them.
                    ("segment.bytes".to_string(), (16u64 << 20).to_string()),
                ]);
                logs.create_topic(COORDINATOR_TOPIC, shards as i32, configs)
                    .map_err(CoordinatorError::Create)?
            }
        };
        if topic.meta.partitions != shards as i32 {
            return Err(CoordinatorError::ShardCountChanged {
                found: topic.meta.partitions,
                want: shards,
            });
        }
        let seq_dir = data_dir.join("__karnak_meta").join("obelisk");
        karnak_storage::create_dir_durable(&seq_dir).map_err(CoordinatorError::SequencerDir)?;
        let mut out = Vec::with_capacity(shards as usize);
        for (i, log) in topic.logs.iter().enumerate() {
            let seq = Sequencer::open(
                &seq_dir.join(format!("group-shard-{i}.seq")),
                1,
                SEQUENCER_BLOCK,
                1 << 48,
            )?;
            out.push(Arc::new(Shard::open(
                i as u32,
                log.clone(),
                seq,
                cfg.clone(),
            )?));
        }
        let groups: usize = out.iter().map(|s| s.lock().groups.len()).sum();
        tracing::info!(shards, groups, "group coordinator loaded");
        Ok(GroupCoordinator { shards: out })
    }

    /// Starts every shard's timer task; they end when `stop` turns true.
    pub fn start_timers(&self, stop: tokio::sync::watch::Receiver<bool>) {
        for s in &self.shards {
            tokio::spawn(s.clone().run_timers(stop.clone()));
        }
    }

    /// Expires committed offsets over every shard (Kafka's offsets
    /// retention pass); returns how many were dropped.
    pub fn expire_offsets(&self, now_ms: i64, retention_ms: i64) -> usize {
        self.shards
            .iter()
            .map(|s| s.expire_offsets(now_ms, retention_ms))
            .sum()
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    pub fn shard(&self, group_id: &str) -> &Arc<Shard> {
        &self.shards[shard_for(group_id, self.shard_count()) as usize]
    }

    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
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
