//! What the metadata group's peers say to each other on the cluster
//! listener (openraft's RPCs, forwarded proposals, brokers' heartbeats and
//! read-index calls), and how it travels: each message as JSON in a frame
//! with a 4-byte big-endian length. Shared by the broker's cluster listener,
//! the deterministic simulation and the `raft_message` fuzz target.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{MetadataCommand, MetadataRaft, MetadataResult};

type NodeId = u64;

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    Hello {
        cluster_id: String,
        from: NodeId,
    },
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    /// A metadata change forwarded to the Raft leader.
    Propose(MetadataCommand),
    /// A broker's liveness, to the Raft leader.
    Heartbeat(BrokerHeartbeat),
    /// The leader's read index: the commit index once it has confirmed it
    /// still leads (a follower's read barrier waits to apply it).
    ReadIndex,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    Hello(Result<(), String>),
    Propose(Result<Proposed, ProposeError>),
    Heartbeat(HeartbeatAnswer),
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    ReadIndex(Result<u64, String>),
}

/// A committed change: what applying it answered, and its log index (the
/// proposer waits for its own state machine to reach it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Proposed {
    pub result: MetadataResult,
    pub index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the metadata leader (the leader is {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("the metadata group failed: {0}")]
    Raft(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub broker: i32,
    pub incarnation: [u8; 16],
    /// false: the broker is ready to lead and be in sync (Kafka's `WantFence`).
    pub want_fence: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HeartbeatAnswer {
    Ok {
        fenced: bool,
        /// A metadata log index committed after the heartbeat arrived, with
        /// a quorum confirming this node led then: the broker's lease runs
        /// once it has followed the metadata that far (0 from a node
        /// before leases: at once).
        #[serde(default)]
        index: u64,
    },
    NotLeader {
        leader: Option<u64>,
    },
    /// No registration with this incarnation: register again.
    NotRegistered,
    Failed(String),
}

/// Snapshot chunks are a few MiB; nothing else comes near this.
pub const MAX_FRAME: usize = 64 << 20;

/// Writes `msg` as one frame, in one write (a simulated link drops whole
/// frames, never half of one).
pub async fn write_frame<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "a {} byte raft frame",
            body.len()
        )));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one frame; a length over [`MAX_FRAME`] or a body that does not
/// decode is `InvalidData`.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<T> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a raft frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
