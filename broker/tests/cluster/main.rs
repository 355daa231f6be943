//! Karnak clusters of real `karnak` processes on loopback (issue 18): they
//! form one metadata group, list each other to clients, fence a broker
//! that dies and take it back when it returns.

#[path = "../support/mod.rs"]
mod support;

mod coordinator;
mod elr;
mod faults;
mod partition;
mod reassign;
mod replication;
mod throttle;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
};
use support::{Broker, free_port};

/// Nodes started together, each told the same voters.
struct Cluster {
    nodes: Vec<Broker>,
}

impl Cluster {
    fn start(n: usize, extra: &[&str]) -> Cluster {
        Self::start_as(n, extra, |_| None)
    }

    /// As `start`, node `i` running as user `uid(i)` where given.
    fn start_as(n: usize, extra: &[&str], uid: impl Fn(usize) -> Option<u32>) -> Cluster {
        for _ in 0..3 {
            // Distinct ports: free_port() may hand out one port twice, and
            // two voters on one address wait for a quorum that never comes.
            let mut ports = BTreeSet::new();
            while ports.len() < n {
                ports.insert(free_port());
            }
            let peers = ports
                .iter()
                .enumerate()
                .map(|(i, port)| format!("{i}@127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(",");
            let mut nodes: Vec<Broker> = (0..n)
                .map(|i| {
                    let id = i.to_string();
                    let mut args = vec![
                        "--node-id",
                        &id,
                        "--cluster-id",
                        "karnak-test-cluster",
                        "--cluster-peers",
                        &peers,
                    ];
                    args.extend_from_slice(extra);
                    let mut b = Broker::unstarted(None, &args);
                    b.uid = uid(i);
                    b
                })
                .collect();
            let from: Vec<usize> = nodes.iter_mut().map(|b| b.launch()).collect();
            let ready: Vec<Result<(), String>> = nodes
                .iter_mut()
                .zip(from)
                .map(|(b, f)| b.wait_ready(f))
                .collect();
            match ready.iter().find_map(|r| r.as_ref().err()) {
                None => return Cluster { nodes },
                // A port free_port() found was taken meanwhile: new ports.
                Some(log) if log.to_lowercase().contains("in use") => continue,
                Some(log) => panic!("a node exited early: {log}"),
            }
        }
        panic!("no free ports for a cluster in three tries");
    }
}

/// (broker ids, controller id) as node `b` answers Metadata.
fn metadata_view(b: &Broker) -> (BTreeSet<i32>, i32) {
    let r: MetadataResponse = b
        .connect()
        .call(ApiKey::Metadata, 12, &MetadataRequest::default());
    let ids = r.brokers.iter().map(|x| x.node_id.0).collect();
    (ids, r.controller_id.0)
}

/// Polls until every running node lists exactly `want` and agrees on a
/// controller among them; returns the controller.
fn wait_for_view(c: &Cluster, want: &[i32], within: Duration) -> i32 {
    let want: BTreeSet<i32> = want.iter().copied().collect();
    let deadline = Instant::now() + within;
    loop {
        let views: Vec<(BTreeSet<i32>, i32)> = c
            .nodes
            .iter()
            .filter(|b| b.child.is_some())
            .map(metadata_view)
            .collect();
        let controller = views[0].1;
        if views
            .iter()
            .all(|(ids, ctl)| *ids == want && *ctl == controller && want.contains(ctl))
        {
            return controller;
        }
        assert!(
            Instant::now() < deadline,
            "nodes never agreed on brokers {want:?}: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_brokers_list_each_other_fence_a_dead_one_and_take_it_back() {
    let mut c = Cluster::start(3, &[]);
    let controller = wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));

    // DescribeCluster agrees, with each broker's own Kafka address.
    let d: DescribeClusterResponse = c.nodes[0].connect().call(
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default().with_endpoint_type(1),
    );
    assert_eq!(d.cluster_id.as_str(), "karnak-test-cluster");
    let ports: BTreeSet<i32> = d.brokers.iter().map(|b| b.port).collect();
    let want: BTreeSet<i32> = c.nodes.iter().map(|b| b.kafka_port as i32).collect();
    assert_eq!(ports, want);

    // Losing the controller: the others elect a new one, which fences it
    // at once: its address refuses a dial (a killed process), so there is
    // no session to wait out.
    let killed = Instant::now();
    c.nodes[controller as usize].kill9();
    let rest: Vec<i32> = (0..3).filter(|i| *i != controller).collect();
    let new_controller = wait_for_view(&c, &rest, Duration::from_secs(20));
    println!(
        "controller {controller} killed; fenced and replaced by {new_controller} in {:?}",
        killed.elapsed()
    );
    assert!(
        c.nodes[new_controller as usize]
            .log()
            .contains("its cluster listener refuses connections")
    );

    // It comes back as a new incarnation and is listed again.
    c.nodes[controller as usize].spawn();
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));

