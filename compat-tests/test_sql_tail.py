"""A partition's newest records (those no face covers yet) are decoded once
into the SQL tail cache and shared by later queries, which decode only what
was produced since; answers are the same with the cache off; `count(*)` over
a cached tail is answered from its row counts, without a scan."""

from __future__ import annotations

import json

import ck
from conftest import unique_topic
from test_sql import connect


def tail_rows(b):
    m = b.metrics()
    return (m.get_value("karnak_sql_tail_rows_total", **{"from": "log"}) or 0,
            m.get_value("karnak_sql_tail_rows_total", **{"from": "cache"}) or 0)


def produce(b, topic, start, n, partitions=2):
    ck.produce_and_wait(b.bootstrap, topic, [
        {"partition": i % partitions, "key": f"k{i}".encode(),
         "value": json.dumps({"uid": i, "kind": f"k{i % 3}"}).encode()}
        for i in range(start, start + n)], **{"batch.num.messages": 500})


QUERY = 'select count(*), sum(uid), count(distinct kind) from "{}"'


def test_the_tail_is_decoded_once_and_shared(broker_factory):
    b = broker_factory()
    topic = unique_topic("sqltail")
    ck.create_topic(b.bootstrap, topic, partitions=2,
                    config={"karnak.value.format": "json",
                            "karnak.value.schema": "uid bigint, kind text"})
    produce(b, topic, 0, 5000)
    with connect(b) as conn:
        q = QUERY.format(topic)
        assert conn.execute(q).fetchone() == (5000, sum(range(5000)), 3)
        decoded, served = tail_rows(b)
        assert decoded == 5000 and served == 5000, (decoded, served)
        # Again: nothing decoded, everything from the cache.
        assert conn.execute(q).fetchone() == (5000, sum(range(5000)), 3)
        assert tail_rows(b) == (5000, 10000)
        # New records: only they are decoded, and they are seen at once.
        produce(b, topic, 5000, 100)
        assert conn.execute(q).fetchone() == (5100, sum(range(5100)), 3)
        assert tail_rows(b) == (5100, 15100)
        # A filter on a JSON column and a projection read the same cache.
        assert conn.execute(f'select count(*), min(key_text) from "{topic}" '
                            f"where kind = 'k1' and uid >= 5000").fetchone() == (33, "k5002")
        assert tail_rows(b)[0] == 5100
        # count(*) from the cached row counts: no scan in the plan.
        plan = "\n".join(r[1] for r in conn.execute(
            f'explain select count(*) from "{topic}"').fetchall())
        assert "PlaceholderRowExec" in plan and "DataSourceExec" not in plan, plan
        assert conn.execute(f'select count(*) from "{topic}"').fetchone() == (5100,)
        # LIMIT reads what is cached and decodes the rest itself, without
        # filling the cache.
        produce(b, topic, 5100, 10)
        rows = conn.execute(f'select uid from "{topic}" limit 7').fetchall()
        assert len(rows) == 7
        assert tail_rows(b)[0] == 5100


def test_answers_are_the_same_with_the_cache_off(broker_factory):
    b = broker_factory("--sql-tail-cache-bytes", "0")
    topic = unique_topic("sqlnotail")
    ck.create_topic(b.bootstrap, topic, partitions=2,
                    config={"karnak.value.format": "json"})
    produce(b, topic, 0, 3000)
    with connect(b) as conn:
        for _ in range(2):
            assert conn.execute(QUERY.format(topic)).fetchone() == (3000, sum(range(3000)), 3)
        assert tail_rows(b) == (0, 0)
        plan = "\n".join(r[1] for r in conn.execute(
            f'explain select count(*) from "{topic}"').fetchall())
        assert "StreamingTableExec" in plan, plan
