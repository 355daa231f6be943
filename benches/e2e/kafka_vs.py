#!/usr/bin/env python3
"""Apache Kafka as the same-run reference (issue 16), for benches/RESULTS.md.

One Apache Kafka 4.4.0 broker (KRaft, broker and controller in one JVM,
started from the Maven artifacts compat-tests/java resolves, heap and GC as
kafka-server-start.sh sets them) and one release Karnak broker on the same
machine, loaded in turn, round after round (interleaved, so drift in the
machine hits both), by:

  producer-perf   Kafka's kafka-producer-perf-test (ProducerPerformance,
                  Java client 4.4.0): --num-records N, 1 KiB, unthrottled,
                  acks=1, linger.ms=5, batch.size=1 MiB, 4 partitions
  consumer-perf   kafka-consumer-perf-test (ConsumerPerformance) reading
                  those N records back
  rdkafka         karnak-bench produce --client rdkafka (librdkafka, same
                  settings) and karnak-bench consume (raw wire)

and beside them the machine's limits (karnak-bench limits) measured in the
same run. Each row also reports the broker's CPU (user+system, from
/proc/<pid>/stat) per GB moved: what the broker costs, whatever the noise.

Durability differs by default: Kafka acknowledges acks=all without an
fsync (flush.messages is unbounded), Karnak fsyncs first; these rows use
acks=1, where neither fsyncs before answering.

  cargo build --release -p karnak-broker -p karnak-benches --bins
  compat-tests/.venv/bin/python benches/e2e/kafka_vs.py [--rounds 5] [--records 1000000]

Bounded: every tool runs with a record count and a timeout; each round's
topics are deleted after it. Prints JSON lines, then a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
from sql_bench import free_port  # noqa: E402

KARNAK = Path(os.environ.get("KARNAK_BIN", ROOT / "target" / "release" / "karnak"))
BENCH = Path(os.environ.get("KARNAK_BENCH", ROOT / "target" / "release" / "karnak-bench"))
POM = ROOT / "compat-tests" / "java" / "pom.xml"
JAVA = "java"
# kafka-server-start.sh's heap and GC settings (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS).
KAFKA_JVM = ["-Xms1g", "-Xmx1g", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent"]
TOOL_JVM = ["-Xmx512m"]  # kafka-run-class.sh's default for the tools


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def classpath(work: Path) -> str:
    out = work / "kafka.classpath"
    subprocess.run(["mvn", "-B", "-ntp", "-q", "-f", str(POM), "dependency:build-classpath",
                    "-Dmdep.includeScope=test", f"-Dmdep.outputFile={out}"], check=True, timeout=600)
    return out.read_text().strip()


def java(cp: str, main: str, *args: str, timeout: float = 300, jvm=TOOL_JVM) -> str:
    r = subprocess.run([JAVA, *jvm, "-cp", cp, main, *args], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{main} {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def wait_listening(port: int, proc: subprocess.Popen, what: str, deadline_s: float = 120):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} not listening on {port} after {deadline_s} s")


def write_log4j(d: Path) -> Path:
    """A log4j2 config sending a Kafka node's WARN and above to d/server.log."""
    log4j = d / "log4j2.properties"
    log4j.write_text("\n".join([
        "rootLogger.level=WARN", "rootLogger.appenderRef.f.ref=F", "appender.f.type=File",
        "appender.f.name=F", f"appender.f.fileName={d / 'server.log'}",
        "appender.f.layout.type=PatternLayout", "appender.f.layout.pattern=[%d] %p %m (%c)%n", ""]))
    return log4j


def start_kafka(cp: str, work: Path) -> tuple[subprocess.Popen, int]:
    port, controller = free_port(), free_port()
    d = work / "kafka"
    d.mkdir()
    props = d / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller", "node.id=0",
        f"controller.quorum.voters=0@127.0.0.1:{controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={d / 'data'}", "num.partitions=4",
        "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1", ""]))
    log4j = write_log4j(d)
    cluster = java(cp, "kafka.tools.StorageTool", "random-uuid").strip().splitlines()[-1]
    java(cp, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props))
    proc = subprocess.Popen([JAVA, *KAFKA_JVM, f"-Dlog4j2.configurationFile={log4j}",
                             f"-Dkafka.logs.dir={d}", "-cp", cp, "kafka.Kafka", str(props)],
                            stdout=open(d / "stdout.log", "w"), stderr=subprocess.STDOUT)
    wait_listening(port, proc, "Apache Kafka")
    return proc, port


