//! Replicated partitions: acks=all writes survive losing the leader,
//! replicas end byte-identical, min.insync.replicas is enforced,
//! replica fetches to the wrong broker or epoch are refused, and a client
//! that reached a follower is told the leader (KIP-951).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::support::{self, Broker};
use super::{Cluster, poll, topic_view, wait_for_view};

pub(super) fn create_with(
    b: &Broker,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let r: CreateTopicsResponse = b.connect().call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(StrBytes::from_string(name.to_string()).into())
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.to_string()))
                                    .with_value(Some(StrBytes::from_string(v.to_string())))
                            })
                            .collect(),
                    ),
            ])
            .with_timeout_ms(10_000),
    );
    assert_eq!(r.topics[0].error_code, 0, "creating {name}");
}

/// The leader of partition 0 as the running nodes agree, once `isr`
/// replicas are in sync (0: any number).
pub(super) fn leader_when_in_sync(c: &Cluster, topic: &str, isr: usize) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views: Vec<_> = c
            .nodes
            .iter()
            .filter(|b| b.child.is_some())
            .filter_map(|b| topic_view(b, topic))
            .collect();
        if let Some(first) = views.first() {
            let (leader, _, in_sync) = &first[0];
            if *leader >= 0
                && (isr == 0 || in_sync.len() == isr)
                && views.iter().all(|v| v[0].0 == *leader)
                && c.nodes[*leader as usize].child.is_some()
                && leads(&c.nodes[*leader as usize], topic)
            {
                return *leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader with {isr} in sync: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `b` serves partition 0 as its leader. Metadata shows a change as soon
/// as it is applied, the broker takes up the role just after (as Kafka's
/// metadata cache and replica manager): a client may see
/// NOT_LEADER_OR_FOLLOWER in between, and retries.
fn leads(b: &Broker, topic: &str) -> bool {
    let r: FetchResponse = b
        .connect()
        .call(ApiKey::Fetch, 12, &fetch(topic, 0, -1, -1));
    r.responses
        .first()
        .and_then(|t| t.partitions.first())
        .is_some_and(|p| {
            p.error_code != ResponseError::NotLeaderOrFollower.code()
                && p.error_code != ResponseError::UnknownTopicOrPartition.code()
        })
}

/// Partition 0's leader and leader epoch, once the nodes agree on a leader.
fn leader_and_epoch(c: &Cluster, topic: &str) -> (i32, i32) {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    let leader = leader_when_in_sync(c, topic, 0);
    let r: MetadataResponse = c.nodes[leader as usize].connect().call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(StrBytes::from_string(topic.to_string()).into())),
        ])),
    );
    let p = &r.topics[0].partitions[0];
    (p.leader_id.0, p.leader_epoch)
}

/// Every record of partition 0 as its leader serves it: offset to value.
pub(super) fn read_all(b: &Broker, topic: &str) -> BTreeMap<i64, String> {
    let mut c = b.connect();
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let req = fetch(topic, offset, -1, -1);
        let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {topic} at {offset}");
        let Some(mut records) = p.records.clone().filter(|r| !r.is_empty()) else {
            return out;
        };
        let before = offset;
        for batch in RecordBatchDecoder::decode_all(&mut records).expect("good batches") {
            for r in batch.records {
                let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                out.insert(r.offset, v.unwrap_or_default());
                offset = offset.max(r.offset + 1);
            }
        }
        if offset >= p.high_watermark || offset == before {
            return out;
        }
    }
}

fn fetch(topic: &str, offset: i64, replica: i32, epoch: i32) -> FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    FetchRequest::default()
        .with_replica_id(BrokerId(replica))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(8 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(epoch)
                        .with_partition_max_bytes(4 << 20),
                ]),
        ])
}

