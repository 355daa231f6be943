#!/usr/bin/env bash
# Flamegraphs of the broker's produce and fetch paths under the raw-wire
# load (1 KiB records, 4 partitions, 2 connections, acks=1), written to
# benches/flamegraphs/{produce,fetch}.svg.
#
#   cargo build --release -p karnak-broker -p karnak-benches --bins
#   cargo install inferno          # inferno-collapse-perf, inferno-flamegraph
#   benches/e2e/flamegraphs.sh [seconds]      (default 6)
#
# Needs perf; the software cpu-clock event is used because VMs often have no
# hardware counters. Only the broker's process is sampled (499 Hz per core).
# Like benches/e2e/load_matrix.sh (which explains why on a VM), it first
# drops the page cache (when root) and fills free memory with a clean cached
# file: otherwise the produce graph is mostly the guest's first touch of
# new memory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KARNAK="$ROOT/target/release/karnak"
BENCH="$ROOT/target/release/karnak-bench"
OUT="$ROOT/benches/flamegraphs"
SECS="${1:-6}"
for tool in perf inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
WORK="$(mktemp -d "${TMPDIR:-/tmp}/karnak-flame.XXXXXX")"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$KARNAK" --data-dir "$WORK/data" --kafka-addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$ADMIN" \
    --sql-enabled false 2>"$WORK/broker.log" &
PID=$!
for _ in $(seq 200); do grep -q "transaction coordinator loaded" "$WORK/broker.log" && break; sleep 0.1; done
B=(--bootstrap "127.0.0.1:$PORT" --broker-pid "$PID" --duration "$SECS")
mkdir -p "$OUT"
if [ -w /proc/sys/vm/drop_caches ]; then
    sync && echo 3 >/proc/sys/vm/drop_caches
fi
WARM_GB=$(( $(awk '/MemFree/ {print $2}' /proc/meminfo) / 1048576 - 3 ))
if [ "$WARM_GB" -gt 0 ]; then
    truncate -s "${WARM_GB}G" "$WORK/warm" && cat "$WORK/warm" >/dev/null
fi
echo "page cache topped up with ${WARM_GB} GiB of clean pages" >&2

profile() { # name, then the load command
    local name="$1"
    shift
    "$@" >"$WORK/$name.json" &
    local load=$!
    perf record -q -F 499 -e cpu-clock -g -p "$PID" -o "$WORK/$name.data" -- sleep "$SECS" 2>/dev/null
    wait "$load"
    tail -1 "$WORK/$name.json"
    perf script -i "$WORK/$name.data" 2>/dev/null | inferno-collapse-perf >"$WORK/$name.folded"
    inferno-flamegraph --title "karnak broker: $name (raw load, 1 KiB records, acks=1)" \
        --width 1600 <"$WORK/$name.folded" >"$OUT/$name.svg"
    echo "wrote $OUT/$name.svg" >&2
}

profile produce "$BENCH" produce "${B[@]}" --topic flame --partitions 4 --connections 2 \
    --record-size 1024 --batch-records 1000 --acks 1 --records 100000000
profile fetch "$BENCH" consume "${B[@]}" --topic flame --partitions 4 --connections 2 \
    --records 100000000000
