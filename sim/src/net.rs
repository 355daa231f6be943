//! The metadata group's messages on turmoil's simulated TCP: openraft's
//! requests and answers in the broker's frames (`metadata::wire`), one
//! request in flight per connection, as the cluster listener carries them.
//! A simulated link drops whole segments when partitioned, so a call that
//! times out drops its connection and the next one dials again.

use std::time::Duration;

use karnak_coordinator::metadata::wire::{read_frame, write_frame};
use karnak_coordinator::metadata::{MetadataCommand, MetadataRaft, MetadataResult};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use turmoil::net::{TcpListener, TcpStream};

pub const RAFT_PORT: u16 = 9093;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<MetadataRaft>),
    /// A client's proposal: answered once committed and applied here.
    Write(MetadataCommand),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// The applied command's answer, or why it was not committed here.
    Write(Result<MetadataResult, String>),
}

/// Answers every connection on the Raft port until the host crashes.
pub async fn serve(raft: Raft<MetadataRaft>) -> std::io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", RAFT_PORT)).await?;
    loop {
        let (mut conn, _) = listener.accept().await?;
        let raft = raft.clone();
        tokio::task::spawn_local(async move {
            while let Ok(req) = read_frame::<Request>(&mut conn).await {
                let resp = match req {
                    Request::Append(r) => Response::Append(raft.append_entries(r).await),
                    Request::Vote(r) => Response::Vote(raft.vote(r).await),
                    Request::Snapshot(r) => Response::Snapshot(raft.install_snapshot(r).await),
                    Request::Write(cmd) => Response::Write(
                        raft.client_write(cmd)
                            .await
                            .map(|r| r.data)
                            .map_err(|e| e.to_string()),
                    ),
                };
                if write_frame(&mut conn, &resp).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// One request on `conn` (dialled to `addr` when there is none), within
/// `ttl`; any failure drops the connection.
async fn call(
    conn: &mut Option<TcpStream>,
    addr: &str,
    req: &Request,
    ttl: Duration,
) -> Result<Response, CallError> {
    let held = conn.take();
    let attempt = async move {
        let mut c = match held {
            Some(c) => c,
            None => TcpStream::connect(addr)
                .await
                .map_err(CallError::Unreachable)?,
        };
        write_frame(&mut c, req).await.map_err(CallError::Network)?;
        let resp = read_frame::<Response>(&mut c)
            .await
            .map_err(CallError::Network)?;
        Ok((c, resp))
    };
    match tokio::time::timeout(ttl, attempt).await {
        Ok(Ok((c, resp))) => {
            *conn = Some(c);
            Ok(resp)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CallError::Network(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from {addr} in {ttl:?}"),
        ))),
    }
}

pub enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, BasicNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

/// A client's proposal to the node at `addr`, on a connection of its own.
pub async fn propose(
    addr: &str,
    cmd: MetadataCommand,
    ttl: Duration,
) -> Result<Result<MetadataResult, String>, String> {
    let mut conn = None;
    match call(&mut conn, addr, &Request::Write(cmd), ttl).await {
        Ok(Response::Write(r)) => Ok(r),
        Ok(other) => Err(format!("{addr} answered {other:?}")),
        Err(CallError::Unreachable(e) | CallError::Network(e)) => Err(e.to_string()),
    }
}

pub struct Peers;

impl RaftNetworkFactory<MetadataRaft> for Peers {
    type Network = Peer;
    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

pub struct Peer {
    target: u64,
    addr: String,
    conn: Option<TcpStream>,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl Peer {
    fn remote<E: std::error::Error>(&self, e: RaftError<u64, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }

    fn confused<E: std::error::Error>(&self, got: Response) -> RpcErr<E> {
        RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
            "node {} answered {got:?}",
            self.target
        ))))
    }
}

impl RaftNetwork<MetadataRaft> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        let ttl = option.hard_ttl();
        match call(&mut self.conn, &self.addr, &Request::Append(rpc), ttl).await {
            Ok(Response::Append(r)) => r.map_err(|e| self.remote(e)),
            Ok(other) => Err(self.confused(other)),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        let ttl = option.hard_ttl();
        match call(&mut self.conn, &self.addr, &Request::Snapshot(rpc), ttl).await {
            Ok(Response::Snapshot(r)) => r.map_err(|e| self.remote(e)),
            Ok(other) => Err(self.confused(other)),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        let ttl = option.hard_ttl();
        match call(&mut self.conn, &self.addr, &Request::Vote(rpc), ttl).await {
            Ok(Response::Vote(r)) => r.map_err(|e| self.remote(e)),
            Ok(other) => Err(self.confused(other)),
            Err(e) => Err(e.into_rpc()),
        }
    }
}
