#!/usr/bin/env python3
"""What a remote partition costs the SQL gateway (issue 18), for
benches/RESULTS.md.

Three release brokers in one cluster. One topic (sql_bench.py's JSON
records, 4 partitions, 16 MiB segments) is placed on brokers 0 and 2
(replication factor 2, broker 0 leading every partition); broker 1 holds no
replica. The same queries (sql_bench.py's count, json_agg, time_range) are
timed through the Postgres wire on:

  local-faces  broker 0: its own log, sealed segments read from their
               Arrow faces
  local-log    broker 2 (started with --sql-arrow-faces false): its own
               replica (a follower's: read up to the leader's last stable
               offset, asked at query start), every batch decoded from
               the log
  remote       broker 1: every partition fetched from broker 0 with Fetch
               (read_committed) and decoded as local-log does

remote / local-log is the price of the network hop (a Fetch per 4 MiB
over loopback); remote / local-faces is what a user sees between asking a
broker that holds the topic and one that does not.

  cargo build --release --bin karnak
  compat-tests/.venv/bin/python benches/e2e/sql_remote_bench.py [--records 2000000]

Bounded: fixed record count, every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
from sql_bench import (  # noqa: E402
    PARTITIONS, TOPIC, free_port, produce, queries, sealed_faced, time_queries)


class Node:
    def __init__(self, binary: Path, i: int, peers: str, work: Path, *extra: str):
        self.i, self.kafka, self.sql, self.admin = i, free_port(), free_port(), free_port()
        self.data, self.log = work / f"data{i}", work / f"broker{i}.log"
        self.proc = subprocess.Popen(
            [str(binary), "--node-id", str(i), "--cluster-id", "sqlbench", "--cluster-peers",
             peers, "--data-dir", str(self.data), "--kafka-addr", f"127.0.0.1:{self.kafka}",
             "--sql-addr", f"127.0.0.1:{self.sql}", "--admin-addr", f"127.0.0.1:{self.admin}",
             *extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))

    def wait(self):
        deadline = time.monotonic() + 120
        want = f"(Postgres wire) on 127.0.0.1:{self.sql}:"
        while not (self.log.exists() and want in self.log.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"broker {self.i} did not start; see {self.log}")
            time.sleep(0.1)

    def partition_reads(self) -> dict:
        """karnak_sql_partition_reads_total by source, from /metrics."""
        import re
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        pattern = r'^karnak_sql_partition_reads_total\{source="(\w+)"\} (\S+)$'
        return {m.group(1): int(float(m.group(2))) for m in re.finditer(pattern, text, re.M)}

    def connect(self):
        return psycopg.connect(host="127.0.0.1", port=self.sql, user="bench", dbname="karnak",
                               autocommit=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--karnak", default=str(ROOT / "target/release/karnak"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="karnak-sqlremote."))
    emit = lambda d: print(json.dumps(d), flush=True)  # noqa: E731
    ports = []
    while len(ports) < 3:
        p = free_port()
        if p not in ports:
            ports.append(p)
    peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports))
    binary = Path(a.karnak)
    nodes = [Node(binary, 0, peers, work), Node(binary, 1, peers, work),
             Node(binary, 2, peers, work, "--sql-arrow-faces", "false")]
    try:
        for n in nodes:
            n.wait()
        emit({"machine": f"{os.cpu_count()} cores", "work": str(work), "records": a.records})
        bootstrap = ",".join(f"127.0.0.1:{n.kafka}" for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, replica_assignment=[[0, 2]] * PARTITIONS, config={
            "segment.bytes": str(16 << 20), "karnak.value.format": "json",
            "karnak.value.schema": "uid bigint, amount bigint, kind text"})])[TOPIC].result(30)
        t0 = int(time.time() * 1000) - a.records // 10 - 60_000
        secs = produce(bootstrap, a.records, t0)
        emit({"produced": a.records, "seconds": round(secs, 1)})
        deadline = time.monotonic() + 600
        while True:
            sealed, faced = sealed_faced(nodes[0].data)
            md = admin.list_topics(topic=TOPIC, timeout=10).topics[TOPIC]
            in_sync = all(len(p.isrs) == 2 for p in md.partitions.values())
            if faced == sealed and in_sync:
                break
            if time.monotonic() > deadline:
                sys.exit(f"faces {faced}/{sealed}, in sync {in_sync} after 600 s")
            time.sleep(0.5)
        emit({"sealed_segments": sealed, "faced_on_broker_0": faced})
        qs = queries(a.records, t0)
        results = {"local-faces": time_queries(nodes[0], qs, a.runs),
                   "local-log": time_queries(nodes[2], qs, a.runs),
                   "remote": time_queries(nodes[1], qs, a.runs)}
        for mode, rs in results.items():
            for name, r in rs.items():
                emit({"mode": mode, "query": name, **r})
        # Which way each broker read the partitions (a follower reads its
        # own replica when it holds the leader's records; else the leader).
        for mode, n in (("local-faces", nodes[0]), ("local-log", nodes[2]), ("remote", nodes[1])):
            emit({"mode": mode, "broker": n.i, "partition_reads": n.partition_reads()})
        print("\n| query | local faces s | local log s | remote s | remote / local log "
              "| remote / local faces |")
        print("|---|---|---|---|---|---|")
        ok = True
        for name in qs:
            answers = {m: results[m][name]["answer"] for m in results}
            ok &= len({json.dumps(v) for v in answers.values()}) == 1
            s = {m: results[m][name]["seconds"] for m in results}
            span = lambda v: f"{min(v):.3f}-{max(v):.3f}"  # noqa: E731
            med = {m: statistics.median(v) for m, v in s.items()}
            print(f"| {name} | {span(s['local-faces'])} | {span(s['local-log'])} "
                  f"| {span(s['remote'])} | {med['remote'] / med['local-log']:.2f} "
                  f"| {med['remote'] / med['local-faces']:.2f} |")
        print(f"\nsame answers on all three brokers: {ok}")
        if not ok:
            sys.exit(1)
    finally:
        for n in nodes:
            n.proc.terminate()
        for n in nodes:
            try:
                n.proc.wait(60)
            except subprocess.TimeoutExpired:
                n.proc.kill()


if __name__ == "__main__":
    main()