    // A clean stop fences at once (controlled shutdown), not a session later.
    let leaving = rest[0];
    assert!(c.nodes[leaving as usize].stop());
    let left: Vec<i32> = (0..3).filter(|i| *i != leaving).collect();
    wait_for_view(&c, &left, Duration::from_secs(20));
}

#[test]
fn a_node_from_another_cluster_is_refused() {
    let c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    let peers = c.nodes[0]
        .extra
        .windows(2)
        .find(|w| w[0] == "--cluster-peers")
        .map(|w| w[1].clone())
        .unwrap();
    let mut stranger = Broker::unstarted(
        None,
        &[
            "--node-id",
            "3",
            "--cluster-id",
            "someone-else",
            "--cluster-peers",
            &format!("{peers},3@127.0.0.1:{}", free_port()),
            "--sql-enabled",
            "false",
        ],
    );
    stranger.launch();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .nodes
        .iter()
        .any(|b| b.log().contains("refused a cluster peer"))
    {
        assert!(Instant::now() < deadline, "the stranger was never refused");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The cluster is as it was; the stranger never registered.
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(5));
    assert!(!stranger.log().contains("serving Kafka"));
}

#[test]
fn bad_cluster_flags_stop_the_broker_with_a_reason() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--node-id",
                "5",
                "--cluster-id",
                "x",
                "--cluster-peers",
                "0@127.0.0.1:1,1@127.0.0.1:2",
            ],
            "is not one of --cluster-peers",
        ),
        (
            &[
                "--node-id",
                "0",
                "--cluster-peers",
                "0@127.0.0.1:1,1@127.0.0.1:2",
            ],
            "needs --cluster-id",
        ),
        (&["--cluster-peers", "0@127.0.0.1"], "is not host:port"),
        (
            &["--min-insync-replicas", "0"],
            "min_insync_replicas must be at least 1",
        ),
    ];
    for (args, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_karnak"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--kafka-addr", "127.0.0.1:0", "--sql-enabled", "false"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// CreateTopics v7 through `b`: (error code, replication factor, id).
fn create(b: &Broker, name: &str, partitions: i32, rf: i16) -> (i16, i16, uuid::Uuid) {
    use kafka_protocol::messages::{
        CreateTopicsRequest, CreateTopicsResponse, create_topics_request,
    };
    use kafka_protocol::protocol::StrBytes;
    let r: CreateTopicsResponse = b.connect().call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(StrBytes::from_string(name.to_string()).into())
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf),
            ])
            .with_timeout_ms(10_000),
    );
    let t = &r.topics[0];
    (t.error_code, t.replication_factor, t.topic_id)
}

/// The topic as `b`'s Metadata shows it: per partition (leader, replicas, isr).
/// One partition as Metadata shows it: (leader, replicas, in-sync set).
type PartitionLine = (i32, Vec<i32>, Vec<i32>);

fn topic_view(b: &Broker, name: &str) -> Option<Vec<PartitionLine>> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::protocol::StrBytes;
    let r: MetadataResponse = b.connect().call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(StrBytes::from_string(name.to_string()).into())),
            ]))
            .with_allow_auto_topic_creation(false),
    );
    let t = &r.topics[0];
    if t.error_code != 0 {
        return None;
    }
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
    Some(
        t.partitions
            .iter()
            .map(|p| (p.leader_id.0, ids(&p.replica_nodes), ids(&p.isr_nodes)))
            .collect(),
    )
}

