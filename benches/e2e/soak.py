#!/usr/bin/env python3
"""Soak (issue 20): an hour of mixed load on one release broker, with
clients joining, leaving and being killed, reporting every minute the
broker's RSS, open files, threads and CPU and each workload's p99 latency.
What it is for: all of those flat over the hour (no leak of memory, file
descriptors, tasks or time), and nothing acknowledged lost.

Load, all real clients (confluent-kafka / librdkafka, psycopg):
  produce   2 idempotent producers, acks=all, 1 KiB records at --rate each,
            to `soak` (8 partitions; retention.bytes keeps the disk flat);
            latency = send to delivery report
  groups    --consumers consumer processes in group `soak-g`, each living
            20-90 s: half leave with close(), half are killed (SIGKILL);
            latency = now - record timestamp (end to end)
  txns      a transactional producer: 100 records to `soak-txn` per
            transaction, 1 in 10 aborted; a read_committed consumer checks
            no aborted record shows and none committed is missing
  sql       a psql-wire query every 2 s over `soak`; latency = query time

  cargo build --release -p karnak-broker
  compat-tests/.venv/bin/python benches/e2e/soak.py [--minutes 60] [--rate 2000]

Bounded: --minutes, then every client is stopped and the broker with them.
Prints a line per minute (and JSON lines with --json), then the verdict:
minutes 11-20 (once retention has started deleting) against the last 10 for
RSS, open files, threads, CPU and each p99.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
from sql_bench import Broker  # noqa: E402

KARNAK = Path(os.environ.get("KARNAK_BIN", ROOT / "target" / "release" / "karnak"))
TOPIC, TXN_TOPIC, GROUP = "soak", "soak-txn", "soak-g"
PARTITIONS = 8
VALUE = b"x" * 1024


def p99(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


class Latencies:
    """Per-workload samples of the current minute (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}

    def add(self, kind: str, ms: float):
        with self.lock:
            self.samples.setdefault(kind, []).append(ms)

    def error(self, kind: str):
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def take(self):
        with self.lock:
            s, e = self.samples, self.errors
            self.samples, self.errors = {}, {}
        return s, e


def producer_loop(bootstrap: str, rate: int, stop: threading.Event, lat: Latencies, n: int):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "client.id": f"soak-producer-{n}"})

    def report(err, msg, sent=None):
        if err is not None:
            lat.error("produce")
        else:
            lat.add("produce", (time.monotonic() - sent) * 1000)

    period = 1.0 / rate
    next_t = time.monotonic()
    while not stop.is_set():
        sent = time.monotonic()
        try:
            p.produce(TOPIC, VALUE, on_delivery=lambda e, m, s=sent: report(e, m, s))
        except BufferError:
            lat.error("produce")
        p.poll(0)
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1:
            next_t = time.monotonic()  # behind by a second: do not burst
    p.flush(30)


