//! Makes this broker's logs follow the metadata log: a topic the metadata
//! places a replica of here is created with the metadata's id, grows with
//! its partitions and takes its configs; a topic the metadata drops (or
//! recreates under a new id), or no longer places a replica of here, is
//! deleted here. The coordinator shards' topic is one of them.
//!
//! A topic on disk that the metadata never had is left alone and reported
//! (a stray, as Kafka calls it): it is adopted into the metadata only when
//! the metadata group is new, which is how a single-node data dir from
//! before the cluster keeps its topics.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use karnak_coordinator::metadata::{ClusterMetadata, TopicRecord};
use karnak_storage::{LogManager, StorageError};

/// Told each metadata once the replicas took their roles from it.
pub type Applied = Arc<dyn Fn(&ClusterMetadata) + Send + Sync>;

pub struct Reconciler {
    logs: Arc<LogManager>,
    node: i32,
    /// Told each new metadata once the logs follow it.
    replicas: Arc<crate::replication::ReplicaManager>,
    /// The metadata the last pass followed: deletions are what it had and
    /// the new one does not.
    last: Mutex<Option<Arc<ClusterMetadata>>>,
    /// The coordinator shards follow their partitions' leadership here.
    on_applied: std::sync::OnceLock<Applied>,
}

/// A topic this broker should hold and could not create or change.
pub type Failures = Vec<(String, StorageError)>;

impl Reconciler {
    pub fn new(
        logs: Arc<LogManager>,
        node: i32,
        replicas: Arc<crate::replication::ReplicaManager>,
    ) -> Reconciler {
        Reconciler {
            logs,
            node,
            replicas,
            last: Mutex::new(None),
            on_applied: std::sync::OnceLock::new(),
        }
    }

    /// Sets what is told each metadata after the replicas follow it.
    pub fn on_applied(&self, f: Applied) {
        let _ = self.on_applied.set(f);
    }

    fn ours(&self, t: &TopicRecord) -> bool {
        t.partitions.iter().any(|p| p.replicas.contains(&self.node))
    }

    /// One pass: file work, on a blocking thread. Passes are serialised.
    pub fn run(&self, now: Arc<ClusterMetadata>) -> Failures {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut failures = Vec::new();
        if let Some(prev) = last.as_ref() {
            for (name, t) in &prev.topics {
                let gone = now.topics.get(name).is_none_or(|n| n.id != t.id);
                if gone
                    && self.logs.topic(name).is_some_and(|l| l.meta.id == t.id)
                    && let Err(e) = self.logs.delete_topic(name)
                {
                    failures.push((name.clone(), e));
                }
            }
        } else {
            self.report_strays(&now);
        }
        for (name, t) in &now.topics {
            if !self.ours(t) {
                // No replica here any more (moved away by a reassignment,
                // perhaps while this broker was down): its copy goes, as
                // Kafka deletes a removed replica's log.
                if self.logs.topic(name).is_some_and(|l| l.meta.id == t.id) {
                    tracing::info!(topic = %name, "no replica of this topic is placed here any more; deleting the local copy");
                    if let Err(e) = self.logs.delete_topic(name) {
                        failures.push((name.clone(), e));
                    }
                }
                continue;
            }
            if let Err(e) = self.follow(name, t) {
                tracing::error!(topic = %name, error = %e, "could not make the topic as the metadata says");
                failures.push((name.clone(), e));
            }
        }
        self.replicas.apply(&now);
        if let Some(f) = self.on_applied.get() {
            f(&now);
        }
        self.replicas.roles_follow(now.applied_index);
        *last = Some(now);
        failures
    }

    fn follow(&self, name: &str, t: &TopicRecord) -> Result<(), StorageError> {
        let count = t.partitions.len() as i32;
        let local = match self.logs.topic(name) {
            Some(l) if l.meta.id != t.id => {
                // Deleted and created again while this broker was away.
                self.logs.delete_topic(name)?;
                None
            }
            other => other,
        };
        let Some(local) = local else {
            self.logs
                .create_topic_with_id(name, t.id, count, t.configs.clone())?;
            return Ok(());
        };
        if local.meta.partitions < count {
            self.logs.create_partitions(name, count)?;
        }
        if local.meta.configs != t.configs {
            self.logs.replace_topic_configs(name, t.configs.clone())?;
        }
        Ok(())
    }

    fn report_strays(&self, now: &ClusterMetadata) {
        for t in self.logs.topics() {
            if !now.topics.contains_key(&t.meta.name) {
                tracing::warn!(
                    topic = %t.meta.name,
                    "this topic is on disk but not in the cluster's metadata; leaving it as it is"
                );
            }
        }
    }

    /// Local topics the metadata does not have (to adopt into a new metadata group).
    pub fn strays(&self, now: &ClusterMetadata) -> Vec<Arc<karnak_storage::Topic>> {
        let known: BTreeSet<&String> = now.topics.keys().collect();
        self.logs
            .topics()
            .into_iter()
            .filter(|t| !known.contains(&t.meta.name))
            .collect()
    }

    /// Follows the metadata as it changes, until `stopping`.
    pub async fn follow_changes(
        self: Arc<Self>,
        mut metadata: tokio::sync::watch::Receiver<Arc<ClusterMetadata>>,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let now = metadata.borrow_and_update().clone();
            let me = self.clone();
            let _ = karnak_storage::blocking::spawn(move || me.run(now)).await;
            tokio::select! {
                r = metadata.changed() => if r.is_err() { return },
                _ = stopping.changed() => return,
            }
        }
    }
}
