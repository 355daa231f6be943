//! A network partition: the leader of a partition is cut off from the other
//! brokers while its clients still reach it. With min.insync.replicas=2 it
//! must acknowledge no acks=all write; the others elect a new leader and
//! take writes; after healing the old leader throws away what it took
//! alone, and nothing acknowledged is lost.
//!
//! The test runs in a network namespace of its own (it re-runs itself
//! under `unshare --net`, as root), each broker as its own user: loopback
//! alone cannot tell brokers apart by address. Each connection is marked
//! with the user that opened it (CONNMARK: a mark outlives the socket, so
//! a closed socket's retransmissions are cut too, which an owner match
//! misses), and a cut drops the marked connections to the other broker's
//! ports. It needs root, `unshare` and `iptables` (Debian's package,
//! installed by scripts/test-all.sh); without them it fails.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use super::faults::check_nothing_lost;
use super::replication::{create_with, leader_when_in_sync, produce, read_all, write_acked};
use super::{Cluster, poll, topic_view, wait_for_view};

/// Set in the re-run inside the namespace.
const IN_NETNS: &str = "KARNAK_TEST_IN_NETNS";
/// Node i runs as user FIRST_UID + i.
const FIRST_UID: u32 = 47_000;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed for this test (Debian: iptables, util-linux): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs test `name` of this binary again inside a new network namespace;
/// true if this is that run.
fn in_own_network(name: &str) -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        run("ip", &["link", "set", "lo", "up"]);
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(IN_NETNS, "1")
        .status()
        .unwrap_or_else(|e| panic!("unshare (util-linux) is needed for this test: {e}"));
    assert!(status.success(), "the test failed in its network namespace");
    false
}

/// Node `i`'s cluster listener port, from the voters it was given.
fn cluster_port(c: &Cluster, i: usize) -> u16 {
    let peers = c.nodes[i]
        .extra
        .windows(2)
        .find(|w| w[0] == "--cluster-peers")
        .map(|w| w[1].clone())
        .unwrap();
    peers
        .split(',')
        .find_map(|p| p.strip_prefix(&format!("{i}@")))
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap()
}

/// Runs `iptables` with the words of `rule`.
fn iptables(rule: &str) {
    run("iptables", &rule.split_whitespace().collect::<Vec<_>>());
}

/// Marks each new connection of node `i` (user FIRST_UID + i) with that
/// user, and sends every packet through the chain the cuts go in.
fn mark_connections(n: usize) {
    for i in 0..n {
        let uid = FIRST_UID + i as u32;
        iptables(&format!(
            "-A OUTPUT -m conntrack --ctstate NEW -m owner --uid-owner {uid} -j CONNMARK --set-mark {uid}"
        ));
    }
    iptables("-N KARNAK_CUT");
    iptables("-A OUTPUT -j KARNAK_CUT");
}

/// Drops every packet of node `a`'s connections to node `b`'s Kafka and
/// cluster ports.
fn cut(c: &Cluster, a: usize, b: usize) {
    let mark = FIRST_UID + a as u32;
    for port in [c.nodes[b].kafka_port, cluster_port(c, b)] {
        iptables(&format!(
            "-A KARNAK_CUT -p tcp -m connmark --mark {mark} --dport {port} -j DROP"
        ));
    }
}

