//! A whole Karnak broker under the simulation: `karnak_broker`'s own
//! startup, connection handling, request dispatch, coordinator shards,
//! storage and group commit, run on turmoil's seeded scheduler, network
//! and clock ([`crate::os`]), with its blocking file work run in line
//! (`karnak_storage::blocking`). Clients speak the Kafka protocol over
//! turmoil's TCP ([`crate::wire`]) while a seeded schedule crashes and
//! restarts the broker and cuts or holds the clients' links.
//!
//! The workloads, each with its own checks ([`offsets`], [`produce`],
//! [`txn`]): clients commit consumer offsets through a coordinator shard,
//! idempotent producers write and read back a partition each, and
//! transactional producers commit or abort transactions on a partition
//! each, read back with read_committed, and a consumer group rebalances
//! as its members come and go ([`groups`]); all on one topic the clients
//! create (CreateTopics, through the broker's metadata group).
//!
//! A crash here is the process's (the broker's files are real ones in a
//! temporary directory, so what it wrote survives as the page cache would
//! keep it); power cuts are the metadata simulation's ([`crate::run`]) and
//! the power-cut tests'.

mod cluster;
mod groups;
mod offsets;
mod produce;
mod txn;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use karnak_coordinator::COORDINATOR_TOPIC;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Failure;
use crate::wire::{Conn, Failed};
use crate::world::{Shared, World, lock};
use offsets::Clients;
use produce::{Producer, Producers, producers};
use txn::{TxnProducer, TxnProducers};

const BROKER: &str = "broker";
const PORT: u16 = 9092;
/// The topic the workloads use (created by the clients): the offsets are
/// committed for partition 0, producer `p` writes partition `p`.
const TOPIC: &str = "sim";
/// How long a client waits for an answer before it reconnects (a held or
/// cut link never answers).
/// The topic's partitions: at most this many producers run (idempotent
/// ones first, then transactional).
const PARTITIONS: i32 = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Clients committing offsets.
    pub clients: u64,
    /// Idempotent producers.
    pub producers: u64,
    /// Transactional producers.
    pub transactional: u64,
    /// Members of the consumer group.
    pub members: u64,
    /// How long faults are injected (simulated time).
    pub faults_for: Duration,
    /// How long clients go on once every fault is healed.
    pub settle: Duration,
    pub keep_trace: bool,
    /// Three brokers replicating every partition ([`cluster`]) instead
    /// of one: idempotent producers only, for now.
    pub cluster: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            clients: 3,
            producers: 2,
            transactional: 1,
            members: 3,
            faults_for: Duration::from_secs(20),
            settle: Duration::from_secs(10),
            keep_trace: false,
            cluster: false,
        }
    }
}

#[derive(Debug)]
pub struct BrokerReport {
    pub seed: u64,
    pub trace_hash: u64,
    /// Offset commits acknowledged.
    pub acks: usize,
    /// Records acknowledged.
    pub records: usize,
    /// Transactions whose commit was acknowledged.
    pub transactions: usize,
    /// SyncGroup answers the group's members got (one per member per
    /// rebalance).
    pub syncs: usize,
    pub reads: usize,
    pub crashes: usize,
    /// Crashes that came when the disk failed (counted in `crashes`).
    pub disk_failures: usize,
    pub faults: usize,
    pub simulated: Duration,
    pub trace: Vec<String>,
}

