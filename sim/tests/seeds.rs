//! The fixed seeds CI runs, and replay: a seed run twice gives the same
//! trace. More seeds: `sim/run-seeds.sh`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use karnak_sim::{Options, run};

karnak_sim::interpose!();

/// What a thread entered with `seed` sees: the wall clock, and the order
/// of a HashMap's keys (its hasher's keys come from `getrandom`).
fn seen_by(seed: Option<u64>) -> (Duration, Vec<u32>) {
    std::thread::spawn(move || {
        if let Some(seed) = seed {
            karnak_sim::os::enter(seed);
        }
        let keys: HashMap<u32, ()> = (0..64).map(|k| (k, ())).collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (now, keys.into_keys().collect())
    })
    .join()
    .expect("thread")
}

#[test]
fn the_simulation_thread_has_the_seed_s_clock_and_hash_keys() {
    let (a_now, a) = seen_by(Some(7));
    let (_, b) = seen_by(Some(7));
    let (_, c) = seen_by(Some(8));
    let (real_now, d) = seen_by(None);
    let (_, e) = seen_by(None);
    assert_eq!(a, b, "the same seed, different hash orders");
    assert_ne!(a, c, "two seeds, one hash order");
    assert_ne!(
        d, e,
        "threads off the simulation draw their hash keys from the seed"
    );
    // Off a running simulation the simulated clock stands at its epoch
    // (2026-01-01); other threads have the real one.
    assert_eq!(a_now, Duration::from_secs(1_767_225_600));
    assert!(real_now > Duration::from_secs(1_767_225_600 + 86_400));
}

#[test]
fn fixed_seeds_hold_every_property() {
    let opts = Options::default();
    let mut failures = Vec::new();
    for seed in 0..8 {
        match run(seed, &opts) {
            Ok(r) => {
                assert!(r.acks > 0, "seed {seed}: nothing acknowledged: {r:?}");
                assert!(r.faults > 0, "seed {seed}: no fault injected");
            }
            Err(f) => failures.push(f.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let opts = Options {
        keep_trace: true,
        ..Options::default()
    };
    let a = run(1234, &opts).unwrap_or_else(|f| panic!("{f}"));
    let b = run(1234, &opts).unwrap_or_else(|f| panic!("{f}"));
    if a.trace != b.trace {
        let at = a.trace.iter().zip(&b.trace).position(|(x, y)| x != y);
        panic!(
            "the same seed ran differently: first difference at event {at:?}: {:?} vs {:?}",
            at.and_then(|i| a.trace.get(i)),
            at.and_then(|i| b.trace.get(i))
        );
    }
    assert_eq!(a.trace_hash, b.trace_hash);
    let c = run(1235, &opts).unwrap_or_else(|f| panic!("{f}"));
    assert_ne!(a.trace_hash, c.trace_hash, "two seeds ran the same");
}
