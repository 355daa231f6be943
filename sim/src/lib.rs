//! Deterministic simulation of Karnak's metadata group: three voters run
//! openraft over Karnak's own Raft log store and metadata state machine,
//! on turmoil's simulated network, clock and file system (one per node).
//! Clients propose id-block leases and topic creations to random
//! nodes while a seeded schedule crashes and restarts nodes, partitions
//! them (both ways and one way) and holds links back so messages arrive
//! late and out of order. Then every fault is healed and the nodes must
//! agree; [`world`] lists the properties checked.
//!
//! Everything random draws from the seed: the fault schedule, the clients,
//! the election timeouts, turmoil's network and (built with
//! `--cfg tokio_unstable`) tokio's scheduler. A seed replays bit for bit:
//! [`Report::trace_hash`] is the same in every run of it.
//!
//! A crash is a power cut for the node: its writes that were not fsynced
//! are lost (some written back at random before it, as a page cache
//! would), and so are files and renames not yet synced into their
//! directory. The Raft log store's fsyncs are what keeps acknowledged
//! entries: without the one in `append`, seeds fail.

// Without the cfg tokio seeds its scheduler from the OS and no seed
// replays; a RUSTFLAGS variable replaces the workspace's config.
#[cfg(not(tokio_unstable))]
compile_error!(
    "build with --cfg tokio_unstable (.cargo/config.toml sets it; RUSTFLAGS replaces it)"
);

pub mod broker;
pub mod disk;
pub mod net;
pub mod os;
pub mod wire;
pub mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use karnak_coordinator::metadata::state_machine::MetadataStateMachine;
use karnak_coordinator::metadata::{MetadataCommand, MetadataRaft, MetadataReply, RaftLogStore};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use world::{Ack, Recorded, Shared, World, lock};

#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: u64,
    pub clients: u64,
    /// How long faults are injected (simulated time).
    pub faults_for: Duration,
    /// How long the healed group has to agree before that is a failure.
    pub heal_within: Duration,
    /// Keep the whole trace in the report (for `--verbose`).
    pub keep_trace: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            clients: 3,
            faults_for: Duration::from_secs(30),
            heal_within: Duration::from_secs(30),
            keep_trace: false,
        }
    }
}

#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub trace_hash: u64,
    pub events: usize,
    pub acks: usize,
    /// Proposals sent, refused or failed, and never answered.
    pub proposals: [u64; 3],
    pub terms_with_a_leader: usize,
    pub faults: usize,
    pub simulated: Duration,
    pub trace: Vec<String>,
}

#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
}

