//! Partition reassignment (AlterPartitionReassignments and
//! ListPartitionReassignments, KIP-455): a partition moves to other
//! brokers with its data while clients keep writing, the old copy goes,
//! a move that cannot finish is listed and can be cancelled, and bad
//! targets are refused with Kafka's errors.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_response::OngoingPartitionReassignment;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::faults::segments;
use super::replication::{create_with, leader_when_in_sync, read_all, write_acked};
use super::support::Broker;
use super::{Cluster, poll, topic_view, wait_for_view};

/// AlterPartitionReassignments v1 for partition 0 of `topic` through `b`:
/// (top-level error, the partition's error).
pub(super) fn reassign(
    b: &Broker,
    topic: &str,
    target: Option<&[i32]>,
    allow_rf_change: bool,
) -> (i16, i16) {
    let r: AlterPartitionReassignmentsResponse = b.connect().call(
        ApiKey::AlterPartitionReassignments,
        1,
        &AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(10_000)
            .with_allow_replication_factor_change(allow_rf_change)
            .with_topics(vec![
                ReassignableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(
                                target.map(|t| t.iter().map(|b| BrokerId(*b)).collect()),
                            ),
                    ]),
            ]),
    );
    (r.error_code, r.responses[0].partitions[0].error_code)
}

/// Every reassignment under way, as `b` lists them: (topic, partition).
pub(super) fn ongoing(b: &Broker) -> Vec<(String, OngoingPartitionReassignment)> {
    let r: ListPartitionReassignmentsResponse = b.connect().call(
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
    );
    assert_eq!(r.error_code, 0);
    r.topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name.to_string();
            t.partitions.into_iter().map(move |p| (name.clone(), p))
        })
        .collect()
}

fn ids(v: &[BrokerId]) -> Vec<i32> {
    v.iter().map(|b| b.0).collect()
}

#[test]
fn a_partition_moves_with_its_data_while_clients_write_and_the_old_copy_goes() {
    let c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "m", 1, 1, &[]);
    let from = leader_when_in_sync(&c, "m", 1);
    let to: Vec<i32> = (0..3).filter(|b| *b != from).collect();
    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    write_acked(&c, "m", 200, &mut acked, &mut attempts);

    // One replica on `from` becomes two elsewhere: copied, then moved.
    assert_eq!(reassign(&c.nodes[1], "m", Some(&to), true), (0, 0));
    write_acked(&c, "m", 200, &mut acked, &mut attempts);
    poll("the move completes", Duration::from_secs(30), || {
        c.nodes.iter().all(|b| {
            topic_view(b, "m").is_some_and(|v| {
                let (leader, replicas, isr) = &v[0];
                *replicas == to
                    && isr.iter().copied().collect::<BTreeSet<_>>() == to.iter().copied().collect()
                    && to.contains(leader)
            })
        }) && ongoing(&c.nodes[0]).is_empty()
    });
    write_acked(&c, "m", 100, &mut acked, &mut attempts);

    // Everything acknowledged, before, during and after, is on the new
    // leader, and the two new replicas hold the same bytes.
    let leader = leader_when_in_sync(&c, "m", 2);
    let found: BTreeSet<String> = read_all(&c.nodes[leader as usize], "m")
        .into_values()
        .collect();
    let lost: Vec<&String> = acked.difference(&found).collect();
    println!(
        "m: acked {} found {} lost {}",
        acked.len(),
        found.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    poll(
        "the new replicas are byte-identical",
        Duration::from_secs(30),
        || {
            let a = segments(&c.nodes[to[0] as usize], "m");
            !a.is_empty() && a == segments(&c.nodes[to[1] as usize], "m")
        },
    );
    // The broker it left deletes its copy.
    poll(
        "the old replica's log is deleted",
        Duration::from_secs(30),
        || !c.nodes[from as usize].data_dir().join("m-0").exists(),
    );
}

#[test]
fn a_move_that_cannot_finish_is_listed_and_cancelled_and_bad_targets_are_refused() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "w", 1, 1, &[]);
    let home = leader_when_in_sync(&c, "w", 1);
    let away = (0..3).find(|b| *b != home).unwrap();
    let asker = (0..3).find(|b| *b != home && *b != away).unwrap();
    c.nodes[away as usize].kill9();
    let rest: Vec<i32> = (0..3).filter(|b| *b != away).collect();
    wait_for_view(&c, &rest, Duration::from_secs(20));

    // A move onto a dead broker waits, listed, and writes go on.
    let b = &c.nodes[asker as usize];
    assert_eq!(reassign(b, "w", Some(&[home, away]), true), (0, 0));
    let listed = ongoing(b);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (topic, p) = &listed[0];
    assert_eq!(topic, "w");
    assert_eq!(
        (
            ids(&p.replicas),
            ids(&p.adding_replicas),
            ids(&p.removing_replicas)
        ),
        (vec![home, away], vec![away], vec![])
    );
    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    write_acked(&c, "w", 20, &mut acked, &mut attempts);

    // Cancelled, it is as before; a second cancel has nothing to cancel.
    assert_eq!(reassign(b, "w", None, true), (0, 0));
    assert!(ongoing(b).is_empty());
    poll(
        "the replicas are as before",
        Duration::from_secs(10),
        || topic_view(b, "w").is_some_and(|v| v[0].1 == vec![home]),
    );
    assert_eq!(
        reassign(b, "w", None, true).1,
        ResponseError::NoReassignmentInProgress.code()
    );

    // Bad targets change nothing.
    let invalid = ResponseError::InvalidReplicaAssignment.code();
    assert_eq!(reassign(b, "w", Some(&[]), true).1, invalid);
    assert_eq!(reassign(b, "w", Some(&[home, home]), true).1, invalid);
    assert_eq!(reassign(b, "w", Some(&[home, 42]), true).1, invalid);
    assert_eq!(
        reassign(b, "nope", Some(&[home]), true).1,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        reassign(b, "w", Some(&[home, asker]), false).1,
        ResponseError::InvalidReplicationFactor.code()
    );
    assert!(ongoing(b).is_empty());
    assert_eq!(topic_view(b, "w").unwrap()[0].1, vec![home]);
}
