//! Runs many seeds of the simulation: `karnak-sim [--broker] [--seeds A..B] [--faults-for SECS] [--verbose SEED]`
//! (`--broker`: a whole broker, `karnak_sim::broker`; `--cluster`: three
//! replicating brokers; else the metadata group).
//! Prints one line per failing seed (with its violations and the trace's
//! last events) and a summary; exits 1 when any seed failed. With
//! `KARNAK_SIM_LOG` set (an `EnvFilter`, e.g. `info` or
//! `karnak_broker=debug`), the brokers' own logs go to stderr, each line
//! under turmoil's `node{name=...}` span and stamped with the simulated
//! clock (the same seed may then run differently: the logger's own hash
//! maps draw from the seeded keys).

use std::time::{Duration, Instant};

karnak_sim::interpose!();

fn main() {
    if let Ok(filter) = std::env::var("KARNAK_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let mut args = std::env::args().skip(1);
    let mut seeds = 0..100u64;
    let mut opts = karnak_sim::Options::default();
    let mut verbose = None;
    let mut broker = false;
    let mut cluster = false;
    let mut one = None;
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--seeds" => {
                let v = value();
                let (from, to) = v.split_once("..").unwrap_or_else(|| usage("--seeds A..B"));
                seeds = parse(from)..parse(to);
            }
            "--faults-for" => opts.faults_for = Duration::from_secs(parse(&value())),
            "--verbose" => verbose = Some(parse(&value())),
            "--broker" => broker = true,
            "--cluster" => cluster = true,
            "--one" => one = Some(parse(&value())),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if broker || cluster {
        let mut b = karnak_sim::broker::BrokerOptions {
            faults_for: opts.faults_for,
            cluster,
            ..Default::default()
        };
        if let Some(seed) = one {
            return run_broker_one(seed, &b);
        }
        return run_broker_seeds(seeds, verbose, &mut b);
    }
    if let Some(seed) = verbose {
        opts.keep_trace = true;
        let run = karnak_sim::run(seed, &opts).map(|r| (r.trace, r.trace_hash));
        return print_trace(seed, run);
    }
    let started = Instant::now();
    let (mut failed, mut acks, mut faults, mut terms) = (Vec::new(), 0, 0, 0);
    let count = seeds.end.saturating_sub(seeds.start);
    for seed in seeds {
        match karnak_sim::run(seed, &opts) {
            Ok(r) => {
                acks += r.acks;
                faults += r.faults;
                terms += r.terms_with_a_leader;
            }
            Err(f) => {
                println!("{f}");
                failed.push(seed);
            }
        }
    }
    println!(
        "{count} seeds in {:.0?}: {} failed {failed:?}; {acks} acknowledged writes, {faults} faults, {terms} terms with a leader",
        started.elapsed(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

fn run_broker_seeds(
    seeds: std::ops::Range<u64>,
    verbose: Option<u64>,
    opts: &mut karnak_sim::broker::BrokerOptions,
) {
    if let Some(seed) = verbose {
        opts.keep_trace = true;
        let run = karnak_sim::broker::run_broker(seed, opts).map(|r| (r.trace, r.trace_hash));
        return print_trace(seed, run);
    }
    // Each seed in a process of its own: tokio numbers tasks process-wide,
    // and a crash drops the broker's tasks (so closes its connections) in
    // an order those numbers decide; a seed run after others would not
    // replay alone.
    let started = Instant::now();
    let (mut failed, mut acks, mut crashes, mut faults) = (Vec::new(), 0, 0, 0);
    let (mut records, mut txns, mut syncs, mut disks) = (0, 0, 0, 0);
    let count = seeds.end.saturating_sub(seeds.start);
    let me =
        std::env::current_exe().unwrap_or_else(|e| usage(&format!("this program's path: {e}")));
    for seed in seeds {
        let out = std::process::Command::new(&me)
            .arg(if opts.cluster {
                "--cluster"
            } else {
                "--broker"
            })
            .arg("--faults-for")
            .arg(opts.faults_for.as_secs().to_string())
            .args(["--one", &seed.to_string()])
            .output()
            .unwrap_or_else(|e| usage(&format!("running seed {seed}: {e}")));
        let text = String::from_utf8_lossy(&out.stdout);
        match text.split_whitespace().collect::<Vec<_>>()[..] {
            ["ok", a, c, f, r, t, g, d, ..] if out.status.success() => {
                syncs += g.parse::<usize>().unwrap_or(0);
                disks += d.parse::<usize>().unwrap_or(0);
                acks += a.parse::<usize>().unwrap_or(0);
                records += r.parse::<usize>().unwrap_or(0);
                txns += t.parse::<usize>().unwrap_or(0);
                crashes += c.parse::<usize>().unwrap_or(0);
                faults += f.parse::<usize>().unwrap_or(0);
            }
            _ => {
                print!("{text}{}", String::from_utf8_lossy(&out.stderr));
                failed.push(seed);
            }
        }
    }
    println!(
        "{count} broker seeds in {:.0?}: {} failed {failed:?}; {acks} acknowledged commits, {records} acknowledged records, {txns} acknowledged transaction commits, {syncs} group member syncs, {crashes} broker crashes, {disks} disk failures, {faults} faults",
        started.elapsed(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

/// One seed, for the loop above: `ok COMMITS CRASHES FAULTS RECORDS TXNS
/// SYNCS DISK_FAILURES HASH`, or the
/// failure and exit status 1.
fn run_broker_one(seed: u64, opts: &karnak_sim::broker::BrokerOptions) {
    match karnak_sim::broker::run_broker(seed, opts) {
        Ok(r) => println!(
            "ok {} {} {} {} {} {} {} {:016x}",
            r.acks,
            r.crashes,
            r.faults,
            r.records,
            r.transactions,
            r.syncs,
            r.disk_failures,
            r.trace_hash
        ),
        Err(f) => {
            println!("{f}");
            std::process::exit(1);
        }
    }
}

/// `--verbose`: the whole trace, then the outcome (exit status 1 on a
/// failure).
fn print_trace(seed: u64, run: Result<(Vec<String>, u64), karnak_sim::Failure>) {
    match run {
        Ok((trace, hash)) => {
            for e in &trace {
                println!("{e}");
            }
            println!("seed {seed}: ok, trace hash {hash:016x}");
        }
        Err(f) => {
            for e in &f.trace {
                println!("{e}");
            }
            println!("{f}");
            std::process::exit(1);
        }
    }
}

fn parse(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(why: &str) -> ! {
    eprintln!(
        "{why}\nusage: karnak-sim [--broker] [--seeds A..B] [--faults-for SECS] [--verbose SEED]"
    );
    std::process::exit(2)
}
