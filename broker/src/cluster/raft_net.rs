//! The metadata group's network: openraft's requests and answers, whole, as
//! JSON in length-prefixed frames on the cluster listener. A connection
//! opens with a hello naming the cluster and the sender; a peer from
//! another cluster or with a node id that is not a voter is refused and
//! logged. A frame that does not decode closes that one connection.
//!
//! One connection per peer and direction, one request in flight on it
//! (openraft sends to each peer from one replication task); a failed call
//! drops the connection and the next call dials again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use karnak_coordinator::metadata::MetadataRaft;
use karnak_coordinator::metadata::wire::{RaftRequest, RaftResponse, read_frame, write_frame};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::io::BufReader;

use super::controller::Controller;
use crate::tls::{PeerStream, PeerTls};

type NodeId = u64;
/// How long a dial may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Who this node is, for the hello it sends and checks.
#[derive(Clone)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: NodeId,
    /// Every voter's cluster-listener address (empty for a single node).
    pub voters: Arc<BTreeMap<NodeId, String>>,
    /// Mutual TLS with the other brokers (an SSL inter-broker listener).
    pub tls: Option<Arc<PeerTls>>,
}

/// A peer connection, buffered for reading.
type Conn = BufReader<Box<dyn PeerStream>>;

/// What a dial says about a peer that went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It answered a hello.
    Alive,
    /// Its address refuses connections, or resets one before answering:
    /// nothing listens there any more (its process is gone).
    Gone,
    /// No answer in time: stopped, overloaded or cut off. Only its
    /// session running out decides.
    Unknown,
}

/// Dials voter `target` and says hello, within `within`. Lets the
/// controller fence a killed broker at once instead of a session later,
/// while a stopped or partitioned one (whose dial hangs) keeps its session.
pub async fn probe(me: &Identity, target: NodeId, within: Duration) -> Liveness {
    let Some(addr) = me.voters.get(&target) else {
        return Liveness::Unknown;
    };
    let mut peer = TcpPeer::new(me.clone(), target, addr.clone());
    let gone = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
        )
    };
    match tokio::time::timeout(within, peer.connect()).await {
        Ok(Ok(())) => Liveness::Alive,
        // A refusal of our hello is still an answer.
        Ok(Err(CallError::Unreachable(e))) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Liveness::Alive
        }
        Ok(Err(CallError::Unreachable(e) | CallError::Network(e))) if gone(&e) => Liveness::Gone,
        Ok(Err(_)) | Err(_) => Liveness::Unknown,
    }
}

/// openraft's factory of peer clients. openraft asks for a new client for
/// every read-index confirmation and election, not only per replication
/// stream: their connections are kept for the next client to the same
/// peer instead of dialled afresh (each broker heartbeat confirms the
/// leadership once, so that was two dials per heartbeat).
pub struct TcpNetwork {
    me: Identity,
    idle: Arc<Idle>,
}

impl TcpNetwork {
    pub fn new(me: Identity) -> TcpNetwork {
        TcpNetwork {
            me,
            idle: Arc::default(),
        }
    }
}

/// Connections whose last exchange went well, per peer.
#[derive(Default)]
struct Idle(std::sync::Mutex<BTreeMap<NodeId, Vec<Conn>>>);

/// Idle connections kept per peer: as many as openraft calls it at once.
const IDLE_PER_PEER: usize = 4;

impl Idle {
    fn take(&self, target: NodeId) -> Option<Conn> {
        self.lock().get_mut(&target)?.pop()
    }