impl Failure {
    /// The violations and trace the world recorded, as a failure of `seed`.
    pub fn of(seed: u64, world: &Shared) -> Failure {
        let w = lock(world);
        Failure {
            seed,
            violations: w.violations.clone(),
            trace: w.trace.clone(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed:", self.seed)?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        let tail = self.trace.len().saturating_sub(60);
        writeln!(f, "last {} events:", self.trace.len() - tail)?;
        for e in &self.trace[tail..] {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

const TICK: Duration = Duration::from_millis(1);
const SEQUENCER: &str = "sim";
/// Each host has a file system of its own.
const DATA_DIR: &str = "/karnak/raft";

fn host(id: u64) -> String {
    format!("node{id}")
}

fn addr(id: u64) -> String {
    format!("{}:{}", host(id), net::RAFT_PORT)
}

type Registry = Arc<Mutex<BTreeMap<u64, (Raft<MetadataRaft>, MetadataStateMachine)>>>;

fn registry(
    r: &Registry,
) -> std::sync::MutexGuard<'_, BTreeMap<u64, (Raft<MetadataRaft>, MetadataStateMachine)>> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// The broker's metadata group settings (broker/src/cluster/node.rs), with
/// a fixed election timeout per node drawn from the seed (openraft draws
/// it from a thread RNG between min and max; max = min + 1 pins it), and
/// snapshots often enough that lagging nodes are sent one.
fn raft_config(election_ms: u64) -> Result<Arc<openraft::Config>, String> {
    let c = openraft::Config {
        cluster_name: "karnak-sim".into(),
        heartbeat_interval: 100,
        election_timeout_min: election_ms,
        election_timeout_max: election_ms + 1,
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(50),
        max_in_snapshot_log_to_keep: 10,
        ..Default::default()
    };
    c.validate().map(Arc::new).map_err(|e| e.to_string())
}

async fn node_main(
    id: u64,
    dir: PathBuf,
    voters: BTreeMap<u64, BasicNode>,
    config: Arc<openraft::Config>,
    world: Shared,
    nodes: Registry,
) -> turmoil::Result {
    let log = RaftLogStore::open_on(disk::SimDisk::shared(), &dir)?;
    let sm = MetadataStateMachine::open_on(disk::SimDisk::shared(), &dir)?;
    let recorded = Recorded {
        inner: sm.clone(),
        node: id,
        world: world.clone(),
    };
    let raft = Raft::new(id, config, net::Peers, log, recorded).await?;
    lock(&world).event(format!("node {id} starts"));
    // Every voter starts with the same membership; on a restart the log
    // already has it and this is refused, as it should be.
    let _ = raft.initialize(voters).await;
    registry(&nodes).insert(id, (raft.clone(), sm));
    let mut metrics = raft.metrics();
    tokio::task::spawn_local(async move {
        loop {
            let (state, term) = {
                let m = metrics.borrow_and_update();
                (m.state, m.current_term)
            };
            {
                let mut w = lock(&world);
                w.term(id, term);
                if state == ServerState::Leader {
                    w.leader(term, id);
                }
            }
            if metrics.changed().await.is_err() {
                break;
            }
        }
    });
    net::serve(raft).await?;
    Ok(())
}

/// What an answer acknowledges, for the final checks.
type AckOf = Box<dyn Fn(&MetadataReply) -> Option<Ack>>;

/// One client: proposals to random nodes until told to stop.
async fn client_main(
    c: u64,
    seed: u64,
    nodes: u64,
    world: Shared,
    stop: Arc<AtomicBool>,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(c + 1)));
    // Client 0 first registers the brokers topics are placed on.
    let mut registered = c != 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let target = rng.gen_range(1..=nodes);
        let (cmd, ack): (MetadataCommand, AckOf) = if !registered {
            let id = (n % nodes) as i32 + 1;
            let cmd = if n < nodes {
                MetadataCommand::RegisterBroker {
                    id,
                    incarnation: [id as u8; 16],
                    listeners: vec![],
                    rack: None,
                    unclean_shutdown: false,
                }
            } else {
                MetadataCommand::UnfenceBroker { id }
            };
            (cmd, Box::new(|_| None))
        } else if rng.gen_bool(0.7) {
            let size = rng.gen_range(1..100);
            (
                MetadataCommand::AllocateIdBlock {
                    sequencer: SEQUENCER.into(),
                    size,
                    from: 0,
                },
                Box::new(move |r| match r {
                    MetadataReply::IdBlock { first } => Some(Ack::IdBlock {
                        first: *first,
                        size,
                    }),
                    _ => None,
                }),
            )
        } else {
            let name = format!("c{c}-t{n}");
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&c.to_be_bytes());
            id[8..].copy_from_slice(&n.to_be_bytes());
            let replica = rng.gen_range(1..=nodes) as i32;
            (
                MetadataCommand::CreateTopic {
                    name: name.clone(),
                    id,
                    configs: BTreeMap::new(),
                    assignments: vec![vec![replica]],
                },
                Box::new(move |r| {
                    matches!(r, MetadataReply::Done).then(|| Ack::Topic(name.clone()))
                }),
            )
        };
        let what = format!("{cmd:?}");
        let answer = net::propose(&addr(target), cmd, Duration::from_secs(3)).await;
        {
            let mut w = lock(&world);
            w.proposals[0] += 1;
            match answer {
                Ok(Ok(Ok(reply))) => {
                    if let Some(a) = ack(&reply) {
                        w.event(format!("client {c}: node {target} acknowledged {a:?}"));
                        w.acks.push(a);
                    }
                    n += 1;
                }
                Ok(Ok(Err(refused))) => {
                    w.proposals[1] += 1;
                    w.event(format!(
                        "client {c}: node {target} refused {what}: {refused}"
                    ));
                    n += 1;
                }
                Ok(Err(not_committed)) => {
                    w.proposals[1] += 1;
                    let short: String = not_committed.chars().take(80).collect();
                    w.event(format!("client {c}: node {target}: {short}"));
                }
                Err(e) => {
                    w.proposals[2] += 1;
                    w.event(format!("client {c}: node {target}: {e}"));
                }
            }
        }
        if !registered && n >= 2 * nodes {
            registered = true;
            n = 0;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..150))).await;
    }
    Ok(())
}

/// A fault and when it is undone.
#[derive(Debug, Clone)]
enum Fault {
    Crash(u64),
    Partition(u64),
    OneWay(u64, u64),
    Hold(u64, u64),
}

