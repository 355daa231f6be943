//! The fixed seeds CI runs, and replay: a seed run twice gives the same
//! trace. More seeds: `sim/run-seeds.sh`.

use karnak_sim::{Options, run};

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
