#!/usr/bin/env python3
"""Produce latency while the log cleaner works (issue 16), for benches/RESULTS.md.

The cleaner rewrites sealed segments of compacted topics off the produce
path, throttled by --log-cleaner-io-max-bytes-per-second (64 MiB/s of reads
plus writes by default) so that produce latency does not move. This measures
that: acks=all produce at a fixed rate (raw wire, karnak-bench, 1 KiB
records, 1 record per request, send-to-ack latency) for --seconds, while

  idle         the same amount of data sits in a delete-policy topic (no
               cleaning), as the baseline
  throttled    a compacted topic with --fill-mb of keyed records (1,000 keys,
               16 MiB segments, min.cleanable.dirty.ratio 0.01) is being
               cleaned at the default throttle
  unthrottled  the same with --log-cleaner-io-max-bytes-per-second 0
               (Kafka's default: no limit)

Each condition gets a fresh release broker and data dir, --rounds times,
interleaved. The cleaner's bytes read and written during the window come
from /metrics (counted as they flow, sampled each second), so a row where
it did not run, or ran for only part of the window, is visible.

  cargo build --release -p karnak-broker -p karnak-benches --bins
  compat-tests/.venv/bin/python benches/e2e/cleaner_latency.py [--rounds 2]

Bounded: fills stop at --fill-mb, produce at --seconds, every wait has a
deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
from sql_bench import free_port  # noqa: E402

KARNAK = Path(os.environ.get("KARNAK_BIN", ROOT / "target" / "release" / "karnak"))
BENCH = Path(os.environ.get("KARNAK_BENCH", ROOT / "target" / "release" / "karnak-bench"))


def metric(admin_port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).read().decode()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M):
        total += float(m.group(1))
    return total


def run(condition: str, args, work: Path) -> dict:
    port, admin = free_port(), free_port()
    data = work / f"{condition}-{time.monotonic_ns()}"
    cmd = [str(KARNAK), "--data-dir", str(data), "--kafka-addr", f"127.0.0.1:{port}",
           "--admin-addr", f"127.0.0.1:{admin}", "--sql-enabled", "false",
           "--log-cleaner-backoff-ms", "500"]
    if condition == "unthrottled":
        cmd += ["--log-cleaner-io-max-bytes-per-second", "0"]
    log = open(work / f"{condition}.log", "a")
    broker = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or broker.poll() is not None:
                    raise RuntimeError("broker did not start")
                time.sleep(0.1)
        bootstrap = f"127.0.0.1:{port}"
        policy = "delete" if condition == "idle" else "compact"
        a = AdminClient({"bootstrap.servers": bootstrap})
        for f in a.create_topics([NewTopic("dirty", 1, 1, config={
                "cleanup.policy": policy, "segment.bytes": str(16 << 20),
                "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"})]).values():
            f.result(30)
        # Fill: keyed 1 KiB records, 1,000 keys, so nearly all of it is garbage to clean.
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                      "acks": 1, "queue.buffering.max.kbytes": 1 << 20})
        value = os.urandom(1024)
        n = args.fill_mb * 1024
        for i in range(n):
            while True:
                try:
                    p.produce("dirty", key=b"key-%04d" % (i % 1000), value=value)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 10000 == 0:
                p.poll(0)
        if p.flush(120) != 0:
            raise RuntimeError("fill did not finish")
        if condition != "idle":
            deadline = time.monotonic() + 60
            while metric(admin, "karnak_log_cleaner_read_bytes_total") == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the cleaner did not start within 60 s")
                time.sleep(0.2)
        def cleaner_bytes() -> float:
            return (metric(admin, "karnak_log_cleaner_read_bytes_total")
                    + metric(admin, "karnak_log_cleaner_written_bytes_total"))
        c0 = cleaner_bytes()
        bench = subprocess.Popen([str(BENCH), "produce", "--bootstrap", bootstrap, "--topic", "lat",
                                  "--partitions", "1", "--connections", "1", "--record-size", "1024",
                                  "--batch-records", "1", "--acks", "-1", "--in-flight", "1",
                                  "--rate", str(args.rate), "--duration", str(args.seconds),
                                  "--records", str(args.rate * args.seconds * 2),
                                  "--broker-pid", str(broker.pid)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The cleaner's counters move as it reads and writes: sample them each
        # second, so the row says for how much of the window it was at work.
        active_s, last = 0, c0
        deadline = time.monotonic() + args.seconds + 120
        while bench.poll() is None:
            if time.monotonic() > deadline:
                bench.kill()
                raise RuntimeError("karnak-bench did not finish")
            time.sleep(1)
            now = cleaner_bytes()
            active_s += now > last
            last = now
        stdout, stderr = bench.communicate()
        if bench.returncode != 0:
            raise RuntimeError(stderr[-2000:])
        res = json.loads(stdout.strip().splitlines()[-1])
        c1 = cleaner_bytes()
        return {"condition": condition, "records": res["records"], "errors": res["errors"],
                "latency_ms": res["latency_send_to_ack"],
                "cleaner_MBps_in_window": round((c1 - c0) / args.seconds / 1e6, 1),
                "cleaner_active_s": active_s,
                "cleaner_read_MB_total": round(metric(admin, "karnak_log_cleaner_read_bytes_total") / 1e6, 1)}
    finally:
        broker.terminate()
        try:
            broker.wait(60)
        except subprocess.TimeoutExpired:
            broker.kill()
        subprocess.run(["rm", "-rf", str(data)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fill-mb", type=int, default=1024)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    for b in (KARNAK, BENCH):
        if not b.exists():
            sys.exit(f"{b} missing: cargo build --release -p karnak-broker -p karnak-benches --bins")
    work = Path(tempfile.mkdtemp(prefix="cleaner-lat-"))
    print(json.dumps({"machine": f"{os.cpu_count()} cores, {os.uname().release}", "work": str(work),
                      "fill_mb": args.fill_mb, "rate": args.rate, "seconds": args.seconds}), flush=True)
    rows = []
    for rnd in range(args.rounds):
        for condition in ["idle", "throttled", "unthrottled"]:
            row = run(condition, args, work) | {"round": rnd}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| condition | p50 ms | p99 ms | p99.9 ms | max ms | cleaner MB/s in the window | seconds of it the cleaner worked |")
    print("|---|---|---|---|---|---|---|")
    for c in ["idle", "throttled", "unthrottled"]:
        rs = [r for r in rows if r["condition"] == c]

        def span(key):
            v = [r["latency_ms"].get(key) for r in rs if r["latency_ms"].get(key) is not None]
            return f"{min(v):.2f}-{max(v):.2f}" if v else "-"
        mbs = [r["cleaner_MBps_in_window"] for r in rs]
        act = [r["cleaner_active_s"] for r in rs]
        print(f"| {c} | {span('p50_ms')} | {span('p99_ms')} | {span('p99_9_ms')} | {span('max_ms')} "
              f"| {min(mbs)}-{max(mbs)} | {min(act)}-{max(act)} of {args.seconds} |")


if __name__ == "__main__":
    main()
