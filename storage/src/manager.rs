//! The set of topics in a data directory: metadata persistence, creation,
//! deletion, and one exclusive lock per data dir.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::cleaner::service::LogCleaner;
use crate::cleaner::{CleanStats, CleanerConfig};
use crate::config::LogConfig;
use crate::error::{IoContext, StorageError};
use crate::group_commit::{FlushOutcome, FlusherStopped, GroupCommit};
use crate::log::{Log, sync_dir};
use crate::topic::validate_topic_name;

const META_DIR: &str = "__karnak_meta";
const MAX_PARTITIONS: i32 = 10_000;

/// Whether a topic may have `n` partitions (1..=10,000 here).
pub fn check_partition_count(n: i32) -> Result<(), StorageError> {
    if (1..=MAX_PARTITIONS).contains(&n) {
        Ok(())
    } else {
        Err(StorageError::InvalidPartitions(n))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (uuid v4 bytes, never all-zero).
    pub id: [u8; 16],
    pub partitions: i32,
    /// Overrides only.
    pub configs: BTreeMap<String, String>,
}

pub struct Topic {
    pub meta: TopicMeta,
    pub config: LogConfig,
    pub logs: Vec<Arc<Log>>,
}

/// Dynamic broker-level log configs under their topic-config names: set
/// for this broker (`kafka-configs --entity-name 0`) or as the cluster
/// default (`--entity-default`); the broker's own wins.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynamicBrokerConfigs {
    pub broker: BTreeMap<String, String>,
    pub cluster_default: BTreeMap<String, String>,
}

impl DynamicBrokerConfigs {
    fn merged(&self) -> BTreeMap<String, String> {
        let mut m = self.cluster_default.clone();
        m.extend(self.broker.clone());
        m
    }
}

const BROKER_CONFIGS_FILE: &str = "broker-configs.json";

#[derive(Serialize, Deserialize)]
struct MetaFile {
    name: String,
    id: String,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

pub struct LogManager {
    data_dir: PathBuf,
    /// The broker's settings (flags, file): what topics inherit unless a
    /// dynamic broker config or a topic override says otherwise.
    static_defaults: LogConfig,
    /// Dynamic broker configs (IncrementalAlterConfigs on the broker
    /// resource), by topic-config name; persisted in the metadata dir.
    dynamic: RwLock<DynamicBrokerConfigs>,
    /// The data dir's log cleaner (compacted topics). Declared before the
    /// lock so its thread is stopped before the flock is released.
    cleaner: LogCleaner,
    /// Holds the flock for as long as the manager lives.
    _lock: File,
    /// Shared with the cleaner thread, which walks the logs by itself.
    topics: Arc<RwLock<BTreeMap<String, Arc<Topic>>>>,
    /// Serializes create/delete so their filesystem steps do not interleave.
    admin: Mutex<()>,
    /// The data dir's flusher: acks=all waits here.
    group_commit: GroupCommit,
    /// Replicated logs' high watermarks as last written to
    /// `replication-offset-checkpoint`.
    hw_written: Mutex<crate::cleaner::checkpoint::Checkpoints>,
}

/// Kafka's per-data-dir file of replicated partitions' high watermarks, so
/// a restarted replica starts from a high watermark the in-sync set had.
pub const REPLICATION_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

impl LogManager {
    /// Opens (creating) the data dir, locks it, and loads and recovers every
    /// topic; the log cleaner runs with Kafka's default settings.
    pub fn open(data_dir: &Path, defaults: LogConfig) -> Result<LogManager, StorageError> {
        Self::open_with_cleaner(data_dir, defaults, CleanerConfig::default())
    }