/// Runs one seed of the broker simulation, on a thread of its own (see
/// [`crate::run`]).
pub fn run_broker(seed: u64, opts: &BrokerOptions) -> Result<BrokerReport, Failure> {
    if opts.cluster {
        return cluster::run_cluster(seed, opts);
    }
    let opts = opts.clone();
    crate::on_sim_thread(seed, move || {
        karnak_storage::blocking::run_inline();
        let dir = std::env::temp_dir().join(format!("karnak-sim-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = run_here(seed, &opts, dir.clone());
        let _ = std::fs::remove_dir_all(&dir);
        out
    })
}

/// The broker's software: turmoil's listener feeding the embedded broker.
async fn broker_main(dir: PathBuf, world: Shared) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::task::spawn_local(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let stream: Box<dyn karnak_broker::Duplex> = Box::new(stream);
            if tx.send((stream, peer)).await.is_err() {
                break;
            }
        }
    });
    lock(&world).event("broker starts");
    let args = karnak_broker::Args {
        data_dir: Some(dir),
        kafka_addr: Some(([0, 0, 0, 0], PORT).into()),
        advertised_kafka_addr: Some(format!("{BROKER}:{PORT}")),
        sql_enabled: Some(false),
        group_coordinator_shards: Some(2),
        log_preallocate_ahead_bytes: Some(0),
        // Small segments: rolls (with their producer snapshots, indexes
        // and checkpoints) happen every few seconds, within the faults.
        log_segment_bytes: Some(16 * 1024),
        log_cleaner_enable: Some(false),
        group_min_session_timeout_ms: Some(1_000),
        ..Default::default()
    };
    let embedded = karnak_broker::Embedded {
        connections: rx,
        cluster_connections: None,
        shutdown: Box::pin(std::future::pending()),
    };
    if let Err(e) = karnak_broker::run_embedded(args, embedded).await {
        if !crate::os::disk_failed() {
            return Err(format!("the broker stopped: {e:#}").into());
        }
        // Stopping on a failed disk is allowed (as Kafka does when its
        // last log dir fails); the harness crashes what is left.
        lock(&world).event(format!("the broker stopped on the failed disk: {e:#}"));
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// CreateTopics for [`TOPIC`] with `replicas` replicas per partition: Ok
/// once it exists (made now or before).
async fn create_topic(conn: &mut Conn, replicas: i16) -> Result<i16, Failed> {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_num_partitions(PARTITIONS)
                .with_replication_factor(replicas),
        ])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = timed(conn.call(ApiKey::CreateTopics, 5, &req)).await?;
    let code = resp
        .topics
        .first()
        .map(|t| t.error_code)
        .ok_or("a CreateTopics answer without the topic")?;
    Ok(if code == ResponseError::TopicAlreadyExists.code() {
        0
    } else {
        code
    })
}

/// A connection to the broker on which the topic is known to exist
/// (`topic`: seen before); None when either failed (the caller retries).
async fn ensure_topic(
    addr: &str,
    who: &str,
    world: &Shared,
    rng: &mut StdRng,
    topic: &mut bool,
    replicas: i16,
) -> Option<Conn> {
    let mut conn = match Conn::connect(addr).await {
        Ok(conn) => conn,
        Err(_) => {
            sleep_ms(rng, 10, 200).await;
            return None;
        }
    };
    while !*topic {
        match create_topic(&mut conn, replicas).await {
            Ok(0) => {
                lock(world).event(format!("{who} sees topic {TOPIC}"));
                *topic = true;
            }
            Ok(code) => {
                lock(world).event(format!("{who}: topic creation refused ({code})"));
                sleep_ms(rng, 10, 100).await;
            }
            Err(_) => return None,
        }
    }
    Some(conn)
}

/// Where a client's requests go.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// The one broker.
    One,
    /// A cluster of this many brokers (`broker0`, `broker1`, ...): a
    /// partition's requests go to its leader, found with Metadata.
    Cluster(usize),
}

impl Target {
    fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// Whether a partition's answer `code` says to ask again where its
    /// leader is (a Kafka client refreshes its metadata on these).
    fn moved(&self, code: i16) -> bool {
        self.is_cluster()
            && [
                ResponseError::NotLeaderOrFollower,
                ResponseError::LeaderNotAvailable,
                ResponseError::UnknownTopicOrPartition,
                ResponseError::FencedLeaderEpoch,
                ResponseError::UnknownLeaderEpoch,
            ]
            .iter()
            .any(|e| e.code() == code)
    }

