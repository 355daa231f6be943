//! This broker's place in the cluster: it runs its metadata voter, serves
//! its peers on the cluster listener, registers itself and heartbeats to
//! the Raft leader, and sends metadata changes there (to itself when it
//! leads). A single node is the same with one voter and no listener.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use karnak_coordinator::metadata::wire::{
    BrokerHeartbeat, HeartbeatAnswer, ProposeError, Proposed, RaftRequest, RaftResponse,
};
use karnak_coordinator::metadata::{
    ClusterMetadata, ControllerDefaults, Listener, MetadataCommand, MetadataError, MetadataReply,
    MetadataStateMachine, RaftLogStore,
};
use openraft::{BasicNode, Raft};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::ClusterConfig;
use super::controller::Controller;
use super::lease::RoleLease;
use super::raft_net::{self, Identity, TcpNetwork, TcpPeer};
use crate::peer_net::ClusterAcceptor;

/// Where the metadata group keeps its log and snapshots, in the data dir.
pub const RAFT_DIR: &str = "__karnak_meta/raft";
/// How long one forwarded call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a controlled shutdown's fence, and then stopping the voter,
/// may each take.
const SHUTDOWN_FENCE: Duration = Duration::from_secs(3);
/// How often the controller looks for silent brokers.
const EXPIRY_TICK: Duration = Duration::from_millis(100);
/// Pause between tries while there is no leader or it just changed.
const RETRY: Duration = Duration::from_millis(25);

/// A metadata change that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Applied and refused by the state machine's rules.
    #[error(transparent)]
    Refused(#[from] MetadataError),
    #[error("no metadata leader answered within {0:?}")]
    Timeout(Duration),
}

impl ClusterError {
    pub fn code(&self) -> kafka_protocol::error::ResponseError {
        match self {
            ClusterError::Refused(e) => e.code(),
            ClusterError::Timeout(_) => kafka_protocol::error::ResponseError::RequestTimedOut,
        }
    }
}

pub struct ClusterNode {
    pub node_id: i32,
    /// The metadata group was created by this start (a new cluster, or a
    /// data dir from before clusters): its topics are to be adopted.
    pub fresh: bool,
    pub controller: Arc<Controller>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    incarnation: [u8; 16],
    peers: BTreeMap<u64, String>,
    /// One connection per leader we forward to; a call holds it.
    forward: tokio::sync::Mutex<HashMap<u64, TcpPeer>>,
    me: Identity,
    /// How long one heartbeat may wait for its answer.
    heartbeat_timeout: Duration,
    /// While held, this broker answers as the leader and coordinator the
    /// metadata names it.
    lease: RoleLease,
}

/// Who joins the cluster, and how it talks to the other brokers.
pub struct Joining<'a> {
    pub node_id: i32,
    pub cluster_id: &'a str,
    /// Mutual TLS with the other brokers (an SSL inter-broker listener).
    pub peer_tls: Option<Arc<crate::tls::PeerTls>>,
    /// An embedded broker's cluster listener: its connections come from
    /// here instead of a socket.
    pub peer_connections: Option<crate::peer_net::PeerConnections>,
}

impl ClusterNode {
    /// Mutual TLS with the other brokers, when the inter-broker listener is SSL.
    pub fn peer_tls(&self) -> Option<Arc<crate::tls::PeerTls>> {
        self.me.tls.clone()
    }

