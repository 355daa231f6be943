#!/usr/bin/python3
"""One round trip with Debian's python3-kafka (kafka-python 2.0.2), run under
Debian's /usr/bin/python3 (the package installs there, not in the venv).

    /usr/bin/python3 kafka_python_old.py --bootstrap HOST:PORT --topic T --group G \
        --api-version 0.8.2|0.9|0.10.0|0.10.1|0.11|auto --codec none|gzip|snappy|lz4 \
        [--n 20] [--batches 2] [--consume-timeout 30]

Steps: produce n keyed records (k0..k{n-1} / v0..v{n-1}, in `batches` flushes,
timestamps 1700000000000+i), read partition 0 from the beginning, find the
end offset (seek_to_end + position: ListOffsets), commit offset n with
metadata for the group, read it back with a fresh consumer (committed()).
Every step's outcome goes into one JSON object on stdout; a failing step is
recorded under "errors" and the next steps still run, so the caller sees all
of it. Exit code 0 whenever the JSON was printed.
"""

import argparse
import json
import os
import sys
import threading
import time
import traceback

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

TS0 = 1700000000000


def parse_api(s):
    if s == "auto":
        return None
    return tuple(int(x) for x in s.split("."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--api-version", default="auto")
    ap.add_argument("--codec", default="none")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--no-produce", action="store_true",
                    help="only read: the n records k<i>/v<i> were written by another client")
    ap.add_argument("--consume-timeout", type=float, default=30.0)
    ap.add_argument("--request-timeout-ms", type=int, default=15000)
    ap.add_argument("--deadline", type=float, default=120.0,
                    help="seconds for everything: then print what we have and exit")
    a = ap.parse_args()

    api = parse_api(a.api_version)
    common = dict(bootstrap_servers=a.bootstrap, request_timeout_ms=a.request_timeout_ms,
                  client_id="kafka-python-old")
    if api is not None:
        common["api_version"] = api
    out = {"kafka_python": kafka.__version__, "api_version": a.api_version, "codec": a.codec,
           "n": a.n, "produced": [], "consumed": [], "end_offset": None, "beginning_offset": None,
           "committed": None, "committed_metadata": None, "errors": []}

    def step(name, fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - reported to the test
            out["errors"].append({"step": name, "error": f"{type(e).__name__}: {e}",
                                  "trace": traceback.format_exc(limit=6)})
            return None

    # kafka-python 2.0.2 retries some calls forever (position() when ListOffsets
    # keeps failing): past the deadline, report what we have and stop.
    printed = threading.Lock()

    def give_up():
        if printed.acquire(blocking=False):
            out["errors"].append({"step": "deadline",
                                  "error": f"not done after {a.deadline}s (a call hung)"})
            print(json.dumps(out))
            sys.stdout.flush()
            os._exit(0)

    watchdog = threading.Timer(a.deadline, give_up)
    watchdog.daemon = True
    watchdog.start()

    tp = TopicPartition(a.topic, 0)

    # -- produce
    def produce():
        producer = KafkaProducer(
            compression_type=None if a.codec == "none" else a.codec,
            acks=1, retries=0, linger_ms=200, max_block_ms=a.request_timeout_ms, **common)
        try:
            out["detected_api_version"] = ".".join(str(x) for x in producer.config["api_version"])
            per_batch = -(-a.n // a.batches)
            for start in range(0, a.n, per_batch):
                futs = []
                for i in range(start, min(a.n, start + per_batch)):
                    futs.append(producer.send(a.topic, partition=0, key=b"k%d" % i,
                                              value=b"v%d" % i, timestamp_ms=TS0 + i))
                producer.flush(timeout=a.request_timeout_ms / 1000.0)
                for f in futs:
                    md = f.get(timeout=a.request_timeout_ms / 1000.0)
                    out["produced"].append({"partition": md.partition, "offset": md.offset,
                                            "timestamp": md.timestamp})
        finally:
            producer.close(timeout=10)

    if not a.no_produce:
        step("produce", produce)

    # -- consume from the beginning, then the end offset via ListOffsets
    def consume():
        consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest", **common)
        try:
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            out["beginning_offset"] = consumer.position(tp)
            deadline = time.monotonic() + a.consume_timeout
            while len(out["consumed"]) < a.n and time.monotonic() < deadline:
                for recs in consumer.poll(timeout_ms=500).values():
                    for r in recs:
                        out["consumed"].append({
                            "partition": r.partition, "offset": r.offset,
                            "key": r.key.decode() if r.key is not None else None,
                            "value": r.value.decode() if r.value is not None else None,
                            "timestamp": r.timestamp, "timestamp_type": r.timestamp_type})
            consumer.seek_to_end(tp)
            out["end_offset"] = consumer.position(tp)
        finally:
            consumer.close(autocommit=False)

    step("consume", consume)

    # -- commit offset n for the group, read it back with a fresh consumer
    def commit():
        c = KafkaConsumer(group_id=a.group, enable_auto_commit=False, session_timeout_ms=10000,
                          **common)
        try:
            c.assign([tp])
            c.commit({tp: OffsetAndMetadata(a.n, "meta-%d" % a.n)})
        finally:
            c.close(autocommit=False)
        c2 = KafkaConsumer(group_id=a.group, enable_auto_commit=False, session_timeout_ms=10000,
                           **common)
        try:
            c2.assign([tp])
            out["committed"] = c2.committed(tp)
            # the metadata too (kafka-python 2.0.2's committed() returns only the offset)
            md = c2._coordinator.fetch_committed_offsets([tp]).get(tp)
            out["committed_metadata"] = md.metadata if md is not None else None
            # the position a group member starts from is the committed offset
            out["group_position"] = c2.position(tp)
        finally:
            c2.close(autocommit=False)

    step("commit", commit)
    if printed.acquire(blocking=False):
        print(json.dumps(out))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