    /// A connection to any broker (the one, or one drawn at random), the
    /// topic known to exist, and that broker's address.
    async fn connect_any(
        &self,
        who: &str,
        world: &Shared,
        rng: &mut StdRng,
        topic: &mut bool,
    ) -> Option<(Conn, String)> {
        let (addr, replicas) = match self {
            Target::One => (format!("{BROKER}:{PORT}"), 1),
            Target::Cluster(n) => (
                format!("broker{}:{PORT}", rng.gen_range(0..*n)),
                (*n).min(3) as i16,
            ),
        };
        let conn = ensure_topic(&addr, who, world, rng, topic, replicas).await?;
        Some((conn, addr))
    }

    /// A connection to `partition`'s leader, the topic known to exist;
    /// None when that failed (the caller retries).
    async fn connect_leader(
        &self,
        partition: i32,
        who: &str,
        world: &Shared,
        rng: &mut StdRng,
        topic: &mut bool,
    ) -> Option<Conn> {
        let (mut conn, at) = self.connect_any(who, world, rng, topic).await?;
        if !self.is_cluster() {
            return Some(conn);
        }
        let found = timed(cluster::leader_of(&mut conn, partition)).await;
        let what = format!("leader of partition {partition}");
        follow(conn, &at, found, &what, who, world, rng).await
    }

    /// A connection to the coordinator of `key` (see [`coordinator_of`]),
    /// the topic known to exist; None when that failed (the caller
    /// retries).
    async fn connect_coordinator(
        &self,
        key: &str,
        key_type: i8,
        who: &str,
        world: &Shared,
        rng: &mut StdRng,
        topic: &mut bool,
    ) -> Option<Conn> {
        let (mut conn, at) = self.connect_any(who, world, rng, topic).await?;
        if !self.is_cluster() {
            return Some(conn);
        }
        let found = timed(coordinator_of(&mut conn, key, key_type)).await;
        let what = format!("coordinator of {key}");
        follow(conn, &at, found, &what, who, world, rng).await
    }
}

/// Where `found` (the broker's answer to where the `what` is) says to go:
/// `conn` (to `at`) when it is there already, a new connection otherwise;
/// None while there is none, or when asking or connecting failed.
async fn follow(
    conn: Conn,
    at: &str,
    found: Result<Option<String>, Failed>,
    what: &str,
    who: &str,
    world: &Shared,
    rng: &mut StdRng,
) -> Option<Conn> {
    let there = match found {
        Ok(Some(there)) => there,
        Ok(None) => {
            lock(world).event(format!("{who}: no {what} yet"));
            sleep_ms(rng, 50, 200).await;
            return None;
        }
        Err(_) => return None,
    };
    lock(world).event(format!("{who}: the {what} is {there}"));
    if there == at {
        return Some(conn);
    }
    match Conn::connect(&there).await {
        Ok(c) => Some(c),
        Err(_) => {
            sleep_ms(rng, 10, 200).await;
            None
        }
    }
}

/// Whether an answer `code` from a coordinator says to ask FindCoordinator
/// again (as a Kafka client does): the key's shard moved or is not placed.
fn coordinator_moved(code: i16) -> bool {
    code == ResponseError::NotCoordinator.code()
        || code == ResponseError::CoordinatorNotAvailable.code()
}

/// The coordinator of `key` (`key_type` 0: a group, 1: a transactional id)
/// as `host:port`, from a FindCoordinator answer; None while it has none.
async fn coordinator_of(
    conn: &mut Conn,
    key: &str,
    key_type: i8,
) -> Result<Option<String>, Failed> {
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(key.to_string()))
        .with_key_type(key_type);
    let resp: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, 3, &req).await?;
    Ok((resp.error_code == 0).then(|| format!("{}:{}", resp.host, resp.port)))
}

