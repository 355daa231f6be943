#!/usr/bin/env python3
"""What an ACL check costs on the produce path (issue 19), for
benches/RESULTS.md: two brokers in one run, one with no authorizer, one
with `--authorizer acl` holding --acls ACLs (literal and prefixed, on other
topics and principals) besides the one that lets User:ANONYMOUS write the
benchmark topic, so every Produce is checked against an index that size.
The same librdkafka load (librdkafka_bench.py's producer: 2 processes,
1 KiB records, acks=1, small batches so requests are many) runs on each,
alternating, and each broker's CPU seconds per GB are reported.

  compat-tests/.venv/bin/python benches/e2e/acl_cost_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compat-tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,  # noqa: E402
                                   AdminClient, ResourcePatternType, ResourceType)

import librdkafka_bench as lb  # noqa: E402
from conftest import Broker  # noqa: E402


def start(binary: Path, d: Path, extra: list) -> Broker:
    b = Broker(binary, d / "data", d / "logs", [])
    b.pick_ports()
    b.extra_args = ["--sql-enabled", "false", *extra]
    return b.start()


def grant_all(b: Broker, topic: str, n: int):
    """The benchmark topic's ACL and n others."""
    acls = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                       AclOperation.WRITE, AclPermissionType.ALLOW),
            AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:ANONYMOUS", "*",
                       AclOperation.CREATE, AclPermissionType.ALLOW)]
    for i in range(n):
        pattern = ResourcePatternType.PREFIXED if i % 2 else ResourcePatternType.LITERAL
        acls.append(AclBinding(ResourceType.TOPIC, f"other-{i:05d}", pattern, f"User:u{i % 50}", "*",
                               AclOperation.READ, AclPermissionType.ALLOW))
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for i in range(0, len(acls), 500):
        for f in admin.create_acls(acls[i:i + 500], request_timeout=60).values():
            f.result(60)


def load(b: Broker, topic: str, a) -> dict:
    args = argparse.Namespace(bootstrap=b.bootstrap, broker_pid=b.proc.pid, topic=topic, partitions=1,
                              record_size=1024, count=a.count, acks="1", producers=2, linger_ms=0,
                              batch_size=16384, compression="none")
    elapsed, cpu, errors = lb.produce(args)
    gb = a.count * 1024 / 1e9
    return {"records_per_s": round(a.count / elapsed), "broker_cpu_s_per_gb": round(cpu / gb, 2),
            "errors": errors}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", type=Path, default=lb.default_karnak())
    ap.add_argument("--acls", type=int, default=1000)
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="karnak-acl-bench."))
    brokers = {}
    try:
        brokers["none"] = start(a.bin, d / "none", [])
        # allow.everyone.if.no.acl.found lets the unauthenticated bench client
        # create the ACLs (the cluster resource has none); the topic has one,
        # so every Produce is decided by the ACLs.
        brokers["acl"] = start(a.bin, d / "acl", ["--authorizer", "acl",
                                                  "--allow-everyone-if-no-acl-found", "true"])
        print(f"# {a.bin}: {a.count} x 1 KiB records per run, {a.acls} other ACLs, {a.rounds} rounds",
              flush=True)
        for r in range(a.rounds):
            for kind in (["none", "acl"] if r % 2 == 0 else ["acl", "none"]):
                topic = f"acl-bench-{r}-{os.urandom(3).hex()}"
                if kind == "acl":
                    grant_all(brokers["acl"], topic, a.acls if r == 0 else 0)
                print(json.dumps({"round": r, "authorizer": kind, **load(brokers[kind], topic, a)}),
                      flush=True)
        for b in brokers.values():
            b.stop()
    finally:
        for b in brokers.values():
            if b.alive():
                b.kill9()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
