//! The coordinator shards over a cluster: FindCoordinator names the leader
//! of the group's shard partition, only that broker coordinates the group,
//! committed offsets survive killing it, and producer ids never repeat
//! across brokers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::replication::create_with;
use super::support::Broker;
use super::{Cluster, poll, wait_for_view};

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// (error, coordinator node id) for a group, as broker `b` answers.
fn find_coordinator(b: &Broker, group: &str) -> (i16, i32) {
    let r: FindCoordinatorResponse = b.connect().call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![name(group)]),
    );
    let c = &r.coordinators[0];
    (c.error_code, c.node_id.0)
}

/// A simple (standalone) commit of `offset` for partition 0: the error code.
pub(super) fn commit(b: &Broker, group: &str, topic: &str, offset: i64) -> i16 {
    let r: OffsetCommitResponse = b.connect().call(
        ApiKey::OffsetCommit,
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(name(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(name(""))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(name(topic)))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ]),
    );
    r.topics[0].partitions[0].error_code
}

/// The committed offset of partition 0, or the group's error.
pub(super) fn committed(b: &Broker, group: &str, topic: &str) -> Result<i64, i16> {
    let r: OffsetFetchResponse = b.connect().call(
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(name(group)))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(name(topic)))
                    .with_partition_indexes(vec![0]),
            ])),
    );
    if r.error_code != 0 {
        return Err(r.error_code);
    }
    Ok(r.topics[0].partitions[0].committed_offset)
}

/// The coordinator every running node names for `group`, once they agree.
pub(super) fn agreed_coordinator(c: &Cluster, group: &str, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        let answers: BTreeSet<(i16, i32)> = c
            .nodes
            .iter()
            .filter(|b| b.child.is_some())
            .map(|b| find_coordinator(b, group))
            .collect();
        if let [(0, node)] = answers.iter().copied().collect::<Vec<_>>()[..]
            && c.nodes[node as usize].child.is_some()
        {
            return node;
        }
        assert!(
            Instant::now() < deadline,
            "no agreed coordinator for {group}: {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn committed_offsets_survive_killing_the_group_coordinator() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "in", 1, 3, &[]);
    let first = agreed_coordinator(&c, "g", Duration::from_secs(30));
    poll("the first commit", Duration::from_secs(20), || {
        commit(&c.nodes[first as usize], "g", "in", 42) == 0
    });
    assert_eq!(committed(&c.nodes[first as usize], "g", "in"), Ok(42));
    // Only the shard's leader coordinates the group.
    let other = (0..3).find(|n| *n != first).unwrap();
    assert_eq!(
        commit(&c.nodes[other as usize], "g", "in", 7),
        ResponseError::NotCoordinator.code()
    );
    assert_eq!(
        committed(&c.nodes[other as usize], "g", "in"),
        Err(ResponseError::NotCoordinator.code())
    );

    let killed = Instant::now();
    c.nodes[first as usize].kill9();
    let second = agreed_coordinator(&c, "g", Duration::from_secs(30));
    assert_ne!(second, first);
    let mut found = Err(-1);
    poll(
        "the new coordinator serving",
        Duration::from_secs(20),
        || {
            found = committed(&c.nodes[second as usize], "g", "in");
            found.is_ok()
        },
    );
    println!(
        "coordinator {first} killed; {second} serves the group after {:?}",
        killed.elapsed()
    );
    assert_eq!(found, Ok(42), "the acknowledged commit is kept");
    // And takes new commits, which the old coordinator finds on its return.
    assert_eq!(commit(&c.nodes[second as usize], "g", "in", 43), 0);
    c.nodes[first as usize].spawn();
    let now = agreed_coordinator(&c, "g", Duration::from_secs(30));
    let mut after = Err(-1);
    poll(
        "the group served after the restart",
        Duration::from_secs(20),
        || {
            after = committed(&c.nodes[now as usize], "g", "in");
            after.is_ok()
        },
    );
    assert_eq!(after, Ok(43));
}

#[test]
fn producer_ids_are_unique_across_brokers() {
    let c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    let mut seen = BTreeSet::new();
    for round in 0..40 {
        for b in &c.nodes {
            let r: InitProducerIdResponse = b.connect().call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            );
            assert_eq!(r.error_code, 0, "round {round}");
            assert!(
                seen.insert(r.producer_id.0),
                "producer id {} handed out twice",
                r.producer_id.0
            );
        }
    }
}
