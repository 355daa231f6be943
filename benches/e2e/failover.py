#!/usr/bin/env python3
"""Leader failover time of a 3-broker Karnak cluster (issue 18), for
benches/RESULTS.md.

Each round starts three fresh brokers on loopback (every one a metadata
voter), creates a topic with one partition, replication factor 3 and
min.insync.replicas=2, and runs a librdkafka producer (acks=all, linger.ms=0,
one record every 2 ms, idempotent) against it. The partition's leader is
then killed with SIGKILL. Reported per round:

  was_controller  the killed broker was also the metadata (Raft) leader
  detect_s    kill -> the survivors' Metadata name a new leader
  gap_s       the longest time between two acknowledgements around the
              kill: how long producers saw the partition unavailable
  lost        acknowledged records missing from the new leader's log

The reference is the broker session timeout the controller fences a
silent broker after (--broker-session-timeout-ms, 1500 by default): the
detection floor. The goal (issue 18) is a gap under 2 s in every round.

  compat-tests/.venv/bin/python benches/e2e/failover.py [--rounds 5] [--bin target/release/karnak]
  compat-tests/.venv/bin/python benches/e2e/failover.py --kafka [--rounds 5]

With --kafka the same rounds run against three Apache Kafka 4.4.0 KRaft
nodes with Kafka's defaults (broker.session.timeout.ms 9000): the same-run
reference for how long Kafka's clients wait.

Bounded: each round writes for at most 20 s and stops its brokers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compat-tests"))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster_workload import bootstrap, start_cluster  # noqa: E402

SESSION_TIMEOUT_MS = 1500


def leader(admin, topic):
    md = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
    if md is None or md.error is not None or 0 not in md.partitions:
        return None, []
    p = md.partitions[0]
    return p.leader, p.isrs


class KafkaNode:
    """One Apache Kafka node of the reference cluster, shaped as the
    compat tests' Broker where this script uses it."""

    def __init__(self, proc, bootstrap):
        self.proc, self.bootstrap = proc, bootstrap

    def alive(self):
        return self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait()


def start_karnak(binary: Path, work: Path):
    return start_cluster(binary, work, ["--broker-session-timeout-ms", str(SESSION_TIMEOUT_MS)])


def start_kafka(cp: str, work: Path):
    """Three Kafka 4.4.0 KRaft nodes with Kafka's defaults (broker session
    timeout 9 s)."""
    sys.path.insert(0, str(ROOT / "benches" / "e2e"))
    from cluster_bench import start_kafka_cluster
    s = start_kafka_cluster(cp, work)
    return [KafkaNode(p, b) for p, b in zip(s.procs, s.bootstrap.split(","))]


