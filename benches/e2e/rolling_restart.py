#!/usr/bin/env python3
"""How long a rolling restart of a 3-broker Karnak cluster takes under the
checked queue workload (issue 18), for benches/RESULTS.md.

Starts three brokers (compat-tests/cluster_workload.py's cluster), runs its
workload (plain, idempotent and transactional producers, a read_committed
consumer, a consumer group member), and restarts every broker in turn
`--rounds` times: SIGTERM (a controlled shutdown) and wait for the exit,
start again and wait until it serves, wait until every partition of the
workload's topics has 3 replicas in sync. Prints each broker's stop, start
and catch-up time, then the workload checker's counts (and fails on any
lost acknowledged write).

  compat-tests/.venv/bin/python benches/e2e/rolling_restart.py --rounds 4

Bounded: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compat-tests"))

import cluster_workload as cw  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    default = ROOT / "target" / "release" / "karnak"
    if not default.exists():
        default = ROOT / "target" / "debug" / "karnak"
    ap.add_argument("--bin", type=Path, default=default)
    ap.add_argument("--no-group", action="store_true", help="without the consumer group member")
    a = ap.parse_args()
    stops, rounds = [], []

    def rolling_restart(nodes, w, rng):
        for b in nodes:
            t0 = time.monotonic()
            rc = b.stop()
            t1 = time.monotonic()
            b.spawn()
            b.wait_ready()
            t2 = time.monotonic()
            w.wait_in_sync(60)
            t3 = time.monotonic()
            stops.append(t1 - t0)
            print(json.dumps({"broker": b.node_id, "exit": rc, "stop_s": round(t1 - t0, 2),
                              "start_s": round(t2 - t1, 2), "in_sync_s": round(t3 - t2, 2)}),
                  flush=True)
        return None

    def timed(nodes, w, rng):
        t0 = time.monotonic()
        rolling_restart(nodes, w, rng)
        rounds.append(time.monotonic() - t0)

    cw.FAULT_FNS["rolling_restart"] = timed
    print(f"# {a.bin}, 3 brokers, {a.rounds} rolling restarts", flush=True)
    d = tempfile.mkdtemp(prefix="karnak-rolling.")
    nodes = cw.start_cluster(a.bin, Path(d))
    try:
        result = cw.run(nodes, random.SystemRandom().randrange(1 << 31), faults=a.rounds,
                        kinds=("rolling_restart",), group=not a.no_group,
                        log=lambda s: print(s, flush=True))
        print(f"stop_s {min(stops):.2f}-{max(stops):.2f} (median {statistics.median(stops):.2f}); "
              f"round_s {min(rounds):.1f}-{max(rounds):.1f}; lost {result['lost']}", flush=True)
        cw.assert_clean(result)
    finally:
        for b in nodes:
            b.kill9()
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
