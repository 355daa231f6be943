//! Karnak clusters of real `karnak` processes on loopback (issue 18): they
//! form one metadata group, list each other to clients, fence a broker
//! that dies and take it back when it returns.

#[path = "../support/mod.rs"]
mod support;

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
        for _ in 0..3 {
            let peers = (0..n)
                .map(|i| format!("{i}@127.0.0.1:{}", free_port()))
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
                    Broker::unstarted(None, &args)
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

    // Losing the controller: the others elect a new one and fence it.
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
            .contains("fencing a broker whose heartbeats stopped")
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
    let cases: [(&[&str], &str); 3] = [
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
