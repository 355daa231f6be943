//! Eligible leader replicas (KIP-966) with real brokers: a replica that
//! left the in-sync set below `min.insync.replicas` leads when the last
//! in-sync one is gone, without losing an acknowledged write; one that
//! crashed is not eligible any more. The partition lives on brokers 0 and
//! 1; broker 2 is the third voter, so the metadata keeps a quorum.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::faults::segments;
use super::replication::{leader_when_in_sync, produce, read_all, write_acked};
use super::support::Broker;
use super::{Cluster, poll, wait_for_view};

const TOPIC: &str = "elr";

/// `TOPIC` with one partition on brokers [0, 1], with `configs`.
fn create(b: &Broker, configs: &[(&'static str, &'static str)]) {
    let r: CreateTopicsResponse = b.connect().call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(StrBytes::from_static_str(TOPIC).into())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![
                        CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(0), BrokerId(1)]),
                    ])
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_static_str(k))
                                    .with_value(Some(StrBytes::from_static_str(v)))
                            })
                            .collect(),
                    ),
            ])
            .with_timeout_ms(10_000),
    );
    assert_eq!(r.topics[0].error_code, 0, "creating {TOPIC}");
}

/// (leader, isr, elr, last known elr) of partition 0, as `b` describes it.
type Described = (i32, Vec<i32>, Vec<i32>, Vec<i32>);

fn describe(b: &Broker) -> Described {
    let r: DescribeTopicPartitionsResponse = b.connect().call(
        ApiKey::DescribeTopicPartitions,
        0,
        &DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                TopicRequest::default().with_name(StrBytes::from_static_str(TOPIC).into()),
            ])
            .with_response_partition_limit(10),
    );
    let p = &r.topics[0].partitions[0];
    let ids = |v: &Option<Vec<BrokerId>>| -> Vec<i32> { v.iter().flatten().map(|b| b.0).collect() };
    (
        p.leader_id.0,
        p.isr_nodes.iter().map(|b| b.0).collect(),
        ids(&p.eligible_leader_replicas),
        ids(&p.last_known_elr),
    )
}

fn wait_described(b: &Broker, want: Described) {
    let mut last = None;
    poll(
        &format!("partition state {want:?}"),
        Duration::from_secs(30),
        || {
            let d = describe(b);
            let ok = d == want;
            last = Some(d);
            ok
        },
    );
}

/// Brokers 0 and 1 hold `acked`; 1 then stops, cleanly or not (the
/// in-sync set falls to {0}, below its minimum of 2, and 1 becomes
/// eligible) and 0 is killed. Returns the acknowledged values.
fn lose_both(
    c: &mut Cluster,
    configs: &[(&'static str, &'static str)],
    stop_cleanly: bool,
) -> BTreeSet<String> {
    wait_for_view(c, &[0, 1, 2], Duration::from_secs(20));
    create(&c.nodes[2], configs);
    assert_eq!(leader_when_in_sync(c, TOPIC, 2), 0);
    let (mut acked, mut attempts) = (BTreeSet::new(), 0);
    write_acked(c, TOPIC, 100, &mut acked, &mut attempts);
    if stop_cleanly {
        assert!(c.nodes[1].stop());
    } else {
        c.nodes[1].kill9();
    }
    // The leader checks the in-sync set it has applied, which may trail
    // the controller's by a metadata round: wait for both.
    for b in [2, 0] {
        wait_described(&c.nodes[b], (0, vec![0], vec![1], vec![]));
    }
    assert_eq!(
        produce(&c.nodes[0], TOPIC, "one in sync is too few"),
        Some(ResponseError::NotEnoughReplicas.code())
    );
    c.nodes[0].kill9();
    acked
}

/// Once both replicas are back in sync: every acknowledged value is
/// there, offsets dense, the two logs byte-identical.
fn check_nothing_lost(c: &Cluster, acked: &BTreeSet<String>) {
    let leader = leader_when_in_sync(c, TOPIC, 2);
    let found = read_all(&c.nodes[leader as usize], TOPIC);
    let values: BTreeSet<String> = found.values().cloned().collect();
    let lost: Vec<&String> = acked.difference(&values).collect();
    println!(
        "{TOPIC}: acked {} found {} lost {}",
        acked.len(),
        found.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(found.keys().copied().eq(0..found.len() as i64));
    poll(
        "replicas are byte-identical",
        Duration::from_secs(30),
        || {
            let (a, b) = (segments(&c.nodes[0], TOPIC), segments(&c.nodes[1], TOPIC));
            !a.is_empty() && a == b
        },
    );
}

#[test]
fn an_eligible_replica_leads_when_the_last_in_sync_one_is_lost() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    let mut acked = lose_both(&mut c, &[("min.insync.replicas", "2")], true);
    // 1 comes back from a clean shutdown while 0 is still dead: before
    // KIP-966 the partition would wait for 0; now 1 leads, alone in sync,
    // and 0 (the last in sync) is the one eligible.
    c.nodes[1].spawn();
    for b in [2, 1] {
        wait_described(&c.nodes[b], (1, vec![1], vec![0], vec![]));
    }
    assert_eq!(
        produce(&c.nodes[1], TOPIC, "still too few"),
        Some(ResponseError::NotEnoughReplicas.code())
    );
    // 0 returns (after a crash), follows 1 and catches up: the set is
    // whole again, no one needs to be eligible, acks=all works.
    c.nodes[0].spawn();
    wait_described(&c.nodes[2], (1, vec![1, 0], vec![], vec![]));
    let mut attempts = 1000;
    write_acked(&c, TOPIC, 20, &mut acked, &mut attempts);
    check_nothing_lost(&c, &acked);
}

#[test]
fn a_replica_back_from_a_crash_is_not_eligible_and_the_last_in_sync_one_leads_again() {
    // The minimum from the brokers' flag this time, which the controller
    // records in the metadata for every voter's election rules.
    let mut c = Cluster::start(3, &["--sql-enabled", "false", "--min-insync-replicas", "2"]);
    let acked = lose_both(&mut c, &[], false);
    // 1 crashed: what it had not fsynced may be gone, so it may not lead.
    // Registered and unfenced again, it leaves the partition without a
    // leader, and is only "last known".
    c.nodes[1].spawn();
    // Serving means unfenced, and its own metadata has applied that.
    assert_eq!(describe(&c.nodes[1]), (-1, vec![0], vec![], vec![1]));
    // 0, the last in-sync replica, leads again when it returns.
    c.nodes[0].spawn();
    assert_eq!(leader_when_in_sync(&c, TOPIC, 2), 0);
    check_nothing_lost(&c, &acked);
}
