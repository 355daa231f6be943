#!/usr/bin/env python3
"""A 3-broker Karnak cluster against a 3-broker Apache Kafka and a single
Karnak broker, in the same run (issue 18), for benches/RESULTS.md.

Three setups on this one machine, loaded in turn, round after round
(interleaved, so drift in the machine hits all of them):

  karnak-3   three release Karnak brokers, every one a metadata voter
  kafka-3    three Apache Kafka 4.4.0 nodes (KRaft, broker and controller
             in each JVM, heap and GC as kafka-server-start.sh sets them)
  karnak-1   one release Karnak broker (replication factor 1)

Workloads, each with Kafka's own ProducerPerformance (Java client 4.4.0):

  throughput  --num-records N of 1 KiB, unthrottled, acks=all, linger.ms=5,
              batch.size=1 MiB, 4 partitions, replication factor 3 and
              min.insync.replicas=2 (1 and 1 on karnak-1): MB/s and the
              brokers' CPU (user+system summed over the brokers) per GB
  latency     1,000 records/s for --latency-seconds, acks=all, linger.ms=0,
              one partition: p50/p99/p99.9 produce latency
  txn         transactional producers (confluent-kafka, librdkafka) back to
              back for --txn-seconds each: 1 record to 1 partition, then
              100 records over 4 partitions; transactions/s and commit
              p50/p99 (the coordinator's state is replicated on both
              clusters: transaction.state.log.replication.factor=3)
  rebalance   --rebalances times, a classic consumer group of two members
              (librdkafka, heartbeat.interval.ms=100) on the throughput
              topic: a second member joining, then leaving; milliseconds
              until every member holds its new assignment
  idle        (once, after the rounds) 30 topics x 100 partitions,
              replication factor 3 (3,000 partitions, 9,000 replicas), all
              in sync, then --idle-seconds of nothing: each broker's CPU
              as a percentage of one core

Durability differs by default: Kafka answers acks=all once the in-sync
replicas have the records in memory (flush.messages is unbounded); Karnak
fsyncs on the leader (group commit) before answering.

  cargo build --release -p karnak-broker --bins
  compat-tests/.venv/bin/python benches/e2e/cluster_bench.py [--rounds 3] [--records 300000]

Bounded: every tool runs with a record count and a timeout; each round's
topics are deleted after it; every broker is stopped at the end.
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
sys.path.insert(0, str(ROOT / "compat-tests"))
from kafka_vs import (  # noqa: E402
    JAVA, KAFKA_JVM, PRODUCER_RE, classpath, cpu_seconds, java, top_up, wait_listening,
    write_log4j)
from sql_bench import free_port  # noqa: E402
from txn_bench import transactions  # noqa: E402

KARNAK = Path(os.environ.get("KARNAK_BIN", ROOT / "target" / "release" / "karnak"))


class Setup:
    """Some broker processes and a bootstrap string."""

    def __init__(self, name, procs, bootstrap, replication, min_isr):
        self.name, self.procs, self.bootstrap = name, procs, bootstrap
        self.replication, self.min_isr = replication, min_isr

    def cpu(self) -> list[float]:
        return [cpu_seconds(p.pid) for p in self.procs]

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def start_kafka_cluster(cp: str, work: Path) -> Setup:
    ports = distinct_ports(6)
    kports, cports = ports[:3], ports[3:]
    voters = ",".join(f"{i}@127.0.0.1:{cports[i]}" for i in range(3))
    cluster = java(cp, "kafka.tools.StorageTool", "random-uuid").strip().splitlines()[-1]
    procs = []
    for i in range(3):
        d = work / f"kafka{i}"
        d.mkdir()
        props = d / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller", f"node.id={i}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{kports[i]},CONTROLLER://127.0.0.1:{cports[i]}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{kports[i]}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={d / 'data'}", "num.partitions=4", "default.replication.factor=3",
            "offsets.topic.replication.factor=3", "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2", ""]))
        log4j = write_log4j(d)
        java(cp, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props))
        procs.append(subprocess.Popen(
            [JAVA, *KAFKA_JVM, f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={d}",
             "-cp", cp, "kafka.Kafka", str(props)],
            stdout=open(d / "stdout.log", "w"), stderr=subprocess.STDOUT))
    for i, p in enumerate(procs):
        wait_listening(kports[i], p, f"Apache Kafka node {i}")
    return Setup("kafka-3", procs, ",".join(f"127.0.0.1:{p}" for p in kports), 3, 2)


def start_karnak_cluster(work: Path) -> Setup:
    ports = distinct_ports(9)
    peers = ",".join(f"{i}@127.0.0.1:{ports[6 + i]}" for i in range(3))
    procs = []
    for i in range(3):
        d = work / f"karnak{i}"
        d.mkdir()
        procs.append(subprocess.Popen(
            [str(KARNAK), "--node-id", str(i), "--cluster-id", "bench",
             "--cluster-peers", peers, "--data-dir", str(d / "data"),
             "--kafka-addr", f"127.0.0.1:{ports[i]}", "--admin-addr", f"127.0.0.1:{ports[3 + i]}",
             "--sql-enabled", "false", "--num-partitions", "4"],
            stdout=open(d / "stdout.log", "w"), stderr=subprocess.STDOUT))
    for i, p in enumerate(procs):
        wait_listening(ports[i], p, f"Karnak node {i}")
    return Setup("karnak-3", procs, ",".join(f"127.0.0.1:{ports[i]}" for i in range(3)), 3, 2)


def start_karnak_single(work: Path) -> Setup:
    port = free_port()
    d = work / "karnak-single"
    d.mkdir()
    proc = subprocess.Popen(
        [str(KARNAK), "--data-dir", str(d / "data"), "--kafka-addr", f"127.0.0.1:{port}",
         "--admin-addr", f"127.0.0.1:{free_port()}", "--sql-enabled", "false",
         "--num-partitions", "4"],
        stdout=open(d / "stdout.log", "w"), stderr=subprocess.STDOUT)
    wait_listening(port, proc, "Karnak")
    return Setup("karnak-1", [proc], f"127.0.0.1:{port}", 1, 1)


def create_topic(cp: str, s: Setup, topic: str, partitions: int):
    java(cp, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", s.bootstrap, "--create",
         "--topic", topic, "--partitions", str(partitions), "--replication-factor",
         str(s.replication), "--config", f"min.insync.replicas={s.min_isr}")
    wait_in_sync(s, [topic], partitions)


def wait_in_sync(s: Setup, topics: list[str], partitions: int, deadline_s: float = 300):
    """Every partition has a leader and its whole replica set in sync."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    deadline = time.monotonic() + deadline_s
    while True:
        md = admin.list_topics(timeout=30).topics
        ok = all(t in md and md[t].error is None and len(md[t].partitions) == partitions
                 and all(p.leader >= 0 and len(p.isrs) == s.replication
                         for p in md[t].partitions.values()) for t in topics)
        if ok:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{s.name}: {len(topics)} topics not in sync after {deadline_s} s")
        time.sleep(0.5)