def consumer_proc(bootstrap: str, life: float, kill_me: bool, q):
    """One group member for `life` seconds (a child process, so it can be
    SIGKILLed); sends end-to-end latencies back in batches."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                  "auto.offset.reset": "latest", "enable.auto.commit": True,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
    c.subscribe([TOPIC])
    end = time.monotonic() + life
    buf = []
    while time.monotonic() < end:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            buf.append(time.time() * 1000 - m.timestamp()[1])
        if len(buf) >= 500:
            q.put(buf)
            buf = []
    q.put(buf)
    q.close()
    q.join_thread()  # the samples reach the parent before the kill
    if kill_me:
        os.kill(os.getpid(), signal.SIGKILL)  # no LeaveGroup: the session times out
    c.close()


def groups_loop(bootstrap: str, members: int, stop: threading.Event, lat: Latencies, churn):
    q = mp.Queue()
    live: list[mp.Process] = []

    def drain():
        while not q.empty():
            for x in q.get_nowait():
                lat.add("consume", x)

    while not stop.is_set():
        live = [p for p in live if p.is_alive()]
        while len(live) < members:
            kill = random.random() < 0.5
            p = mp.Process(target=consumer_proc,
                           args=(bootstrap, random.uniform(20, 90), kill, q), daemon=True)
            p.start()
            live.append(p)
            churn["joined"] += 1
            churn["killed" if kill else "left"] += 1
        drain()
        time.sleep(0.5)
    for p in live:
        p.kill()
    drain()


def txn_loop(bootstrap: str, stop: threading.Event, lat: Latencies, tally):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "soak-txn-1",
                  "linger.ms": 5})
    p.init_transactions(30)
    n = 0
    while not stop.is_set():
        t0 = time.monotonic()
        abort = n % 10 == 9
        p.begin_transaction()
        for i in range(100):
            p.produce(TXN_TOPIC, f"{n}:{i}:{'a' if abort else 'c'}".encode())
        try:
            if abort:
                p.abort_transaction(30)
                tally["aborted"] += 1
            else:
                p.commit_transaction(30)
                tally["committed"] += 1
            lat.add("txn", (time.monotonic() - t0) * 1000)
        except KafkaException:
            lat.error("txn")
        n += 1
        time.sleep(0.2)


def txn_checker(bootstrap: str, stop: threading.Event, tally):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-txn-check",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe([TXN_TOPIC])
    while not stop.is_set():
        m = c.poll(0.5)
        if m is None or m.error() is not None:
            continue
        v = m.value().decode()
        tally["aborted_seen" if v.endswith(":a") else "committed_seen"] += 1
    c.close()


def sql_loop(broker: Broker, stop: threading.Event, lat: Latencies):
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            with broker.connect() as conn:
                conn.execute(f'select partition, count(*), max("offset") from "{TOPIC}" '
                             "group by partition").fetchall()
            lat.add("sql", (time.monotonic() - t0) * 1000)
        except psycopg.Error:
            lat.error("sql")
        stop.wait(2)


def proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(next(line.split()[1] for line in status.splitlines()  # noqa: E731
                                  if line.startswith(name)))
    rss, anon = field("VmRSS:"), field("RssAnon:")
    threads = field("Threads:")
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    # RSS counts the mapped index and Arrow face pages a scan touched;
    # RssAnon is the broker's own memory, where a leak would show.
    return {"rss_mb": rss / 1024, "anon_mb": anon / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": threads, "cpu_s": cpu_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=int, default=2000, help="records/s per producer")
    ap.add_argument("--consumers", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not KARNAK.exists():
        sys.exit(f"{KARNAK} missing: cargo build --release -p karnak-broker")
    work = Path(tempfile.mkdtemp(prefix="karnak-soak-"))
    broker = Broker(KARNAK, work / "data", work / "broker.log",
                    "--log-segment-bytes", str(64 << 20))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([
            NewTopic(TOPIC, PARTITIONS, 1, config={"retention.bytes": str(256 << 20)}),
            NewTopic(TXN_TOPIC, 1, 1, config={"retention.bytes": str(256 << 20)})]).values():
        f.result(30)
    stop = threading.Event()
    lat = Latencies()
    churn = {"joined": 0, "left": 0, "killed": 0}
    tally = {"committed": 0, "aborted": 0, "committed_seen": 0, "aborted_seen": 0}
    threads = [threading.Thread(target=producer_loop,
                                args=(broker.bootstrap, args.rate, stop, lat, n))
               for n in range(2)]
    threads += [threading.Thread(target=groups_loop,
                                 args=(broker.bootstrap, args.consumers, stop, lat, churn)),
                threading.Thread(target=txn_loop, args=(broker.bootstrap, stop, lat, tally)),
                threading.Thread(target=txn_checker, args=(broker.bootstrap, stop, tally)),
                threading.Thread(target=sql_loop, args=(broker, stop, lat))]
    for t in threads:
        t.start()
    rows = []
    started = time.monotonic()
    last_cpu = proc_stats(broker.proc.pid)["cpu_s"]
    print(f"{'min':>4} {'RSS MB':>8} {'anon MB':>8} {'fds':>5} {'thr':>4} {'cpu%':>5} "
          f"{'prod p99':>9} {'e2e p99':>8} {'txn p99':>8} {'sql p99':>8} {'errors':>8} "
          f"{'joined':>6}", flush=True)
    try:
        for minute in range(1, int(args.minutes) + 1):
            stop.wait(max(0.0, started + 60 * minute - time.monotonic()))
            if broker.proc.poll() is not None:
                sys.exit(f"the broker exited: see {work / 'broker.log'}")
            s = proc_stats(broker.proc.pid)
            samples, errors = lat.take()
            row = {"minute": minute, **s, "cpu_pct": (s["cpu_s"] - last_cpu) / 60 * 100,
                   **{f"{k}_p99_ms": p99(samples.get(k, [])) for k in
                      ("produce", "consume", "txn", "sql")},
                   **{f"{k}_n": len(v) for k, v in samples.items()},
                   "errors": errors, **churn}
            last_cpu = s["cpu_s"]
            rows.append(row)
            print(f"{minute:>4} {row['rss_mb']:>8.1f} {row['anon_mb']:>8.1f} {row['fds']:>5} "
                  f"{row['threads']:>4} "
                  f"{row['cpu_pct']:>5.1f} {row['produce_p99_ms']:>9.1f} "
                  f"{row['consume_p99_ms']:>8.1f} {row['txn_p99_ms']:>8.1f} "
                  f"{row['sql_p99_ms']:>8.1f} {sum(errors.values()):>8} "
                  f"{churn['joined']:>6}", flush=True)
            if args.json:
                print(json.dumps(row), flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        broker.stop()
        if not sys.exc_info()[0]:
            shutil.rmtree(work, ignore_errors=True)  # gigabytes; kept with its log on failure
    if len(rows) >= 30:
        # The first minutes fill the topic up to retention.bytes (segments,
        # open files and mapped indexes grow until deletions start): the
        # steady state is compared, minutes 11-20 against the last ten.
        first, last = rows[10:20], rows[-10:]
        print("\nminutes 11-20 -> last 10 (median):")
        for k in ("rss_mb", "anon_mb", "fds", "threads", "cpu_pct", "produce_p99_ms", "consume_p99_ms",
                  "txn_p99_ms", "sql_p99_ms"):
            a = statistics.median(r[k] for r in first)
            b = statistics.median(r[k] for r in last)
            print(f"  {k:>16}: {a:10.1f} -> {b:10.1f}  ({(b - a) / a * 100 if a else 0:+.0f} %)")
    print(f"\ntransactions: {tally['committed']} committed, {tally['aborted']} aborted; "
          f"read_committed saw {tally['committed_seen']} committed records "
          f"(sent {tally['committed'] * 100}) and {tally['aborted_seen']} aborted ones")
    print(f"group churn: {churn['joined']} members joined, {churn['left']} left, "
          f"{churn['killed']} killed")
    if tally["aborted_seen"]:
        sys.exit("read_committed showed aborted records")


if __name__ == "__main__":
    main()
