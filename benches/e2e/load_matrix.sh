#!/usr/bin/env bash
# Issue 6's instrument run: the machine's limits and the raw-wire load matrix
# against one release broker, in one run, as JSON lines for benches/RESULTS.md.
#
#   cargo build --release -p karnak-broker --bin karnak -p karnak-benches --bin karnak-bench
#   benches/e2e/load_matrix.sh [seconds-per-run]      (default 10)
#
# Bounded: each run stops at its duration or record count.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KARNAK="$ROOT/target/release/karnak"
BENCH="$ROOT/target/release/karnak-bench"
SECS="${1:-10}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/karnak-load.XXXXXX")"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export RUST_BACKTRACE=0

echo "{\"machine\": \"$(nproc) cores, $(uname -r)\", \"data_dir\": \"$WORK\"}"
"$BENCH" limits --dir "$WORK/limits" --seconds 3
"$KARNAK" --data-dir "$WORK/data" --kafka-addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$ADMIN" \
    --sql-enabled false 2>"$WORK/broker.log" &
PID=$!
for _ in $(seq 200); do grep -q "transaction coordinator loaded" "$WORK/broker.log" && break; sleep 0.1; done
B=(--bootstrap "127.0.0.1:$PORT" --broker-pid "$PID" --duration "$SECS")

# Throughput: 1 KiB and 100 B records, acks=1 and all; then read it back.
"$BENCH" produce "${B[@]}" --topic kib --partitions 4 --connections 2 --record-size 1024 \
    --batch-records 1000 --acks 1 --records 100000000
"$BENCH" produce "${B[@]}" --topic b100 --partitions 4 --connections 2 --record-size 100 \
    --batch-records 5000 --acks 1 --records 1000000000
"$BENCH" produce "${B[@]}" --topic kib-all --partitions 4 --connections 2 --record-size 1024 \
    --batch-records 1000 --acks -1 --records 100000000
"$BENCH" consume "${B[@]}" --topic kib --partitions 4 --connections 2 --records 100000000000
# Latency at a fixed load: one record per request (linger 0), acks=1 and all.
"$BENCH" produce "${B[@]}" --topic lat1 --record-size 1024 --batch-records 1 --in-flight 1000 \
    --acks 1 --rate 20000 --records 100000000
"$BENCH" produce "${B[@]}" --topic latall --record-size 1024 --batch-records 1 --in-flight 1000 \
    --acks -1 --rate 5000 --records 100000000