    /// Opens the metadata voter in `data_dir`, starts serving peers, and
    /// returns once this broker is registered and unfenced.
    pub async fn start(
        config: &ClusterConfig,
        joining: Joining<'_>,
        data_dir: &Path,
        kafka: Vec<Listener>,
        unclean_shutdown: bool,
        stopping: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<ClusterNode>> {
        let Joining {
            node_id,
            cluster_id,
            peer_tls,
            peer_connections,
        } = joining;
        let dir = data_dir.join(RAFT_DIR);
        let log = RaftLogStore::open(&dir).context("opening the metadata log")?;
        let sm = MetadataStateMachine::open(&dir).context("opening the metadata state")?;
        let peers = if config.peers.is_empty() {
            // A single node: the only voter, with no address anyone dials.
            BTreeMap::from([(node_id as u64, String::new())])
        } else {
            config.peers.clone()
        };
        let me = Identity {
            cluster_id: cluster_id.to_string(),
            node_id: node_id as u64,
            voters: Arc::new(peers.clone()),
            tls: peer_tls,
        };
        let raft_config = openraft::Config {
            cluster_name: cluster_id.to_string(),
            // A dead metadata leader costs an election: the survivors wait
            // out their lease (election_timeout_max) since its last
            // heartbeat; 300-600 ms keeps failover under 2 s. openraft
            // times an AppendEntries out after one heartbeat interval,
            // and a follower answers it after an fsync: 100 ms leaves a
            // loaded disk room (at 50 ms a soak saw a follower that never
            // caught up).
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            // Small appends, so a follower that fell behind catches up
            // within the AppendEntries timeout instead of timing out on
            // ever larger batches.
            max_payload_entries: 64,
            ..Default::default()
        };
        let raft = Raft::new(
            node_id as u64,
            Arc::new(
                raft_config
                    .validate()
                    .context("the metadata group's settings")?,
            ),
            TcpNetwork::new(me.clone()),
            log,
            sm.clone(),
        )
        .await
        .context("starting the metadata group")?;
        let controller = Arc::new(Controller::new(
            raft.clone(),
            me.clone(),
            &sm,
            config.session_timeout,
            config.heartbeat_interval,
            ControllerDefaults {
                min_insync_replicas: config.min_insync_replicas,
                unclean_leader_election: config.unclean_leader_election,
            },
        ));
        let acceptor = match peer_connections {
            Some(rx) => Some(ClusterAcceptor::Embedded(rx)),
            None => match config.bind_addr(node_id)? {
                Some(addr) => {
                    let listener = TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding the cluster listener on {addr}"))?;
                    tracing::info!("serving cluster peers on {addr}");
                    Some(ClusterAcceptor::Tcp(listener))
                }
                None => None,
            },
        };
        if let Some(acceptor) = acceptor {
            tokio::spawn(raft_net::serve(acceptor, controller.clone()));
        }
        let fresh = !raft.is_initialized().await.context("the metadata group")?;
        if !fresh {
            if peers.len() == 1 {
                // Alone, there is no one to wait for: lead now.
                let _ = raft.trigger().elect().await;
            }
        } else {
            let members: BTreeMap<u64, BasicNode> = peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
                .collect();
            // Every voter may initialize with the same members; all but the
            // first find it already done, which is what they wanted.
            if let Err(e) = raft.initialize(members).await {
                tracing::debug!("metadata group already initialized: {e}");
            }
        }
        tokio::spawn(
            controller
                .clone()
                .run_session_expiry(EXPIRY_TICK.min(config.heartbeat_interval), stopping.clone()),
        );
        if config.auto_leader_rebalance {
            tokio::spawn(
                controller
                    .clone()
                    .run_leader_rebalance(config.leader_imbalance_check_interval, stopping.clone()),
            );
        }
        let lease = RoleLease::new(config.session_timeout, peers.len() <= 1);
        let node = Arc::new(ClusterNode {
            lease,
            node_id,
            fresh,
            controller,
            metadata: sm.subscribe(),
            incarnation: *uuid::Uuid::new_v4().as_bytes(),
            peers,
            forward: Default::default(),
            me,
            heartbeat_timeout: (config.heartbeat_interval * 2).min(config.session_timeout / 3),
        });
        node.register(&kafka, config.rack.clone(), unclean_shutdown)
            .await;
        tokio::spawn(node.clone().heartbeats(
            kafka,
            config.rack.clone(),
            config.heartbeat_interval,
            stopping,
        ));
        node.wait_unfenced().await;
        Ok(node)
    }

    /// This broker may answer as a partition leader or coordinator: it
    /// holds its lease (see [`RoleLease`]).
    pub fn holds_lease(&self) -> bool {
        self.lease.holds()
    }

    /// The replicas and coordinator shards took their roles from the
    /// metadata at `index`.
    pub fn roles_follow(&self, index: u64) {
        self.lease.followed(index);
    }

    /// The metadata as this broker has applied it.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    /// Each change of the metadata, as applied here.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.metadata.clone()
    }

    /// Broker `id` is registered, unfenced, and not found gone by this
    /// node: fit to be named as a leader or coordinator.
    pub fn is_live(&self, meta: &ClusterMetadata, id: i32) -> bool {
        meta.is_live(id) && !self.controller.seen_gone(id)
    }

