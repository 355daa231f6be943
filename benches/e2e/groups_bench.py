#!/usr/bin/env python3
"""Consumer-group figures through librdkafka (confluent-kafka):

  stabilise: time from 10 consumers subscribing (same group, one topic with
             10 partitions) until every one holds exactly one partition;
             --protocol consumer runs the KIP-848 protocol instead.
  commit:    synchronous OffsetCommit round trips per second from W worker
             processes, each committing for its own group; --spread picks
             group ids that hash to W different shards, --same-shard ids
             that all hash to one.

Prints one JSON line per run.
"""

import argparse
import json
import multiprocessing as mp
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fnv1a(key: str) -> int:
    # The broker's documented key -> shard hash (coordinator.rs).
    h = 0xCBF29CE484222325
    for b in key.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def group_ids(n: int, shards: int, same_shard: bool, prefix: str):
    out, used, i = [], set(), 0
    target = None
    while len(out) < n:
        g = f"{prefix}-{i}"
        i += 1
        s = fnv1a(g) % shards
        if same_shard:
            target = s if target is None else target
            if s != target:
                continue
        elif s in used and len(used) < shards:
            continue
        used.add(s)
        out.append(g)
    return out


def ensure_topic(bootstrap, topic, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    try:
        a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    except Exception:
        pass


def stabilise(args):
    topic = f"stab-{int(time.time() * 1000)}"
    ensure_topic(args.bootstrap, topic, 10)
    group = f"g-{topic}"
    if args.protocol == "consumer":
        # KIP-848: the broker sets session timeout and heartbeat interval.
        conf = {"group.protocol": "consumer"}
    else:
        conf = {"session.timeout.ms": 10000, "heartbeat.interval.ms": 500}
    consumers = [
        Consumer({"bootstrap.servers": args.bootstrap, "group.id": group, **conf})
        for _ in range(10)
    ]
    t0 = time.monotonic()
    for c in consumers:
        c.subscribe([topic])
    deadline = t0 + 120
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.01)
        if all(len(c.assignment()) == 1 for c in consumers):
            break
    elapsed = time.monotonic() - t0
    ok = all(len(c.assignment()) == 1 for c in consumers)
    for c in consumers:
        c.close()
    return {"mode": "stabilise", "protocol": args.protocol, "members": 10,
            "seconds": round(elapsed, 3), "ok": ok}


def commit_worker(bootstrap, group, topic, seconds, out):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    n, off = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        off += 1
        c.commit(offsets=[TopicPartition(topic, 0, off)], asynchronous=False)
        n += 1
    c.close()
    out.put(n)


def commit(args):
    topic = "commit-bench"
    ensure_topic(args.bootstrap, topic, 1)
    groups = group_ids(args.workers, args.shards, args.same_shard, f"cb{int(time.time())}")
    q = mp.Queue()
    procs = [mp.Process(target=commit_worker, args=(args.bootstrap, g, topic, args.seconds, q)) for g in groups]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    shards_used = len({fnv1a(g) % args.shards for g in groups})
    return {"mode": "commit", "workers": args.workers, "broker_shards": args.shards,
            "shards_busy": shards_used, "commits_per_s": round(total / args.seconds)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--mode", choices=["stabilise", "commit"], required=True)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--shards", type=int, default=64, help="the broker's --group-coordinator-shards")
    ap.add_argument("--same-shard", action="store_true")
    ap.add_argument("--protocol", choices=["classic", "consumer"], default="classic",
                    help="stabilise: group.protocol (consumer = KIP-848)")
    args = ap.parse_args()
    r = stabilise(args) if args.mode == "stabilise" else commit(args)
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
