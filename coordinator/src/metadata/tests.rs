use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::*;

pub(super) fn register(m: &mut ClusterMetadata, id: i32, incarnation: u8) {
    let cmd = MetadataCommand::RegisterBroker {
        id,
        incarnation: [incarnation; 16],
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092 + id as u16,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: None,
        unclean_shutdown: false,
    };
    assert_eq!(m.apply(&cmd), Ok(MetadataReply::Done));
}

/// Brokers 0, 1, 2 registered and unfenced.
pub(super) fn three() -> ClusterMetadata {
    let mut m = ClusterMetadata::default();
    for b in 0..3 {
        register(&mut m, b, 1);
        m.apply(&MetadataCommand::UnfenceBroker { id: b }).unwrap();
    }
    m
}

fn create(
    m: &mut ClusterMetadata,
    name: &str,
    id: u8,
    assignments: Vec<Vec<i32>>,
) -> Result<MetadataReply, MetadataError> {
    m.apply(&MetadataCommand::CreateTopic {
        name: name.into(),
        id: [id; 16],
        configs: BTreeMap::new(),
        assignments,
    })
}

pub(super) fn state(m: &ClusterMetadata, t: &str, p: i32) -> (i32, i32, i32, Vec<i32>) {
    let s = m.partition(t, p).unwrap();
    (s.leader, s.leader_epoch, s.partition_epoch, s.isr.clone())
}

#[test]
fn a_topic_starts_led_by_its_first_live_replica_with_its_live_replicas_in_sync() {
    let mut m = three();
    m.apply(&MetadataCommand::FenceBroker { id: 1 }).unwrap();
    create(&mut m, "t", 1, vec![vec![1, 2, 0], vec![2, 0, 1]]).unwrap();
    assert_eq!(state(&m, "t", 0), (2, 0, 0, vec![2, 0]));
    assert_eq!(state(&m, "t", 1), (2, 0, 0, vec![2, 0]));
    // The same name or id again, bad assignments: refused, nothing changes.
    let before = m.clone();
    let refused = [
        create(&mut m, "t", 2, vec![vec![0]]),
        create(&mut m, "u", 1, vec![vec![0]]),
        create(&mut m, "u", 3, vec![vec![0, 0]]),
        create(&mut m, "u", 3, vec![vec![0, 7]]),
        create(&mut m, "u", 3, vec![vec![0, 1], vec![2]]),
        create(&mut m, "u", 3, vec![]),
        create(&mut m, "u", 3, vec![vec![1]]),
    ];
    let codes: Vec<ResponseError> = refused
        .iter()
        .map(|r| r.clone().unwrap_err().code())
        .collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::TopicAlreadyExists,
            ResponseError::TopicAlreadyExists,
            ResponseError::InvalidReplicaAssignment,
            ResponseError::InvalidReplicaAssignment,
            ResponseError::InvalidReplicaAssignment,
            ResponseError::InvalidPartitions,
            ResponseError::InvalidReplicaAssignment,
        ]
    );
    assert_eq!(m, before);
}

#[test]
fn fencing_the_leader_moves_leadership_within_the_in_sync_set_and_bumps_epochs() {
    let mut m = three();
    create(&mut m, "t", 1, vec![vec![0, 1, 2]]).unwrap();
    m.apply(&MetadataCommand::FenceBroker { id: 0 }).unwrap();
    assert_eq!(state(&m, "t", 0), (1, 1, 1, vec![1, 2]));
    // A follower fenced: the in-sync set shrinks, the leader epoch stays.
    m.apply(&MetadataCommand::FenceBroker { id: 2 }).unwrap();
    assert_eq!(state(&m, "t", 0), (1, 1, 2, vec![1]));
    // The last in-sync member fenced: no leader, and it stays in the set,
    // so no unclean replica takes over by itself.
    m.apply(&MetadataCommand::UnfenceBroker { id: 0 }).unwrap();
    m.apply(&MetadataCommand::FenceBroker { id: 1 }).unwrap();
    assert_eq!(state(&m, "t", 0), (NO_LEADER, 2, 3, vec![1]));
    // It comes back: it leads again.
    m.apply(&MetadataCommand::UnfenceBroker { id: 1 }).unwrap();
    assert_eq!(state(&m, "t", 0), (1, 3, 4, vec![1]));
}