    /// The Raft leader, which Kafka clients know as the controller.
    pub fn controller_id(&self) -> Option<i32> {
        self.controller.leader().map(|l| l as i32)
    }

    /// Commits `cmd` through the Raft leader and returns once this broker
    /// has applied it. A change lost with a leader is proposed again, so a
    /// retried creation may answer that the topic already exists.
    pub async fn propose(
        &self,
        cmd: MetadataCommand,
        timeout: Duration,
    ) -> Result<MetadataReply, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = match self.controller.leader() {
                Some(l) if l == self.me.node_id => self.controller.propose(cmd.clone()).await,
                Some(l) => self.forward(l, cmd.clone()).await,
                None => Err(ProposeError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(Proposed { result, index }) => {
                    self.wait_applied(index, deadline).await?;
                    return result.map_err(ClusterError::Refused);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metadata change not committed yet; trying again")
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout(timeout));
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// A read barrier: returns once this broker has applied every metadata
    /// change committed before the call (the Raft leader's read index).
    /// For a lookup that missed, such as a topic another broker has just
    /// created, before answering that it does not exist.
    pub async fn catch_up(&self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let index = match self.controller.leader() {
                Some(l) if l == self.me.node_id => self.controller.read_index().await,
                Some(l) => self.read_index_of(l).await,
                None => Err("no metadata leader".to_string()),
            };
            match index {
                Ok(index) => return self.wait_applied(index, deadline).await,
                Err(e) => tracing::debug!(error = %e, "no read index yet; trying again"),
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout(timeout));
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn read_index_of(&self, leader: u64) -> Result<u64, String> {
        let mut conns = self.forward.lock().await;
        let peer = self.peer(&mut conns, leader).map_err(|e| e.to_string())?;
        match peer.call(RaftRequest::ReadIndex, CALL_TIMEOUT).await {
            Ok(RaftResponse::ReadIndex(r)) => r,
            Ok(other) => Err(format!("node {leader} answered {other:?}")),
            Err(e) => Err(format!("node {leader}: {e}")),
        }
    }

    async fn forward(&self, leader: u64, cmd: MetadataCommand) -> Result<Proposed, ProposeError> {
        let mut conns = self.forward.lock().await;
        let peer = self.peer(&mut conns, leader)?;
        match peer.call(RaftRequest::Propose(cmd), CALL_TIMEOUT).await {
            Ok(RaftResponse::Propose(r)) => r,
            Ok(other) => Err(ProposeError::Raft(format!(
                "node {leader} answered {other:?}"
            ))),
            Err(e) => Err(ProposeError::Raft(format!("node {leader}: {e}"))),
        }
    }

    fn peer<'a>(
        &self,
        conns: &'a mut HashMap<u64, TcpPeer>,
        id: u64,
    ) -> Result<&'a mut TcpPeer, ProposeError> {
        let addr = self
            .peers
            .get(&id)
            .ok_or_else(|| ProposeError::Raft(format!("node {id} is not a voter")))?;
        Ok(conns
            .entry(id)
            .or_insert_with(|| TcpPeer::new(self.me.clone(), id, addr.clone())))
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ClusterError> {
        let mut metrics = self.controller.raft.metrics();
        loop {
            if metrics
                .borrow_and_update()
                .last_applied
                .is_some_and(|l| l.index >= index)
            {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, metrics.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(ClusterError::Timeout(left)),
            }
        }
    }

    /// Registers this incarnation, retrying until a leader takes it;
    /// `unclean_shutdown`: its logs were opened after a crash (the first
    /// registration of a start says so, KIP-966's unclean shutdown).
    async fn register(&self, kafka: &[Listener], rack: Option<String>, unclean_shutdown: bool) {
        let started = Instant::now();
        let mut said = Instant::now();
        loop {
            let cmd = MetadataCommand::RegisterBroker {
                id: self.node_id,
                incarnation: self.incarnation,
                listeners: kafka.to_vec(),
                rack: rack.clone(),
                unclean_shutdown,
            };
            match self.propose(cmd, Duration::from_secs(5)).await {
                Ok(_) => {
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "registered with the metadata group"
                    );
                    return;
                }
                Err(e) if said.elapsed() >= Duration::from_secs(5) => {
                    said = Instant::now();
                    tracing::warn!(
                        voters = ?self.peers,
                        "waiting for the metadata quorum to register this broker: {e}"
                    );
                }
                Err(_) => {}
            }
        }
    }

    async fn wait_unfenced(&self) {
        let mut m = self.metadata.clone();
        let mut said = Instant::now();
        loop {
            if m.borrow_and_update()
                .brokers
                .get(&self.node_id)
                .is_some_and(|b| b.incarnation == self.incarnation && !b.fenced)
            {
                return;
            }
            if said.elapsed() >= Duration::from_secs(5) {
                said = Instant::now();
                tracing::warn!("waiting for the metadata leader to unfence this broker");
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), m.changed()).await;
        }
    }

