"""Sealed segments get a SQL face (`<base>.parquet` and its record
`<base>.face`) built in the background; SQL answers the same before and after,
for every codec, and reads the faces through DataFusion's Parquet scan
(pruning on their statistics); typed JSON columns come from the faces;
retention runs on its schedule and takes the faces with the segments."""

from __future__ import annotations

import hashlib
import json
import re
import time

import ck
from conftest import unique_topic, wait_until
from test_sql import connect

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def padding(p, i):
    # Hex of a hash: compresses about 2:1, so every codec's partition rolls
    # several segments.
    h = hashlib.sha256(f"{p}-{i}".encode()).hexdigest()
    return (h + h[::-1])[: 40 + i % 50]


def value(p, i):
    return f"value {p}-{i} " + padding(p, i)


def faces(broker, topic, partition):
    """The partition's segments and its committed faces (a record beside a
    Parquet file)."""
    d = broker.data_dir / f"{topic}-{partition}"
    logs = sorted(d.glob("*.log"))
    committed = sorted(f for f in d.glob("*.parquet")
                       if f.with_suffix(".face").exists())
    return logs, committed


def all_sealed_faced(broker, topic, partitions):
    for p in range(partitions):
        logs, faced = faces(broker, topic, p)
        # Every segment but the active (last) one has its face.
        if len(logs) < 2 or [a.stem for a in faced] != [l.stem for l in logs[:-1]]:
            return False
    return True


def answers(conn, topic, ts_from):
    q = lambda sql, *a: conn.execute(sql, a).fetchall()  # noqa: E731
    return {
        "per_partition": q(f'select partition, count(*), sum("offset"), min("offset"), '
                           f'max("offset") from "{topic}" group by partition order by partition'),
        "filtered": q(f"select count(*), sum(length(value)) from \"{topic}\" "
                      f"where value_text like %s", "%7"),
        "window": q(f'select count(*) from "{topic}" where "offset" between 333 and 1333'),
        "time": q(f'select count(*) from "{topic}" where timestamp >= to_timestamp(%s)',
                  ts_from / 1000),
        "keys": q(f"select key_text, value_text from \"{topic}\" "
                  f'where partition = 3 and "offset" in (0, 999, 1999) order by "offset"'),
        "headers": q(f"select headers[1]['key'] from \"{topic}\" "
                     f'where partition = 4 and "offset" = 1500'),
    }


