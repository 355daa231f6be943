//! A whole Karnak broker under the simulation: `karnak_broker`'s own
//! startup, connection handling, request dispatch, coordinator shards,
//! storage and group commit, run on turmoil's seeded scheduler, network
//! and clock ([`crate::os`]), with its blocking file work run in line
//! (`karnak_storage::blocking`). Clients speak the Kafka protocol over
//! turmoil's TCP ([`crate::wire`]) while a seeded schedule crashes and
//! restarts the broker and cuts or holds the clients' links.
//!
//! The workload: the clients create a topic (CreateTopics, through the
//! broker's metadata group), then each commits ever larger offsets for it
//! in a group of its own (OffsetCommit as a standalone consumer: the
//! coordinator shard's log and its group commit) and reads them back
//! (OffsetFetch). Checked as it happens and at the end:
//! - no acknowledged commit is lost: a read (after restarts too) never
//!   shows less than the last offset acknowledged before it was sent;
//! - nothing is made up: it never shows more than the client has sent;
//! - once faults end, every client's final read is served.
//!
//! A crash here is the process's (the broker's files are real ones in a
//! temporary directory, so what it wrote survives as the page cache would
//! keep it); power cuts are the metadata simulation's ([`crate::run`]) and
//! the power-cut tests'. Producing, fetching, groups and transactions come
//! once the other metadata waits no longer block a runtime thread
//! (auto-creation, id leases: `block_in_place`, which a single-threaded
//! runtime cannot do; CreateTopics awaits).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, GroupId, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Failure;
use crate::wire::{Conn, Failed};
use crate::world::{Shared, World, lock};

const BROKER: &str = "broker";
const PORT: u16 = 9092;
/// The topic the offsets are committed for (created by the clients).
const TOPIC: &str = "sim";
/// How long a client waits for an answer before it reconnects (a held or
/// cut link never answers).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub clients: u64,
    /// How long faults are injected (simulated time).
    pub faults_for: Duration,
    /// How long clients go on once every fault is healed.
    pub settle: Duration,
    pub keep_trace: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            clients: 3,
            faults_for: Duration::from_secs(20),
            settle: Duration::from_secs(10),
            keep_trace: false,
        }
    }
}

#[derive(Debug)]
pub struct BrokerReport {
    pub seed: u64,
    pub trace_hash: u64,
    pub acks: usize,
    pub reads: usize,
    pub crashes: usize,
    pub faults: usize,
    pub simulated: Duration,
    pub trace: Vec<String>,
}

/// What each client sent, had acknowledged, and read last.
#[derive(Debug, Default, Clone, Copy)]
struct Client {
    sent: i64,
    acked: i64,
    reads: usize,
    last_read: Option<i64>,
    done: bool,
}

type Clients = Arc<Mutex<Vec<Client>>>;

fn clients(c: &Clients) -> std::sync::MutexGuard<'_, Vec<Client>> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one seed of the broker simulation, on a thread of its own (see
/// [`crate::run`]).
pub fn run_broker(seed: u64, opts: &BrokerOptions) -> Result<BrokerReport, Failure> {
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
        log_cleaner_enable: Some(false),
        ..Default::default()
    };
    let embedded = karnak_broker::Embedded {
        connections: rx,
        shutdown: Box::pin(std::future::pending()),
    };
    karnak_broker::run_embedded(args, embedded)
        .await
        .map_err(|e| format!("the broker stopped: {e:#}"))?;
    Ok(())
}

/// CreateTopics for [`TOPIC`]: Ok once it exists (made now or before).
async fn create_topic(conn: &mut Conn) -> Result<i16, Failed> {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_num_partitions(1)
                .with_replication_factor(1),
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

async fn commit(conn: &mut Conn, group: &str, offset: i64) -> Result<i16, Failed> {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    let resp: OffsetCommitResponse = timed(conn.call(ApiKey::OffsetCommit, 8, &req)).await?;
    resp.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .ok_or_else(|| "an OffsetCommit answer without the partition".into())
}

/// The group's committed offset (-1: none), or the error code.
async fn fetch(conn: &mut Conn, group: &str) -> Result<Result<i64, i16>, Failed> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_indexes(vec![0]),
        ]));
    let resp: OffsetFetchResponse = timed(conn.call(ApiKey::OffsetFetch, 7, &req)).await?;
    if resp.error_code != 0 {
        return Ok(Err(resp.error_code));
    }
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("an OffsetFetch answer without the partition")?;
    Ok(if p.error_code != 0 {
        Err(p.error_code)
    } else {
        Ok(p.committed_offset)
    })
}