#[test]
fn a_new_incarnation_fences_the_old_one() {
    let mut m = three();
    create(&mut m, "t", 1, vec![vec![0, 1]]).unwrap();
    register(&mut m, 0, 1); // the same registration again: nothing changes
    assert_eq!(state(&m, "t", 0), (0, 0, 0, vec![0, 1]));
    register(&mut m, 0, 2); // restarted
    assert!(m.brokers[&0].fenced);
    assert_eq!(state(&m, "t", 0), (1, 1, 1, vec![1]));
}

#[test]
fn in_sync_set_changes_come_only_from_the_current_leader_at_the_current_epochs() {
    let mut m = three();
    create(&mut m, "t", 1, vec![vec![0, 1, 2]]).unwrap();
    let alter = |leader, leader_epoch, partition_epoch, isr: Vec<i32>| {
        MetadataCommand::AlterPartition(AlterPartition {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        })
    };
    assert_eq!(
        m.apply(&alter(0, 0, 0, vec![0, 1])),
        Ok(MetadataReply::Partition {
            leader: 0,
            leader_epoch: 0,
            partition_epoch: 1,
            isr: vec![0, 1]
        })
    );
    let before = m.clone();
    let codes: Vec<ResponseError> = [
        alter(0, 0, 0, vec![0, 1, 2]), // stale partition epoch
        alter(1, 0, 1, vec![0, 1]),    // not the leader
        alter(0, 1, 1, vec![0, 1]),    // a leader epoch it does not have
        alter(0, 0, 1, vec![1, 2]),    // without the leader
        alter(0, 0, 1, vec![0, 5]),    // not a replica
    ]
    .iter()
    .map(|c| m.apply(c).unwrap_err().code())
    .collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::InvalidUpdateVersion,
            ResponseError::NotLeaderOrFollower,
            ResponseError::FencedLeaderEpoch,
            ResponseError::InvalidRequest,
            ResponseError::InvalidRequest,
        ]
    );
    assert_eq!(m, before);
    // A fenced replica may not rejoin.
    m.apply(&MetadataCommand::FenceBroker { id: 2 }).unwrap();
    assert_eq!(
        m.apply(&alter(0, 0, 1, vec![0, 1, 2])).unwrap_err().code(),
        ResponseError::IneligibleReplica
    );
}

#[test]
fn elections_preferred_and_unclean() {
    let mut m = three();
    create(&mut m, "t", 1, vec![vec![0, 1, 2]]).unwrap();
    let elect = |kind| MetadataCommand::ElectLeader {
        topic: "t".into(),
        partition: 0,
        kind,
    };
    assert_eq!(
        m.apply(&elect(ElectionKind::Preferred)).unwrap_err().code(),
        ResponseError::ElectionNotNeeded
    );
    m.apply(&MetadataCommand::FenceBroker { id: 0 }).unwrap();
    assert_eq!(
        m.apply(&elect(ElectionKind::Preferred)).unwrap_err().code(),
        ResponseError::PreferredLeaderNotAvailable
    );
    // 0 comes back and catches up (the leader adds it), then is preferred.
    m.apply(&MetadataCommand::UnfenceBroker { id: 0 }).unwrap();
    let (leader, le, pe, _) = state(&m, "t", 0);
    m.apply(&MetadataCommand::AlterPartition(AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader,
        leader_epoch: le,
        partition_epoch: pe,
        isr: vec![1, 2, 0],
    }))
    .unwrap();
    m.apply(&elect(ElectionKind::Preferred)).unwrap();
    assert_eq!(state(&m, "t", 0).0, 0);
    // Everyone in sync gone, only an out-of-sync replica live: unclean only.
    m.apply(&MetadataCommand::AlterPartition(AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: 0,
        leader_epoch: state(&m, "t", 0).1,
        partition_epoch: state(&m, "t", 0).2,
        isr: vec![0],
    }))
    .unwrap();
    m.apply(&MetadataCommand::FenceBroker { id: 0 }).unwrap();
    assert_eq!(state(&m, "t", 0).0, NO_LEADER);
    let (_, le, _, _) = state(&m, "t", 0);
    m.apply(&elect(ElectionKind::Unclean)).unwrap();
    let (leader, le2, _, isr) = state(&m, "t", 0);
    assert_eq!((leader, le2, isr), (1, le + 1, vec![1]));
}

