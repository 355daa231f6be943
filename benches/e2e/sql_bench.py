#!/usr/bin/env python3
"""SQL over a live topic, for benches/RESULTS.md (issue 4).

Produces N records (JSON values, 4 partitions, 16 MiB segments) into a
release broker, then times three queries through the Postgres wire
(psycopg), each `--runs` times:

  count      select count(*)
  json_agg   a filtered aggregate on JSON fields (uid < 100, group by kind)
  time_range the last 1% of the topic's time span

in two modes of the same data: `faces` (sealed segments read from their
Parquet face with DataFusion's Parquet scan, the active tail from the SQL
tail cache) and `log` (the broker restarted with --sql-arrow-faces false
--sql-tail-cache-bytes 0: every segment decoded from the Kafka log at query
time). The tail on its own: the json_agg over a second topic whose records
(a twentieth, at most 500 k, so that with the main topic's tails they fit
the default cache) are all in active segments; its first query (which
decodes them into the cache) and the next ones, per row against the faces.
For the faces, also the bytes the Parquet scan read per query (EXPLAIN
ANALYZE's bytes_scanned) and the faces' size against the log's. The
reference is DataFusion reading the same records from a Parquet file
(`sql-reference`, same DataFusion version), and the machine's own
page-cache read and fdatasync write rates, all in the same run. Last,
produce→visible latency: one record produced (acks=all) to the tail topic,
then queried by its offset until it shows.

  cargo build --release -p karnak-broker --bin karnak -p karnak-benches --bin sql-reference
  compat-tests/.venv/bin/python benches/e2e/sql_bench.py [--records 10000000]

Bounded: fixed record count, every wait has a deadline. Prints JSON lines
and a summary table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
KINDS = ["click", "view", "buy", "share"]
TOPIC = "events"
# The same records, all in each partition's active segment: the tail,
# read from the SQL tail cache.
TAIL_TOPIC = "events_tail"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(i: int, t0: int):
    """Record i of the stream; sql_reference.rs generates the same."""
    u, amount, kind = i % 1000, i % 997, KINDS[i // 7 % 4]
    value = f'{{"uid": {u}, "amount": {amount}, "kind": "{kind}"}}'
    return f"u{u}", value, t0 + i // 10


def queries(records: int, t0: int) -> dict[str, str]:
    span = records // 10
    return {
        "count": "select count(*) from {t}",
        "json_agg": "select kind, count(*), sum(amount) from {t} where uid < 100 "
                    "group by kind order by kind",
        "time_range": "select count(*), sum(amount) from {t} "
                      f'where "timestamp" >= to_timestamp_millis({t0 + span * 99 // 100})',
    }


def rows_matched(name: str, records: int) -> int:
    return {"count": records, "json_agg": records // 10,
            "time_range": records - (records // 10 * 99 // 100) * 10}[name]


class Broker:
    def __init__(self, binary: Path, data: Path, log: Path, *extra: str):
        self.kafka, self.sql, self.admin = free_port(), free_port(), free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [str(binary), "--data-dir", str(data), "--kafka-addr", f"127.0.0.1:{self.kafka}",
             "--sql-addr", f"127.0.0.1:{self.sql}", "--admin-addr", f"127.0.0.1:{self.admin}",
             *extra],
            stdout=subprocess.DEVNULL, stderr=open(log, "a"))
        deadline = time.monotonic() + 120
        want = f"(Postgres wire) on 127.0.0.1:{self.sql}:"
        while want not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"broker did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.bootstrap = f"127.0.0.1:{self.kafka}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)

    def connect(self):
        return psycopg.connect(host="127.0.0.1", port=self.sql, user="bench",
                               dbname="karnak", autocommit=True)


def produce_worker(bootstrap: str, topic: str, records: int, t0: int, parts: list[int], out):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 5,
                  "batch.size": 1 << 20, "enable.idempotence": False,
                  "queue.buffering.max.messages": 1_000_000,
                  "queue.buffering.max.kbytes": 1 << 20})
    errors = [0]

    def report(err, _msg):
        if err is not None:
            errors[0] += 1

    # Record i goes to partition i % PARTITIONS, in order, so offset = i // PARTITIONS.
    for i in range(records):
        part = i % PARTITIONS
        if part not in parts:
            continue
        key, value, ts = record(i, t0)
        while True:
            try:
                p.produce(topic, value.encode(), key.encode(), partition=part, timestamp=ts,
                          on_delivery=report)
                break
            except BufferError:
                p.poll(0.005)
        if i % 20000 == 0:
            p.poll(0)
    out.put((errors[0], p.flush(600)))


def produce(bootstrap: str, records: int, t0: int, topic: str = TOPIC) -> float:
    t = time.monotonic()
    out = mp.Queue()
    workers = [mp.Process(target=produce_worker,
                          args=(bootstrap, topic, records, t0, list(range(w, PARTITIONS, 2)), out))
               for w in range(2)]
    for w in workers:
        w.start()
    results = [out.get(timeout=1800) for _ in workers]
    for w in workers:
        w.join()
    if any(e or left for e, left in results):
        sys.exit(f"produce failed: {results}")
    return time.monotonic() - t


def sealed_faced(data: Path) -> tuple[int, int]:
    sealed = faced = 0
    for p in range(PARTITIONS):
        d = data / f"{TOPIC}-{p}"
        logs = sorted(d.glob("*.log"))[:-1]
        sealed += len(logs)
        faced += sum(1 for lg in logs if lg.with_suffix(".face").exists())
    return sealed, faced


def time_queries(broker: Broker, qs: dict[str, str], runs: int, topic: str = TOPIC) -> dict:
    out = {}
    with broker.connect() as conn:
        for name, sql in qs.items():
            secs, answer = [], None
            for _ in range(runs):
                t = time.monotonic()
                answer = conn.execute(sql.format(t=topic)).fetchall()
                secs.append(time.monotonic() - t)
            out[name] = {"seconds": secs, "answer": [[str(c) for c in row] for row in answer]}
    return out


def scanned_bytes(broker: Broker, qs: dict[str, str]) -> dict:
    """Bytes each query's Parquet scan of the faces read (EXPLAIN ANALYZE)."""
    out = {}
    with broker.connect() as conn:
        for name, sql in qs.items():
            plan = "\n".join(r[1] for r in conn.execute(
                "explain analyze " + sql.format(t=TOPIC)).fetchall())
            # A count, shown human-readable: "bytes_scanned=2.34 M".
            units = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
            out[name] = int(sum(float(n) * units[u] for n, u in re.findall(
                r"bytes_scanned=([\d.]+)(?: ([KMBT]))?", plan)))
    return out


