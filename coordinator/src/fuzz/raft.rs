//! The `raft_message` target: what a metadata peer sends on the cluster
//! listener, from the length prefix on, and the metadata commands inside.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    StoredMembership, Vote,
};
use serde::de::DeserializeOwned;

use crate::metadata::acls::{
    AclBinding, AclEntry, AclFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourceType,
};
use crate::metadata::quotas::{QuotaAlteration, QuotaValue};
use crate::metadata::wire::{
    BrokerHeartbeat, HeartbeatAnswer, ProposeError, Proposed, RaftRequest, RaftResponse, read_frame,
};
use crate::metadata::{
    AlterPartition, ClusterMetadata, ConfigResource, ControllerDefaults, ElectionKind, Listener,
    MetadataCommand, MetadataError, MetadataRaft, MetadataReply, ScramRecord, ScramUpsert,
};

/// One frame as the cluster listener reads it (4-byte length, JSON): the
/// first byte picks a request (even) or an answer (odd). Every metadata
/// command a request carries, forwarded to the leader or in AppendEntries'
/// entries, is prechecked and applied to a three-broker cluster's state,
/// as the leader and every follower would. Checked: a command refused by
/// `apply` leaves the state as it was (every voter must agree on it), and
/// the state comes back equal from the snapshot a follower would install.
pub fn raft_message(data: &[u8]) {
    let [which, frame @ ..] = data else {
        return;
    };
    if which & 1 == 1 {
        let _ = read_now::<RaftResponse>(frame);
        return;
    }
    let Some(Ok(request)) = read_now::<RaftRequest>(frame) else {
        return;
    };
    let commands: Vec<&MetadataCommand> = match &request {
        RaftRequest::Propose(cmd) => vec![cmd],
        RaftRequest::AppendEntries(a) => a
            .entries
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(cmd) => Some(cmd),
                _ => None,
            })
            .collect(),
        _ => return,
    };
    let mut state = base_state().clone();
    for cmd in commands {
        let _ = state.precheck(cmd);
        let before = state.clone();
        if state.apply(cmd).is_err() {
            assert_eq!(state, before, "a refused {cmd:?} changed the state");
        }
    }
    let snapshot = serde_json::to_vec(&state).expect("the metadata state serialises");
    let back: ClusterMetadata =
        serde_json::from_slice(&snapshot).expect("a snapshot of the state decodes");
    assert_eq!(back, state, "the state differs once through a snapshot");
}

/// `read_frame` over bytes already there: it never waits.
fn read_now<T: DeserializeOwned>(mut bytes: &[u8]) -> Option<std::io::Result<T>> {
    let read = pin!(read_frame::<T>(&mut bytes));
    match read.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// Brokers 1-3 registered and unfenced, topic `orders` with three
/// partitions on all three, and election defaults.
fn base_state() -> &'static ClusterMetadata {
    static STATE: OnceLock<ClusterMetadata> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut state = ClusterMetadata::default();
        for cmd in base_commands() {
            state
                .apply(&cmd)
                .unwrap_or_else(|e| panic!("the base state's {cmd:?}: {e}"));
        }
        state
    })
}

fn base_commands() -> Vec<MetadataCommand> {
    let mut cmds = vec![MetadataCommand::SetControllerDefaults(ControllerDefaults {
        min_insync_replicas: 2,
        unclean_leader_election: false,
    })];
    for id in 1..=3 {
        cmds.push(MetadataCommand::RegisterBroker {
            id,
            incarnation: [id as u8; 16],
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9091 + id as u16,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: Some(format!("rack-{id}")),
            unclean_shutdown: false,
        });
        cmds.push(MetadataCommand::UnfenceBroker { id });
    }
    cmds.push(MetadataCommand::CreateTopic {
        name: "orders".into(),
        id: [7; 16],
        configs: BTreeMap::from([("min.insync.replicas".into(), "2".into())]),
        assignments: vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
    });
    cmds
}

