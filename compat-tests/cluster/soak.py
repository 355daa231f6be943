#!/usr/bin/env python3
"""Faults in random order against a 3-broker Karnak cluster while the queue
workload of cluster_workload.py runs, then its checker (issue 18).

Each round starts three brokers on loopback (every one a metadata voter),
creates a queue topic and a transactional topic (3 partitions, replication
factor 3, min.insync.replicas=2), starts the producers and the consumer,
and applies faults picked at random with the printed seed:

  kill_leader      SIGKILL a partition leader, restart it after 1-3 s
  kill_controller  SIGKILL the metadata (Raft) leader, restart it
  pause_leader     SIGSTOP a partition leader past its session, then SIGCONT
  rolling_restart  SIGTERM and restart every broker in turn

Between faults the workload runs 1-3 s undisturbed; after the last one the
cluster heals (every partition back to 3 in sync) and the checker prints
acked/found/lost/duplicated and fails on any lost or duplicated
acknowledged write, an offset gap, a consumer going backwards, an aborted
value read_committed, a committed one missing, or replicas that differ.
(The network partition is a Rust test, broker/tests/cluster/partition.rs:
it needs its own network namespace.)

  compat-tests/cluster/soak.sh --minutes 30          # until time is up
  compat-tests/cluster/soak.sh --faults 8 --seed 42  # replay a run

Bounded: each fault waits at most 60 s for the cluster to heal; the run
stops after --minutes (default 10) or --faults.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compat-tests"))

from cluster_workload import assert_clean, run, start_cluster  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--faults", type=int, default=None, help="stop after this many faults")
    ap.add_argument("--seed", type=int, default=None)
    default = ROOT / "target" / "release" / "karnak"
    if not default.exists():
        default = ROOT / "target" / "debug" / "karnak"
    ap.add_argument("--bin", type=Path, default=default)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"# soak seed {seed} (replay with --seed {seed}), {a.bin}", flush=True)
    d = tempfile.mkdtemp(prefix="karnak-soak.")
    nodes = start_cluster(a.bin, Path(d))
    try:
        result = run(nodes, seed, faults=a.faults, minutes=None if a.faults else a.minutes,
                     log=lambda s: print(s, flush=True))
        assert_clean(result)
        print("# clean", flush=True)
    except BaseException:
        print(f"# FAILED with seed {seed}; the brokers' data and logs are kept in {d}", flush=True)
        for b in nodes:
            b.kill9()
        raise
    for b in nodes:
        b.kill9()
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