def delete_topics(cp: str, s: Setup, pattern: str):
    java(cp, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", s.bootstrap, "--delete",
         "--topic", pattern)


def producer_perf(cp, s: Setup, topic, n, *props, throughput=-1) -> dict:
    out = java(cp, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
               "--num-records", str(n), "--record-size", "1024", "--throughput", str(throughput),
               "--producer-props", f"bootstrap.servers={s.bootstrap}", "acks=all", *props,
               timeout=900)
    m = PRODUCER_RE.findall(out)
    if not m:
        raise RuntimeError(f"no summary in ProducerPerformance output:\n{out[-2000:]}")
    sent, rps, mbs, avg, mx, p50, p95, p99, p999 = m[-1]
    return {"records": int(sent), "records_per_s": float(rps),
            "mb_per_s": round(float(rps) * 1024 / 1e6, 1),
            "latency_ms": {"avg": float(avg), "p50": int(p50), "p99": int(p99),
                           "p99.9": int(p999), "max": float(mx)}}


def rebalances(s: Setup, topic: str, group: str, times: int) -> dict:
    """Classic-protocol rebalances of a stable group (librdkafka, eager
    range assignor, heartbeat.interval.ms=100): member A holds the topic's
    4 partitions; B joins (join: B.subscribe() until A and B both hold
    their new 2 partitions) and closes (leave: B's LeaveGroup until A
    holds all 4 again), `times` times. The first join of an empty group
    (group.initial.rebalance.delay.ms, 3 s on both brokers) is not timed."""
    from confluent_kafka import Consumer

    def member(name, log):
        c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": group,
                      "client.id": name, "enable.auto.commit": False,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 100,
                      "partition.assignment.strategy": "range"})
        c.subscribe([topic], on_assign=lambda _c, ps: log.append((time.perf_counter(), len(ps))))
        return c

    def until(members, done, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{s.name}: {what} not done in {timeout} s")
            for c in members:
                c.poll(0.005)

    a_log: list = []
    a = member("a", a_log)
    until([a], lambda: a_log and a_log[-1][1] == 4, "the first assignment")
    joins, leaves = [], []
    try:
        for i in range(times):
            b_log: list = []
            t0 = time.perf_counter()
            b = member(f"b{i}", b_log)
            until([a, b], lambda: b_log and b_log[-1][1] == 2
                  and any(t > t0 and n == 2 for t, n in a_log), f"join {i}")
            joins.append(max(b_log[-1][0], a_log[-1][0]) - t0)
            t1 = time.perf_counter()
            b.close()
            until([a], lambda: any(t > t1 and n == 4 for t, n in a_log), f"leave {i}")
            leaves.append(a_log[-1][0] - t1)
    finally:
        a.close()
    ms = lambda v: [round(x * 1000, 1) for x in sorted(v)]  # noqa: E731
    return {"join_ms": ms(joins), "leave_ms": ms(leaves)}


def measured(s: Setup, fn):
    c0 = s.cpu()
    result = fn()
    return result, sum(b - a for a, b in zip(c0, s.cpu()))


def idle_cost(s: Setup, seconds: float) -> dict:
    from confluent_kafka.admin import AdminClient, NewTopic
    topics = [f"idle-{i:02d}" for i in range(30)]
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    for f in admin.create_topics([NewTopic(t, 100, s.replication) for t in topics],
                                 operation_timeout=120, request_timeout=180).values():
        f.result(300)
    t0 = time.monotonic()
    wait_in_sync(s, topics, 100, deadline_s=600)
    settle = time.monotonic() - t0
    time.sleep(10)  # let creation's own work (segment pre-allocation, GC) finish
    c0, w0 = s.cpu(), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - w0
    pct = [round(100 * (b - a) / wall, 2) for a, b in zip(c0, s.cpu())]
    rss = [int(next(line.split()[1] for line in open(f"/proc/{p.pid}/status")
                    if line.startswith("VmRSS:"))) // 1024 for p in s.procs]
    return {"partitions": 3000, "in_sync_after_s": round(settle, 1),
            "cpu_pct_of_a_core": pct, "rss_mib": rss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--latency-seconds", type=int, default=20)
    ap.add_argument("--idle-seconds", type=int, default=60)
    ap.add_argument("--txn-seconds", type=int, default=10)
    ap.add_argument("--rebalances", type=int, default=5)
    ap.add_argument("--skip-idle", action="store_true")
    a = ap.parse_args()
    if not KARNAK.exists():
        sys.exit(f"{KARNAK} missing: cargo build --release -p karnak-broker --bins")
    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    cp = classpath(work)
    print(json.dumps({"machine": f"{os.cpu_count()} cores, {os.uname().release}",
                      "work": str(work), "records": a.records, "record_size": 1024}), flush=True)
    setups = [start_karnak_cluster(work), start_kafka_cluster(cp, work), start_karnak_single(work)]
    gb = a.records * 1024 / 1e9
    rows = []
    try:
        for rnd in range(a.rounds):
            order = setups[rnd % 3:] + setups[:rnd % 3]
            for s in order:
                top_up(work)
                topic, lat = f"tput-{rnd}", f"lat-{rnd}"
                create_topic(cp, s, topic, 4)
                create_topic(cp, s, lat, 1)
                res, cpu = measured(s, lambda: producer_perf(
                    cp, s, topic, a.records, "linger.ms=5", "batch.size=1048576"))
                row = {"round": rnd, "setup": s.name, "workload": "throughput", "result": res,
                       "brokers_cpu_s": round(cpu, 2), "core_s_per_gb": round(cpu / gb, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                res = producer_perf(cp, s, lat, 1000 * a.latency_seconds, "linger.ms=0",
                                    throughput=1000)
                row = {"round": rnd, "setup": s.name, "workload": "latency", "result": res}
                rows.append(row)
                print(json.dumps(row), flush=True)
                txn = f"txn-{rnd}"
                create_topic(cp, s, txn, 4)
                for parts, per in ((1, 1), (4, 100)):
                    res = transactions(s, txn, parts, per, a.txn_seconds,
                                       f"bench-{s.name}-{rnd}-{per}")
                    row = {"round": rnd, "setup": s.name, "workload": "txn", "result": res}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                res = rebalances(s, topic, f"rebalance-{rnd}", a.rebalances)
                row = {"round": rnd, "setup": s.name, "workload": "rebalance", "result": res}
                rows.append(row)
                print(json.dumps(row), flush=True)
                delete_topics(cp, s, f"{topic}|{lat}|{txn}")
        if not a.skip_idle:
            for s in setups[:2]:
                row = {"setup": s.name, "workload": "idle", "result": idle_cost(s, a.idle_seconds)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for s in setups:
            s.stop()
        for warm in work.glob("warm-*"):
            warm.unlink()

    span = lambda v: f"{min(v):.1f}-{max(v):.1f}" if v else "-"  # noqa: E731
    by = lambda name, wl: [r for r in rows if r["setup"] == name and r["workload"] == wl]  # noqa: E731
    print("\n| setup | acks=all MB/s | brokers' core-s/GB | p50 ms at 1k/s | p99 ms at 1k/s | p99.9 ms at 1k/s |")
    print("|---|---|---|---|---|---|")
    for s in setups:
        t, lat = by(s.name, "throughput"), by(s.name, "latency")
        print(f"| {s.name} | {span([r['result']['mb_per_s'] for r in t])} "
              f"| {span([r['core_s_per_gb'] for r in t])} "
              f"| {span([r['result']['latency_ms']['p50'] for r in lat])} "
              f"| {span([r['result']['latency_ms']['p99'] for r in lat])} "
              f"| {span([r['result']['latency_ms']['p99.9'] for r in lat])} |")
    print("\n| setup | transaction | per second | commit p50 ms | commit p99 ms |")
    print("|---|---|---|---|---|")
    for s in setups:
        for phase in ("txn_1p_1r", "txn_4p_100r"):
            t = [r["result"] for r in by(s.name, "txn") if r["result"]["phase"] == phase]
            print(f"| {s.name} | {phase} | {span([x['txn_per_s'] for x in t])} "
                  f"| {span([x['commit_p50_ms'] for x in t])} "
                  f"| {span([x['commit_p99_ms'] for x in t])} |")
    print("\n| setup | join ms (median, max) | leave ms (median, max) |")
    print("|---|---|---|")
    for s in setups:
        r = by(s.name, "rebalance")
        j = [x for row in r for x in row["result"]["join_ms"]]
        lv = [x for row in r for x in row["result"]["leave_ms"]]
        if j:
            print(f"| {s.name} | {statistics.median(j):.0f}, {max(j):.0f} "
                  f"| {statistics.median(lv):.0f}, {max(lv):.0f} |")
    k3 = [r["result"]["mb_per_s"] for r in by("karnak-3", "throughput")]
    for other in ("kafka-3", "karnak-1"):
        o = [r["result"]["mb_per_s"] for r in by(other, "throughput")]
        ratios = [x / y for x, y in zip(k3, o) if y]
        if ratios:
            print(f"karnak-3 / {other} throughput per round: {span(ratios)} "
                  f"(median {statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
