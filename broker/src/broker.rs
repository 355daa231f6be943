//! Shared broker state handed to every connection and handler.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use karnak_storage::LogManager;

use crate::config::Config;

pub struct Broker {
    pub config: Config,
    pub logs: Arc<LogManager>,
    pub cluster_id: String,
    /// The Kafka listeners, bound, with what each one's clients are told.
    pub listeners: Vec<Arc<crate::listeners::Bound>>,
    /// SASL mechanisms and users, when a listener uses SASL.
    pub sasl: Option<Arc<crate::sasl::SaslConfig>>,
    /// Turns true when shutdown starts: parked long polls answer at once.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Consumer groups and committed offsets, over the Pharaoh shards this
    /// broker leads.
    pub groups: Arc<karnak_coordinator::GroupCoordinator>,
    /// Producer ids and transactions, over the same shards.
    pub txns: Arc<karnak_coordinator::TransactionCoordinator>,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: crate::fetch_session::FetchSessionCache,
    /// The metadata group and this broker's registration in it.
    pub cluster: Arc<crate::cluster::ClusterNode>,
    /// Makes the local logs follow the metadata log.
    pub reconciler: Arc<crate::cluster::reconcile::Reconciler>,
    /// Leaders, followers, high watermarks and in-sync sets.
    pub replicas: Arc<crate::replication::ReplicaManager>,
    /// Client quota sensors and connection limits.
    pub quotas: Arc<crate::quotas::QuotaManager>,
    /// `--queued-max-request-bytes`: request bytes held, over all connections.
    pub request_memory: crate::connection::RequestMemory,
    /// The data dir's free space and `--log-dir-min-free-bytes`.
    pub free_space: karnak_storage::FreeSpace,
    /// Coordinator shard loads under way (replay and the transactions it
    /// finishes): the broker serves once none is.
    pub shard_loads: std::sync::atomic::AtomicUsize,
}

/// A live broker as Metadata and DescribeCluster list it.
pub struct BrokerAddress {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl Broker {
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The listener other brokers are reached on.
    pub fn inter_broker_listener(&self) -> &str {
        &self.config.listeners.inter_broker
    }

    /// Registered, unfenced brokers with their address on `listener` (the
    /// one the asking client came in on), from the metadata log (fenced
    /// ones are left out, as Kafka does, and so are brokers without that
    /// listener).
    pub fn live_brokers(&self, listener: &str) -> Vec<BrokerAddress> {
        let metadata = self.cluster.metadata();
        metadata
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let l = crate::listeners::address_of(b, listener)?;
                Some(BrokerAddress {
                    id: b.id,
                    host: l.host.clone(),
                    port: i32::from(l.port),
                    rack: b.rack.clone(),
                })
            })
            .collect()
    }

    /// The metadata group's leader (Kafka's active controller); -1 while
    /// there is none.
    pub fn controller_id(&self) -> i32 {
        self.cluster.controller_id().unwrap_or(-1)
    }
}

/// The cluster id is made once per data dir and kept, like Kafka's meta.properties.
pub fn load_cluster_id(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id="))
    {
        let id = id.trim().to_string();
        if let Some(want) = configured.filter(|w| *w != id) {
            anyhow::bail!(
                "data dir {} belongs to cluster {id}, not {want}",
                data_dir.display()
            );
        }
        return Ok(id);
    }
    let id = match configured {
        Some(id) => id.to_string(),
        None => {
            // Kafka cluster ids are 16 random bytes in URL-safe base64 (22 chars).
            let raw = *uuid::Uuid::new_v4().as_bytes();
            base64_url(&raw)
        }
    };
    // Durable before any client sees the id: a power cut must not mint a new one.
    karnak_storage::write_atomic(&path, format!("version=1\ncluster.id={id}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_cluster_id(dir.path(), None).unwrap();
        assert_eq!(a.len(), 22);
        assert_eq!(super::load_cluster_id(dir.path(), None).unwrap(), a);
        assert!(super::load_cluster_id(dir.path(), Some("other")).is_err());
    }
}
