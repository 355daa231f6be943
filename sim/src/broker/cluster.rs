//! A cluster of Karnak brokers under the simulation: three embedded
//! brokers (`broker0`..`broker2`), each a voter of the metadata group and a
//! replica of every partition (replication factor 3, min.insync.replicas
//! 2), their Raft and replication traffic on turmoil's network
//! (`karnak_broker::peer_net`). The single broker's workloads run against
//! it as Kafka clients would ([`Target::Cluster`]): producers find each
//! partition's leader with Metadata, offset clients, group members and
//! transactional producers find their coordinator with FindCoordinator,
//! and all follow leader and coordinator changes; their checks hold
//! across failovers while a seeded schedule crashes and restarts one
//! broker at a time, fails one broker's disk (crashed within that step,
//! restarted on a good disk), cuts the links between two brokers,
//! and cuts clients off brokers.
//!
//! A seed replays bit for bit, elections included (the metadata group's
//! election timeouts are drawn through `std`, see
//! `karnak_coordinator::metadata`'s runtime, so [`crate::os`] seeds them).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use karnak_broker::peer_net::PeerStream;
use karnak_coordinator::COORDINATOR_TOPIC;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::offsets::{self, Clients};
use super::produce::{self, Producer, Producers, producers};
use super::txn::{self, TxnProducer, TxnProducers};
use super::{BrokerOptions, BrokerReport, PORT, TICK, TOPIC, Target, groups};
use crate::Failure;
use crate::wire::{Conn, Failed};
use crate::world::{Shared, World, lock};

const BROKERS: usize = 3;
const RAFT_PORT: u16 = 9093;

fn host(i: usize) -> String {
    format!("broker{i}")
}

/// `partition`'s leader as `host:port`, from a Metadata answer; None while
/// it has none.
pub(super) async fn leader_of(conn: &mut Conn, partition: i32) -> Result<Option<String>, Failed> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC)))),
        ]))
        .with_allow_auto_topic_creation(false);
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req).await?;
    let leader = resp
        .topics
        .first()
        .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
        .map(|p| p.leader_id);
    Ok(leader.and_then(|l| {
        resp.brokers
            .iter()
            .find(|b| b.node_id == l)
            .map(|b| format!("{}:{}", b.host, b.port))
    }))
}

