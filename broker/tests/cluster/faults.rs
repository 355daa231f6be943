//! Faults a cluster must survive without losing an acknowledged write: a
//! leader frozen (SIGSTOP, as a long pause or a hung disk) while the others
//! carry on, and a rolling restart of every broker under load, with a
//! consumer group's committed offset kept throughout.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, Instant};

use super::coordinator::{agreed_coordinator, commit, committed};
use super::replication::{create_with, leader_when_in_sync, read_all, write_acked};
use super::support::{self, Broker};
use super::{Cluster, poll, wait_for_view};

/// Every segment file of `topic`-0 on node `b`, in order.
pub(super) fn segments(b: &Broker, topic: &str) -> Vec<Vec<u8>> {
    let dir = b.data_dir().join(format!("{topic}-0"));
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| {
            let mut v = Vec::new();
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut v))
                .map(|_| v)
                .unwrap_or_default()
        })
        .collect()
}

/// Every acknowledged value is in the leader's log, offsets dense, and
/// once quiet every replica holds the same bytes.
pub(super) fn check_nothing_lost(c: &Cluster, topic: &str, acked: &BTreeSet<String>) {
    let leader = leader_when_in_sync(c, topic, 3);
    let found = read_all(&c.nodes[leader as usize], topic);
    let values: BTreeSet<String> = found.values().cloned().collect();
    let lost: Vec<&String> = acked.difference(&values).collect();
    println!(
        "{topic}: acked {} found {} lost {}",
        acked.len(),
        found.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        found.keys().copied().eq(0..found.len() as i64),
        "offsets are not dense"
    );
    poll(
        "replicas are byte-identical",
        Duration::from_secs(30),
        || {
            let s: Vec<_> = c.nodes.iter().map(|b| segments(b, topic)).collect();
            !s[0].is_empty() && s.iter().all(|x| *x == s[0])
        },
    );
}

#[test]
fn a_frozen_leader_is_replaced_and_loses_nothing_acknowledged_when_it_thaws() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "f", 1, 3, &[("min.insync.replicas", "2")]);
    let first = leader_when_in_sync(&c, "f", 3);
    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    write_acked(&c, "f", 100, &mut acked, &mut attempts);

    // A write sent to the leader just before it freezes, answered after.
    let port = c.nodes[first as usize].kafka_port;
    let stale = std::thread::spawn(move || {
        let mut client = support::connect(port);
        let records = support::batch(&[b"stale"], kafka_protocol::records::Compression::None);
        support::try_produce(&mut client, "f", 0, -1, records).map(|(code, _)| code)
    });
    let frozen = Instant::now();
    c.nodes[first as usize].pause();
    let second = leader_when_in_sync(&c, "f", 2);
    assert_ne!(second, first);
    println!(
        "leader {first} frozen; {second} leads after {:?}",
        frozen.elapsed()
    );
    write_acked(&c, "f", 100, &mut acked, &mut attempts);
    // A frozen process still accepts connections (its kernel does): it is
    // fenced when its session runs out, never taken for dead by a dial.
    assert!(
        c.nodes
            .iter()
            .any(|b| b.log().contains("heartbeats stopped"))
    );
    assert!(
        !c.nodes
            .iter()
            .any(|b| b.log().contains("refuses connections"))
    );

    c.nodes[first as usize].resume();
    let answer = stale.join().unwrap();
    println!("the frozen leader's write was answered {answer:?}");
    if answer == Some(0) {
        acked.insert("stale".into());
    }
    write_acked(&c, "f", 50, &mut acked, &mut attempts);
    check_nothing_lost(&c, "f", &acked);
}

#[test]
fn a_rolling_restart_loses_no_write_and_keeps_the_group_offset() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "r", 1, 3, &[("min.insync.replicas", "2")]);
    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    let mut offset = 0;
    for node in 0..3 {
        write_acked(&c, "r", 50, &mut acked, &mut attempts);
        offset += 50;
        let coordinator = agreed_coordinator(&c, "g", Duration::from_secs(30));
        poll("a commit", Duration::from_secs(20), || {
            commit(&c.nodes[coordinator as usize], "g", "r", offset) == 0
        });
        assert!(c.nodes[node].stop(), "broker {node} stopped uncleanly");
        write_acked(&c, "r", 50, &mut acked, &mut attempts);
        let coordinator = agreed_coordinator(&c, "g", Duration::from_secs(30));
        let mut seen = Err(-1);
        poll("the group served", Duration::from_secs(20), || {
            seen = committed(&c.nodes[coordinator as usize], "g", "r");
            seen.is_ok()
        });
        assert_eq!(seen, Ok(offset), "with broker {node} down");
        c.nodes[node].spawn();
        leader_when_in_sync(&c, "r", 3);
    }
    check_nothing_lost(&c, "r", &acked);
}

