#!/usr/bin/env python3
"""Faults in random order against a 3-broker Karnak cluster while the queue
workload of cluster_workload.py runs, then its checker (issue 18).

Each round starts three brokers on loopback (every one a metadata voter),
creates a queue topic and a transactional topic (3 partitions, replication
factor 3, min.insync.replicas=2), starts the producers and the consumer,
and applies faults picked at random with the printed seed:

  kill_leader           SIGKILL a partition leader, restart it after 1-3 s
  kill_controller       SIGKILL the metadata (Raft) leader, restart it
  kill_txn_coordinator  SIGKILL the coordinator of the transactional
                        producer's id (an open transaction's, often)
  pause_leader          SIGSTOP a partition leader past its session, then SIGCONT
  rolling_restart       SIGTERM and restart every broker in turn
  isolate_leader        cut a partition leader off from the other brokers,
                        both ways, for 1-3 s after they elect another, while
                        its clients still reach it; then heal

Between faults the workload runs 1-3 s undisturbed; after the last one the
cluster heals (every partition back to 3 in sync) and the checker prints
acked/found/lost/duplicated and fails on any lost or duplicated
acknowledged write, an offset gap, a consumer going backwards, an aborted
value read_committed, a committed one missing, a consumer group that
resumed before an offset it had committed or skipped values, or replicas
that differ.
The network cut needs root, `unshare` and `iptables` (Debian's packages,
which scripts/test-all.sh installs): the soak re-runs itself in a network
namespace of its own, each broker as its own user (connections are told
apart by their owner, as in broker/tests/cluster/partition.rs). Without
root it stops with a reason; `--no-network` leaves that fault out.

  compat-tests/cluster/soak.sh --minutes 30          # until time is up
  compat-tests/cluster/soak.sh --faults 8 --seed 42  # replay a run

Bounded: each fault waits at most 60 s for the cluster to heal; the run
stops after --minutes (default 10) or --faults.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compat-tests"))

from cluster_workload import (  # noqa: E402
    FAULTS, NETWORK_FAULTS, NetworkCuts, assert_clean, run, start_cluster)

IN_NETNS = "KARNAK_SOAK_IN_NETNS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--faults", type=int, default=None, help="stop after this many faults")
    ap.add_argument("--seed", type=int, default=None)
    default = ROOT / "target" / "release" / "karnak"
    if not default.exists():
        default = ROOT / "target" / "debug" / "karnak"
    ap.add_argument("--bin", type=Path, default=default)
    ap.add_argument("--no-network", action="store_true",
                    help="leave out the network cut (no root or no network namespace)")
    ap.add_argument("--no-group", action="store_true",
                    help="leave out the consumer group member")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
    network = not a.no_network
    if network and not os.environ.get(IN_NETNS):
        if os.geteuid() != 0:
            sys.exit("FAIL: the network cut needs root (or pass --no-network)")
        # The same run again, in a network namespace of its own.
        argv = [sys.executable, *sys.argv, "--seed", str(seed)]
        env = {**os.environ, IN_NETNS: "1"}
        sys.exit(subprocess.run(["unshare", "--net", "--", *argv], env=env).returncode)
    print(f"# soak seed {seed} (replay with --seed {seed}), {a.bin}", flush=True)
    d = tempfile.mkdtemp(prefix="karnak-soak.")
    uids = None
    if network:
        NetworkCuts.install()
        uids = NetworkCuts.uids()
        os.chmod(d, 0o755)  # the brokers' users make their data dirs in it
    nodes = start_cluster(a.bin, Path(d), uids=uids)
    try:
        result = run(nodes, seed, faults=a.faults, minutes=None if a.faults else a.minutes,
                     log=lambda s: print(s, flush=True),
                     kinds=FAULTS + NETWORK_FAULTS if network else FAULTS,
                     group=not a.no_group)
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
