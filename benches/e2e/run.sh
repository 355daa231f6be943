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

"$BIN" --data-dir "$WORK/data" --kafka-addr 127.0.0.1:19092 --admin-addr 127.0.0.1:19644 2>"$WORK/broker.log" &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.1; done

run() { "$PY" "$ROOT/benches/e2e/librdkafka_bench.py" --bootstrap 127.0.0.1:19092 --broker-pid "$PID" "$@"; }
echo "## karnak $BIN"
for size in 1024 100; do
  if [ "$size" = 1024 ]; then count=1000000; else count=4000000; fi
  for parts in 1 8; do
    for acks in 1 all; do
      t="b-$size-$parts-$acks"
      run --mode produce --topic "$t" --partitions "$parts" --record-size "$size" --count "$count" --acks "$acks"
      run --mode consume --topic "$t" --partitions "$parts" --record-size "$size" --count "$count" --acks "$acks"
    done
  done
done
