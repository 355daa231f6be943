//! The cluster's settings: who the voters are, where this node listens for
//! its peers, and the replication defaults (Kafka's names as flags).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};

/// Kafka's `broker.heartbeat.interval.ms` is 2 s and `broker.session.timeout.ms`
/// 9 s; ours are shorter so a lost broker's partitions move within 2 s.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 250;
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 1_500;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The initial voters, as `--cluster-peers` lists them (Kafka's
    /// `controller.quorum.voters`): node id to cluster-listener address.
    /// Empty: a single node, the only voter, with no cluster listener.
    pub peers: BTreeMap<u64, String>,
    /// Where the cluster listener binds; defaults to this node's entry in `peers`.
    pub cluster_addr: Option<SocketAddr>,
    pub rack: Option<String>,
    /// `None`: min(3, live brokers) at creation time.
    pub default_replication_factor: Option<i16>,
    pub min_insync_replicas: i32,
    pub replica_lag_time_max: Duration,
    pub unclean_leader_election: bool,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
    /// Kafka `auto.leader.rebalance.enable` and
    /// `leader.imbalance.check.interval.seconds`.
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            peers: BTreeMap::new(),
            cluster_addr: None,
            rack: None,
            default_replication_factor: None,
            min_insync_replicas: 1,
            replica_lag_time_max: Duration::from_millis(30_000),
            unclean_leader_election: false,
            heartbeat_interval: Duration::from_millis(DEFAULT_HEARTBEAT_INTERVAL_MS),
            session_timeout: Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS),
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
        }
    }
}

impl ClusterConfig {
    /// More than one voter: there are peers to talk to.
    pub fn is_multi_node(&self) -> bool {
        self.peers.len() > 1
    }

    /// Checks the settings against this node's id.
    pub fn validate(&self, node_id: i32) -> anyhow::Result<()> {
        if !self.peers.is_empty() && !self.peers.contains_key(&(node_id as u64)) {
            bail!(
                "--node-id {node_id} is not one of --cluster-peers ({})",
                self.peers
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if self.min_insync_replicas < 1 {
            bail!("min_insync_replicas must be at least 1");
        }
        if let Some(rf) = self.default_replication_factor
            && rf < 1
        {
            bail!("default_replication_factor must be at least 1");
        }
        if self.leader_imbalance_check_interval.is_zero() {
            bail!("leader_imbalance_check_interval_seconds must be at least 1");
        }
        // A broker's lease on its roles is 3/4 of the session, renewed by
        // each heartbeat: at half of it or more, one slow answer would
        // lapse the lease of a healthy broker.
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 2 > self.session_timeout {
            bail!(
                "broker_heartbeat_interval_ms must be at least 1 and at most half of broker_session_timeout_ms"
            );
        }
        Ok(())
    }

    /// The address the cluster listener binds: the flag, else this node's peer entry.
    pub fn bind_addr(&self, node_id: i32) -> anyhow::Result<Option<SocketAddr>> {
        if let Some(a) = self.cluster_addr {
            return Ok(Some(a));
        }
        match self.peers.get(&(node_id as u64)) {
            Some(addr) if self.is_multi_node() => {
                let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr)
                    .with_context(|| format!("resolving this node's peer address {addr}"))?
                    .next()
                    .with_context(|| format!("{addr} resolves to no address"))?;
                Ok(Some(resolved))
            }
            _ => Ok(None),
        }
    }
}

/// Parses `0@host:port,1@host:port`: distinct non-negative ids, each with
/// a host and port.
pub fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .with_context(|| format!("cluster peer `{entry}` is not id@host:port"))?;
        let id: u64 = id
            .parse()
            .with_context(|| format!("cluster peer `{entry}`: `{id}` is not a node id"))?;
        if id > i32::MAX as u64 {
            bail!("cluster peer `{entry}`: node ids are at most {}", i32::MAX);
        }
        let (host, port) = addr
            .rsplit_once(':')
            .with_context(|| format!("cluster peer `{entry}`: `{addr}` is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            bail!("cluster peer `{entry}`: `{addr}` is not host:port");
        }
        if peers.insert(id, addr.to_string()).is_some() {
            bail!("cluster peer {id} is listed twice");
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse_nonsense() {
        let p = parse_peers("0@127.0.0.1:9093, 1@127.0.0.2:9093,2@[::1]:9093").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "[::1]:9093");
        for bad in [
            "0@127.0.0.1:9093,0@127.0.0.2:9093",
            "x@127.0.0.1:9093",
            "-1@127.0.0.1:9093",
            "0@127.0.0.1",
            "0@:9093",
            "0127.0.0.1:9093",
            "3000000000@h:1",
        ] {
            assert!(parse_peers(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn node_must_be_a_peer() {
        let c = ClusterConfig {
            peers: parse_peers("0@127.0.0.1:1,1@127.0.0.1:2").unwrap(),
            ..Default::default()
        };
        assert!(c.validate(0).is_ok());
        assert!(c.validate(2).is_err());
        assert_eq!(c.bind_addr(1).unwrap().unwrap().port(), 2);
        assert!(ClusterConfig::default().bind_addr(0).unwrap().is_none());
    }
}
