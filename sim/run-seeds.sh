#!/usr/bin/env bash
# Runs many seeds of the deterministic simulation (sim/, not CI: CI runs the
# fixed seeds in sim/tests/seeds.rs). Release build, one process per core,
# each taking a slice of the range. A failing seed prints its violations and
# the last events of its trace; replay it with
#   cargo run --release -p karnak-sim -- --verbose SEED
#
# usage: sim/run-seeds.sh [--broker|--cluster] [FIRST [COUNT [JOBS]]]   (default 0 1000 $(nproc))
#   --broker            a whole broker (karnak_sim::broker) instead of the
#                       metadata group
#   --cluster           three replicating brokers (karnak_sim::broker::cluster)
#   SIM_PROFILE=debug   use the workspace's dev build, the one the tests use
#                       (dependencies optimised; under 1 s a seed here)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=()
case "${1:-}" in --broker|--cluster) MODE=("$1"); shift ;; esac
FIRST="${1:-0}"
COUNT="${2:-1000}"
JOBS="${3:-$(nproc)}"
# --cfg tokio_unstable comes from the workspace's .cargo/config.toml.
case "${SIM_PROFILE:-release}" in
    # debug: the workspace build the tests use (-p alone resolves features
    # differently and rebuilds much of the tree)
    debug) cargo build --workspace --bins -q; BIN=./target/debug/karnak-sim ;;
    *) cargo build --release -p karnak-sim --bins -q; BIN=./target/release/karnak-sim ;;
esac
per=$(( (COUNT + JOBS - 1) / JOBS ))
pids=()
logs=()
for j in $(seq 0 $((JOBS - 1))); do
    a=$(( FIRST + j * per ))
    b=$(( a + per ))
    [ "$b" -gt $(( FIRST + COUNT )) ] && b=$(( FIRST + COUNT ))
    [ "$a" -ge "$b" ] && continue
    log="$(mktemp -t karnak-sim-XXXXXX.log)"
    logs+=("$log")
    "$BIN" "${MODE[@]}" --seeds "$a..$b" >"$log" 2>&1 &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
cat "${logs[@]}"
rm -f "${logs[@]}"
exit "$rc"