    /// As [`Self::open`], with the log cleaner's settings (its thread is
    /// started unless `cleaner.enabled` is false).
    pub fn open_with_cleaner(
        data_dir: &Path,
        defaults: LogConfig,
        cleaner: CleanerConfig,
    ) -> Result<LogManager, StorageError> {
        let topics_dir = data_dir.join(META_DIR).join("topics");
        crate::log::create_dir_durable(&topics_dir)?;
        let lock_path = data_dir.join(".lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .ctx(|| format!("opening {}", lock_path.display()))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StorageError::DataDirLocked(data_dir.to_path_buf()));
            }
            Err(e) => {
                return Err(StorageError::io(
                    format!("locking {}", lock_path.display()),
                    e.into(),
                ));
            }
        }
        // Finish deletions a crash interrupted.
        for entry in
            std::fs::read_dir(data_dir).ctx(|| format!("listing {}", data_dir.display()))?
        {
            let entry = entry.ctx(|| format!("listing {}", data_dir.display()))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with("-delete"))
            {
                std::fs::remove_dir_all(entry.path())
                    .ctx(|| format!("removing {}", entry.path().display()))?;
            }
        }
        let dynamic_path = data_dir.join(META_DIR).join(BROKER_CONFIGS_FILE);
        let dynamic: DynamicBrokerConfigs = match std::fs::read(&dynamic_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StorageError::Corrupt {
                path: dynamic_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DynamicBrokerConfigs::default(),
            Err(e) => {
                return Err(StorageError::io(
                    format!("reading {}", dynamic_path.display()),
                    e,
                ));
            }
        };
        let static_defaults = defaults;
        let defaults = static_defaults.with_overrides(&dynamic.merged())?;
        let hw_path = data_dir.join(REPLICATION_CHECKPOINT_FILE);
        let hw_checkpoints = crate::cleaner::checkpoint::read_at(&hw_path).unwrap_or_else(|e| {
            // Replicas then start from their log end, as before the file.
            tracing::warn!(error = %e, "ignoring an unreadable high-watermark checkpoint");
            Default::default()
        });
        let mut topics = BTreeMap::new();
        for entry in
            std::fs::read_dir(&topics_dir).ctx(|| format!("listing {}", topics_dir.display()))?
        {
            let path = entry
                .ctx(|| format!("listing {}", topics_dir.display()))?
                .path();
            if path.extension().is_none_or(|e| e != "json") {
                let _ = std::fs::remove_file(&path); // leftover tmp file of an interrupted write
                continue;
            }
            let mut meta = read_meta(&path)?;
            for gone in crate::config::REMOVED_TOPIC_CONFIGS {
                if meta.configs.remove(*gone).is_some() {
                    tracing::warn!(topic = %meta.name, config = gone, "dropping a topic config Kafka 4.0 removed");
                }
            }
            let config = defaults.with_overrides(&meta.configs)?;
            let logs = (0..meta.partitions)
                .map(|p| {
                    Log::open(
                        &partition_dir(data_dir, &meta.name, p),
                        &meta.name,
                        p,
                        config.clone(),
                    )
                    .map(Arc::new)
                })
                .collect::<Result<Vec<_>, _>>()?;
            for log in &logs {
                if let Some(hw) = hw_checkpoints.get(&(meta.name.clone(), log.partition())) {
                    log.restore_high_watermark(*hw);
                }
            }
            tracing::info!(topic = %meta.name, partitions = meta.partitions, "loaded topic");
            topics.insert(meta.name.clone(), Arc::new(Topic { meta, config, logs }));
        }
        let group_commit = GroupCommit::start("logs")
            .ctx(|| format!("starting the log flusher thread for {}", data_dir.display()))?;
        let topics = Arc::new(RwLock::new(topics));
        let source = topics.clone();
        let enabled = cleaner.enabled;
        let cleaner = LogCleaner::new(
            data_dir,
            cleaner,
            Box::new(move || {
                let map = source.read().unwrap_or_else(|e| e.into_inner());
                map.values().flat_map(|t| t.logs.iter().cloned()).collect()
            }),
        );
        if enabled {
            cleaner
                .start("logs")
                .ctx(|| format!("starting the log cleaner thread for {}", data_dir.display()))?;
        }
        Ok(LogManager {
            data_dir: data_dir.to_path_buf(),
            static_defaults,
            dynamic: RwLock::new(dynamic),
            cleaner,
            _lock: lock,
            topics,
            admin: Mutex::new(()),
            group_commit,
            hw_written: Mutex::new(hw_checkpoints),
        })
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, StorageError> {
        self.create_topic_with_id(name, *uuid::Uuid::new_v4().as_bytes(), partitions, configs)
    }

    /// As [`Self::create_topic`], with the topic id the cluster's metadata chose.
    pub fn create_topic_with_id(
        &self,
        name: &str,
        id: [u8; 16],
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, StorageError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(StorageError::InvalidPartitions(partitions));
        }
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let config = self.defaults().with_overrides(&configs)?;
        if self.map().contains_key(name) {
            return Err(StorageError::TopicAlreadyExists(name.to_string()));
        }
        let logs = self.create_partition_logs(name, &id, 0..partitions, &config)?;
        let meta = TopicMeta {
            name: name.to_string(),
            id,
            partitions,
            configs,
        };
        self.write_meta(&meta)?;
        let topic = Arc::new(Topic { meta, config, logs });
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Creates the logs of partitions `range` of a new or growing topic.
    /// A directory left by a crash before the metadata named it is removed
    /// first; the data dir is synced so the new directories survive a crash.
    fn create_partition_logs(
        &self,
        name: &str,
        id: &[u8; 16],
        range: std::ops::Range<i32>,
        config: &LogConfig,
    ) -> Result<Vec<Arc<Log>>, StorageError> {
        let mut logs = Vec::with_capacity(range.len());
        for p in range {
            let dir = partition_dir(&self.data_dir, name, p);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .ctx(|| format!("removing orphan {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
            let pm = format!("version: 0\ntopic_id: {}\n", base64url(id));
            write_atomic(&dir.join("partition.metadata"), pm.as_bytes())?;
            logs.push(Arc::new(Log::open(&dir, name, p, config.clone())?));
        }
        sync_dir(&self.data_dir)?;
        Ok(logs)
    }

    /// The topic's metadata file, replaced atomically: after a crash the
    /// topic is as before or as after.
    fn write_meta(&self, meta: &TopicMeta) -> Result<(), StorageError> {
        let file = MetaFile {
            name: meta.name.clone(),
            id: uuid::Uuid::from_bytes(meta.id).to_string(),
            partitions: meta.partitions,
            configs: meta.configs.clone(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| StorageError::io("encoding topic metadata", e.into()))?;
        write_atomic(&self.meta_path(&meta.name), &json)
    }

    fn swap_topic(&self, topic: Arc<Topic>) {
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.meta.name.clone(), topic);
    }

    /// CreatePartitions: grows `name` to `total` partitions. Existing
    /// partitions are untouched; the new ones start empty. Fewer or as many
    /// partitions as now is `PartitionsNotIncreased`.
    pub fn create_partitions(&self, name: &str, total: i32) -> Result<Arc<Topic>, StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let old = self
            .topic(name)
            .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
        let current = old.meta.partitions;
        if total <= current {
            return Err(StorageError::PartitionsNotIncreased {
                topic: name.to_string(),
                current,
                requested: total,
            });
        }
        check_partition_count(total)?;
        let new_logs =
            self.create_partition_logs(name, &old.meta.id, current..total, &old.config)?;
        let meta = TopicMeta {
            partitions: total,
            ..old.meta.clone()
        };
        self.write_meta(&meta)?;
        let mut logs = old.logs.clone();
        logs.extend(new_logs);
        let topic = Arc::new(Topic {
            meta,
            config: old.config.clone(),
            logs,
        });
        self.swap_topic(topic.clone());
        tracing::info!(topic = name, from = current, to = total, "added partitions");
        Ok(topic)
    }

    /// Sets and removes topic config overrides (Kafka's AlterConfigs and
    /// IncrementalAlterConfigs on a topic). The whole new set is validated
    /// first; the metadata is rewritten atomically; then every partition's
    /// log takes the new config for its next append, roll and retention
    /// pass, and the topic is swapped in the map (readers holding the old
    /// `Arc<Topic>` finish with the old config).
    pub fn alter_topic_configs(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Arc<Topic>, StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let old = self
            .topic(name)
            .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
        let mut configs = old.meta.configs.clone();
        for k in remove {
            crate::config::check_known(k)?;
            configs.remove(k);
        }
        configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.replace_topic_configs_locked(&old, configs)
    }

    /// As [`Self::alter_topic_configs`], replacing every override at once
    /// (the legacy AlterConfigs: what is not given returns to its default).
    pub fn replace_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let old = self
            .topic(name)
            .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
        self.replace_topic_configs_locked(&old, configs)
    }

    fn replace_topic_configs_locked(
        &self,
        old: &Topic,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, StorageError> {
        let config = self.defaults().with_overrides(&configs)?;
        let meta = TopicMeta {
            configs,
            ..old.meta.clone()
        };
        self.write_meta(&meta)?;
        for log in &old.logs {
            log.set_config(config.clone());
        }
        let topic = Arc::new(Topic {
            meta,
            config,
            logs: old.logs.clone(),
        });
        self.swap_topic(topic.clone());
        tracing::info!(topic = %old.meta.name, configs = ?topic.meta.configs, "altered topic configs");
        Ok(topic)
    }

    /// The dynamic broker configs in force.
    pub fn dynamic_broker_configs(&self) -> DynamicBrokerConfigs {
        self.dynamic
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the dynamic broker-level log configs (topic-config names):
    /// validated whole, persisted, then every topic's logs take the new
    /// effective config (topic overrides still win).
    pub fn set_dynamic_broker_configs(
        &self,
        configs: DynamicBrokerConfigs,
    ) -> Result<(), StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let defaults = self.static_defaults.with_overrides(&configs.merged())?;
        let mut updated = Vec::new();
        for t in self.topics() {
            let config = defaults.with_overrides(&t.meta.configs)?;
            updated.push(Arc::new(Topic {
                meta: t.meta.clone(),
                config,
                logs: t.logs.clone(),
            }));
        }
        let json = serde_json::to_vec_pretty(&configs)
            .map_err(|e| StorageError::io("encoding broker configs", e.into()))?;
        write_atomic(
            &self.data_dir.join(META_DIR).join(BROKER_CONFIGS_FILE),
            &json,
        )?;
        *self.dynamic.write().unwrap_or_else(|e| e.into_inner()) = configs;
        for t in updated {
            for log in &t.logs {
                log.set_config(t.config.clone());
            }
            self.swap_topic(t);
        }
        Ok(())
    }

    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| StorageError::UnknownTopic(name.to_string()))?;
        for log in &topic.logs {
            if let Err(e) = log.close() {
                tracing::warn!(topic = name, partition = log.partition(), error = %e, "closing log of deleted topic");
            }
        }
        // Metadata first: after a crash the topic is gone, never half there.
        let meta_path = self.meta_path(name);
        std::fs::remove_file(&meta_path).ctx(|| format!("removing {}", meta_path.display()))?;
        sync_dir(meta_path.parent().unwrap_or(&self.data_dir))?;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        for p in 0..topic.meta.partitions {
            let dir = partition_dir(&self.data_dir, name, p);
            // Kafka's `<topic>-<p>.<hex>-delete`, the name cut to fit 255 bytes.
            let tail = format!("-{p}.{suffix}-delete");
            let keep = name.len().min(255 - tail.len());
            let doomed = self.data_dir.join(format!("{}{tail}", &name[..keep]));
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => std::fs::remove_dir_all(&doomed)
                    .ctx(|| format!("removing {}", doomed.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("renaming {}", dir.display()), e)),
            }
        }
        if let Err(e) = self.cleaner.write_checkpoint() {
            tracing::warn!(topic = name, error = %e, "updating the cleaner checkpoint after a topic deletion");
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.meta.clone())
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.map().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<Arc<Topic>> {
        self.map().values().find(|t| &t.meta.id == id).cloned()
    }