def start_karnak(work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    d = work / "karnak"
    d.mkdir()
    proc = subprocess.Popen([str(KARNAK), "--data-dir", str(d / "data"), "--kafka-addr",
                             f"127.0.0.1:{port}", "--admin-addr", f"127.0.0.1:{free_port()}",
                             "--sql-enabled", "false", "--num-partitions", "4"],
                            stdout=open(d / "stdout.log", "w"), stderr=subprocess.STDOUT)
    wait_listening(port, proc, "Karnak")
    return proc, port


def create_topic(cp: str, bootstrap: str, topic: str):
    java(cp, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create",
         "--topic", topic, "--partitions", "4", "--replication-factor", "1")


def delete_topic(cp: str, bootstrap: str, topic: str):
    java(cp, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--delete",
         "--topic", topic)


PRODUCER_RE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def producer_perf(cp, bootstrap, topic, n) -> dict:
    out = java(cp, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
               "--num-records", str(n), "--record-size", "1024", "--throughput", "-1",
               "--producer-props", f"bootstrap.servers={bootstrap}", "acks=1", "linger.ms=5",
               "batch.size=1048576", timeout=600)
    m = PRODUCER_RE.findall(out)
    if not m:
        raise RuntimeError(f"no summary in ProducerPerformance output:\n{out[-2000:]}")
    sent, rps, mbs, avg, mx, p50, p95, p99, p999 = m[-1]
    return {"records": int(sent), "records_per_s": float(rps), "mb_per_s": float(mbs),
            "latency_ms": {"avg": float(avg), "p50": int(p50), "p99": int(p99), "p99.9": int(p999),
                           "max": float(mx)}}


def consumer_perf(cp, bootstrap, topic, n) -> dict:
    out = java(cp, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap,
               "--topic", topic, "--messages", str(n), "--timeout", "60000", timeout=600)
    lines = [line for line in out.splitlines() if line.count(",") >= 9 and line[0].isdigit()]
    if not lines:
        raise RuntimeError(f"no result in ConsumerPerformance output:\n{out[-2000:]}")
    f = [x.strip() for x in lines[-1].split(",")]
    # start, end, MB, MB/s, nMsg, nMsg/s, rebalance ms, fetch ms, fetch MB/s, fetch nMsg/s
    return {"records": int(f[4]), "mb_per_s": float(f[3]), "records_per_s": float(f[5]),
            "fetch_mb_per_s": float(f[8])}


def bench(*args, timeout=600) -> dict:
    r = subprocess.run([str(BENCH), *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"karnak-bench {' '.join(args)}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def drop_caches() -> bool:
    """Drop the page cache once at the start (root only): cache left by earlier
    runs may already have been handed back to the host."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def top_up(work: Path, keep_free_gib: float = 2.0) -> float:
    """Fill free memory but keep_free_gib with clean page-cache pages (as load_matrix.sh does).

    On this guest, memory the host has not backed costs a fault into the host on
    first touch, so whichever broker writes first into freed memory pays several
    times the page-cache cost (4-9 core-s/GB against 0.29 in the first pass).
    Freed pages (a deleted round's topics) go back to the host, so this runs
    before every broker's turn: their writes then reclaim backed clean pages.
    """
    free_kb = next(int(line.split()[1]) for line in open("/proc/meminfo")
                   if line.startswith("MemFree:"))
    gib = free_kb / 1048576 - keep_free_gib
    if gib <= 0:
        return 0.0
    warm = work / f"warm-{uuid.uuid4().hex[:8]}"
    with open(warm, "wb") as f:
        f.truncate(int(gib * 1024**3))
    with open(warm, "rb") as f:
        while f.read(8 << 20):
            pass
    # Kept until the end: deleting it would free its pages (back to the host).
    return round(gib, 1)


def measured(pid: int, fn) -> tuple[dict, float, float]:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    result = fn()
    return result, cpu_seconds(pid) - c0, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--records", type=int, default=1_000_000)
    a = ap.parse_args()
    for b in (KARNAK, BENCH):
        if not b.exists():
            sys.exit(f"{b} missing: cargo build --release -p karnak-broker -p karnak-benches --bins")
    work = Path(tempfile.mkdtemp(prefix="kafka-vs-"))
    cp = classpath(work)
    print(json.dumps({"machine": f"{os.cpu_count()} cores, {os.uname().release}", "work": str(work),
                      "records": a.records, "record_size": 1024}), flush=True)
    print(json.dumps({"limits": bench("limits", "--dir", str(work / "limits"), "--seconds", "2")}),
          flush=True)
    print(json.dumps({"caches_dropped_first": drop_caches()}), flush=True)
    kafka, kport = start_kafka(cp, work)
    karnak, nport = start_karnak(work)
    brokers = {"kafka": (kafka, f"127.0.0.1:{kport}"), "karnak": (karnak, f"127.0.0.1:{nport}")}
    gb = a.records * 1024 / 1e9
    rows = []
    try:
        for rnd in range(a.rounds):
            order = ["kafka", "karnak"] if rnd % 2 == 0 else ["karnak", "kafka"]
            for name in order:
                proc, bootstrap = brokers[name]
                topic, rk = f"perf-{rnd}", f"rk-{rnd}"
                print(json.dumps({"round": rnd, "broker": name, "warm_gib": top_up(work)}),
                      flush=True)
                create_topic(cp, bootstrap, topic)
                for tool, fn in [
                    ("producer-perf", lambda: producer_perf(cp, bootstrap, topic, a.records)),
                    ("consumer-perf", lambda: consumer_perf(cp, bootstrap, topic, a.records)),
                    ("rdkafka-produce", lambda: bench(
                        "produce", "--client", "rdkafka", "--bootstrap", bootstrap, "--topic", rk,
                        "--partitions", "4", "--record-size", "1024", "--acks", "1",
                        "--linger-ms", "5", "--batch-size", "1048576", "--records",
                        str(a.records), "--duration", "120")),
                    ("raw-consume", lambda: bench(
                        "consume", "--bootstrap", bootstrap, "--topic", rk, "--partitions", "4",
                        "--connections", "2", "--records", str(a.records), "--duration", "120")),
                ]:
                    result, cpu, wall = measured(proc.pid, fn)
                    row = {"round": rnd, "broker": name, "tool": tool, "result": result,
                           "broker_cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                           "broker_core_s_per_gb": round(cpu / gb, 3)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                delete_topic(cp, bootstrap, topic)
                delete_topic(cp, bootstrap, rk)
    finally:
        for proc, _ in brokers.values():
            proc.terminate()
        for proc, _ in brokers.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        # Both brokers' data dirs (a run leaves gigabytes) and the warm files.
        shutil.rmtree(work, ignore_errors=True)

    def rate(r):
        # MB = 10^6 bytes of record values (Kafka's tools print MiB: use their record rate).
        res = r["result"]
        if "MBps" in res:
            return res["MBps"]
        return res["records_per_s"] * 1024 / 1e6

    print("\n| tool | Kafka MB/s | Karnak MB/s | Karnak / Kafka | Kafka broker core-s/GB | Karnak broker core-s/GB |")
    print("|---|---|---|---|---|---|")
    # consumer-perf's own rate includes joining the group (group.initial.rebalance.delay.ms,
    # 3 s by default on both); "fetch" is its rate without that.
    for tool, label, pick in [
        ("producer-perf", "producer-perf", rate),
        ("consumer-perf", "consumer-perf", rate),
        ("consumer-perf", "consumer-perf (fetch only)",
         lambda r: r["result"]["fetch_mb_per_s"] * 1.048576),
        ("rdkafka-produce", "rdkafka-produce", rate),
        ("raw-consume", "raw-consume", rate),
    ]:
        per = {b: [r for r in rows if r["tool"] == tool and r["broker"] == b] for b in brokers}
        k = [pick(r) for r in per["kafka"]]
        n = [pick(r) for r in per["karnak"]]
        ratios = [y / x for x, y in zip(k, n) if x]
        span = lambda v: f"{min(v):.1f}-{max(v):.1f}" if v else "-"
        cpu = lambda rs: f"{min(r['broker_core_s_per_gb'] for r in rs):.2f}-{max(r['broker_core_s_per_gb'] for r in rs):.2f}" if rs else "-"
        print(f"| {label} | {span(k)} | {span(n)} | {span(ratios)} (median {statistics.median(ratios):.2f}) "
              f"| {cpu(per['kafka'])} | {cpu(per['karnak'])} |" if ratios else f"| {label} | - | - | - | - | - |")


if __name__ == "__main__":
    main()