#[test]
fn an_isolated_leader_acknowledges_nothing_and_loses_nothing_after_healing() {
    if !in_own_network(
        "partition::an_isolated_leader_acknowledges_nothing_and_loses_nothing_after_healing",
    ) {
        return;
    }
    mark_connections(3);
    let c = Cluster::start_as(3, &["--sql-enabled", "false"], |i| {
        Some(FIRST_UID + i as u32)
    });
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));
    create_with(&c.nodes[0], "iso", 1, 3, &[("min.insync.replicas", "2")]);
    let old = leader_when_in_sync(&c, "iso", 3) as usize;
    let mut acked = BTreeSet::new();
    let mut attempts = 0;
    write_acked(&c, "iso", 100, &mut acked, &mut attempts);

    // Cut the leader off from both others, both ways.
    let others: Vec<usize> = (0..3).filter(|b| *b != old).collect();
    for o in &others {
        cut(&c, old, *o);
        cut(&c, *o, old);
    }
    let cut_at = Instant::now();

    // Its clients still reach it: each acks=all write waits out the
    // produce timeout or (once its lease lapsed) is refused at once, never
    // acknowledged.
    let old_port = c.nodes[old].kafka_port;
    let isolated = std::thread::spawn(move || {
        (0..3)
            .map(|i| {
                let v = format!("isolated-{i}");
                let code = produce_to(old_port, &v);
                (v, code)
            })
            .collect::<Vec<_>>()
    });

    // The others fence it, elect one of themselves and take writes. Before
    // they may, its lease on its roles lapses: it refuses acks=1 writes
    // (and reads) rather than take them for a partition that moves on
    // without it, as a Kafka leader would until it hears of its successor.
    let mut new = None;
    let mut stale_acked = 0;
    let mut refused_after = None;
    poll(
        "the others elect a new leader",
        Duration::from_secs(30),
        || {
            if refused_after.is_none() {
                match produce_acks1(old_port, &format!("stale-{stale_acked}")) {
                    Some(0) => stale_acked += 1,
                    Some(NOT_LEADER) => refused_after = Some(cut_at.elapsed()),
                    other => panic!("the cut-off leader answered an acks=1 write {other:?}"),
                }
            }
            let views: Vec<_> = others
                .iter()
                .filter_map(|o| topic_view(&c.nodes[*o], "iso"))
                .collect();
            new = views.first().map(|v| v[0].0);
            views.len() == 2
                && views
                    .iter()
                    .all(|v| Some(v[0].0) == new && v[0].2.len() == 2)
                && new.is_some_and(|l| l >= 0 && l as usize != old)
        },
    );
    let new = new.unwrap() as usize;
    println!(
        "leader {old} cut off; it refused acks=1 writes after {refused_after:?} \
         ({stale_acked} taken before); {new} leads after {:?}",
        cut_at.elapsed()
    );
    assert!(
        refused_after.is_some(),
        "the others elected a new leader while the cut-off one still took acks=1 writes"
    );
    assert_eq!(
        fetch_code(old_port),
        Some(NOT_LEADER),
        "the cut-off leader served a fetch"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < 100 {
        assert!(
            Instant::now() < deadline,
            "the majority side stopped taking writes"
        );
        attempts += 1;
        let v = format!("v-{attempts}");
        if produce(&c.nodes[new], "iso", &v) == Some(0) {
            acked.insert(v);
            n += 1;
        }
    }
    let answers = isolated.join().unwrap();
    println!("the isolated leader answered {answers:?}");
    for (v, code) in &answers {
        assert_ne!(*code, Some(0), "the isolated leader acknowledged {v}");
    }

    // Healed: it rejoins as a follower, drops what it took alone, and every
    // acknowledged write is there, the same on every replica.
    iptables("-F KARNAK_CUT");
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(30));
    check_nothing_lost(&c, "iso", &acked);
    let leader = leader_when_in_sync(&c, "iso", 3);
    let values: BTreeSet<String> = read_all(&c.nodes[leader as usize], "iso")
        .into_values()
        .collect();
    // The first write may have reached a follower in the answer to a fetch
    // it sent before the cut (kept: not acknowledged is not lost, as with
    // Kafka); the later ones reached no one, and the old leader dropped them.
    let kept: Vec<&String> = answers
        .iter()
        .map(|(v, _)| v)
        .filter(|v| values.contains(*v))
        .collect();
    println!("unacknowledged writes kept: {kept:?}");
    for (v, _) in &answers[1..] {
        assert!(
            !values.contains(v),
            "{v}, which only the cut-off leader had, survived"
        );
    }
}

const NOT_LEADER: i16 = kafka_protocol::error::ResponseError::NotLeaderOrFollower.code();

/// acks=1 produce of one record straight to a Kafka port: the error code.
fn produce_acks1(port: u16, value: &str) -> Option<i16> {
    let records = super::support::batch(
        &[value.as_bytes()],
        kafka_protocol::records::Compression::None,
    );
    let mut c = super::support::connect(port);
    super::support::try_produce(&mut c, "iso", 0, 1, records).map(|(code, _)| code)
}

/// A consumer's fetch of partition 0 from offset 0 at a Kafka port: its error code.
fn fetch_code(port: u16) -> Option<i16> {
    let mut c = super::support::connect(port);
    let resp: kafka_protocol::messages::FetchResponse = c.try_call(
        kafka_protocol::messages::ApiKey::Fetch,
        12,
        &super::support::fetch_request("iso", 0, 0),
    )?;
    Some(resp.responses.first()?.partitions.first()?.error_code)
}

/// acks=all produce of one record straight to a Kafka port: the error code.
fn produce_to(port: u16, value: &str) -> Option<i16> {
    let records = super::support::batch(
        &[value.as_bytes()],
        kafka_protocol::records::Compression::None,
    );
    let mut c = super::support::connect(port);
    super::support::try_produce(&mut c, "iso", 0, -1, records).map(|(code, _)| code)
}