/// Writes `n` records with acks=all to partition 0's current leader,
/// retrying refusals; the acknowledged values go into `acked`.
pub(super) fn write_acked(
    c: &Cluster,
    topic: &str,
    n: usize,
    acked: &mut BTreeSet<String>,
    attempts: &mut usize,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while i < n {
        assert!(Instant::now() < deadline, "writes stalled");
        *attempts += 1;
        let v = format!("v-{attempts}");
        let leader = leader_when_in_sync(c, topic, 0);
        match produce(&c.nodes[leader as usize], topic, &v) {
            Some(0) => {
                acked.insert(v);
                i += 1;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// acks=all produce of one record to node `b`: the error code.
pub(super) fn produce(b: &Broker, topic: &str, value: &str) -> Option<i16> {
    let records = support::batch(&[value.as_bytes()], Compression::None);
    std::net::TcpStream::connect(("127.0.0.1", b.kafka_port)).ok()?;
    let mut c = b.connect();
    support::try_produce(&mut c, topic, 0, -1, records).map(|(code, _)| code)
}

#[test]
fn acknowledged_writes_survive_killing_the_leader_and_replicas_end_identical() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "q", 1, 3, &[("min.insync.replicas", "2")]);
    let first = leader_when_in_sync(&c, "q", 3);

    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    let write = |c: &Cluster, n, acked: &mut BTreeSet<String>, attempts: &mut usize| {
        write_acked(c, "q", n, acked, attempts)
    };
    write(&c, 200, &mut acked, &mut attempts);
    let killed = Instant::now();
    c.nodes[first as usize].kill9();
    // The survivors: the killed broker fenced, a new leader in sync with one other.
    let second = leader_when_in_sync(&c, "q", 2);
    assert_ne!(second, first);
    println!(
        "leader {first} killed; {second} leads after {:?}",
        killed.elapsed()
    );
    write(&c, 200, &mut acked, &mut attempts);

    // The old leader comes back, truncates to the new leader's log if it
    // must, catches up and rejoins the in-sync set.
    c.nodes[first as usize].spawn();
    let leader = leader_when_in_sync(&c, "q", 3);
    let found = read_all(&c.nodes[leader as usize], "q");
    let values: BTreeSet<String> = found.values().cloned().collect();
    let lost: Vec<&String> = acked.difference(&values).collect();
    let dense = found.keys().copied().eq(0..found.len() as i64);
    println!(
        "acked {} attempted {attempts} found {} lost {}",
        acked.len(),
        found.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(dense, "offsets are not dense");

    // Once quiet, every replica's segment holds the same bytes.
    let segment =
        |b: &Broker| std::fs::read(b.data_dir().join("q-0/00000000000000000000.log")).ok();
    poll(
        "replicas are byte-identical",
        Duration::from_secs(20),
        || {
            let s: Vec<_> = c.nodes.iter().map(segment).collect();
            s[0].is_some() && s.iter().all(|x| *x == s[0])
        },
    );
}

#[test]
fn min_insync_replicas_refuses_acks_all_when_too_few_are_in_sync() {
    let mut c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "strict", 1, 3, &[("min.insync.replicas", "3")]);
    let leader = leader_when_in_sync(&c, "strict", 3);
    assert_eq!(
        produce(&c.nodes[leader as usize], "strict", "all three"),
        Some(0)
    );
    let follower = (0..3).find(|b| *b != leader).unwrap();
    c.nodes[follower as usize].kill9();
    // Fenced, it leaves the in-sync set: two of three are too few.
    let leader = leader_when_in_sync(&c, "strict", 2);
    assert_eq!(
        produce(&c.nodes[leader as usize], "strict", "only two"),
        Some(ResponseError::NotEnoughReplicas.code())
    );
    // acks=1 does not need them.
    let records = support::batch(&[b"acks one"], Compression::None);
    let (code, _) = support::try_produce(
        &mut c.nodes[leader as usize].connect(),
        "strict",
        0,
        1,
        records,
    )
    .unwrap();
    assert_eq!(code, 0);
}

#[test]
fn replica_fetches_to_the_wrong_broker_or_epoch_are_refused() {
    let c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "r", 1, 3, &[]);
    let leader = leader_when_in_sync(&c, "r", 3);
    let follower = (0..3).find(|b| *b != leader).unwrap();
    let other = (0..3).find(|b| *b != leader && *b != follower).unwrap();
    let code = |node: i32, replica: i32, epoch: i32| {
        let r: FetchResponse = c.nodes[node as usize].connect().call(
            ApiKey::Fetch,
            12,
            &fetch("r", 0, replica, epoch),
        );
        r.responses[0].partitions[0].error_code
    };
    // A follower's fetch to another follower.
    assert_eq!(
        code(other, follower, 0),
        ResponseError::NotLeaderOrFollower.code()
    );
    // A consumer's fetch to a follower.
    assert_eq!(
        code(other, -1, -1),
        ResponseError::NotLeaderOrFollower.code()
    );
    // An epoch from the future; the current one.
    assert_eq!(
        code(leader, follower, 7),
        ResponseError::UnknownLeaderEpoch.code()
    );
    // The current epoch (0 unless a loaded machine moved the leader: then
    // the new leader is asked with its epoch).
    let (leader, epoch) = leader_and_epoch(&c, "r");
    let follower = (0..3).find(|b| *b != leader).unwrap();
    assert_eq!(code(leader, follower, epoch), 0);
    // A broker that is not a replica of it.
    assert_eq!(
        code(leader, 9, epoch),
        ResponseError::NotLeaderOrFollower.code()
    );
}

#[test]
fn a_produce_or_fetch_sent_to_a_follower_names_the_leader_and_its_address() {
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, produce_request};
    let c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "h", 1, 3, &[]);
    let (leader, epoch) = leader_and_epoch(&c, "h");
    let follower = (0..3).find(|b| *b != leader).unwrap();
    let leader_port = c.nodes[leader as usize].kafka_port as i32;

    // Produce v10+ (KIP-951): the refused partition names the leader, the
    // response its address; v9 has neither.
    let produce = |version: i16| -> ProduceResponse {
        let records = support::batch(&[b"to the wrong broker"], Compression::None);
        c.nodes[follower as usize].connect().call(
            ApiKey::Produce,
            version,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("h")))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(records)),
                        ]),
                ]),
        )
    };
    // (error, (hinted leader, epoch), [(endpoint id, port)]) as told.
    let told = (
        ResponseError::NotLeaderOrFollower.code(),
        (leader, epoch),
        vec![(leader, leader_port)],
    );
    let r = produce(11);
    let p = &r.responses[0].partition_responses[0];
    let ends = r.node_endpoints.iter().map(|n| (n.node_id.0, n.port));
    assert_eq!(
        (
            p.error_code,
            (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
            ends.collect::<Vec<_>>()
        ),
        told
    );
    let old = produce(9);
    assert_eq!(
        old.responses[0].partition_responses[0].error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert!(old.node_endpoints.is_empty());

    // A consumer's Fetch v16: the same, from the sendfile encoder.
    let r: FetchResponse = c.nodes[follower as usize].connect().call(
        ApiKey::Fetch,
        16,
        &fetch_by_id(&c, "h", follower),
    );
    let p = &r.responses[0].partitions[0];
    let ends = r.node_endpoints.iter().map(|n| (n.node_id.0, n.port));
    assert_eq!(
        (
            p.error_code,
            (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
            ends.collect::<Vec<_>>()
        ),
        told
    );
    // The leader itself serves it with no hint.
    let r: FetchResponse =
        c.nodes[leader as usize]
            .connect()
            .call(ApiKey::Fetch, 16, &fetch_by_id(&c, "h", leader));
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.current_leader.leader_id.0), (0, -1));
    assert!(r.node_endpoints.is_empty());
}

/// A consumer's fetch of partition 0 from offset 0, naming the topic by
/// its id (v13+) as node `via` knows it.
fn fetch_by_id(c: &Cluster, topic: &str, via: i32) -> FetchRequest {
    use kafka_protocol::messages::MetadataResponse;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let m: MetadataResponse = c.nodes[via as usize].connect().call(
        ApiKey::Metadata,
        12,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(StrBytes::from_string(topic.to_string()).into())),
        ])),
    );
    let mut req = fetch(topic, 0, -1, -1);
    req.topics[0].topic_id = m.topics[0].topic_id;
    req
}