    async fn heartbeat_once(&self, peer: &mut Option<(u64, TcpPeer)>) -> HeartbeatAnswer {
        let hb = BrokerHeartbeat {
            broker: self.node_id,
            incarnation: self.incarnation,
            want_fence: false,
        };
        let Some(leader) = self.controller.leader() else {
            return HeartbeatAnswer::NotLeader { leader: None };
        };
        if leader == self.me.node_id {
            return self.controller.heartbeat(hb).await;
        }
        if peer.as_ref().is_none_or(|(id, _)| *id != leader) {
            let Some(addr) = self.peers.get(&leader) else {
                return HeartbeatAnswer::Failed(format!("leader {leader} is not a voter"));
            };
            *peer = Some((leader, TcpPeer::new(self.me.clone(), leader, addr.clone())));
        }
        let Some((_, p)) = peer.as_mut() else {
            return HeartbeatAnswer::NotLeader { leader: None };
        };
        // Short: a heartbeat stuck on an unreachable old leader must not
        // outlast this broker's session at the new one.
        match p
            .call(RaftRequest::Heartbeat(hb), self.heartbeat_timeout)
            .await
        {
            Ok(RaftResponse::Heartbeat(a)) => a,
            Ok(other) => HeartbeatAnswer::Failed(format!("answered {other:?}")),
            Err(e) => HeartbeatAnswer::Failed(e.to_string()),
        }
    }

    /// Heartbeats every `every` until shutdown; registers again when the
    /// leader no longer knows this incarnation.
    async fn heartbeats(
        self: Arc<Self>,
        kafka: Vec<Listener>,
        rack: Option<String>,
        every: Duration,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut peer = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.changed() => return,
            }
            let sent = tokio::time::Instant::now();
            match self.heartbeat_once(&mut peer).await {
                HeartbeatAnswer::Ok { fenced: true, .. } => self.lease.revoke(),
                HeartbeatAnswer::Ok {
                    fenced: false,
                    index,
                } => self.lease.confirmed(sent, index),
                HeartbeatAnswer::NotLeader { .. } => {}
                HeartbeatAnswer::NotRegistered => {
                    self.lease.revoke();
                    self.register(&kafka, rack.clone(), false).await
                }
                HeartbeatAnswer::Failed(why) => {
                    tracing::debug!("heartbeat to the metadata leader failed: {why}");
                }
            }
        }
    }

    /// Controlled shutdown: fence this broker so its partitions move now,
    /// not a session later. The voter keeps running (and answering) until
    /// [`Self::stop_voter`], after the connections drained.
    pub async fn fence_for_shutdown(&self) {
        let fence = MetadataCommand::FenceBroker { id: self.node_id };
        let started = Instant::now();
        // Bounded as a whole: one forwarded call may take longer than the
        // propose deadline.
        match tokio::time::timeout(SHUTDOWN_FENCE, self.propose(fence, SHUTDOWN_FENCE)).await {
            Ok(Ok(_)) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "fenced this broker: its partitions move to the others"
            ),
            Ok(Err(e)) => tracing::warn!("could not fence this broker on shutdown: {e}"),
            Err(_) => {
                tracing::warn!("could not fence this broker on shutdown within {SHUTDOWN_FENCE:?}")
            }
        }
    }

    /// Stops the metadata voter: the last step before the logs close.
    pub async fn stop_voter(&self) {
        match tokio::time::timeout(SHUTDOWN_FENCE, self.controller.raft.shutdown()).await {
            Ok(Ok(())) => tracing::info!("stopped the metadata voter"),
            Ok(Err(e)) => tracing::warn!("stopping the metadata group: {e}"),
            Err(_) => tracing::warn!("the metadata voter did not stop within {SHUTDOWN_FENCE:?}"),
        }
    }
}