    fn put(&self, target: NodeId, conn: Conn) {
        let mut idle = self.lock();
        let kept = idle.entry(target).or_default();
        if kept.len() < IDLE_PER_PEER {
            kept.push(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Vec<Conn>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftNetworkFactory<MetadataRaft> for TcpNetwork {
    type Network = TcpPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> TcpPeer {
        let mut peer = TcpPeer::new(self.me.clone(), target, node.addr.clone());
        peer.idle = Some(self.idle.clone());
        peer
    }
}

pub struct TcpPeer {
    me: Identity,
    target: NodeId,
    addr: String,
    conn: Option<Conn>,
    /// Where its connection goes when it is dropped (openraft's clients).
    idle: Option<Arc<Idle>>,
}

impl Drop for TcpPeer {
    fn drop(&mut self) {
        if let (Some(idle), Some(conn)) = (&self.idle, self.conn.take()) {
            idle.put(self.target, conn);
        }
    }
}

pub(crate) enum CallError {
    /// Could not reach the peer: openraft backs off.
    Unreachable(std::io::Error),
    /// Reached, then the exchange failed.
    Network(std::io::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Network(e) => write!(f, "{e}"),
        }
    }
}

impl TcpPeer {
    pub(crate) fn new(me: Identity, target: NodeId, addr: String) -> TcpPeer {
        TcpPeer {
            me,
            target,
            addr,
            conn: None,
            idle: None,
        }
    }

    async fn connect(&mut self) -> Result<(), CallError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, crate::peer_net::dial(&self.addr))
            .await
            .map_err(|_| {
                CallError::Unreachable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {}", self.addr),
                ))
            })?
            .map_err(CallError::Unreachable)?;
        let stream: Box<dyn PeerStream> = match &self.me.tls {
            Some(tls) => tls
                .connect(&self.addr, stream)
                .await
                .map_err(CallError::Network)?,
            None => stream,
        };
        let mut conn = BufReader::new(stream);
        let hello = RaftRequest::Hello {
            cluster_id: self.me.cluster_id.clone(),
            from: self.me.node_id,
        };
        write_frame(&mut conn, &hello)
            .await
            .map_err(CallError::Network)?;
        match read_frame(&mut conn).await.map_err(CallError::Network)? {
            RaftResponse::Hello(Ok(())) => {}
            RaftResponse::Hello(Err(why)) => {
                return Err(CallError::Unreachable(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("node {} at {} refused us: {why}", self.target, self.addr),
                )));
            }
            other => {
                return Err(CallError::Network(std::io::Error::other(format!(
                    "answered {other:?} to a hello"
                ))));
            }
        }
        self.conn = Some(conn);
        Ok(())
    }

    pub(crate) async fn call(
        &mut self,
        req: RaftRequest,
        ttl: Duration,
    ) -> Result<RaftResponse, CallError> {
        let exchange = async {
            if self.conn.is_none() {
                self.conn = self.idle.as_ref().and_then(|idle| idle.take(self.target));
                // A kept connection the peer has closed meanwhile (it
                // restarted) fails at once: then dial. The metadata
                // group's requests may be sent twice (Raft's are
                // idempotent; openraft's clients send nothing else).
                if self.conn.is_some() {
                    match self.exchange(&req).await {
                        Err(CallError::Network(_)) => self.conn = None,
                        done => return done,
                    }
                }
                self.connect().await?;
            }
            self.exchange(&req).await
        };
        let out = match tokio::time::timeout(ttl, exchange).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Network(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from node {} within {ttl:?}", self.target),
            ))),
        };
        if out.is_err() {
            self.conn = None;
        }
        out
    }

    async fn exchange(&mut self, req: &RaftRequest) -> Result<RaftResponse, CallError> {
        let conn = self.conn.as_mut().ok_or_else(|| {
            CallError::Network(std::io::Error::other("no connection after connecting"))
        })?;
        write_frame(conn, req).await.map_err(CallError::Network)?;
        read_frame(conn).await.map_err(CallError::Network)
    }

    fn rpc_error<E: std::error::Error>(&self, e: CallError) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn mismatch<E: std::error::Error>(&self, got: &RaftResponse) -> RPCError<NodeId, BasicNode, E> {
        let e = std::io::Error::other(format!("node {} answered {got:?}", self.target));
        RPCError::Network(NetworkError::new(&e))
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl RaftNetwork<MetadataRaft> for TcpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self
            .call(RaftRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftResponse::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(self.mismatch(&other)),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .call(RaftRequest::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftResponse::InstallSnapshot(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(self.mismatch(&other)),
            Err(e) => Err(self.rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(RaftRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RaftResponse::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(self.mismatch(&other)),
            Err(e) => Err(self.rpc_error(e)),
        }
    }
}

/// Serves the metadata group's peers on `listener` until the task is
/// dropped: each connection in its own task, so one bad peer harms no other.
pub async fn serve(mut listener: crate::peer_net::ClusterAcceptor, controller: Arc<Controller>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a cluster connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let controller = controller.clone();
        tokio::spawn(async move {
            let stream: Box<dyn PeerStream> = match &controller.me.tls {
                Some(tls) => match tls.accept(stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(peer = %addr, error = %e, "refused a cluster connection: its TLS handshake failed");
                        return;
                    }
                },
                None => stream,
            };
            if let Err(e) = serve_peer(stream, &controller).await
                && e.kind() != std::io::ErrorKind::UnexpectedEof
            {
                tracing::warn!(peer = %addr, error = %e, "closed a cluster connection");
            }
        });
    }
}

async fn serve_peer(
    stream: Box<dyn PeerStream>,
    controller: &Arc<Controller>,
) -> std::io::Result<()> {
    let me = &controller.me;
    let mut conn = BufReader::new(stream);
    let from = match read_frame(&mut conn).await? {
        RaftRequest::Hello { cluster_id, from } => {
            let refusal = if cluster_id != me.cluster_id {
                Some(format!(
                    "cluster {cluster_id:?} is not this cluster {:?}",
                    me.cluster_id
                ))
            } else if !me.voters.contains_key(&from) {
                Some(format!("node {from} is not a voter of this cluster"))
            } else {
                None
            };
            if let Some(why) = refusal {
                tracing::warn!(node = from, reason = %why, "refused a cluster peer");
                write_frame(&mut conn, &RaftResponse::Hello(Err(why))).await?;
                return Ok(());
            }
            write_frame(&mut conn, &RaftResponse::Hello(Ok(()))).await?;
            from
        }
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a cluster connection opened with {other:?}, not a hello"),
            ));
        }
    };
    let mut requests = 0u64;
    let served = serve_requests(&mut conn, controller, from, &mut requests).await;
    // A peer's connection closing is the first sign that its process died:
    // look now rather than a session later. Not when it carried no request:
    // that was the peer's own look at this node (a probe is a hello, then
    // closed), and looking back would answer every look with one, forever.
    if requests > 0 {
        controller.clone().peer_lost(from);
    }
    served
}

async fn serve_requests(
    conn: &mut Conn,
    controller: &Controller,
    from: NodeId,
    requests: &mut u64,
) -> std::io::Result<()> {
    let raft = &controller.raft;
    loop {
        let request = read_frame(conn).await?;
        *requests += 1;
        let answer = match request {
            RaftRequest::AppendEntries(r) => {
                RaftResponse::AppendEntries(raft.append_entries(r).await)
            }
            RaftRequest::Vote(r) => RaftResponse::Vote(raft.vote(r).await),
            RaftRequest::InstallSnapshot(r) => {
                RaftResponse::InstallSnapshot(raft.install_snapshot(r).await)
            }
            RaftRequest::Propose(cmd) => RaftResponse::Propose(controller.propose(cmd).await),
            RaftRequest::Heartbeat(hb) => RaftResponse::Heartbeat(controller.heartbeat(hb).await),
            RaftRequest::ReadIndex => RaftResponse::ReadIndex(controller.read_index().await),
            RaftRequest::Hello { .. } => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("node {from} said hello twice"),
                ));
            }
        };
        write_frame(conn, &answer).await?;
    }
}