async fn timed<T>(f: impl std::future::Future<Output = Result<T, Failed>>) -> Result<T, Failed> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
}

async fn sleep_ms(rng: &mut StdRng, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(lo..hi))).await;
}

/// One client: commits and reads back until told to stop, then reads once
/// more until served.
async fn client_main(
    c: usize,
    seed: u64,
    world: Shared,
    state: Clients,
    stop: Arc<AtomicBool>,
) -> turmoil::Result {
    let mut rng =
        StdRng::seed_from_u64(seed ^ (0x2545_f491_4f6c_dd1du64.wrapping_mul(c as u64 + 1)));
    let group = format!("group-{c}");
    let addr = format!("{BROKER}:{PORT}");
    let mut next = 0i64;
    let mut topic = false;
    loop {
        let mut conn = match Conn::connect(&addr).await {
            Ok(conn) => conn,
            Err(_) => {
                sleep_ms(&mut rng, 10, 200).await;
                continue;
            }
        };
        while !topic {
            match create_topic(&mut conn).await {
                Ok(0) => {
                    lock(&world).event(format!("client {c} sees topic {TOPIC}"));
                    topic = true;
                }
                Ok(code) => {
                    lock(&world).event(format!("client {c} topic creation refused ({code})"));
                    sleep_ms(&mut rng, 10, 100).await;
                }
                Err(_) => break,
            }
        }
        if !topic {
            continue;
        }
        let mut fresh = true;
        loop {
            if stop.load(Ordering::Relaxed) {
                // The final read: what stays once every fault is over.
                match fetch(&mut conn, &group).await {
                    Ok(Ok(v)) => {
                        read(&world, &state, c, v, true);
                        return Ok(());
                    }
                    Ok(Err(_)) => {
                        sleep_ms(&mut rng, 10, 100).await;
                        continue;
                    }
                    Err(_) => break,
                }
            }
            // A read first on every connection: after a crash, what the
            // restarted broker recovered, before a new commit hides it.
            if fresh || rng.gen_bool(0.3) {
                match fetch(&mut conn, &group).await {
                    Ok(Ok(v)) => read(&world, &state, c, v, false),
                    Ok(Err(code)) => {
                        lock(&world).event(format!("client {c} read refused ({code})"));
                    }
                    Err(_) => break,
                }
                fresh = false;
            }
            next += rng.gen_range(1..4);
            clients(&state)[c].sent = next;
            match commit(&mut conn, &group, next).await {
                Ok(0) => {
                    clients(&state)[c].acked = next;
                    lock(&world).event(format!("client {c} commit {next} acknowledged"));
                }
                Ok(code) => {
                    lock(&world).event(format!("client {c} commit {next} refused ({code})"));
                    sleep_ms(&mut rng, 10, 100).await;
                }
                Err(e) => {
                    lock(&world).event(format!("client {c} commit {next}: {e}"));
                    break;
                }
            }
            sleep_ms(&mut rng, 1, 30).await;
        }
        sleep_ms(&mut rng, 10, 100).await;
    }
}

/// A read of client `c`'s committed offset: never below what was
/// acknowledged before it, never above what was sent.
fn read(world: &Shared, state: &Clients, c: usize, v: i64, last: bool) {
    let mut s = clients(state);
    let me = &mut s[c];
    me.reads += 1;
    me.last_read = Some(v);
    me.done |= last;
    let (acked, sent) = (me.acked, me.sent);
    drop(s);
    let mut w = lock(world);
    w.event(format!(
        "client {c} reads {v}{}",
        if last { " (final)" } else { "" }
    ));
    w.check(v >= acked, || {
        format!("client {c} read committed offset {v} after {acked} was acknowledged")
    });
    w.check(v <= sent, || {
        format!("client {c} read committed offset {v} but sent at most {sent}")
    });
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash,
    Cut(usize),
    Hold(usize),
}

fn client_host(c: usize) -> String {
    format!("client{c}")
}

fn heal(sim: &mut turmoil::Sim, world: &Shared, f: Fault) {
    lock(world).event(format!("healed {f:?}"));
    match f {
        Fault::Crash => sim.bounce(BROKER),
        Fault::Cut(c) => sim.repair(client_host(c), BROKER),
        Fault::Hold(c) => sim.release(client_host(c), BROKER),
    }
}

