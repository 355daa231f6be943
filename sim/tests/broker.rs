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

#[test]
fn the_broker_keeps_what_it_acknowledged_and_fences_what_it_must_through_crashes() {
    let (ok, text) = karnak_sim(&["--broker", "--seeds", "0..4"]);
    assert!(ok, "{text}");
    // "4 broker seeds in ...: 0 failed []; N acknowledged commits, R
    // acknowledged records, T acknowledged transaction commits, G group
    // member syncs, C broker crashes, D disk failures, F faults"
    let summary = text.lines().last().unwrap_or_default();
    // The number `back` words before the first word starting with `word`.
    let words: Vec<&str> = summary.split_whitespace().collect();
    let count = |word: &str, back: usize| -> u64 {
        words
            .iter()
            .position(|w| w.starts_with(word))
            .and_then(|i| words.get(i.checked_sub(back)?))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
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

#[test]
fn a_broker_seed_replays_bit_for_bit() {
    let (ok_a, a) = karnak_sim(&["--broker", "--verbose", "77"]);
    let (ok_b, b) = karnak_sim(&["--broker", "--verbose", "77"]);
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
    let (_, c) = karnak_sim(&["--broker", "--verbose", "78"]);
    assert_ne!(a, c, "two seeds ran the same");
}