def test_sealed_segments_get_faces_and_sql_agrees(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlarrow")
    n = 2000
    ck.create_topic(b.bootstrap, topic, partitions=len(CODECS),
                    config={"segment.bytes": "16384"})
    base_ts = int(time.time() * 1000) - 10 * n
    for p, codec in enumerate(CODECS):
        msgs = [{"partition": p, "key": f"k{p}-{i}".encode(),
                 "value": value(p, i).encode(),
                 "timestamp": base_ts + 10 * i, "headers": [("codec", codec.encode())]}
                for i in range(n)]
        # Small batches so segments roll often, each codec its own partition.
        ck.produce_and_wait(b.bootstrap, topic, msgs, **{"compression.type": codec,
                                                         "batch.num.messages": 100})
    ts_from = base_ts + 10 * 1500
    want_per_partition = [(p, n, n * (n - 1) // 2, 0, n - 1) for p in range(len(CODECS))]
    with connect(b) as conn:
        first = answers(conn, topic, ts_from)
        assert first["per_partition"] == want_per_partition
        assert first["window"] == [(1001 * len(CODECS),)]
        assert first["time"] == [(500 * len(CODECS),)]
        assert first["keys"] == [(f"k3-{i}", value(3, i)) for i in (0, 999, 1999)]
        assert first["headers"] == [("codec",)]
        wait_until(lambda: all_sealed_faced(b, topic, len(CODECS)), 60,
                   msg="a face beside every sealed segment")
        for p in range(len(CODECS)):
            logs, faced = faces(b, topic, p)
            assert len(faced) >= 3, (p, logs, faced)
            assert all(a.stat().st_size > 0 for a in faced)
        # Read from the faces now: the same answers, to the row.
        assert answers(conn, topic, ts_from) == first
        plan = "\n".join(r[1] for r in conn.execute(
            f'explain select count(*) from "{topic}" where "offset" < 100').fetchall())
        assert "DataSourceExec" in plan and ".parquet" in plan, plan
        # The active tail is still decoded from the log, and new records are
        # visible at once.
        ck.produce_and_wait(b.bootstrap, topic, [{"partition": 0, "value": b"tail"}])
        assert conn.execute(f'select count(*) from "{topic}" where partition = 0'
                            ).fetchone()[0] == n + 1


def test_retention_runs_on_schedule_and_takes_faces_along(broker_factory):
    b = broker_factory("--log-retention-check-interval-ms", "200")
    topic = unique_topic("retained")
    ck.create_topic(b.bootstrap, topic, partitions=1,
                    config={"segment.bytes": "16384", "retention.ms": "600000"})
    old = int(time.time() * 1000) - 3_600_000
    ck.produce_and_wait(b.bootstrap, topic, [
        {"partition": 0, "value": b"old" * 30, "timestamp": old + i} for i in range(1000)],
        **{"batch.num.messages": 50})
    ck.produce_and_wait(b.bootstrap, topic, [
        {"partition": 0, "value": b"new"} for _ in range(10)])
    # Segments holding only hour-old records go; the one holding offset 1000
    # (the first new record) stays, and so does everything after it.
    bases = sorted(int(lg.stem) for lg in faces(b, topic, 0)[0])
    keep = max(base for base in bases if base <= 1000)
    assert keep > 0, f"the test needs several old segments: {bases}"
    wait_until(lambda: ck.watermarks(b.bootstrap, topic, 0)[0] == keep, 30,
               msg=f"the log start offset to move to {keep}")
    low, high = ck.watermarks(b.bootstrap, topic, 0)
    assert (low, high) == (keep, 1010)
    d = b.data_dir / f"{topic}-0"
    logs = sorted(d.glob("*.log"))
    face_files = sorted(d.glob("*.parquet")) + sorted(d.glob("*.face"))
    assert {a.stem for a in face_files} <= {lg.stem for lg in logs}, "no orphan faces"
    with connect(b) as conn:
        assert conn.execute(f'select count(*), min("offset") from "{topic}"'
                            ).fetchone() == (high - low, low)
        assert conn.execute(f"select count(*) from \"{topic}\" where value_text = 'new'"
                            ).fetchone()[0] == 10
    got = ck.consume_range(b.bootstrap, topic, 0, low, high)
    assert [m.offset() for m in got] == list(range(low, high))


def test_json_columns_come_from_the_faces_and_predicates_prune_them(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlfacejson")
    n = 6000
    ck.create_topic(b.bootstrap, topic, partitions=1,
                    config={"karnak.value.format": "json", "segment.bytes": "65536"})
    base_ts = int(time.time() * 1000) - 10 * n
    msgs = [{"partition": 0, "key": f"k{i}".encode(), "timestamp": base_ts + 10 * i,
             "value": json.dumps({"id": i, "status": f"s{i % 4}", "total": i * 1.5,
                                  "pad": padding(0, i)}).encode()}
            for i in range(n)]
    msgs.append({"partition": 0, "value": b"not json", "timestamp": base_ts + 10 * n})
    ck.produce_and_wait(b.bootstrap, topic, msgs, **{"batch.num.messages": 200})
    q = {
        "groups": f'select status, count(*), sum(total) from "{topic}" '
                  f"group by status order by status",
        "selective": f'select count(*), min(id), max(id) from "{topic}" '
                     f"where id between 1234 and 1333",
        "time": f'select count(*) from "{topic}" where timestamp >= to_timestamp(%s) '
                f"and timestamp < to_timestamp(%s)",
        "nulls": f'select count(*) from "{topic}" where id is null',
        "text": f"select key_text, status from \"{topic}\" where id = 4321",
    }
    lo, hi = (base_ts + 10 * 2000) / 1000, (base_ts + 10 * 2500) / 1000
    want = {
        # The value that is not JSON is a NULL status, last.
        "groups": [(f"s{r}", n // 4, sum(i * 1.5 for i in range(r, n, 4))) for r in range(4)]
        + [(None, 1, None)],
        "selective": [(100, 1234, 1333)],
        "time": [(500,)],
        "nulls": [(1,)],
        "text": [("k4321", "s1")],
    }

    def ask(conn):
        return {name: conn.execute(sql, (lo, hi) if name == "time" else ()).fetchall()
                for name, sql in q.items()}

    with connect(b) as conn:
        assert ask(conn) == want, "from the log"
        wait_until(lambda: all_sealed_faced(b, topic, 1), 60,
                   msg="a face beside every sealed segment")
        logs, faced = faces(b, topic, 0)
        assert len(faced) >= 5, (logs, faced)
        log_bytes = sum(f.stat().st_size for f in logs[:-1])
        face_bytes = sum(f.stat().st_size for f in faced)
        assert face_bytes < log_bytes, (face_bytes, log_bytes)
        assert ask(conn) == want, "from the faces"
        # The selective predicate reads one face's row groups, not all.
        plan = "\n".join(r[1] for r in conn.execute(
            "explain analyze " + q["selective"]).fetchall())
        m = re.search(r"row_groups_pruned_statistics=(\d+) total \S+ (\d+) matched", plan)
        assert m, plan
        total, matched = int(m.group(1)), int(m.group(2))
        assert total >= len(faced) and matched <= 2, plan


def test_a_field_whose_type_changes_reads_the_same_from_faces_as_from_the_log(shared_broker):
    """A JSON field that is a number in the older segments and text in the
    newer: each face types it as its segment holds it; the table takes the
    type of the newest records, and a face typed otherwise is not used (its
    segment is decoded from the log), so answers do not depend on which
    segments have faces."""
    b = shared_broker
    topic = unique_topic("sqlfacetype")
    ck.create_topic(b.bootstrap, topic, partitions=1,
                    config={"karnak.value.format": "json", "segment.bytes": "16384"})
    msgs = [{"partition": 0,
             "value": json.dumps({"n": i if i < 600 else f"t{i}", "pad": padding(0, i)}).encode()}
            for i in range(1500)]
    ck.produce_and_wait(b.bootstrap, topic, msgs, **{"batch.num.messages": 50})
    q = {
        "counts": f'select count(n), count(*) from "{topic}"',
        "old": f'select n from "{topic}" where "offset" = 5',
        "new": f'select n from "{topic}" where "offset" = 1400',
        "types": "select data_type from information_schema.columns "
                 f"where table_name = '{topic}' and column_name = 'n'",
    }
    with connect(b) as conn:
        before = {k: conn.execute(sql).fetchall() for k, sql in q.items()}
        # Text: a number reads as its JSON text under it.
        assert before == {"counts": [(1500, 1500)], "old": [("5",)], "new": [("t1400",)],
                          "types": [("Utf8",)]}, before
        wait_until(lambda: all_sealed_faced(b, topic, 1), 60,
                   msg="a face beside every sealed segment")
        assert {k: conn.execute(sql).fetchall() for k, sql in q.items()} == before
        plan = "\n".join(r[1] for r in conn.execute(
            f'explain select count(n) from "{topic}"').fetchall())
        assert ".parquet" in plan, plan