/// Client `i`'s generator, one stream per kind of client.
fn client_rng(seed: u64, kind: u64, i: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ kind.wrapping_mul(i as u64 + 1))
}

async fn timed<T>(f: impl std::future::Future<Output = Result<T, Failed>>) -> Result<T, Failed> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
}

async fn sleep_ms(rng: &mut StdRng, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(lo..hi))).await;
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash,
    /// The disk fails at a chosen file change: that one (perhaps torn)
    /// and every later one get EIO, and the broker is crashed at the end
    /// of the step in which it came, so the crash lands inside whatever
    /// file work was under way; it restarts on a good disk.
    Disk,
    Cut(usize),
    Hold(usize),
}

/// `Cut(i)` and `Hold(i)` name `hosts[i]`.
fn heal(sim: &mut turmoil::Sim, world: &Shared, hosts: &[String], f: Fault) {
    lock(world).event(format!("healed {f:?}"));
    match f {
        Fault::Crash => sim.bounce(BROKER),
        // Armed and never reached.
        Fault::Disk => crate::os::heal_disk(),
        Fault::Cut(c) => sim.repair(hosts[c].as_str(), BROKER),
        Fault::Hold(c) => sim.release(hosts[c].as_str(), BROKER),
    }
}

/// Whether client `c`'s link is cut or held now.
fn link_faulted(undo: &[(Duration, Fault)], c: usize) -> bool {
    undo.iter()
        .any(|(_, f)| matches!(f, Fault::Cut(x) | Fault::Hold(x) if *x == c))
}

/// Crashes the broker (restarted at `back` by the caller's undo list). Half
/// the crashes also cut a client off until then, which drops answers still
/// on the wire: the broker did the work (wrote a batch, a commit) and must
/// recognise the client's retry after it restarts. A crash alone delivers
/// what was sent before it, as a real socket does, and that window is too
/// short.
fn crash(
    sim: &mut turmoil::Sim,
    world: &Shared,
    rng: &mut StdRng,
    hosts: &[String],
    undo: &mut Vec<(Duration, Fault)>,
    back: Duration,
) {
    sim.crash(BROKER);
    let c = rng.gen_range(0..hosts.len());
    if rng.gen_bool(0.5) && !link_faulted(undo, c) {
        sim.partition(hosts[c].as_str(), BROKER);
        lock(world).event(format!("and {} cut off", hosts[c]));
        undo.push((back, Fault::Cut(c)));
    }
}

/// A simulation of `total` seconds whose message latency is up to
/// `latency_ms` (a range drawn from `rng`).
fn new_sim(
    seed: u64,
    rng: &mut StdRng,
    total: Duration,
    latency_ms: std::ops::Range<u64>,
) -> turmoil::Sim<'static> {
    let mut builder = turmoil::Builder::new();
    builder
        .simulation_duration(total)
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(rng.gen_range(latency_ms)))
        .rng_seed(seed);
    builder.build()
}

/// One step of the simulation, the world's clock set first; Ok(true)
/// once every client is done.
fn step(sim: &mut turmoil::Sim, world: &Shared) -> Result<bool, String> {
    lock(world).now = sim.elapsed();
    sim.step().map_err(|e| e.to_string())
}

/// Lets the clients go on for `settle` once every fault is healed, then
/// tells them to stop and runs until every one is done. Err once the
/// simulation itself failed (recorded in the world).
fn settle(
    sim: &mut turmoil::Sim,
    world: &Shared,
    stop: &AtomicBool,
    settle: Duration,
) -> Result<(), ()> {
    lock(world).event("every fault healed");
    let stop_at = sim.elapsed() + settle;
    loop {
        if sim.elapsed() >= stop_at {
            stop.store(true, Ordering::Relaxed);
        }
        match step(sim, world) {
            // Every client is done.
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                lock(world).stopped(e);
                return Err(());
            }
        }
    }
}

