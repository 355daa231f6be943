#!/usr/bin/env bash
# End-to-end throughput matrix for benches/RESULTS.md, with the machine's own
# limits measured in the same run: sequential write + fdatasync to the data
# disk (dd), and loopback TCP (iperf3).
#
#   benches/e2e/run.sh [path/to/karnak]      (default: target/release/karnak)
#
# Needs the compat-tests venv (scripts/test-all.sh creates it) and root for
# apt-get if iperf3 is missing. Bounded: every run has a fixed record count.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-$ROOT/target/release/karnak}"
PY="$ROOT/compat-tests/.venv/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/karnak-bench.XXXXXX")"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v iperf3 >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3 >/dev/null; }

echo "# machine: $(nproc) cores, $(uname -r), data dir $WORK on $(df --output=source "$WORK" | tail -1)"
echo "## reference: dd 1 GiB sequential write, conv=fdatasync"
dd if=/dev/zero of="$WORK/dd.bin" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1
rm -f "$WORK/dd.bin"
echo "## reference: iperf3 loopback, 5 s"
iperf3 -s -1 -p 15201 >/dev/null 2>&1 &
sleep 0.5
iperf3 -c 127.0.0.1 -p 15201 -t 5 -f m | grep -E "sender|receiver"

"$BIN" --data-dir "$WORK/data" --kafka-addr 127.0.0.1:19092 --admin-addr 127.0.0.1:19644 --sql-enabled false 2>"$WORK/broker.log" &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.1; done

# Broker CPU seconds (user+system) from /proc, for core-seconds per GB.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.3f", ($14+$15)/t}' "/proc/$PID/stat"; }
# Consume with kcat (C, librdkafka) as well: the Python consumer spends more
# time building Message objects than the broker spends serving them.
kcat_consume() {
  local topic=$1 count=$2 size=$3 t0 t1 c0 c1
  c0=$(cpu_s); t0=$(date +%s.%N)
  timeout 300 kcat -b 127.0.0.1:19092 -C -t "$topic" -o beginning -c "$count" -q \
    -X fetch.wait.max.ms=10 -X fetch.max.bytes=52428800 -X max.partition.fetch.bytes=10485760 >/dev/null
  t1=$(date +%s.%N); c1=$(cpu_s)
  awk -v n="$count" -v s="$size" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v topic="$topic" 'BEGIN {
    secs = t1 - t0; gb = n * s / 1e9;
    printf "{\"mode\": \"consume-kcat\", \"topic\": \"%s\", \"count\": %d, \"seconds\": %.3f, \"records_per_s\": %d, \"MB_per_s\": %.1f, \"broker_core_s_per_GB\": %.3f}\n", topic, n, secs, n / secs, gb * 1000 / secs, (c1 - c0) / gb }'
}
run() { "$PY" "$ROOT/benches/e2e/librdkafka_bench.py" --bootstrap 127.0.0.1:19092 --broker-pid "$PID" "$@"; }
echo "## karnak $BIN"
for size in 1024 100; do
  if [ "$size" = 1024 ]; then count=1000000; else count=4000000; fi
  for parts in 1 8; do
    for acks in 1 all; do
      t="b-$size-$parts-$acks"
      run --mode produce --topic "$t" --partitions "$parts" --record-size "$size" --count "$count" --acks "$acks"
      run --mode consume --topic "$t" --partitions "$parts" --record-size "$size" --count "$count" --acks "$acks"
      kcat_consume "$t" "$count" "$size"
    done
  done
done