def metric(broker: Broker, name: str) -> float:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def latency(broker: Broker, samples: int, topic: str) -> dict:
    # log_level 2: librdkafka would log its reconnects once the broker stops.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                  "log_level": 2})
    acked, visible, polls_max = [], [], 0
    with broker.connect() as conn:
        for i in range(samples):
            got = {}
            t0 = time.monotonic()
            p.produce(topic, f'{{"uid": -1, "amount": {i}, "kind": "probe"}}'.encode(),
                      partition=i % PARTITIONS,
                      on_delivery=lambda err, m: got.update(err=err, offset=m.offset()))
            p.flush(10)
            t1 = time.monotonic()
            if got.get("err") is not None or "offset" not in got:
                sys.exit(f"probe produce failed: {got}")
            polls, deadline = 0, t1 + 10
            while True:
                polls += 1
                n = conn.execute(f'select count(*) from {topic} where partition = {i % PARTITIONS}'
                                 f' and "offset" = {got["offset"]}').fetchone()[0]
                if n == 1:
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"record at offset {got['offset']} not visible after 10 s")
            t2 = time.monotonic()
            acked.append(t1 - t0)
            visible.append(t2 - t0)
            polls_max = max(polls_max, polls)
    p.flush(10)
    del p  # closed before the broker stops, so librdkafka does not reconnect
    q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(len(xs) * f))] * 1000  # noqa: E731
    return {"samples": samples, "ack_p50_ms": q(acked, .5), "ack_p99_ms": q(acked, .99),
            "visible_p50_ms": q(visible, .5), "visible_p99_ms": q(visible, .99),
            "visible_max_ms": max(visible) * 1000, "queries_until_visible_max": polls_max}