/// Broker `i`'s software: turmoil's listeners (Kafka and cluster) feeding
/// the embedded broker.
async fn broker_main(i: usize, dir: PathBuf, world: Shared) -> turmoil::Result {
    let kafka = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let cluster = turmoil::net::TcpListener::bind(("0.0.0.0", RAFT_PORT)).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::task::spawn_local(async move {
        while let Ok((stream, peer)) = kafka.accept().await {
            let stream: Box<dyn karnak_broker::Duplex> = Box::new(stream);
            if tx.send((stream, peer)).await.is_err() {
                break;
            }
        }
    });
    let (peer_tx, peer_rx) = tokio::sync::mpsc::channel(64);
    tokio::task::spawn_local(async move {
        while let Ok((stream, peer)) = cluster.accept().await {
            let stream: Box<dyn PeerStream> = Box::new(stream);
            if peer_tx.send((stream, peer)).await.is_err() {
                break;
            }
        }
    });
    lock(&world).event(format!("broker {i} starts"));
    let voters = (0..BROKERS)
        .map(|b| format!("{b}@{}:{RAFT_PORT}", host(b)))
        .collect::<Vec<_>>()
        .join(",");
    let args = karnak_broker::Args {
        data_dir: Some(dir),
        node_id: Some(i as i32),
        cluster_id: Some("karnak-sim".into()),
        cluster_peers: Some(voters),
        kafka_addr: Some(([0, 0, 0, 0], PORT).into()),
        advertised_kafka_addr: Some(format!("{}:{PORT}", host(i))),
        min_insync_replicas: Some(2),
        replica_lag_time_max_ms: Some(3_000),
        sql_enabled: Some(false),
        group_coordinator_shards: Some(2),
        group_min_session_timeout_ms: Some(1_000),
        log_preallocate_ahead_bytes: Some(0),
        log_segment_bytes: Some(16 * 1024),
        log_cleaner_enable: Some(false),
        ..Default::default()
    };
    let embedded = karnak_broker::Embedded {
        connections: rx,
        cluster_connections: Some(peer_rx),
        shutdown: Box::pin(std::future::pending()),
    };
    if let Err(e) = karnak_broker::run_embedded(args, embedded).await {
        if !crate::os::disk_failed() {
            return Err(format!("broker {i} stopped: {e:#}").into());
        }
        // As the single broker may: the harness crashes what is left.
        lock(&world).event(format!("broker {i} stopped on its failed disk: {e:#}"));
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Runs one seed of the cluster simulation on a thread of its own.
pub fn run_cluster(seed: u64, opts: &BrokerOptions) -> Result<BrokerReport, Failure> {
    let opts = opts.clone();
    crate::on_sim_thread(seed, move || {
        karnak_storage::blocking::run_inline();
        // turmoil's connect dials from whichever simulated host runs it.
        karnak_broker::peer_net::set_dialer(Arc::new(|addr: &str| {
            let addr = addr.to_string();
            Box::pin(async move {
                let s = turmoil::net::TcpStream::connect(addr).await?;
                Ok(Box::new(s) as Box<dyn PeerStream>)
            })
        }));
        let dir =
            std::env::temp_dir().join(format!("karnak-sim-cluster-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = run_here(seed, &opts, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        out
    })
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Broker `i` crashes; restarted when healed.
    Crash(usize),
    /// Broker `i`'s disk fails at a chosen file change (see the single
    /// broker's `Fault::Disk`): it is crashed at the end of that step and
    /// restarted on a good disk.
    Disk(usize),
    /// The links between brokers `i` and `j` are cut.
    Split(usize, usize),
    /// Client `c`'s links to broker `i` are cut.
    Cut(usize, usize),
}

fn heal(sim: &mut turmoil::Sim, world: &Shared, clients: &[String], f: Fault) {
    lock(world).event(format!("healed {f:?}"));
    match f {
        Fault::Crash(i) => sim.bounce(host(i)),
        // Armed and never reached.
        Fault::Disk(_) => crate::os::heal_disk(),
        Fault::Split(i, j) => sim.repair(host(i), host(j)),
        Fault::Cut(c, i) => sim.repair(clients[c].as_str(), host(i)),
    }
}

/// Arms a failure of broker `i`'s disk: its whole directory, one
/// partition's or its coordinator shards' logs (see the single broker's
/// choices).
fn arm_disk(world: &Shared, rng: &mut StdRng, i: usize) {
    let (after, tear) = (rng.gen_range(0..40), rng.gen_bool(0.5));
    let dir = format!("/{}/", host(i));
    let within = match rng.gen_range(0..4) {
        0 | 1 => dir,
        2 => format!("{dir}{TOPIC}-{}/", rng.gen_range(0..super::PARTITIONS)),
        _ => format!("{dir}{COORDINATOR_TOPIC}-"),
    };
    lock(world).event(format!(
        "broker {i}'s disk fails at file change {} from now in {within}{}",
        after + 1,
        if tear { ", torn" } else { "" }
    ));
    crate::os::fail_disk_after(after, tear, Some(within));
}

fn run_here(
    seed: u64,
    opts: &BrokerOptions,
    dir: &std::path::Path,
) -> Result<BrokerReport, Failure> {
    let world: Shared = Arc::new(Mutex::new(World::default()));
    let fail = |world: &Shared| Failure::of(seed, world);
    let mut rng = StdRng::seed_from_u64(seed);
    let total = opts.faults_for + opts.settle + Duration::from_secs(120);
    let mut sim = super::new_sim(seed, &mut rng, total, 2..10);
    for i in 0..BROKERS {
        let (dir, world) = (dir.join(host(i)), world.clone());
        sim.host(host(i), move || broker_main(i, dir.clone(), world.clone()));
    }
    let producing = opts.producers.clamp(1, super::PARTITIONS as u64) as usize;
    let made: Producers = Arc::new(Mutex::new(vec![Producer::default(); producing]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let state: Clients = offsets::new_clients(opts.clients as usize);
    for c in 0..opts.clients as usize {
        let (world, state, stop) = (world.clone(), state.clone(), stop.clone());
        clients.push(format!("client{c}"));
        sim.client(
            format!("client{c}"),
            offsets::client_main(c, seed, world, state, stop, Target::Cluster(BROKERS)),
        );
    }
    let transacting = (opts.transactional as usize).min(super::PARTITIONS as usize - producing);
    let txns: TxnProducers = Arc::new(Mutex::new(vec![TxnProducer::default(); transacting]));
    for t in 0..transacting {
        let (world, txns, stop) = (world.clone(), txns.clone(), stop.clone());
        let partition = (producing + t) as i32;
        clients.push(format!("txn{t}"));
        sim.client(
            format!("txn{t}"),
            txn::txn_producer_main(
                t,
                partition,
                seed,
                world,
                txns,
                stop,
                Target::Cluster(BROKERS),
            ),
        );
    }
    let group = groups::new_group(opts.members as usize);
    for i in 0..opts.members as usize {
        let (world, group, stop) = (world.clone(), group.clone(), stop.clone());
        clients.push(format!("member{i}"));
        sim.client(
            format!("member{i}"),
            groups::member_main(i, seed, world, group, stop, Target::Cluster(BROKERS)),
        );
    }
    for p in 0..producing {
        let (world, made, stop) = (world.clone(), made.clone(), stop.clone());
        clients.push(format!("producer{p}"));
        sim.client(
            format!("producer{p}"),
            produce::producer_main(p, seed, world, made, stop, Target::Cluster(BROKERS)),
        );
    }

    let mut undo: Vec<(Duration, Fault)> = Vec::new();
    let (mut faults, mut crashes, mut disk_failures) = (0usize, 0usize, 0usize);
    let per_step = TICK.as_secs_f64() / 2.0;
    // The cluster elects its metadata leader and places the coordinator
    // shards before the first fault.
    let quiet = Duration::from_secs(5);
    while sim.elapsed() < opts.faults_for + quiet {
        let now = sim.elapsed();
        let (due, later): (Vec<_>, Vec<_>) = undo.drain(..).partition(|(at, _)| *at <= now);
        undo = later;
        for (_, f) in due {
            heal(&mut sim, &world, &clients, f);
        }
        if now > quiet && rng.gen_bool(per_step) {
            let (i, j) = (rng.gen_range(0..BROKERS), rng.gen_range(0..BROKERS));
            // One broker down or cut off at a time: two of three stay in
            // sync, so acks=all can be answered.
            let broker_fault = undo
                .iter()
                .any(|(_, f)| matches!(f, Fault::Crash(_) | Fault::Disk(_) | Fault::Split(..)));
            let fault = match rng.gen_range(0..3) {
                0 if !broker_fault && rng.gen_bool(0.5) => Some(Fault::Disk(i)),
                0 if !broker_fault => Some(Fault::Crash(i)),
                1 if !broker_fault && i != j => Some(Fault::Split(i, j)),
                _ if !clients.is_empty() => {
                    let c = rng.gen_range(0..clients.len());
                    let busy = undo
                        .iter()
                        .any(|(_, f)| matches!(f, Fault::Cut(x, y) if *x == c && *y == i));
                    (!busy).then_some(Fault::Cut(c, i))
                }
                _ => None,
            };
            if let Some(fault) = fault {
                let lasts = Duration::from_millis(rng.gen_range(100..4000));
                lock(&world).event(format!("fault {fault:?} for {lasts:?}"));
                match fault {
                    Fault::Crash(i) => {
                        sim.crash(host(i));
                        crashes += 1;
                    }
                    Fault::Disk(i) => arm_disk(&world, &mut rng, i),
                    Fault::Split(i, j) => sim.partition(host(i), host(j)),
                    Fault::Cut(c, i) => sim.partition(clients[c].as_str(), host(i)),
                }
                faults += 1;
                undo.push((now + lasts, fault));
            }
        }
        if let Err(e) = super::step(&mut sim, &world) {
            lock(&world).stopped(e);
            return Err(fail(&world));
        }
        if crate::os::disk_failed() {
            // Crashed within the step its disk failed in (the single
            // broker's rule), and back on a good disk later.
            crate::os::heal_disk();
            let Some(i) = undo.iter().find_map(|(_, f)| match f {
                Fault::Disk(i) => Some(*i),
                _ => None,
            }) else {
                lock(&world).stopped("a disk failed with no broker's failure armed");
                return Err(fail(&world));
            };
            lock(&world).event(format!("broker {i}'s disk failed: it crashes"));
            sim.crash(host(i));
            let back = sim.elapsed() + Duration::from_millis(rng.gen_range(100..3000));
            undo.retain(|(_, f)| !matches!(f, Fault::Disk(_)));
            undo.push((back, Fault::Crash(i)));
            crashes += 1;
            disk_failures += 1;
        }
    }
    for (_, f) in std::mem::take(&mut undo) {
        heal(&mut sim, &world, &clients, f);
    }
    if super::settle(&mut sim, &world, &stop, opts.settle).is_err() {
        return Err(fail(&world));
    }
    lock(&world).now = sim.elapsed();
    let (s, acks) = offsets::check_clients(&world, &state);
    let syncs = groups::check_settled(&world, &group);
    let m = producers(&made).clone();
    let mut w = lock(&world);
    let records = super::check_producers(&mut w, &m);
    let (x, transactions) = txn::check_txn_producers(&mut w, &txns);
    if !w.violations.is_empty() {
        drop(w);
        return Err(fail(&world));
    }
    Ok(BrokerReport {
        seed,
        trace_hash: w.trace_hash(),
        acks,
        records,
        transactions,
        syncs,
        reads: s.iter().map(|c| c.reads).sum::<usize>()
            + m.iter().map(|p| p.reads).sum::<usize>()
            + x.iter().map(|t| t.reads).sum::<usize>(),
        crashes,
        disk_failures,
        faults,
        simulated: sim.elapsed(),
        trace: if opts.keep_trace {
            w.trace.clone()
        } else {
            Vec::new()
        },
    })
}