/// One command of every kind, as the brokers propose them.
fn sample_commands() -> Vec<MetadataCommand> {
    let binding = AclBinding {
        resource_type: ResourceType::Topic,
        pattern_type: PatternType::Prefixed,
        resource_name: "ord".into(),
        entry: AclEntry {
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        },
    };
    vec![
        MetadataCommand::RegisterBroker {
            id: 4,
            incarnation: [4; 16],
            listeners: vec![Listener {
                name: "SASL_SSL".into(),
                host: "broker-4.example".into(),
                port: 9093,
                security_protocol: "SASL_SSL".into(),
            }],
            rack: None,
            unclean_shutdown: true,
        },
        MetadataCommand::FenceBroker { id: 2 },
        MetadataCommand::UnfenceBroker { id: 2 },
        MetadataCommand::CreateTopic {
            name: "payments".into(),
            id: [9; 16],
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            assignments: vec![vec![2, 3], vec![3, 1]],
        },
        MetadataCommand::CreatePartitions {
            name: "orders".into(),
            assignments: vec![vec![1, 3, 2]],
        },
        MetadataCommand::AlterConfigs {
            resource: ConfigResource::Topic("orders".into()),
            changes: BTreeMap::from([
                ("retention.ms".into(), Some("3600000".into())),
                ("min.insync.replicas".into(), None),
            ]),
        },
        MetadataCommand::AlterConfigs {
            resource: ConfigResource::Broker(None),
            changes: BTreeMap::from([("log.retention.ms".into(), Some("60000".into()))]),
        },
        MetadataCommand::AlterPartition(AlterPartition {
            topic: "orders".into(),
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![1, 2],
        }),
        MetadataCommand::ElectLeader {
            topic: "orders".into(),
            partition: 1,
            kind: ElectionKind::Preferred,
        },
        MetadataCommand::AlterReassignment {
            topic: "orders".into(),
            partition: 2,
            target: Some(vec![1, 2]),
        },
        MetadataCommand::AllocateIdBlock {
            sequencer: "producer-ids".into(),
            size: 1000,
            from: 0,
        },
        MetadataCommand::AlterScramCredentials {
            upserts: vec![ScramUpsert {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-256".into(),
                credential: ScramRecord {
                    salt: vec![1; 16],
                    iterations: 4096,
                    stored_key: vec![2; 32],
                    server_key: vec![3; 32],
                },
            }],
            deletions: vec![("bob".into(), "SCRAM-SHA-512".into())],
        },
        MetadataCommand::CreateAcls {
            bindings: vec![binding],
        },
        MetadataCommand::AlterClientQuotas {
            alterations: vec![QuotaAlteration {
                entity: BTreeMap::from([("user".into(), Some("alice".into()))]),
                ops: vec![
                    ("producer_byte_rate".into(), Some(QuotaValue(1048576.0))),
                    ("request_percentage".into(), None),
                ],
            }],
        },
        MetadataCommand::DeleteAcls {
            filters: vec![AclFilter {
                resource_type: Some(ResourceType::Topic),
                resource_name: None,
                pattern: PatternFilter::Match,
                principal: Some("User:alice".into()),
                host: None,
                operation: None,
                permission: Some(AclPermission::Allow),
            }],
        },
        MetadataCommand::DeleteTopic {
            name: "orders".into(),
        },
    ]
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// The target's seeds: every request and answer the cluster listener
/// carries, with every kind of metadata command, framed as on the wire
/// (`fuzz/corpus/raft_message/` holds them; `cargo test -p
/// karnak-coordinator --test fuzz_regressions` checks they still decode,
/// and writes them again with `KARNAK_WRITE_SEEDS=DIR`).
pub fn raft_message_seeds() -> Vec<Vec<u8>> {
    let vote = Vote::new_committed(3, 1);
    let commands = sample_commands();
    let membership = Membership::new(
        vec![BTreeSet::from([1, 2, 3])],
        (1..=3)
            .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 9190 + id))))
            .collect::<BTreeMap<_, _>>(),
    );
    let mut entries: Vec<Entry<MetadataRaft>> = vec![
        Entry {
            log_id: log_id(3, 40),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(3, 41),
            payload: EntryPayload::Membership(membership.clone()),
        },
    ];
    entries.extend(commands.iter().enumerate().map(|(i, cmd)| Entry {
        log_id: log_id(3, 42 + i as u64),
        payload: EntryPayload::Normal(cmd.clone()),
    }));
    let mut snapshot_state = base_state().clone();
    snapshot_state.applied_index = 39;
    let snapshot_meta = SnapshotMeta {
        last_log_id: Some(log_id(2, 39)),
        last_membership: StoredMembership::new(Some(log_id(1, 2)), membership),
        snapshot_id: "2-39-7".into(),
    };
    let mut requests = vec![
        RaftRequest::Hello {
            cluster_id: "karnak-fuzz".into(),
            from: 2,
        },
        RaftRequest::AppendEntries(AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id(3, 39)),
            entries,
            leader_commit: Some(log_id(3, 39)),
        }),
        RaftRequest::AppendEntries(AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        }),
        RaftRequest::Vote(VoteRequest {
            vote: Vote::new(4, 2),
            last_log_id: Some(log_id(3, 57)),
        }),
        RaftRequest::InstallSnapshot(InstallSnapshotRequest {
            vote,
            meta: snapshot_meta,
            offset: 0,
            data: serde_json::to_vec(&snapshot_state).expect("a state serialises"),
            done: true,
        }),
        RaftRequest::Heartbeat(BrokerHeartbeat {
            broker: 2,
            incarnation: [2; 16],
            want_fence: false,
        }),
        RaftRequest::ReadIndex,
    ];
    requests.extend(commands.into_iter().map(RaftRequest::Propose));
    let answers = vec![
        RaftResponse::Hello(Ok(())),
        RaftResponse::Hello(Err("cluster id differs".into())),
        RaftResponse::Propose(Ok(Proposed {
            result: Ok(MetadataReply::IdBlock { first: 5000 }),
            index: 58,
        })),
        RaftResponse::Propose(Ok(Proposed {
            result: Err(MetadataError::UnknownTopic("gone".into())),
            index: 58,
        })),
        RaftResponse::Propose(Err(ProposeError::NotLeader { leader: Some(2) })),
        RaftResponse::Heartbeat(HeartbeatAnswer::Ok {
            fenced: false,
            index: 58,
        }),
        RaftResponse::Heartbeat(HeartbeatAnswer::NotRegistered),
        RaftResponse::AppendEntries(Ok(AppendEntriesResponse::Success)),
        RaftResponse::AppendEntries(Ok(AppendEntriesResponse::Conflict)),
        RaftResponse::AppendEntries(Ok(AppendEntriesResponse::HigherVote(Vote::new(5, 3)))),
        RaftResponse::AppendEntries(Err(RaftError::Fatal(openraft::error::Fatal::Stopped))),
        RaftResponse::Vote(Ok(VoteResponse {
            vote: Vote::new(4, 2),
            vote_granted: true,
            last_log_id: Some(log_id(3, 57)),
        })),
        RaftResponse::InstallSnapshot(Ok(InstallSnapshotResponse { vote })),
        RaftResponse::InstallSnapshot(Err(RaftError::<u64, InstallSnapshotError>::Fatal(
            openraft::error::Fatal::Panicked,
        ))),
        RaftResponse::ReadIndex(Ok(58)),
    ];
    let frame = |which: u8, body: Vec<u8>| {
        let mut out = vec![which];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend(body);
        out
    };
    let json = |body: serde_json::Result<Vec<u8>>| body.expect("a message serialises");
    requests
        .iter()
        .map(|r| frame(0, json(serde_json::to_vec(r))))
        .chain(
            answers
                .iter()
                .map(|a| frame(1, json(serde_json::to_vec(a)))),
        )
        .collect()
}
