//! A one-voter metadata group, as a single broker runs it: openraft over
//! the real log store and state machine in a temp dir, written to, made to
//! snapshot and purge, stopped and started again on the same files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft};

use super::*;

/// A one-voter group has no peer to reach: every call fails as unreachable.
struct NoPeers;

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("no peers")))
}

impl RaftNetworkFactory<MetadataRaft> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<MetadataRaft> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<MetadataRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<MetadataRaft>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        Err(unreachable())
    }
}

async fn start(dir: &std::path::Path) -> (Raft<MetadataRaft>, MetadataStateMachine) {
    let config = Config {
        cluster_name: "karnak-test".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    let log = RaftLogStore::open(&dir.join("raft")).unwrap();
    let sm = MetadataStateMachine::open(&dir.join("raft")).unwrap();
    let raft = Raft::new(
        1,
        Arc::new(config.validate().unwrap()),
        NoPeers,
        log,
        sm.clone(),
    )
    .await
    .unwrap();
    (raft, sm)
}

#[tokio::test]
async fn a_one_voter_group_commits_snapshots_and_restarts_on_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, sm) = start(dir.path()).await;
    raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:9093"))]))
        .await
        .unwrap();
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .unwrap();
    let mut changes = sm.subscribe();
    let write = |cmd| {
        let raft = raft.clone();
        async move { raft.client_write(cmd).await.unwrap().data }
    };
    let register = MetadataCommand::RegisterBroker {
        id: 1,
        incarnation: [1; 16],
        listeners: vec![],
        rack: None,
        unclean_shutdown: false,
    };
    assert_eq!(write(register).await, Ok(MetadataReply::Done));
    assert_eq!(
        write(MetadataCommand::UnfenceBroker { id: 1 }).await,
        Ok(MetadataReply::Done)
    );
    let create = MetadataCommand::CreateTopic {
        name: "t".into(),
        id: [7; 16],
        configs: BTreeMap::new(),
        assignments: vec![vec![1]; 3],
    };
    assert_eq!(write(create.clone()).await, Ok(MetadataReply::Done));
    // A refused command is committed too, and answers its error.
    assert_eq!(
        write(create).await.unwrap_err().code(),
        kafka_protocol::error::ResponseError::TopicAlreadyExists
    );
    assert_eq!(
        write(MetadataCommand::AllocateIdBlock {
            sequencer: "pid".into(),
            size: 100,
            from: 0,
        })
        .await,
        Ok(MetadataReply::IdBlock { first: 0 })
    );
    // Subscribers see the applied state.
    changes.changed().await.unwrap();
    assert_eq!(changes.borrow().topics["t"].partitions.len(), 3);
    // A snapshot, then more entries after it.
    raft.trigger().snapshot().await.unwrap();
    let applied = raft.metrics().borrow().last_applied.unwrap();
    raft.wait(Some(Duration::from_secs(10)))
        .snapshot(applied, "snapshot")
        .await
        .unwrap();
    assert_eq!(
        write(MetadataCommand::AllocateIdBlock {
            sequencer: "pid".into(),
            size: 100,
            from: 0,
        })
        .await,
        Ok(MetadataReply::IdBlock { first: 100 })
    );
    let before = sm.current().await;
    raft.shutdown().await.unwrap();
    drop(raft);

    // Restart on the same files: the snapshot, then the entries after it.
    let (raft, sm) = start(dir.path()).await;
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader after restart")
        .await
        .unwrap();
    let last = raft.metrics().borrow().last_log_index.unwrap();
    raft.wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(last), "re-applied")
        .await
        .unwrap();
    assert_eq!(sm.current().await, before);
    // Ids never repeat across the restart.
    assert_eq!(
        raft.client_write(MetadataCommand::AllocateIdBlock {
            sequencer: "pid".into(),
            size: 1,
            from: 0,
        })
        .await
        .unwrap()
        .data,
        Ok(MetadataReply::IdBlock { first: 200 })
    );
    raft.shutdown().await.unwrap();
}
