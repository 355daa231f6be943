#!/usr/bin/env bash
# Issue 6's instrument run: the machine's limits, the raw-wire and librdkafka
# load matrix against one release broker, and librdkafka's in-process mock
# cluster as the same-run reference, as JSON lines for benches/RESULTS.md.
#
#   cargo build --release -p karnak-broker -p karnak-benches --bins
#   ulimit -n 20000     # the idle row holds 10,000 connections
#   benches/e2e/load_matrix.sh [seconds-per-run]      (default 8)
#
# Page-cache state matters on a VM: the first write into guest memory the
# host has not backed yet (or has taken back, with free page reporting) costs
# ~1 core-second per GB in the guest kernel's copy. One produce row runs in
# that cold state; then the script fills the free memory with a clean cached
# file (as on a long-running broker host, whose page cache is always full)
# and every other row runs in that steady state. `limits` reports both costs.
#
# Bounded: each run stops at its duration or record count, and each
# throughput topic is deleted once its rows are done, so the data dir stays
# within ~15 GB (a whole run writes ~50 GB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KARNAK="$ROOT/target/release/karnak"
BENCH="$ROOT/target/release/karnak-bench"
SECS="${1:-8}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/karnak-load.XXXXXX")"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export RUST_BACKTRACE=0
field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d$1)"; }

echo "{\"machine\": \"$(nproc) cores, $(uname -r)\", \"data_dir\": \"$WORK\", \"seconds\": $SECS}"
"$BENCH" limits --dir "$WORK/limits" --seconds 2
"$KARNAK" --data-dir "$WORK/data" --kafka-addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$ADMIN" \
    --sql-enabled false 2>"$WORK/broker.log" &
PID=$!
for _ in $(seq 200); do grep -q "transaction coordinator loaded" "$WORK/broker.log" && break; sleep 0.1; done
B=(--bootstrap "127.0.0.1:$PORT" --broker-pid "$PID" --duration "$SECS")
drop() { "$BENCH" delete --bootstrap "127.0.0.1:$PORT" "$@" >/dev/null; }

echo '{"row": "cold: produce into guest memory not yet backed"}'
"$BENCH" produce "${B[@]}" --topic cold --partitions 4 --connections 2 --record-size 1024 \
    --batch-records 1000 --acks 1 --records 100000000

# Fill free memory (less 2 GiB) with a clean, cached sparse file, kept until exit.
# Dropping the page cache first (root only) makes that all of memory: cache
# left by earlier runs may already have been handed back to the host.
DROPPED=false
if [ -w /proc/sys/vm/drop_caches ]; then
    sync && echo 3 >/proc/sys/vm/drop_caches && DROPPED=true
fi
FREE_KB=$(awk '/MemFree/ {print $2}' /proc/meminfo)
WARM_GB=$(( FREE_KB / 1048576 - 2 ))
if [ "$WARM_GB" -gt 0 ]; then
    truncate -s "${WARM_GB}G" "$WORK/warm" && cat "$WORK/warm" >/dev/null
else
    WARM_GB=0
fi
echo "{\"row\": \"warm: page cache topped up with ${WARM_GB} GiB of clean pages\", \"caches_dropped_first\": $DROPPED}"

# Raw wire: throughput, 1 KiB and 100 B, acks=1 and all; the first topic is
# read back at once (6 GB at most, so it is still in the page cache).
"$BENCH" produce "${B[@]}" --topic kib --partitions 4 --connections 2 --record-size 1024 \
    --batch-records 1000 --acks 1 --records 6000000
"$BENCH" consume "${B[@]}" --topic kib --partitions 4 --connections 2 --records 100000000000
drop cold kib
"$BENCH" produce "${B[@]}" --topic b100 --partitions 4 --connections 2 --record-size 100 \
    --batch-records 5000 --acks 1 --records 1000000000
drop b100
"$BENCH" produce "${B[@]}" --topic kib-all --partitions 4 --connections 2 --record-size 1024 \
    --batch-records 1000 --acks -1 --records 100000000
drop kib-all

# librdkafka (the issue's settings: 1 KiB, linger.ms=5, batch.size=1 MiB),
# the mock cluster and Karnak interleaved.
for i in 1 2; do
    "$BENCH" produce --client rdkafka --bootstrap mock --duration "$SECS" --topic rk --partitions 4 \
        --record-size 1024 --acks 1 --linger-ms 5 --batch-size 1048576 --records 8000000
    "$BENCH" produce --client rdkafka "${B[@]}" --topic "rk$i" --partitions 4 \
        --record-size 1024 --acks 1 --linger-ms 5 --batch-size 1048576 --records 8000000
done
"$BENCH" consume --client rdkafka --bootstrap mock --duration 60 --topic rk --partitions 4 \
    --records 4000000
"$BENCH" consume --client rdkafka "${B[@]}" --topic rk1 --partitions 4
drop rk1 rk2

# Latency rows start with the earlier rows' dirty pages written back (their
# backlog of gigabytes is not the steady state of a latency-sized load) and
# leave the first second out of the percentiles (a new partition's first
# fsync creates its files); each row reports its slowest 100 ms windows.
sync
echo '{"row": "sync: earlier rows written back; latency rows use --warmup 1"}'
W=(--warmup 1)
# Latency, one record per request (raw) at half the measured maximum rate.
MAX=$("$BENCH" produce "${B[@]}" --topic lat-max --record-size 1024 --batch-records 1 \
    --in-flight 1000 --acks 1 --records 100000000 | tee -a /dev/stderr | field "['records_per_s']")
HALF=$(( ${MAX%.*} / 2 ))
drop lat-max
"$BENCH" produce "${B[@]}" "${W[@]}" --topic lat1 --record-size 1024 --batch-records 1 \
    --in-flight 1000 --acks 1 --rate "$HALF" --records 100000000
"$BENCH" produce "${B[@]}" "${W[@]}" --topic lat1-20k --record-size 1024 --batch-records 1 \
    --in-flight 1000 --acks 1 --rate 20000 --records 100000000
# acks=all (fsync, group commit) below and near the disk's own fsync rate.
for rate in 1000 2000 5000; do
    "$BENCH" produce "${B[@]}" "${W[@]}" --topic "latall$rate" --record-size 1024 \
        --batch-records 1 --in-flight 1000 --acks -1 --rate "$rate" --records 100000000
done
# librdkafka, linger.ms=0, acks=1: the maximum on Karnak, then both at half of it.
RMAX=$("$BENCH" produce --client rdkafka "${B[@]}" --topic rl-max --record-size 1024 --acks 1 \
    --linger-ms 0 --records 4000000 | tee -a /dev/stderr | field "['records_per_s']")
RHALF=$(( ${RMAX%.*} / 2 ))
drop rl-max
for rate in "$RHALF" 50000; do
    for t in mock "127.0.0.1:$PORT"; do
        "$BENCH" produce --client rdkafka --bootstrap "$t" --duration "$SECS" "${W[@]}" \
            --topic rl --record-size 1024 --acks 1 --linger-ms 0 --rate "$rate" --records 100000000
    done
done
# Produce -> consume through librdkafka at a fixed 10 k/s.
for t in mock "127.0.0.1:$PORT"; do
    "$BENCH" e2e --bootstrap "$t" --duration "$SECS" "${W[@]}" --topic e2e --record-size 1024 --acks 1 \
        --linger-ms 0 --rate 10000 --records 100000000
done

# 10,000 idle connections.
"$BENCH" idle --bootstrap "127.0.0.1:$PORT" --connections 10000 --seconds 5 --broker-pid "$PID"
