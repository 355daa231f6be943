#!/usr/bin/env python3
"""What fsyncing a segment at its roll costs produce (issue 17), for benches/RESULTS.md.

Since issue 17 a segment is fsynced before the next one is created (start-up
trusts sealed segments). That fsync runs under the partition's append lock,
so an acks=1 producer, which otherwise never waits for the disk, waits for
the dirty tail of each segment it rolls. This runs two release binaries,
the one before the change (KARNAK_BEFORE) and the current one, interleaved
round by round, with karnak-bench's raw-wire producer (1 KiB records, 1,000
per batch, 4 partitions, 2 connections) at acks=1 and acks=all, with
Kafka's default 1 GiB segments and with 64 MiB ones (a roll every ~0.1 s
at full speed: the worst case for the roll fsync). The page cache is topped
up before each run, as in kafka_vs.py.

  cp target/release/karnak /tmp/karnak-before      # built before the change
  cargo build --release -p karnak-broker -p karnak-benches --bins
  KARNAK_BEFORE=/tmp/karnak-before compat-tests/.venv/bin/python benches/e2e/roll_fsync.py [--rounds 3] [--seconds 8]

Bounded: each run is a fresh broker on a fresh data dir, stopped after
`--seconds` of load. Prints JSON lines, then a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
from kafka_vs import BENCH, KARNAK, bench, drop_caches, measured, top_up, wait_listening  # noqa: E402
from sql_bench import free_port  # noqa: E402


def run(binary: Path, work: Path, segment_bytes: int, acks: int, seconds: int) -> dict:
    d = work / f"run-{os.getpid()}-{free_port()}"
    port = free_port()
    proc = subprocess.Popen([str(binary), "--data-dir", str(d), "--kafka-addr", f"127.0.0.1:{port}",
                             "--admin-addr", f"127.0.0.1:{free_port()}", "--sql-enabled", "false",
                             "--log-segment-bytes", str(segment_bytes)],
                            stdout=subprocess.DEVNULL, stderr=open(work / "broker.log", "a"))
    try:
        wait_listening(port, proc, str(binary))
        result, cpu, wall = measured(proc.pid, lambda: bench(
            "produce", "--bootstrap", f"127.0.0.1:{port}", "--topic", "roll", "--partitions", "4",
            "--connections", "2", "--record-size", "1024", "--batch-records", "1000",
            "--acks", str(acks), "--records", "100000000", "--duration", str(seconds)))
        return {"result": result, "broker_cpu_s": round(cpu, 2), "wall_s": round(wall, 2)}
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    before = Path(os.environ.get("KARNAK_BEFORE", "/tmp/karnak-before"))
    for b in (before, KARNAK, BENCH):
        if not b.exists():
            sys.exit(f"{b} missing (see the docstring)")
    work = Path(tempfile.mkdtemp(prefix="roll-fsync-"))
    print(json.dumps({"limits": bench("limits", "--dir", str(work / "limits"), "--seconds", "2")}),
          flush=True)
    print(json.dumps({"caches_dropped_first": drop_caches()}), flush=True)
    rows = []
    try:
        for rnd in range(a.rounds):
            for seg in (1 << 30, 64 << 20):
                for acks in (1, -1):
                    order = [("before", before), ("after", KARNAK)]
                    if rnd % 2:
                        order.reverse()
                    for name, binary in order:
                        top_up(work)
                        r = run(binary, work, seg, acks, a.seconds)
                        row = {"round": rnd, "binary": name, "segment_bytes": seg, "acks": acks, **r}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    finally:
        for warm in work.glob("warm-*"):
            warm.unlink()

    def pick(r):
        res = r["result"]
        lat = res.get("latency_send_to_ack") or {}
        return res["MBps"], lat.get("p99_ms"), lat.get("max_ms")

    print("\n| segment | acks | before MB/s | after MB/s | after / before, per round "
          "| before p99 ms | after p99 ms | before max ms | after max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seg in (1 << 30, 64 << 20):
        for acks in (1, -1):
            sel = lambda n: [pick(r) for r in rows
                             if r["binary"] == n and r["segment_bytes"] == seg and r["acks"] == acks]
            b, f = sel("before"), sel("after")
            ratios = ", ".join(f"{y[0] / x[0]:.2f}" for x, y in zip(b, f) if x[0])
            span = lambda v: f"{min(v):.0f}-{max(v):.0f}" if v else "-"
            col = lambda v, i: (f"{min(x[i] for x in v):.1f}-{max(x[i] for x in v):.1f}"
                                if v and all(x[i] is not None for x in v) else "-")
            print(f"| {seg >> 20} MiB | {acks} | {span([x[0] for x in b])} | {span([x[0] for x in f])} "
                  f"| {ratios} | {col(b, 1)} | {col(f, 1)} | {col(b, 2)} | {col(f, 2)} |")


if __name__ == "__main__":
    main()
