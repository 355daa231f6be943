//! Partition reassignment in the metadata state (KIP-455's rules).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::*;

fn cluster(brokers: i32) -> ClusterMetadata {
    let mut m = ClusterMetadata::default();
    for id in 0..brokers {
        m.apply(&MetadataCommand::RegisterBroker {
            id,
            incarnation: [id as u8; 16],
            listeners: vec![],
            rack: None,
            unclean_shutdown: false,
        })
        .unwrap();
        m.apply(&MetadataCommand::UnfenceBroker { id }).unwrap();
    }
    m
}

fn topic(m: &mut ClusterMetadata, replicas: Vec<i32>) {
    m.apply(&MetadataCommand::CreateTopic {
        name: "t".into(),
        id: [7; 16],
        configs: BTreeMap::new(),
        assignments: vec![replicas],
    })
    .unwrap();
}

fn reassign(m: &mut ClusterMetadata, target: Option<Vec<i32>>) -> Result<(), ResponseError> {
    m.apply(&MetadataCommand::AlterReassignment {
        topic: "t".into(),
        partition: 0,
        target,
    })
    .map(|_| ())
    .map_err(|e| e.code())
}

/// The leader's AlterPartition of `t`-0 to `isr`, at the current epochs.
pub(super) fn in_sync(m: &mut ClusterMetadata, isr: Vec<i32>) {
    let p = m.partition("t", 0).unwrap().clone();
    m.apply(&MetadataCommand::AlterPartition(AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr,
    }))
    .unwrap();
}

fn p(m: &ClusterMetadata) -> PartitionState {
    m.partition("t", 0).unwrap().clone()
}

#[test]
fn a_move_copies_first_then_narrows_to_the_target_and_hands_over_leadership() {
    let mut m = cluster(3);
    topic(&mut m, vec![0]);
    reassign(&mut m, Some(vec![1, 2])).unwrap();
    let s = p(&m);
    assert_eq!(
        (s.replicas, s.adding, s.removing, s.isr, s.leader),
        (vec![1, 2, 0], vec![1, 2], vec![0], vec![0], 0)
    );
    assert!(p(&m).reassigning());
    // One new replica caught up: not yet.
    in_sync(&mut m, vec![0, 1]);
    assert!(p(&m).reassigning());
    // Both: the set narrows, and the leader, leaving, hands over.
    let before = p(&m);
    in_sync(&mut m, vec![0, 1, 2]);
    let s = p(&m);
    assert!(!s.reassigning());
    assert_eq!((s.replicas, s.isr, s.leader), (vec![1, 2], vec![1, 2], 1));
    assert_eq!(s.leader_epoch, before.leader_epoch + 1);
    assert!(s.partition_epoch > before.partition_epoch);
}

#[test]
fn a_shrink_completes_at_once_and_a_cancel_restores_the_original_replicas() {
    let mut m = cluster(3);
    topic(&mut m, vec![0, 1, 2]);
    reassign(&mut m, Some(vec![2, 1])).unwrap();
    let s = p(&m);
    assert!(!s.reassigning());
    // The leader left: the first in-sync replica of the target leads.
    assert_eq!((s.replicas, s.isr, s.leader), (vec![2, 1], vec![1, 2], 2));

    // A move to a fenced broker waits; cancelled, it is as before.
    m.apply(&MetadataCommand::FenceBroker { id: 0 }).unwrap();
    reassign(&mut m, Some(vec![0, 1])).unwrap();
    assert_eq!(p(&m).adding, vec![0]);
    assert_eq!(p(&m).removing, vec![2]);
    reassign(&mut m, None).unwrap();
    let s = p(&m);
    assert!(!s.reassigning());
    assert_eq!((s.replicas.len(), s.leader), (2, 2));
    assert!(s.replicas.contains(&1) && s.replicas.contains(&2));
    assert_eq!(
        reassign(&mut m, None),
        Err(ResponseError::NoReassignmentInProgress)
    );
}

#[test]
fn bad_targets_are_refused_and_change_nothing() {
    let mut m = cluster(3);
    topic(&mut m, vec![0, 1]);
    let before = m.clone();
    for bad in [vec![], vec![1, 1], vec![1, 9]] {
        assert_eq!(
            reassign(&mut m, Some(bad)),
            Err(ResponseError::InvalidReplicaAssignment)
        );
    }
    let unknown = m.apply(&MetadataCommand::AlterReassignment {
        topic: "nope".into(),
        partition: 0,
        target: Some(vec![0]),
    });
    assert_eq!(
        unknown.map_err(|e| e.code()),
        Err(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(m, before);
}

#[test]
fn a_partition_recorded_before_reassignments_reads_back_without_them() {
    let old = r#"{"replicas":[0],"isr":[0],"leader":0,"leader_epoch":3,"partition_epoch":5}"#;
    let s: PartitionState = serde_json::from_str(old).unwrap();
    assert!(!s.reassigning());
    // And one without a reassignment writes the same fields as before.
    assert_eq!(serde_json::to_string(&s).unwrap(), old);
}
