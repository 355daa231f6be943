#!/usr/bin/env bash
# Consumer-group figures for benches/RESULTS.md: group stabilisation time and
# OffsetCommit throughput with one and with many shards busy, for brokers
# with 1 and 64 coordinator shards, in one run.
#
#   benches/e2e/groups.sh [path/to/karnak]     (default: target/release/karnak)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-$ROOT/target/release/karnak}"
PY="$ROOT/compat-tests/.venv/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/karnak-groups.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

# start_broker ARGS...: a fresh broker with these extra flags, up and listening.
start_broker() {
  rm -rf "$WORK/data"
  "$BIN" --data-dir "$WORK/data" --kafka-addr 127.0.0.1:19192 --admin-addr 127.0.0.1:19744 \
    --sql-enabled false "$@" 2>"$WORK/broker.log" &
  PID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/19192) 2>/dev/null && break; sleep 0.1; done
}

stop_broker() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

echo "# machine: $(nproc) cores; fsync reference:"
dd if=/dev/zero of="$WORK/dd.bin" bs=4k count=2000 oflag=dsync 2>&1 | tail -1
rm -f "$WORK/dd.bin"
for shards in 1 64; do
  for delay in 0 3000; do
    start_broker --group-coordinator-shards "$shards" --group-initial-rebalance-delay-ms "$delay"
    echo "## shards=$shards initial_rebalance_delay_ms=$delay"
    "$PY" "$ROOT/benches/e2e/groups_bench.py" --bootstrap 127.0.0.1:19192 --mode stabilise
    if [ "$delay" = 0 ]; then
      "$PY" "$ROOT/benches/e2e/groups_bench.py" --bootstrap 127.0.0.1:19192 --mode commit --workers 1 --shards "$shards"
      "$PY" "$ROOT/benches/e2e/groups_bench.py" --bootstrap 127.0.0.1:19192 --mode commit --workers 8 --shards "$shards" --same-shard
      "$PY" "$ROOT/benches/e2e/groups_bench.py" --bootstrap 127.0.0.1:19192 --mode commit --workers 8 --shards "$shards"
    fi
    stop_broker
  done
  # KIP-848 (group.protocol=consumer): no join phase and no initial delay;
  # members converge over heartbeats (Kafka's default interval, then 500 ms).
  for hb in 5000 500; do
    start_broker --group-coordinator-shards "$shards" --group-consumer-heartbeat-interval-ms "$hb"
    echo "## shards=$shards KIP-848 group_consumer_heartbeat_interval_ms=$hb"
    "$PY" "$ROOT/benches/e2e/groups_bench.py" --bootstrap 127.0.0.1:19192 --mode stabilise --protocol consumer
    stop_broker
  done
done
