#!/usr/bin/env python3
"""Exactly-once costs, for benches/RESULTS.md (issue 5).

Against one release broker, in one run:

  produce      the same records (1 KiB, 1 partition, acks=all, linger 5 ms,
               1 MiB batches) from a plain producer, an idempotent one (which
               librdkafka limits to 5 requests in flight) and a plain one
               limited to 5 in flight too
  txn_small    transactions of 1 record to 1 partition, back to back
  txn_large    transactions of 1000 records over 10 partitions
  init_pid     InitProducerId (no transactional id) round trips on 4
               connections, raw wire, as fast as answered

next to the machine's own limits measured in the same run: the disk's
fdatasync rate and latency for 4 KiB writes (each transaction commit is
bounded by a few of those with the default --flush-on-acks-all) and `dd`
sequential write with fdatasync.

  cargo build --release -p karnak-broker --bin karnak
  compat-tests/.venv/bin/python benches/e2e/txn_bench.py [--seconds 10]

Bounded: every phase stops after --seconds or its record count; every wait
has a deadline. Prints JSON lines and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
from sql_bench import dd, free_port, rate  # noqa: E402


class Broker:
    def __init__(self, binary: Path, data: Path, log: Path):
        self.kafka, self.admin = free_port(), free_port()
        self.proc = subprocess.Popen(
            [str(binary), "--data-dir", str(data), "--kafka-addr", f"127.0.0.1:{self.kafka}",
             "--admin-addr", f"127.0.0.1:{self.admin}", "--sql-enabled", "false"],
            stdout=subprocess.DEVNULL, stderr=open(log, "a"))
        deadline = time.monotonic() + 120
        while "transaction coordinator loaded" not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"broker did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.bootstrap = f"127.0.0.1:{self.kafka}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def fsync_reference(path: Path, seconds: float) -> dict:
    """4 KiB appends, each followed by fdatasync: what one durable commit costs."""
    lat = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        block = b"\0" * 4096
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    lat.sort()
    return {"fdatasync_per_s": round(len(lat) / sum(lat)),
            "fdatasync_p50_ms": round(lat[len(lat) // 2] * 1000, 3),
            "fdatasync_p99_ms": round(lat[int(len(lat) * .99)] * 1000, 3)}


def produce(b: Broker, topic: str, records: int, idempotent: bool,
            in_flight: int | None = None, mock: bool = False) -> dict:
    conf = {"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
            "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20,
            "enable.idempotence": idempotent}
    if in_flight:
        conf["max.in.flight.requests.per.connection"] = in_flight
    if mock:
        # librdkafka's in-process mock broker (memory only, no fsync): the
        # same client's own cost of idempotence, as a same-run reference.
        conf["test.mock.num.brokers"] = 1
    p = Producer(conf)
    value = b"v" * 1024
    failed = []
    cb = lambda err, _m: failed.append(err) if err else None  # noqa: E731
    cpu0, t0 = (0.0 if mock else b.cpu_seconds()), time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, value=value, partition=0, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
    left = p.flush(120)
    secs = time.perf_counter() - t0
    cpu = 0.0 if mock else b.cpu_seconds() - cpu0
    if left or failed:
        sys.exit(f"produce idempotent={idempotent}: {left} unflushed, errors {failed[:3]}")
    mb = records * 1024 / 1e6
    return {"phase": "produce_mock" if mock else "produce", "idempotent": idempotent,
            "records": records,
            "max_in_flight": in_flight or (5 if idempotent else 1000000),
            "seconds": round(secs, 2), "MBps": round(mb / secs, 1),
            "records_per_s": round(records / secs),
            "broker_cpu_s_per_GB": None if mock else round(cpu / (mb / 1000), 2)}


def transactions(b: Broker, topic: str, partitions: int, per_txn: int, seconds: float,
                 tid: str) -> dict:
    p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": tid, "linger.ms": 0})
    p.init_transactions(60)
    value = b"t" * 100
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        p.begin_transaction()
        for i in range(per_txn):
            p.produce(topic, value=value, partition=i % partitions)
        p.commit_transaction(30)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return {"phase": f"txn_{partitions}p_{per_txn}r", "transactions": len(lat),
            "txn_per_s": round(len(lat) / sum(lat), 1),
            "records_per_s": round(len(lat) * per_txn / sum(lat)),
            "commit_p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "commit_p99_ms": round(lat[int(len(lat) * .99)] * 1000, 2)}


def init_pid_request(correlation_id: int) -> bytes:
    # InitProducerId v1 (non-flexible): header v1, null transactional id.
    body = struct.pack(">hhi", 22, 1, correlation_id) + struct.pack(">h", 6) + b"bench1"
    body += struct.pack(">hi", -1, 60000)
    return struct.pack(">i", len(body)) + body


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def init_pids(b: Broker, seconds: float, connections: int = 4) -> dict:
    counts = [0] * connections
    ids: list[set] = [set() for _ in range(connections)]
    errors = []

    def worker(k: int):
        s = socket.create_connection(("127.0.0.1", b.kafka), timeout=10)
        end = time.monotonic() + seconds
        cid = 0
        while time.monotonic() < end:
            s.sendall(init_pid_request(cid))
            size = struct.unpack(">i", recv_exact(s, 4))[0]
            resp = recv_exact(s, size)
            # correlation id, throttle, error, producer id, epoch
            _, _, err, pid, _ = struct.unpack(">iihqh", resp[:20])
            if err:
                errors.append(err)
                break
            ids[k].add(pid)
            counts[k] += 1
            cid += 1
        s.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    secs = time.perf_counter() - t0
    total = sum(counts)
    distinct = len(set().union(*ids))
    if errors or distinct != total:
        sys.exit(f"InitProducerId: errors {errors[:3]}, {distinct} distinct of {total}")
    return {"phase": "init_producer_id", "connections": connections, "requests": total,
            "per_s": round(total / secs), "all_distinct": True}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--karnak", default=str(ROOT / "target/release/karnak"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="karnak-txnbench."))
    data, log = work / "data", work / "broker.log"
    emit = lambda d: print(json.dumps(d), flush=True)  # noqa: E731
    results = []
    try:
        emit({"machine": f"{os.cpu_count()} cores", "work": str(work)})
        data.mkdir()
        w = dd(["if=/dev/zero", f"of={work / 'dd.bin'}", "bs=1M", "count=1024",
                "conv=fdatasync"])
        (work / "dd.bin").unlink()
        ref = {"ref": "disk", "dd_write_fdatasync_MBps": rate(w),
               **fsync_reference(data / "fsync.bin", 3)}
        emit(ref)
        b = Broker(Path(a.karnak), data, log)
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        topics = {"plain": 1, "plain5": 1, "idem": 1, "txsmall": 1, "txlarge": 10}
        futs = admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
        for f in futs.values():
            f.result(30)
        # Interleaved, --repeat times each: the disk's state (dirty pages,
        # fsync cost) drifts over a run, so order alone would skew a ratio.
        runs: dict[str, list[dict]] = {"plain": [], "idem": [], "plain5": [],
                                       "mock_plain": [], "mock_idem": []}
        for _ in range(a.repeat):
            for name, idem, in_flight in (("plain", False, None), ("idem", True, None),
                                          ("plain5", False, 5), ("mock_plain", False, None),
                                          ("mock_idem", True, None)):
                topic = name.removeprefix("mock_")
                r = produce(b, topic, a.records, idem, in_flight, mock=name.startswith("mock"))
                emit(r)
                runs[name].append(r)
        for name in runs:
            runs[name].sort(key=lambda r: r["MBps"])
            results.append(runs[name][len(runs[name]) // 2])
        for r in (transactions(b, "txsmall", 1, 1, a.seconds, "bench-small"),
                  transactions(b, "txlarge", 10, 1000, a.seconds, "bench-large"),
                  init_pids(b, a.seconds)):
            emit(r)
            results.append(r)
        b.stop()
        plain, idem, plain5, mplain, midem, small, large, pids = results  # produce: medians
        emit({"summary": {
            "idempotent_vs_plain_throughput": round(idem["MBps"] / plain["MBps"], 3),
            "idempotent_vs_plain_same_in_flight": round(idem["MBps"] / plain5["MBps"], 3),
            "mock_idempotent_vs_plain": round(midem["MBps"] / mplain["MBps"], 3),
            "idempotent_vs_mock_idempotent": round(idem["MBps"] / midem["MBps"], 3),
            "small_txn_per_s": small["txn_per_s"],
            "small_txn_p50_in_fdatasyncs": round(
                small["commit_p50_ms"] / ref["fdatasync_p50_ms"], 1),
            "large_txn_per_s": large["txn_per_s"],
            "init_producer_id_per_s": pids["per_s"],
        }})
    finally:
        if "b" in locals() and b.proc.poll() is None:
            b.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