#[test]
fn id_blocks_never_overlap_and_configs_set_and_remove() {
    let mut m = three();
    let block_from = |m: &mut ClusterMetadata, size, from| {
        m.apply(&MetadataCommand::AllocateIdBlock {
            sequencer: "producer-ids".into(),
            size,
            from,
        })
    };
    let block = |m: &mut ClusterMetadata, size| block_from(m, size, 0);
    assert_eq!(block(&mut m, 1000), Ok(MetadataReply::IdBlock { first: 0 }));
    assert_eq!(
        block(&mut m, 10),
        Ok(MetadataReply::IdBlock { first: 1000 })
    );
    assert!(block(&mut m, 0).is_err());
    assert!(block(&mut m, u64::MAX).is_err());
    assert_eq!(m.id_leases["producer-ids"], 1010);
    // A floor above the lease skips ahead; one below it changes nothing.
    assert_eq!(
        block_from(&mut m, 10, 5000),
        Ok(MetadataReply::IdBlock { first: 5000 })
    );
    assert_eq!(
        block_from(&mut m, 10, 7),
        Ok(MetadataReply::IdBlock { first: 5010 })
    );
    assert_eq!(m.id_leases["producer-ids"], 5020);

    create(&mut m, "t", 1, vec![vec![0]]).unwrap();
    let alter = |r, k: &str, v: Option<&str>| MetadataCommand::AlterConfigs {
        resource: r,
        changes: BTreeMap::from([(k.to_string(), v.map(str::to_string))]),
    };
    m.apply(&alter(
        ConfigResource::Topic("t".into()),
        "retention.ms",
        Some("1000"),
    ))
    .unwrap();
    m.apply(&alter(
        ConfigResource::Broker(None),
        "log.retention.ms",
        Some("5"),
    ))
    .unwrap();
    assert_eq!(m.topics["t"].configs["retention.ms"], "1000");
    m.apply(&alter(
        ConfigResource::Topic("t".into()),
        "retention.ms",
        None,
    ))
    .unwrap();
    assert!(m.topics["t"].configs.is_empty());
    assert_eq!(
        m.apply(&alter(ConfigResource::Broker(Some(9)), "x", Some("1")))
            .unwrap_err()
            .code(),
        ResponseError::BrokerIdNotRegistered
    );
    assert_eq!(
        m.apply(&alter(ConfigResource::Topic("nope".into()), "x", None))
            .unwrap_err()
            .code(),
        ResponseError::UnknownTopicOrPartition
    );
}

#[test]
fn replaying_the_same_commands_reaches_the_same_state_and_survives_a_snapshot() {
    let mut cmds = Vec::new();
    for b in 0..3 {
        cmds.push(MetadataCommand::RegisterBroker {
            id: b,
            incarnation: [b as u8; 16],
            listeners: vec![],
            rack: Some(format!("r{b}")),
            unclean_shutdown: false,
        });
        cmds.push(MetadataCommand::UnfenceBroker { id: b });
    }
    cmds.push(MetadataCommand::CreateTopic {
        name: "t".into(),
        id: [9; 16],
        configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
        assignments: vec![vec![0, 1], vec![1, 2], vec![2, 0]],
    });
    cmds.push(MetadataCommand::FenceBroker { id: 1 });
    cmds.push(MetadataCommand::CreatePartitions {
        name: "t".into(),
        assignments: vec![vec![0, 2]],
    });
    cmds.push(MetadataCommand::DeleteTopic {
        name: "gone".into(),
    }); // refused
    let mut a = ClusterMetadata::default();
    let mut b = ClusterMetadata::default();
    for c in &cmds {
        let _ = a.apply(c);
        // Through the wire form, as a follower gets it.
        let c2: MetadataCommand = serde_json::from_slice(&serde_json::to_vec(c).unwrap()).unwrap();
        let _ = b.apply(&c2);
    }
    assert_eq!(a, b);
    assert_eq!(a.topics["t"].partitions.len(), 4);
    let snap = serde_json::to_vec(&a).unwrap();
    let back: ClusterMetadata = serde_json::from_slice(&snap).unwrap();
    assert_eq!(back, a);
}