    /// Some log was opened after a crash rather than a clean shutdown
    /// (Kafka's unclean shutdown, which KIP-966 cares about).
    pub fn opened_after_crash(&self) -> bool {
        self.map()
            .values()
            .any(|t| t.logs.iter().any(|l| l.opened_after_crash()))
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.map().values().cloned().collect()
    }

    /// Writes every replicated log's high watermark to the data dir's
    /// `replication-offset-checkpoint` (one file, one fsync), if any moved
    /// since the last write. Returns whether it wrote.
    pub fn checkpoint_high_watermarks(&self) -> Result<bool, StorageError> {
        let now: crate::cleaner::checkpoint::Checkpoints = self
            .topics()
            .iter()
            .flat_map(|t| t.logs.iter())
            .filter(|l| l.is_replicated())
            .map(|l| ((l.topic().to_string(), l.partition()), l.high_watermark()))
            .collect();
        let mut written = self.hw_written.lock().unwrap_or_else(|e| e.into_inner());
        if *written == now {
            return Ok(false);
        }
        crate::cleaner::checkpoint::write_at(
            &self.data_dir.join(REPLICATION_CHECKPOINT_FILE),
            &now,
        )?;
        *written = now;
        Ok(true)
    }

    /// Cuts a partition's log back to `offset` (a follower whose log
    /// diverged from its new leader's). Returns the log in force.
    pub fn truncate_partition(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Arc<Log>, StorageError> {
        let (log, from) = self.rewrite_log(
            topic,
            partition,
            |old| offset < old.log_end_offset(),
            |old| {
                crate::log::replica::truncate_files(old.dir(), offset.max(old.log_start_offset()))
            },
        )?;
        if let Some(from) = from {
            tracing::warn!(
                topic,
                partition,
                from,
                to = log.log_end_offset(),
                "truncated a replica's log to its leader's"
            );
        }
        Ok(log)
    }

    /// Empties a partition's log and starts it at `start`: a follower whose
    /// log ends before its leader's log start (retention or DeleteRecords
    /// ran while it was away) can only continue from there.
    pub fn reset_partition(
        &self,
        topic: &str,
        partition: i32,
        start: i64,
    ) -> Result<Arc<Log>, StorageError> {
        let (log, from) = self.rewrite_log(
            topic,
            partition,
            |_| true,
            |old| crate::log::replica::clear_files(old.dir(), start.max(0)),
        )?;
        tracing::warn!(
            topic,
            partition,
            from,
            start,
            "a replica behind its leader's log start starts again there"
        );
        Ok(log)
    }

    /// If `needed`, closes a partition's log, lets `files` change its files,
    /// and opens a new `Log` over them in its place (holders of the old one
    /// see it closed). Returns the log in force and, when it was replaced,
    /// the old log end offset.
    fn rewrite_log(
        &self,
        topic: &str,
        partition: i32,
        needed: impl FnOnce(&Log) -> bool,
        files: impl FnOnce(&Log) -> Result<(), StorageError>,
    ) -> Result<(Arc<Log>, Option<i64>), StorageError> {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let t = self
            .topic(topic)
            .ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))?;
        let p = usize::try_from(partition)
            .ok()
            .filter(|p| *p < t.logs.len())
            .ok_or_else(|| StorageError::UnknownTopic(format!("{topic}-{partition}")))?;
        let old = t.logs[p].clone();
        if !needed(&old) {
            return Ok((old, None));
        }
        let from = old.log_end_offset();
        old.close()?;
        files(&old)?;
        let log = Arc::new(Log::open(old.dir(), topic, partition, t.config.clone())?);
        log.set_replicated(old.is_replicated());
        let mut logs = t.logs.clone();
        logs[p] = log.clone();
        self.swap_topic(Arc::new(Topic {
            meta: t.meta.clone(),
            config: t.config.clone(),
            logs,
        }));
        Ok((log, Some(from)))
    }

    pub fn log(&self, topic: &str, partition: i32) -> Option<Arc<Log>> {
        let t = self.topic(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.logs.get(p).cloned())
    }

    /// What a new topic inherits: the broker's settings with the dynamic
    /// broker configs applied.
    pub fn defaults(&self) -> LogConfig {
        let dynamic = self.dynamic.read().unwrap_or_else(|e| e.into_inner());
        // Validated when set (or at open), so this cannot fail; fall back
        // to the static settings rather than panic if it somehow does.
        self.static_defaults
            .with_overrides(&dynamic.merged())
            .unwrap_or_else(|_| self.static_defaults.clone())
    }

    /// The broker's own settings, without dynamic configs.
    pub fn static_defaults(&self) -> &LogConfig {
        &self.static_defaults
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The data dir's file system: (total bytes, bytes available to us).
    pub fn disk_space(&self) -> Result<(u64, u64), StorageError> {
        let (available, total) = crate::disk_space::statvfs(&self.data_dir)
            .map_err(|e| StorageError::io(format!("statvfs {}", self.data_dir.display()), e))?;
        Ok((total, available))
    }

    /// Calls `flush_if_due` on every log.
    pub fn flush_due(&self, now_ms: i64) {
        for t in self.topics() {
            for log in &t.logs {
                log.flush_if_due(now_ms);
            }
        }
    }

    /// Deletes segments past retention on every log (`retention.ms`,
    /// `retention.bytes`; compacted topics keep theirs). Returns how many.
    pub fn enforce_retention(&self, now_ms: i64) -> usize {
        let mut deleted = 0;
        for t in self.topics() {
            for log in &t.logs {
                match log.enforce_retention(now_ms) {
                    Ok(n) => deleted += n,
                    Err(e) => tracing::error!(
                        topic = %t.meta.name,
                        partition = log.partition(),
                        error = %e,
                        "enforcing retention"
                    ),
                }
            }
        }
        deleted
    }

    /// Cleans, on the caller's thread, every compacted log that needs it at
    /// `now_ms` (dirty ratio, compaction lags), as the cleaner thread would;
    /// the checkpoint is updated. Returns what each cleaning did.
    pub fn clean_now(&self, now_ms: i64) -> Vec<CleanStats> {
        self.cleaner.clean_now(now_ms)
    }

    /// Builds (or opens) the SQL face of sealed segments that lack one (or
    /// whose face was built for another value format), at most `budget` in
    /// all, skipping internal (`__`) topics, and none that `space` has no
    /// room for (deferred to a later call). Returns how many it attached.
    /// Slow (reads and writes whole segments): call from a background
    /// thread.
    pub fn attach_faces(&self, budget: usize, space: &crate::FreeSpace) -> usize {
        let mut done = 0;
        for t in self.topics() {
            if t.meta.name.starts_with("__") {
                continue;
            }
            let format = crate::face::ValueFormat::from_configs(&t.config.other);
            for log in &t.logs {
                if done >= budget {
                    return done;
                }
                match crate::face::attach_missing(log, budget - done, space, &format) {
                    Ok(n) => done += n,
                    Err(e) => tracing::warn!(
                        topic = %t.meta.name,
                        partition = log.partition(),
                        error = %e,
                        "building the SQL face of a segment (scans read the log instead)"
                    ),
                }
            }
        }
        done
    }

    /// Clean shutdown of every log; the first error is returned after all are tried.
    /// Makes each log durable up to its offset (acks=all): queued to the data
    /// dir's flusher at once, grouped with every other waiter's fsync.
    pub fn flush_logs(
        &self,
        logs: Vec<(Arc<Log>, i64)>,
    ) -> impl std::future::Future<Output = Result<FlushOutcome, FlusherStopped>> + Send + 'static
    {
        self.group_commit.flush(logs)
    }

    /// Holds the data dir's flusher before its next pass (tests only).
    #[doc(hidden)]
    pub fn hold_flusher(&self) -> std::sync::MutexGuard<'_, ()> {
        self.group_commit.hold()
    }

    pub fn shutdown(&self) -> Result<(), StorageError> {
        // A cleaning in progress is abandoned (its output discarded).
        self.cleaner.stop();
        // Queued flushes finish first; closing flushes the rest.
        self.group_commit.stop();
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::error!(error = %e, "writing the high-watermark checkpoint at shutdown");
        }
        let mut first = None;
        for t in self.topics() {
            for log in &t.logs {
                if let Err(e) = log.close() {
                    tracing::error!(topic = %t.meta.name, partition = log.partition(), error = %e, "closing log");
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.data_dir
            .join(META_DIR)
            .join("topics")
            .join(format!("{name}.json"))
    }
}

fn partition_dir(data_dir: &Path, topic: &str, p: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{p}"))
}

fn read_meta(path: &Path) -> Result<TopicMeta, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    let f: MetaFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let id = uuid::Uuid::parse_str(&f.id).map_err(|e| corrupt(format!("bad topic id: {e}")))?;
    validate_topic_name(&f.name).map_err(|e| corrupt(e.to_string()))?;
    if !(1..=MAX_PARTITIONS).contains(&f.partitions) {
        return Err(corrupt(format!("bad partition count {}", f.partitions)));
    }
    Ok(TopicMeta {
        name: f.name,
        id: *id.as_bytes(),
        partitions: f.partitions,
        configs: f.configs,
    })
}

/// base64url without padding, as Kafka prints topic ids.
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(super::base64url(b"f"), "Zg");
        assert_eq!(super::base64url(b"fo"), "Zm8");
        assert_eq!(super::base64url(b"foo"), "Zm9v");
        assert_eq!(super::base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(super::base64url(&[0u8; 16]).len(), 22);
    }
}
