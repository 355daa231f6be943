#!/usr/bin/env python3
"""End-to-end produce/consume throughput through a real librdkafka client
(confluent-kafka), with the broker's CPU seconds read from /proc.

Produce runs in several processes so that Python's per-message cost is not
what gets measured; consume uses librdkafka's batch consume. Prints one JSON
line per run.

  python librdkafka_bench.py --bootstrap 127.0.0.1:9092 --broker-pid PID \
      --topic t --partitions 8 --record-size 1024 --count 2000000 --acks 1
"""

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLK_TCK = os.sysconf("SC_CLK_TCK")


def default_karnak() -> Path:
    """The broker the issue-19 benches run by default: the release build, else the debug one."""
    root = Path(__file__).resolve().parents[2]
    release = root / "target" / "release" / "karnak"
    return release if release.exists() else root / "target" / "debug" / "karnak"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def produce_worker(args, share: int, worker: int, out):
    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": str(args.acks),
        "linger.ms": args.linger_ms,
        "batch.size": args.batch_size,
        "compression.type": args.compression,
        "queue.buffering.max.kbytes": 1048576,
        "queue.buffering.max.messages": 1000000,
    })
    value = os.urandom(args.record_size)
    errors = [0]

    def report(err, _msg):
        if err is not None:
            errors[0] += 1

    for i in range(share):
        while True:
            try:
                p.produce(args.topic, value, partition=(i + worker) % args.partitions, on_delivery=report)
                break
            except BufferError:
                p.poll(0.005)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(300)
    out.put((errors[0], left))


def produce(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(args.topic, args.partitions, 1)])[args.topic].result(30)
    q = mp.Queue()
    shares = [args.count // args.producers + (1 if w < args.count % args.producers else 0) for w in range(args.producers)]
    procs = [mp.Process(target=produce_worker, args=(args, s, w, q)) for w, s in enumerate(shares)]
    cpu0, t0 = cpu_seconds(args.broker_pid), time.perf_counter()
    for pr in procs:
        pr.start()
    results = [q.get() for _ in procs]
    for pr in procs:
        pr.join()
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(args.broker_pid) - cpu0
    errors = sum(r[0] for r in results) + sum(r[1] for r in results)
    return elapsed, cpu, errors


def consume(args):
    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "bench-unused",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 10485760,
        "fetch.wait.max.ms": 100,
    })
    c.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
    got = 0
    cpu0, t0 = cpu_seconds(args.broker_pid), time.perf_counter()
    deadline = t0 + 600
    while got < args.count and time.perf_counter() < deadline:
        for m in c.consume(num_messages=100000, timeout=1.0):
            if m.error() is None:
                got += 1
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(args.broker_pid) - cpu0
    c.close()
    return elapsed, cpu, args.count - got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--broker-pid", type=int, required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1048576)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--mode", choices=["produce", "consume"], default="produce")
    args = ap.parse_args()
    elapsed, cpu, missing = produce(args) if args.mode == "produce" else consume(args)
    mb = args.count * args.record_size / 1e6
    print(json.dumps({
        "mode": args.mode, "record_size": args.record_size, "partitions": args.partitions,
        "acks": args.acks, "count": args.count, "producers": args.producers,
        "seconds": round(elapsed, 3), "records_per_s": round(args.count / elapsed),
        "MB_per_s": round(mb / elapsed, 1),
        "broker_core_s_per_GB": round(cpu / (mb / 1000), 3), "errors_or_missing": missing,
    }))


if __name__ == "__main__":
    main()