fn poll(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn topics_live_in_the_metadata_log_and_reach_every_replica() {
    let c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));

    // Too many replicas for three brokers: Kafka's error and words.
    let (code, _, _) = create(&c.nodes[1], "too-wide", 1, 4);
    assert_eq!(
        code,
        kafka_protocol::error::ResponseError::InvalidReplicationFactor.code()
    );

    // The default factor is min(3, brokers); any node takes the request.
    let (code, rf, id) = create(&c.nodes[1], "orders", 6, -1);
    assert_eq!((code, rf), (0, 3));
    assert!(!id.is_nil());
    for b in &c.nodes {
        poll(
            "every node lists the topic",
            Duration::from_secs(10),
            || topic_view(b, "orders").is_some(),
        );
        let view = topic_view(b, "orders").unwrap();
        assert_eq!(view.len(), 6);
        for (leader, replicas, isr) in &view {
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2]);
            assert_eq!(isr.len(), 3);
            assert_eq!(*leader, replicas[0], "the preferred replica leads");
        }
        // Leaders are spread, as Kafka places them.
        let leaders: BTreeSet<i32> = view.iter().map(|p| p.0).collect();
        assert_eq!(leaders.len(), 3, "{view:?}");
        // Each replica has its log on disk.
        poll(
            "every replica's logs exist",
            Duration::from_secs(10),
            || (0..6).all(|p| b.data_dir().join(format!("orders-{p}")).is_dir()),
        );
    }
    // Same answer from every node.
    let first = topic_view(&c.nodes[0], "orders");
    assert!(c.nodes.iter().all(|b| topic_view(b, "orders") == first));

    // Deleted through another node: gone everywhere, logs too.
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    use kafka_protocol::protocol::StrBytes;
    let r: DeleteTopicsResponse = c.nodes[2].connect().call(
        ApiKey::DeleteTopics,
        4,
        &DeleteTopicsRequest::default()
            .with_topic_names(vec![StrBytes::from_static_str("orders").into()])
            .with_timeout_ms(10_000),
    );
    assert_eq!(r.responses[0].error_code, 0);
    for b in &c.nodes {
        poll(
            "the topic is gone everywhere",
            Duration::from_secs(10),
            || topic_view(b, "orders").is_none() && !b.data_dir().join("orders-0").exists(),
        );
    }
}

#[test]
fn a_single_node_data_dir_from_before_the_metadata_log_keeps_its_topics() {
    let mut b = Broker::start(&["--sql-enabled", "false"]);
    let id = support::create_topic(&mut b.connect(), "kept", 2);
    let records = support::batch(&[b"a", b"b"], kafka_protocol::records::Compression::None);
    let (code, _) = support::try_produce(&mut b.connect(), "kept", 1, -1, records).unwrap();
    assert_eq!(code, 0);
    assert_eq!(coordinator::commit(&b, "g", "kept", 2), 0);
    assert!(b.stop());
    // What a data dir written before the metadata log looked like.
    std::fs::remove_dir_all(b.data_dir().join("__karnak_meta/raft")).unwrap();
    b.spawn();
    assert!(
        b.log()
            .contains("adopted a topic from before the metadata log")
    );
    let view = topic_view(&b, "kept").expect("the topic is listed");
    assert_eq!(view.len(), 2);
    assert!(
        view.iter()
            .all(|(l, r, i)| *l == 0 && r == &[0] && i == &[0])
    );
    let r: MetadataResponse = b.connect().call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let kept = r.topics.iter().find(|t| t.topic_id == id);
    assert!(kept.is_some(), "the topic id is unchanged");
    // The coordinator shards' topic was adopted too: the group is there.
    assert_eq!(coordinator::committed(&b, "g", "kept"), Ok(2));
    // Its records are still there, and the next start does not adopt again.
    assert!(b.stop());
    b.spawn();
    let log = b.log();
    // Once: the topic and the coordinator shards' topic, at the first start.
    assert_eq!(
        log.matches("adopted a topic from before the metadata log")
            .count(),
        2,
        "{log}"
    );
    assert!(log.contains("adopted a topic from before the metadata log topic=kept"));
    assert!(
        b.data_dir()
            .join("kept-1/00000000000000000000.log")
            .metadata()
            .unwrap()
            .len()
            > 0
    );
}