/// Runs one seed; Ok when every check held. On a thread of its own, whose
/// clock and random bytes are the simulation's ([`os`]).
pub fn run(seed: u64, opts: &Options) -> Result<Report, Failure> {
    let opts = opts.clone();
    on_sim_thread(seed, move || run_here(seed, &opts))
}

/// Runs `f` on a new thread whose clock and random bytes are the
/// simulation's for `seed` ([`os::enter`]); a panic there is a failure.
pub fn on_sim_thread<T: Send + 'static>(
    seed: u64,
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    std::thread::Builder::new()
        .name(format!("sim-{seed}"))
        .spawn(move || {
            os::enter(seed);
            f()
        })
        .and_then(|t| {
            t.join()
                .map_err(|_| std::io::Error::other("the simulation panicked"))
        })
        .unwrap_or_else(|e| {
            Err(Failure {
                seed,
                violations: vec![format!("the simulation's thread: {e}")],
                trace: Vec::new(),
            })
        })
}

fn run_here(seed: u64, opts: &Options) -> Result<Report, Failure> {
    let world: Shared = Arc::new(Mutex::new(World::default()));
    let fail = |world: &Shared| Failure::of(seed, world);
    let mut rng = StdRng::seed_from_u64(seed);
    let total = opts.faults_for + opts.heal_within + Duration::from_secs(10);
    let mut builder = turmoil::Builder::new();
    builder
        .simulation_duration(total)
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(rng.gen_range(2..40)))
        .enable_random_order()
        .rng_seed(seed);
    // Writes not fsynced are lost at a crash, unless the simulated disk
    // happened to write them back first (as a page cache may).
    builder.fs().sync_probability(rng.gen_range(0.0..0.5));
    let mut sim = builder.build();
    let voters: BTreeMap<u64, BasicNode> = (1..=opts.nodes)
        .map(|id| (id, BasicNode::new(addr(id))))
        .collect();
    let nodes: Registry = Arc::default();
    for id in 1..=opts.nodes {
        let config = match raft_config(rng.gen_range(300..600)) {
            Ok(c) => c,
            Err(e) => {
                lock(&world).violations.push(e);
                return Err(fail(&world));
            }
        };
        let dir = PathBuf::from(DATA_DIR);
        let (voters, world, nodes) = (voters.clone(), world.clone(), nodes.clone());
        sim.host(host(id), move || {
            node_main(
                id,
                dir.clone(),
                voters.clone(),
                config.clone(),
                world.clone(),
                nodes.clone(),
            )
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    for c in 0..opts.clients {
        let (world, stop, n) = (world.clone(), stop.clone(), opts.nodes);
        sim.client(format!("client{c}"), client_main(c, seed, n, world, stop));
    }

    let mut undo: Vec<(Duration, Fault)> = Vec::new();
    let mut crashed: Vec<u64> = Vec::new();
    let mut faults = 0usize;
    // A fault begins about once a simulated second.
    let per_step = TICK.as_secs_f64();
    while sim.elapsed() < opts.faults_for {
        let now = sim.elapsed();
        let (due, later): (Vec<_>, Vec<_>) = undo.drain(..).partition(|(at, _)| *at <= now);
        undo = later;
        for (_, f) in due {
            heal(&mut sim, &world, &f, &mut crashed, opts.nodes);
        }
        if rng.gen_bool(per_step) {
            let a = rng.gen_range(1..=opts.nodes);
            let b = (a + rng.gen_range(1..opts.nodes) - 1) % opts.nodes + 1;
            let fault = match rng.gen_range(0..4) {
                0 if !crashed.contains(&a) => Fault::Crash(a),
                1 => Fault::Partition(a),
                2 => Fault::OneWay(a, b),
                _ => Fault::Hold(a, b),
            };
            let lasts = Duration::from_millis(rng.gen_range(200..5000));
            lock(&world).event(format!("fault {fault:?} for {lasts:?}"));
            match fault {
                Fault::Crash(n) => {
                    sim.crash(host(n));
                    crashed.push(n);
                }
                Fault::Partition(n) => {
                    for o in (1..=opts.nodes).filter(|o| *o != n) {
                        sim.partition(host(n), host(o));
                    }
                }
                Fault::OneWay(x, y) => sim.partition_oneway(host(x), host(y)),
                Fault::Hold(x, y) => sim.hold(host(x), host(y)),
            }
            faults += 1;
            undo.push((now + lasts, fault));
        }
        if let Err(e) = step(&mut sim, &world) {
            lock(&world).stopped(e);
            return Err(fail(&world));
        }
    }
    // Heal everything; clients go on for a while, then stop.
    for (_, f) in std::mem::take(&mut undo) {
        heal(&mut sim, &world, &f, &mut crashed, opts.nodes);
    }
    lock(&world).event("every fault healed");
    let settle_until = sim.elapsed() + Duration::from_secs(3);
    let deadline = sim.elapsed() + opts.heal_within;
    let mut converged = false;
    while sim.elapsed() < deadline {
        if sim.elapsed() >= settle_until {
            stop.store(true, Ordering::Relaxed);
            if agreed(&nodes, opts.nodes) {
                converged = true;
                break;
            }
        }
        if let Err(e) = step(&mut sim, &world) {
            lock(&world).stopped(e);
            return Err(fail(&world));
        }
    }
    lock(&world).now = sim.elapsed();
    final_checks(&world, &nodes, opts.nodes, converged);
    let w = lock(&world);
    if !w.violations.is_empty() {
        drop(w);
        return Err(fail(&world));
    }
    Ok(Report {
        seed,
        trace_hash: w.trace_hash(),
        events: w.trace.len(),
        acks: w.acks.len(),
        proposals: w.proposals,
        terms_with_a_leader: w.terms_with_a_leader(),
        faults,
        simulated: sim.elapsed(),
        trace: if opts.keep_trace {
            w.trace.clone()
        } else {
            Vec::new()
        },
    })
}

fn heal(sim: &mut turmoil::Sim, world: &Shared, f: &Fault, crashed: &mut Vec<u64>, count: u64) {
    lock(world).event(format!("healed {f:?}"));
    match *f {
        Fault::Crash(n) => {
            sim.bounce(host(n));
            crashed.retain(|c| *c != n);
        }
        Fault::Partition(n) => {
            for o in (1..=count).filter(|o| *o != n) {
                sim.repair(host(n), host(o));
            }
        }
        Fault::OneWay(x, y) => sim.repair_oneway(host(x), host(y)),
        Fault::Hold(x, y) => sim.release(host(x), host(y)),
    }
}

fn step(sim: &mut turmoil::Sim, world: &Shared) -> Result<(), String> {
    lock(world).now = sim.elapsed();
    sim.step().map(|_| ()).map_err(|e| e.to_string())
}

/// Every node has applied everything in its log, the same last entry, and
/// names the same leader.
fn agreed(nodes: &Registry, count: u64) -> bool {
    let nodes = registry(nodes);
    if nodes.len() as u64 != count {
        return false;
    }
    let mut seen = None;
    for (raft, _) in nodes.values() {
        let m = raft.metrics().borrow().clone();
        let Some(applied) = m.last_applied else {
            return false;
        };
        if m.last_log_index != Some(applied.index) || m.current_leader.is_none() {
            return false;
        }
        let here = (applied, m.current_leader);
        if seen.is_some_and(|s| s != here) {
            return false;
        }
        seen = Some(here);
    }
    true
}

fn final_checks(world: &Shared, nodes: &Registry, count: u64, converged: bool) {
    let states: Vec<(u64, Arc<karnak_coordinator::metadata::ClusterMetadata>)> = registry(nodes)
        .iter()
        .map(|(id, (_, sm))| (*id, sm.subscribe().borrow().clone()))
        .collect();
    let mut w = lock(world);
    w.check(converged, || {
        format!("the healed group did not agree within the deadline ({count} nodes)")
    });
    let Some((first, reference)) = states.first().cloned() else {
        w.check(false, || "no node ever started".into());
        return;
    };
    for (id, s) in &states[1..] {
        w.check(**s == *reference, || {
            format!("node {id}'s state differs from node {first}'s")
        });
    }
    let acks = w.acks.clone();
    let mut blocks: Vec<(u64, u64)> = Vec::new();
    for a in &acks {
        match a {
            Ack::Topic(name) => {
                for (id, s) in &states {
                    w.check(s.topics.contains_key(name), || {
                        format!("acknowledged topic {name} is missing on node {id}")
                    });
                }
            }
            Ack::IdBlock { first, size } => blocks.push((*first, *size)),
        }
    }
    blocks.sort();
    for pair in blocks.windows(2) {
        let ((a, asz), (b, _)) = (pair[0], pair[1]);
        w.check(a + asz <= b, || {
            format!("id blocks overlap: [{a}, {}) and one from {b}", a + asz)
        });
    }
    if let Some(&(last, size)) = blocks.last() {
        let leased = reference.id_leases.get(SEQUENCER).copied().unwrap_or(0);
        w.check(leased >= last + size, || {
            format!(
                "ids up to {} were handed out but the lease stops at {leased}",
                last + size
            )
        });
    }
}
