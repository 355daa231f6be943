//! Replication throttles (KIP-73), as `kafka-reassign-partitions
//! --throttle` sets them: a reassignment's copy runs no faster than the
//! leader's `leader.replication.throttled.rate` (or the new replica's
//! `follower.replication.throttled.rate`) allows, for the replicas the
//! topic lists, and finishes at full speed once the throttle is removed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;

use super::faults::segments;
use super::reassign::{ongoing, reassign};
use super::replication::{create_with, leader_when_in_sync};
use super::support::{self, Broker};
use super::{Cluster, poll, topic_view, wait_for_view};

const RATE: u64 = 1 << 20;
const DATA: u64 = 8 << 20;
/// One replica fetch may overdraw the allowance by a partition's fetch size.
const FETCH_MAX: u64 = 1 << 20;
const SET: i8 = 0;
const DELETE: i8 = 1;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Writes about `bytes` of 4 KiB records to partition 0 (acks=1).
fn fill(b: &Broker, topic: &str, bytes: u64) {
    let value = vec![b'x'; 4096];
    let values: Vec<&[u8]> = (0..64).map(|_| value.as_slice()).collect();
    let mut c = b.connect();
    for _ in 0..bytes.div_ceil(64 * 4096) {
        let records = support::batch(&values, Compression::None);
        let (code, _) = support::try_produce(&mut c, topic, 0, 1, records).expect("produce");
        assert_eq!(code, 0, "produce to {topic}");
    }
}

/// Bytes of `topic`-0's log on node `b`.
fn log_bytes(b: &Broker, topic: &str) -> u64 {
    segments(b, topic).iter().map(|s| s.len() as u64).sum()
}

/// Sets (or with None removes) a rate on broker `id`, asking that broker
/// (broker configs are altered where they live, as Kafka's clients send them).
fn set_rate(c: &Cluster, id: i32, name: &str, value: Option<&str>) {
    let op = if value.is_some() { SET } else { DELETE };
    let r = support::alter_configs(
        &mut c.nodes[id as usize].connect(),
        RESOURCE_BROKER,
        &id.to_string(),
        &[(name, op, value)],
    );
    assert_eq!(r.0, 0, "{name} on broker {id}: {}", r.1);
}

/// Moves `topic`-0 from its one replica to it and `to`, and checks, while
/// the copy runs, that `to` never holds more than the rate allows: a
/// second's burst plus one fetch over rate x elapsed. Returns once half is
/// there (the rest would only take longer).
fn paced_copy(c: &Cluster, topic: &str, from: i32, to: i32) {
    let total = log_bytes(&c.nodes[from as usize], topic);
    assert!(total >= DATA, "{topic}: only {total} bytes written");
    let started = Instant::now();
    assert_eq!(
        reassign(&c.nodes[0], topic, Some(&[from, to]), true),
        (0, 0)
    );
    let mut samples = 0;
    loop {
        let elapsed = started.elapsed();
        let copied = log_bytes(&c.nodes[to as usize], topic);
        let allowed = (RATE as f64 * (elapsed.as_secs_f64() + 1.0)) as u64 + FETCH_MAX;
        assert!(
            copied <= allowed,
            "{topic}: {copied} bytes copied after {elapsed:?}, at most {allowed} allowed"
        );
        samples += 1;
        if copied >= total / 2 {
            break;
        }
        assert!(
            elapsed < Duration::from_secs(60),
            "{topic}: the copy stalled at {copied}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{topic}: half of {total} bytes copied in {:?} ({samples} samples, rate {RATE} B/s)",
        started.elapsed()
    );
}

fn wait_moved(c: &Cluster, topic: &str, from: i32, to: i32) {
    let want = [from, to];
    poll("the move completes", Duration::from_secs(30), || {
        c.nodes.iter().all(|b| {
            topic_view(b, topic).is_some_and(|v| {
                let (_, replicas, isr) = &v[0];
                replicas.iter().copied().collect::<BTreeSet<_>>() == want.iter().copied().collect()
                    && isr.len() == 2
            })
        }) && ongoing(&c.nodes[0]).is_empty()
    });
    poll(
        "the replicas are byte-identical",
        Duration::from_secs(30),
        || {
            let a = segments(&c.nodes[from as usize], topic);
            !a.is_empty() && a == segments(&c.nodes[to as usize], topic)
        },
    );
}

#[test]
fn a_throttled_move_copies_no_faster_than_the_rate_and_finishes_once_it_is_lifted() {
    let c = Cluster::start(3, &["--sql-enabled", "false"]);
    wait_for_view(&c, &[0, 1, 2], Duration::from_secs(20));

    // The leader side: the leader serves the listed replicas within its rate.
    create_with(
        &c.nodes[0],
        "tl",
        1,
        1,
        &[("leader.replication.throttled.replicas", "*")],
    );
    throttled_move(&c, "tl", "leader");

    // The follower side: the new replica pulls the partitions listed for
    // it ("0:<to>", set on the live topic) within its own rate. (The
    // metadata log orders the config before the move: the new replica's
    // broker has it when it starts to fetch.)
    create_with(&c.nodes[0], "tf", 1, 1, &[]);
    let to = (leader_when_in_sync(&c, "tf", 1) + 1) % 3;
    let listed = format!("0:{to}");
    let r = support::alter_configs(
        &mut c.nodes[0].connect(),
        RESOURCE_TOPIC,
        "tf",
        &[(
            "follower.replication.throttled.replicas",
            SET,
            Some(&listed),
        )],
    );
    assert_eq!(r.0, 0, "{}", r.1);
    throttled_move(&c, "tf", "follower");
}

/// Fills `topic`-0 (one replica), throttles the `side` broker of a move to
/// the next broker, checks the pace, lifts the throttle, sees the move end.
fn throttled_move(c: &Cluster, topic: &str, side: &str) {
    let from = leader_when_in_sync(c, topic, 1);
    let to = (from + 1) % 3;
    let throttled = if side == "leader" { from } else { to };
    let name = format!("{side}.replication.throttled.rate");
    fill(&c.nodes[from as usize], topic, DATA);
    set_rate(c, throttled, &name, Some(&RATE.to_string()));
    paced_copy(c, topic, from, to);
    set_rate(c, throttled, &name, None);
    wait_moved(c, topic, from, to);
    let counted = c.nodes[throttled as usize].metric(
        "karnak_replication_throttled_bytes_total",
        &[&format!("side=\"{side}\"")],
    );
    assert!(
        counted >= (DATA / 2) as f64,
        "{side} throttled bytes: {counted}"
    );
}
