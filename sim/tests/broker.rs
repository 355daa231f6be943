//! A whole broker under the simulation (see `karnak_sim::broker`): fixed
//! seeds hold every property, and a seed replays bit for bit. Each run is
//! a process of its own (the `karnak-sim` binary), as `sim/run-seeds.sh
//! --broker` runs them: tokio numbers tasks process-wide and a crash drops
//! the broker's tasks in that order, so only a fresh process replays.

use std::process::Command;

fn karnak_sim(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_karnak-sim"))
        .args(args)
        .output()
        .expect("running karnak-sim");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The number `back` words before the first word of `summary` starting
/// with `word` (0 when there is none).
fn count(summary: &str, word: &str, back: usize) -> u64 {
    let words: Vec<&str> = summary.split_whitespace().collect();
    words
        .iter()
        .position(|w| w.starts_with(word))
        .and_then(|i| words.get(i.checked_sub(back)?))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_broker_keeps_what_it_acknowledged_and_fences_what_it_must_through_crashes() {
    let (ok, text) = karnak_sim(&["--broker", "--seeds", "0..4"]);
    assert!(ok, "{text}");
    // "4 broker seeds in ...: 0 failed []; N acknowledged commits, R
    // acknowledged records, T acknowledged transaction commits, G group
    // member syncs, C broker crashes, D disk failures, F faults"
    let summary = text.lines().last().unwrap_or_default();
    let count = |word: &str, back: usize| count(summary, word, back);
    assert!(count("acknowledged", 1) > 1000, "{summary}");
    assert!(count("records,", 2) > 1000, "{summary}");
    assert!(count("transaction", 2) > 100, "{summary}");
    assert!(
        count("group", 1) > 20,
        "too few group rebalances: {summary}"
    );
    assert!(count("crashes", 2) > 4, "too few broker crashes: {summary}");
    assert!(count("disk", 1) > 0, "no disk failure: {summary}");
}

/// Runs `seed` twice and `other` once with `mode` (`--broker` or
/// `--cluster`): the two traces of `seed` are the same, `other`'s is not.
fn assert_replays(mode: &str, seed: u64, other: u64) {
    let (seed, other) = (seed.to_string(), other.to_string());
    let (ok_a, a) = karnak_sim(&[mode, "--verbose", &seed]);
    let (ok_b, b) = karnak_sim(&[mode, "--verbose", &seed]);
    assert!(ok_a && ok_b, "{a}\n{b}");
    if a != b {
        let at = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        panic!(
            "the same seed ran differently: first difference at line {at:?}: {:?} vs {:?}",
            at.and_then(|i| a.lines().nth(i)),
            at.and_then(|i| b.lines().nth(i))
        );
    }
    assert!(a.lines().count() > 1000, "a short trace:\n{a}");
    let (_, c) = karnak_sim(&[mode, "--verbose", &other]);
    assert_ne!(a, c, "two seeds ran the same");
}

#[test]
fn a_broker_seed_replays_bit_for_bit() {
    assert_replays("--broker", 77, 78);
}

/// The metadata group's elections are part of the seed too (their
/// timeouts once came from rand's own read of the kernel).
#[test]
fn a_cluster_seed_replays_bit_for_bit() {
    assert_replays("--cluster", 5, 6);
}

/// Three brokers replicating every partition (see
/// `karnak_sim::broker::cluster`): every workload keeps its checks
/// through crashes of leaders and coordinators, failed disks, links cut
/// between brokers and clients cut off. With acks=all answered before the
/// followers held the batch, 5 of seeds 0-15 lose acknowledged records;
/// with SyncGroup answered before the group's record was replicated, seed
/// 9 of 0-15 hands generation 6 out twice (a new coordinator restored the
/// group without it).
#[test]
fn a_cluster_keeps_what_its_leaders_acknowledged_through_crashes_and_splits() {
    let (ok, text) = karnak_sim(&["--cluster", "--seeds", "0..4"]);
    assert!(ok, "{text}");
    let summary = text.lines().last().unwrap_or_default();
    let count = |word: &str, back: usize| count(summary, word, back);
    assert!(count("acknowledged", 1) > 1000, "{summary}");
    assert!(count("records,", 2) > 1000, "{summary}");
    assert!(count("transaction", 2) > 100, "{summary}");
    assert!(count("group", 1) > 20, "too few rebalances: {summary}");
    assert!(count("crashes", 2) > 4, "too few broker crashes: {summary}");
    assert!(count("disk", 1) > 0, "no disk failure: {summary}");
}