def dd(args: list[str]) -> str:
    r = subprocess.run(["dd", *args], capture_output=True, text=True, check=True)
    return r.stderr.strip().splitlines()[-1]


def rate(line: str) -> float:
    """MB/s from dd's last line."""
    m = re.search(r"([\d.,]+) ([kMG]?B)/s", line)
    if not m:
        return float("nan")
    v = float(m.group(1).replace(",", "."))
    return v * {"kB": 1e-3, "MB": 1, "GB": 1e3, "B": 1e-6}[m.group(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--karnak", default=str(ROOT / "target/release/karnak"))
    ap.add_argument("--reference", default=str(ROOT / "target/release/sql-reference"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="karnak-sqlbench."))
    data, log = work / "data", work / "broker.log"
    emit = lambda d: print(json.dumps(d), flush=True)  # noqa: E731
    try:
        emit({"machine": f"{os.cpu_count()} cores", "work": str(work)})
        # Same-run references: the disk with fdatasync, and page-cache reads.
        ref = work / "dd.bin"
        w = dd(["if=/dev/zero", f"of={ref}", "bs=1M", "count=1024", "conv=fdatasync"])
        r = dd([f"if={ref}", "of=/dev/null", "bs=1M"])
        emit({"ref": "dd", "write_fdatasync_MBps": rate(w), "read_page_cache_MBps": rate(r)})
        ref.unlink()

        t0 = int(time.time() * 1000) - a.records // 10 - 60_000
        qs = queries(a.records, t0)
        b = Broker(Path(a.karnak), data, log)
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        fut = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1, config={
            "segment.bytes": str(16 << 20), "karnak.value.format": "json",
            "karnak.value.schema": "uid bigint, amount bigint, kind text"})])
        fut[TOPIC].result(30)
        tail_records = min(a.records // 20, 500_000)
        fut = admin.create_topics([NewTopic(TAIL_TOPIC, PARTITIONS, 1, config={
            "segment.bytes": str(1 << 30), "karnak.value.format": "json",
            "karnak.value.schema": "uid bigint, amount bigint, kind text"})])
        fut[TAIL_TOPIC].result(30)
        produce(b.bootstrap, tail_records, t0, TAIL_TOPIC)
        secs = produce(b.bootstrap, a.records, t0)
        log_bytes = sum(f.stat().st_size for f in data.glob(f"{TOPIC}-*/*.log"))
        emit({"produced": a.records, "seconds": round(secs, 1),
              "records_per_s": round(a.records / secs), "log_bytes": log_bytes})

        deadline = time.monotonic() + 600
        while True:
            sealed, faced = sealed_faced(data)
            if faced == sealed:
                break
            if time.monotonic() > deadline:
                sys.exit(f"faces: {faced} of {sealed} sealed segments after 600 s")
            time.sleep(0.5)
        face_bytes = sum(f.stat().st_size for f in data.glob(f"{TOPIC}-*/*.parquet"))
        sealed_log_bytes = sum(sorted(data.glob(f"{TOPIC}-{p}/*.log"))[i].stat().st_size
                               for p in range(PARTITIONS)
                               for i in range(len(list(data.glob(f"{TOPIC}-{p}/*.log"))) - 1))
        emit({"sealed_segments": sealed, "faced": faced, "face_bytes": face_bytes,
              "sealed_log_bytes": sealed_log_bytes,
              "face_to_log": round(face_bytes / max(1, sealed_log_bytes), 3)})

        results = {"faces": time_queries(b, qs, a.runs)}
        emit({"faces_bytes_scanned": scanned_bytes(b, qs)})
        # The tail: the first query decodes it into the cache, the next
        # ones read it from there; per row against the faces' json_agg.
        decoded0 = metric(b, "karnak_sql_tail_rows_total")
        with b.connect() as conn:
            t = time.monotonic()
            conn.execute(qs["json_agg"].format(t=TAIL_TOPIC)).fetchall()
            first = time.monotonic() - t
        tail = time_queries(b, {"json_agg": qs["json_agg"]}, a.runs, TAIL_TOPIC)["json_agg"]
        per_row = lambda secs, rows: statistics.median(secs) / rows  # noqa: E731
        emit({"tail_records": tail_records, "tail_first_query_s": round(first, 4),
              "tail_json_agg_s": tail["seconds"],
              "tail_rows_per_s": round(tail_records / statistics.median(tail["seconds"])),
              "tail_per_row_vs_faces": round(
                  per_row(tail["seconds"], tail_records)
                  / per_row(results["faces"]["json_agg"]["seconds"], a.records), 2),
              "tail_cache_bytes": metric(b, "karnak_sql_tail_cache_bytes"),
              "tail_rows_counted": metric(b, "karnak_sql_tail_rows_total") - decoded0})
        # A new record is in the active segment: read from the tail cache
        # once the query has added it (probes go to the tail topic, so the
        # modes' answers on the main one stay comparable).
        emit({"produce_to_visible": latency(b, a.latency_samples, TAIL_TOPIC)})
        b.stop()
        b = Broker(Path(a.karnak), data, log, "--sql-arrow-faces", "false",
                   "--sql-tail-cache-bytes", "0")
        results["log"] = time_queries(b, qs, a.runs)
        b.stop()

        out = subprocess.run(
            [a.reference, "--rows", str(a.records), "--partitions", str(PARTITIONS),
             "--t0", str(t0), "--out", str(work / "ref.parquet"), "--runs", str(a.runs),
             *[x for name, sql in qs.items() for x in ("--query", f"{name}={sql.format(t='t')}")]],
            capture_output=True, text=True, check=True).stdout.splitlines()
        emit(json.loads(out[0]))
        results["parquet"] = {}
        for line in out[1:]:
            d = json.loads(line)
            results["parquet"][d["query"]] = {"seconds": d["seconds"], "answer": d["answer"]}

        for mode, rs in results.items():
            for name, r in rs.items():
                emit({"mode": mode, "query": name, **r})
        # Speeds relative to the Parquet reference (1 = as fast as it).
        print("\n| query | rows matched | Parquet (DataFusion) | Karnak faces | Karnak log decode "
              "| faces / Parquet | log / Parquet |")
        print("|---|---|---|---|---|---|---|")
        ok = True
        for name in qs:
            med = {m: statistics.median(results[m][name]["seconds"]) for m in results}
            answers = {m: results[m][name]["answer"] for m in results}
            same = answers["faces"] == answers["log"] == answers["parquet"]
            ok &= same
            rps = lambda m: f"{a.records / med[m] / 1e6:.2f} M rows/s ({med[m]:.3f} s)"  # noqa: E731
            print(f"| {name} | {rows_matched(name, a.records):,} | {rps('parquet')} | "
                  f"{rps('faces')} | {rps('log')} | {med['parquet'] / med['faces']:.4f} | "
                  f"{med['parquet'] / med['log']:.4f} |" + ("" if same else " ANSWERS DIFFER"))
        if not ok:
            sys.exit("answers differ between Karnak and the Parquet reference")
    finally:
        if a.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