/// The producers' end: each one's final read was served; returns the
/// records they had acknowledged.
fn check_producers(w: &mut World, made: &[Producer]) -> usize {
    for (p, me) in made.iter().enumerate() {
        w.check(me.done, || {
            format!("producer {p}'s final read was never served")
        });
    }
    let records = made.iter().map(|p| p.acked.max(0) as usize).sum::<usize>();
    w.check(made.is_empty() || records > 0, || {
        "no record was acknowledged".into()
    });
    records
}

fn run_here(seed: u64, opts: &BrokerOptions, dir: PathBuf) -> Result<BrokerReport, Failure> {
    let world: Shared = Arc::new(Mutex::new(World::default()));
    let fail = |world: &Shared| Failure::of(seed, world);
    let mut rng = StdRng::seed_from_u64(seed);
    let total = opts.faults_for + opts.settle + Duration::from_secs(60);
    let mut sim = new_sim(seed, &mut rng, total, 2..20);
    {
        let (dir, world) = (dir.clone(), world.clone());
        sim.host(BROKER, move || broker_main(dir.clone(), world.clone()));
    }
    let state: Clients = offsets::new_clients(opts.clients as usize);
    let producing = opts.producers.min(PARTITIONS as u64) as usize;
    let made: Producers = Arc::new(Mutex::new(vec![Producer::default(); producing]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hosts = Vec::new();
    for c in 0..opts.clients as usize {
        let (world, state, stop) = (world.clone(), state.clone(), stop.clone());
        hosts.push(format!("client{c}"));
        sim.client(
            format!("client{c}"),
            offsets::client_main(c, seed, world, state, stop, Target::One),
        );
    }
    for p in 0..producing {
        let (world, made, stop) = (world.clone(), made.clone(), stop.clone());
        hosts.push(format!("producer{p}"));
        sim.client(
            format!("producer{p}"),
            produce::producer_main(p, seed, world, made, stop, Target::One),
        );
    }
    let group = groups::new_group(opts.members as usize);
    for i in 0..opts.members as usize {
        let (world, group, stop) = (world.clone(), group.clone(), stop.clone());
        hosts.push(format!("member{i}"));
        sim.client(
            format!("member{i}"),
            groups::member_main(i, seed, world, group, stop, Target::One),
        );
    }
    let transacting = (opts.transactional as usize).min(PARTITIONS as usize - producing);
    let txns: TxnProducers = Arc::new(Mutex::new(vec![TxnProducer::default(); transacting]));
    for t in 0..transacting {
        let (world, txns, stop) = (world.clone(), txns.clone(), stop.clone());
        let partition = (producing + t) as i32;
        hosts.push(format!("txn{t}"));
        sim.client(
            format!("txn{t}"),
            txn::txn_producer_main(t, partition, seed, world, txns, stop, Target::One),
        );
    }

    // The partitions producers write (at least one: a failure aimed at an
    // idle partition never comes).
    let written = (producing + transacting).max(1) as i32;
    let mut undo: Vec<(Duration, Fault)> = Vec::new();
    let (mut faults, mut crashes, mut disk_failures) = (0usize, 0usize, 0usize);
    // A fault about every two simulated seconds, after a second to start.
    let per_step = TICK.as_secs_f64() / 2.0;
    while sim.elapsed() < opts.faults_for {
        let now = sim.elapsed();
        let (due, later): (Vec<_>, Vec<_>) = undo.drain(..).partition(|(at, _)| *at <= now);
        undo = later;
        for (_, f) in due {
            heal(&mut sim, &world, &hosts, f);
        }
        if now > Duration::from_secs(1) && rng.gen_bool(per_step) {
            let c = rng.gen_range(0..hosts.len());
            let crashed = undo
                .iter()
                .any(|(_, f)| matches!(f, Fault::Crash | Fault::Disk));
            let fault = match rng.gen_range(0..3) {
                0 if !crashed && rng.gen_bool(0.5) => Fault::Disk,
                0 if !crashed => Fault::Crash,
                0 | 1 => Fault::Cut(c),
                _ => Fault::Hold(c),
            };
            // One fault per client link at a time: healing a second one
            // would end the first early (a long hold would never last).
            let busy = link_faulted(&undo, c);
            if !busy || matches!(fault, Fault::Crash | Fault::Disk) {
                let mut lasts = Duration::from_millis(rng.gen_range(50..3000));
                if matches!(fault, Fault::Cut(_) | Fault::Hold(_))
                    && hosts[c].starts_with("member")
                    && rng.gen_bool(0.3)
                {
                    // Past the group's session timeout: the member is expelled
                    // and comes back a zombie that must be fenced.
                    let session = groups::SESSION_TIMEOUT_MS as u64;
                    lasts = Duration::from_millis(rng.gen_range(session + 500..session * 3));
                }
                lock(&world).event(format!("fault {fault:?} for {lasts:?}"));
                match fault {
                    Fault::Crash => {
                        crash(&mut sim, &world, &mut rng, &hosts, &mut undo, now + lasts);
                        crashes += 1;
                    }
                    Fault::Disk => {
                        let (after, tear) = (rng.gen_range(0..40), rng.gen_bool(0.5));
                        // Any file, or one partition's (a transaction's
                        // markers are a few of the writes, so aimed at its
                        // partition a failure lands between its prepare and
                        // its completion), or the coordinator's logs, or one
                        // kind of file (the rare writes: an abort's index
                        // entry, a producer snapshot, a checkpoint).
                        const KINDS: [&str; 4] = [".txnindex", ".snapshot", "checkpoint", ".log"];
                        let within = match rng.gen_range(0..5) {
                            0 | 1 => None,
                            2 => Some(format!("/{TOPIC}-{}/", rng.gen_range(0..written))),
                            3 => Some(format!("/{COORDINATOR_TOPIC}-")),
                            _ => Some(KINDS[rng.gen_range(0..KINDS.len())].to_string()),
                        };
                        lock(&world).event(format!(
                            "the disk fails at file change {} from now{}{}",
                            after + 1,
                            within
                                .as_deref()
                                .map(|w| format!(" in {w}"))
                                .unwrap_or_default(),
                            if tear { ", torn" } else { "" }
                        ));
                        crate::os::fail_disk_after(after, tear, within);
                    }
                    Fault::Cut(c) => sim.partition(hosts[c].as_str(), BROKER),
                    Fault::Hold(c) => sim.hold(hosts[c].as_str(), BROKER),
                }
                faults += 1;
                undo.push((now + lasts, fault));
            }
        }
        if let Err(e) = step(&mut sim, &world) {
            lock(&world).stopped(e);
            return Err(fail(&world));
        }
        if crate::os::disk_failed() {
            // The crash comes within the step the disk failed in: the
            // broker ran on only as far as its answers to the failure.
            crate::os::heal_disk();
            lock(&world).event("the disk failed: the broker crashes");
            let back = sim.elapsed() + Duration::from_millis(rng.gen_range(50..3000));
            undo.retain(|(_, f)| !matches!(f, Fault::Disk));
            crash(&mut sim, &world, &mut rng, &hosts, &mut undo, back);
            undo.push((back, Fault::Crash));
            crashes += 1;
            disk_failures += 1;
        }
    }
    for (_, f) in std::mem::take(&mut undo) {
        heal(&mut sim, &world, &hosts, f);
    }
    if settle(&mut sim, &world, &stop, opts.settle).is_err() {
        return Err(fail(&world));
    }
    lock(&world).now = sim.elapsed();
    let (s, acks) = offsets::check_clients(&world, &state);
    let syncs = groups::check_settled(&world, &group);
    let mut w = lock(&world);
    let m = producers(&made).clone();
    let records = check_producers(&mut w, &m);
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