/// DeleteRecords v2 of partition 0 below `offset`, on node `b`: the error code.
fn delete_records(b: &Broker, topic: &str, offset: i64) -> i16 {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let r: DeleteRecordsResponse = b.connect().call(
        ApiKey::DeleteRecords,
        2,
        &DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(offset),
                    ]),
            ]),
    );
    r.topics[0].partitions[0].error_code
}

#[test]
fn a_replica_back_after_its_leaders_log_start_passed_it_starts_there_and_rejoins() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "d", 1, 3, &[("min.insync.replicas", "2")]);
    let first = leader_when_in_sync(&c, "d", 3);
    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    write_acked(&c, "d", 20, &mut acked, &mut attempts);
    let away = (0..3).find(|n| *n != first).unwrap() as usize;
    assert!(c.nodes[away].stop());
    write_acked(&c, "d", 50, &mut acked, &mut attempts);
    let leader = leader_when_in_sync(&c, "d", 2);
    // Only the leader moves the log start; a follower refuses.
    let follower = (0..3)
        .find(|n| *n != leader && *n as usize != away)
        .unwrap();
    assert_eq!(
        delete_records(&c.nodes[follower as usize], "d", 60),
        kafka_protocol::error::ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(delete_records(&c.nodes[leader as usize], "d", 60), 0);
    c.nodes[away].spawn();
    leader_when_in_sync(&c, "d", 3);
    let dir = c.nodes[away].data_dir().join("d-0");
    poll(
        "the returned replica starts at the leader's log start",
        Duration::from_secs(20),
        || {
            dir.join("00000000000000000060.log").exists()
                && segments(&c.nodes[away], "d").len() == 1
        },
    );
}

/// ElectLeaders v2 (preferred) for partition 0 of `topic`, or for every
/// partition (None): (topic, partition, error) per answered partition.
fn elect_preferred(b: &Broker, topic: Option<&str>) -> Vec<(String, i32, i16)> {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let r: ElectLeadersResponse = b.connect().call(
        ApiKey::ElectLeaders,
        2,
        &ElectLeadersRequest::default()
            .with_election_type(0)
            .with_timeout_ms(10_000)
            .with_topic_partitions(topic.map(|t| {
                vec![
                    TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(vec![0]),
                ]
            })),
    );
    assert_eq!(r.error_code, 0);
    r.replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| (t.topic.to_string(), p.partition_id, p.error_code))
        })
        .collect()
}

#[test]
fn a_preferred_election_gives_leadership_back_to_the_first_replica() {
    use kafka_protocol::error::ResponseError;
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "p", 1, 3, &[]);
    let preferred = leader_when_in_sync(&c, "p", 3);
    assert_eq!(
        elect_preferred(&c.nodes[0], Some("p")),
        [("p".to_string(), 0, ResponseError::ElectionNotNeeded.code())]
    );
    c.nodes[preferred as usize].kill9();
    let other = leader_when_in_sync(&c, "p", 2);
    assert_ne!(other, preferred);
    // Back, in sync, but not leading: until asked.
    c.nodes[preferred as usize].spawn();
    assert_eq!(leader_when_in_sync(&c, "p", 3), other);
    let asked = (0..3).find(|n| *n != preferred).unwrap() as usize;
    let answered = elect_preferred(&c.nodes[asked], None);
    assert!(answered.contains(&("p".to_string(), 0, 0)), "{answered:?}");
    poll(
        "the preferred replica leads again",
        Duration::from_secs(20),
        || leader_when_in_sync(&c, "p", 3) == preferred,
    );
}

#[test]
fn leadership_goes_back_to_the_preferred_replica_by_itself() {
    // auto.leader.rebalance.enable with a 1 s check instead of Kafka's 300 s.
    let mut c = Cluster::start(
        3,
        &[
            "--sql-enabled",
            "false",
            "--leader-imbalance-check-interval-seconds",
            "1",
        ],
    );
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "auto", 1, 3, &[]);
    let preferred = leader_when_in_sync(&c, "auto", 3);
    c.nodes[preferred as usize].kill9();
    let other = leader_when_in_sync(&c, "auto", 2);
    assert_ne!(other, preferred);
    c.nodes[preferred as usize].spawn();
    poll(
        "the preferred replica leads again without an ElectLeaders",
        Duration::from_secs(30),
        || leader_when_in_sync(&c, "auto", 3) == preferred,
    );
}