def one_round(start, controller_leads: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="karnak-failover.") as d:
        nodes = start(Path(d))
        try:
            topic = "fo-" + uuid.uuid4().hex[:8]
            admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
            config = {"min.insync.replicas": "2"}
            if controller_leads:
                # The worst case: the partition's leader is also the
                # metadata leader, so a Raft election comes first.
                c = admin.list_topics(timeout=10).controller_id
                order = [c] + [i for i in range(len(nodes)) if i != c]
                new = NewTopic(topic, 1, replica_assignment=[order], config=config)
            else:
                new = NewTopic(topic, 1, 3, config=config)
            admin.create_topics([new], operation_timeout=30)[topic].result(30)
            deadline = time.monotonic() + 30
            while True:
                lead, isr = leader(admin, topic)
                if lead is not None and lead >= 0 and len(isr) == 3:
                    break
                assert time.monotonic() < deadline, "no in-sync leader"
                time.sleep(0.05)

            acks = []  # (monotonic time, value)
            lock = threading.Lock()
            stop = threading.Event()

            def on_delivery(err, msg):
                if err is None:
                    with lock:
                        acks.append((time.monotonic(), msg.value()))

            def produce():
                p = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all",
                              "linger.ms": 0, "enable.idempotence": True,
                              "message.timeout.ms": 30000})
                i = 0
                while not stop.is_set():
                    p.produce(topic, f"v-{i}".encode(), partition=0, on_delivery=on_delivery)
                    p.poll(0)
                    i += 1
                    time.sleep(0.002)
                p.flush(30)

            t = threading.Thread(target=produce)
            t.start()
            # A random phase: the client's own timers (its 1 s partition
            # scan) are not in step with a real failure.
            time.sleep(3 + random.random())
            controller = admin.list_topics(timeout=5).controller_id
            killed_at = time.monotonic()
            nodes[lead].kill9()
            survivors = AdminClient({"bootstrap.servers": bootstrap(nodes)})
            detect = None
            while detect is None and time.monotonic() - killed_at < 20:
                try:
                    new, _ = leader(survivors, topic)
                except Exception:  # noqa: BLE001 - a dead bootstrap node
                    new = None
                if new is not None and new >= 0 and new != lead:
                    detect = time.monotonic() - killed_at
                time.sleep(0.01)
            time.sleep(4)
            stop.set()
            t.join(60)
            with lock:
                times = [a[0] for a in acks]
                values = {a[1] for a in acks}
            around = [x for x in times if killed_at - 1 <= x <= killed_at + 15]
            gap = max((b - a for a, b in zip(around, around[1:])), default=float("nan"))

            c = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": "unused",
                          "enable.auto.commit": False})
            c.assign([TopicPartition(topic, 0, 0)])
            found = set()
            end = time.monotonic() + 60
            while len(found) < len(values) and time.monotonic() < end:
                for m in c.consume(1000, 0.5):
                    if not m.error():
                        found.add(m.value())
            c.close()
            return {"killed": lead, "was_controller": controller == lead,
                    "detect_s": round(detect or float("nan"), 3),
                    "gap_s": round(gap, 3), "acked": len(values),
                    "lost": len(values - found)}
        finally:
            for b in nodes:
                b.kill9()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    default = ROOT / "target" / "release" / "karnak"
    if not default.exists():
        default = ROOT / "target" / "debug" / "karnak"
    ap.add_argument("--bin", type=Path, default=default)
    ap.add_argument("--kafka", action="store_true",
                    help="the same rounds against a 3-node Apache Kafka 4.4.0 (its defaults)")
    ap.add_argument("--controller-leads", action="store_true",
                    help="place the partition's leader on the metadata leader (the slow case)")
    a = ap.parse_args()
    if a.kafka:
        sys.path.insert(0, str(ROOT / "benches" / "e2e"))
        from kafka_vs import classpath
        cp = classpath(Path(tempfile.mkdtemp(prefix="failover-cp-")))
        print(f"# Apache Kafka 4.4.0, 3 KRaft nodes, {os.cpu_count()} cores, its defaults")

        def start(work):
            return start_kafka(cp, work)
    else:
        print(f"# {a.bin}, {os.cpu_count()} cores, session timeout {SESSION_TIMEOUT_MS} ms")

        def start(work):
            return start_karnak(a.bin, work)
    session_ms = 9000 if a.kafka else SESSION_TIMEOUT_MS
    rows = []
    for r in range(a.rounds):
        row = one_round(start, a.controller_leads)
        row["round"] = r
        print(json.dumps(row), flush=True)
        rows.append(row)
    gaps = [r["gap_s"] for r in rows]
    detects = [r["detect_s"] for r in rows]
    print(f"detect_s {min(detects):.2f}-{max(detects):.2f} (median {statistics.median(detects):.2f}); "
          f"gap_s {min(gaps):.2f}-{max(gaps):.2f} (median {statistics.median(gaps):.2f}); "
          f"gap / session timeout {min(gaps) * 1000 / session_ms:.2f}-"
          f"{max(gaps) * 1000 / session_ms:.2f}; lost {sum(r['lost'] for r in rows)}")


if __name__ == "__main__":
    main()
