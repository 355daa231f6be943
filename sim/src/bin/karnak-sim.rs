//! Runs many seeds of the simulation: `karnak-sim [--seeds A..B] [--faults-for SECS] [--verbose SEED]`.
//! Prints one line per failing seed (with its violations and the trace's
//! last events) and a summary; exits 1 when any seed failed.

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seeds = 0..100u64;
    let mut opts = karnak_sim::Options::default();
    let mut verbose = None;
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
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if let Some(seed) = verbose {
        opts.keep_trace = true;
        match karnak_sim::run(seed, &opts) {
            Ok(r) => {
                for e in &r.trace {
                    println!("{e}");
                }
                println!("seed {seed}: ok, trace hash {:016x}", r.trace_hash);
            }
            Err(f) => {
                for e in &f.trace {
                    println!("{e}");
                }
                println!("{f}");
                std::process::exit(1);
            }
        }
        return;
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

fn parse(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(why: &str) -> ! {
    eprintln!("{why}\nusage: karnak-sim [--seeds A..B] [--faults-for SECS] [--verbose SEED]");
    std::process::exit(2)
}