fn run_here(seed: u64, opts: &BrokerOptions, dir: PathBuf) -> Result<BrokerReport, Failure> {
    let world: Shared = Arc::new(Mutex::new(World::default()));
    let fail = |world: &Shared| Failure::of(seed, world);
    let mut rng = StdRng::seed_from_u64(seed);
    let total = opts.faults_for + opts.settle + Duration::from_secs(60);
    let mut builder = turmoil::Builder::new();
    builder
        .simulation_duration(total)
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(rng.gen_range(2..20)))
        .rng_seed(seed);
    let mut sim = builder.build();
    {
        let (dir, world) = (dir.clone(), world.clone());
        sim.host(BROKER, move || broker_main(dir.clone(), world.clone()));
    }
    let state: Clients = Arc::new(Mutex::new(vec![
        Client {
            sent: -1,
            acked: -1,
            ..Client::default()
        };
        opts.clients as usize
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    for c in 0..opts.clients as usize {
        let (world, state, stop) = (world.clone(), state.clone(), stop.clone());
        sim.client(client_host(c), client_main(c, seed, world, state, stop));
    }

    let mut undo: Vec<(Duration, Fault)> = Vec::new();
    let (mut faults, mut crashes) = (0usize, 0usize);
    // A fault about every two simulated seconds, after a second to start.
    let per_step = TICK.as_secs_f64() / 2.0;
    let step = |sim: &mut turmoil::Sim, world: &Shared| -> Result<bool, String> {
        lock(world).now = sim.elapsed();
        sim.step().map_err(|e| e.to_string())
    };
    while sim.elapsed() < opts.faults_for {
        let now = sim.elapsed();
        let (due, later): (Vec<_>, Vec<_>) = undo.drain(..).partition(|(at, _)| *at <= now);
        undo = later;
        for (_, f) in due {
            heal(&mut sim, &world, f);
        }
        if now > Duration::from_secs(1) && rng.gen_bool(per_step) {
            let c = rng.gen_range(0..opts.clients as usize);
            let crashed = undo.iter().any(|(_, f)| matches!(f, Fault::Crash));
            let fault = match rng.gen_range(0..3) {
                0 if !crashed => Fault::Crash,
                0 | 1 => Fault::Cut(c),
                _ => Fault::Hold(c),
            };
            let lasts = Duration::from_millis(rng.gen_range(50..3000));
            lock(&world).event(format!("fault {fault:?} for {lasts:?}"));
            match fault {
                Fault::Crash => {
                    sim.crash(BROKER);
                    crashes += 1;
                }
                Fault::Cut(c) => sim.partition(client_host(c), BROKER),
                Fault::Hold(c) => sim.hold(client_host(c), BROKER),
            }
            faults += 1;
            undo.push((now + lasts, fault));
        }
        if let Err(e) = step(&mut sim, &world) {
            lock(&world)
                .violations
                .push(format!("the simulation stopped: {e}"));
            return Err(fail(&world));
        }
    }
    for (_, f) in std::mem::take(&mut undo) {
        heal(&mut sim, &world, f);
    }
    lock(&world).event("every fault healed");
    let stop_at = sim.elapsed() + opts.settle;
    loop {
        if sim.elapsed() >= stop_at {
            stop.store(true, Ordering::Relaxed);
        }
        match step(&mut sim, &world) {
            // Every client is done.
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                lock(&world)
                    .violations
                    .push(format!("the simulation stopped: {e}"));
                return Err(fail(&world));
            }
        }
    }
    let s = clients(&state).clone();
    let mut w = lock(&world);
    w.now = sim.elapsed();
    for (c, me) in s.iter().enumerate() {
        w.check(me.done, || {
            format!("client {c}'s final read was never served")
        });
    }
    let acks = w
        .trace
        .iter()
        .filter(|e| e.contains("acknowledged"))
        .count();
    w.check(acks > 0, || "nothing was acknowledged".into());
    if !w.violations.is_empty() {
        drop(w);
        return Err(fail(&world));
    }
    Ok(BrokerReport {
        seed,
        trace_hash: w.trace_hash(),
        acks,
        reads: s.iter().map(|c| c.reads).sum(),
        crashes,
        faults,
        simulated: sim.elapsed(),
        trace: if opts.keep_trace {
            w.trace.clone()
        } else {
            Vec::new()
        },
    })
}
