"""Topics with `karnak.value.format=json`: JSON values as typed SQL columns,
inferred or declared; malformed and missing fields are NULL."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaException

import ck
from conftest import unique_topic
from test_sql import connect, psql
from test_sql_insert import consume


def test_inferred_json_columns_filter_and_aggregate(shared_broker):
    b = shared_broker
    topic = unique_topic("sqljson")
    ck.create_topic(b.bootstrap, topic, partitions=2, config={"karnak.value.format": "json"})
    msgs = []
    for i in range(200):
        v = {"user": f"u{i % 5}", "total": i + 0.5, "status": "paid" if i % 2 else "open",
             "n": i, "timestamp": "shadowed", "meta": {"i": i}}
        msgs.append({"partition": i % 2, "value": json.dumps(v).encode()})
    msgs.append({"partition": 0, "value": b"not json at all"})
    msgs.append({"partition": 1, "value": b'{"user": "u9"}'})
    msgs.append({"partition": 1, "value": b'{"user": "u9", "total": "oops"}'})
    ck.produce_and_wait(b.bootstrap, topic, msgs)
    with connect(b) as conn:
        rows = conn.execute(
            f'select status, count(*), sum(total) from "{topic}" '
            f"where total > 100 group by status order by status").fetchall()
        paid = sum(i + 0.5 for i in range(100, 200) if i % 2)
        opened = sum(i + 0.5 for i in range(100, 200) if not i % 2)
        assert rows == [("open", 50, opened), ("paid", 50, paid)], rows
        # Not JSON, missing field, wrong type: NULL, and the query still runs.
        n = conn.execute(f'select count(*) from "{topic}" where total is null').fetchone()[0]
        assert n == 3
        assert conn.execute(f'select count(*) from "{topic}" where "user" = %s',
                            ("u9",)).fetchone()[0] == 2
        # A field named like a fixed column is value_<name>; nested is JSON text.
        row = conn.execute(f'select value_timestamp, meta, n from "{topic}" '
                           f'where partition = 0 and "offset" = 0').fetchone()
        assert row == ("shadowed", '{"i":0}', 0)
    described = psql(b, "-c", rf'\d "{topic}"').stdout
    for col, ty in (("total", "double precision"), ("n", "bigint"), ("status", "text")):
        assert any(col in line and ty in line for line in described.splitlines()), described


def test_declared_json_schema_and_insert_by_columns(shared_broker):
    b = shared_broker
    topic = unique_topic("sqljsondecl")
    ck.create_topic(b.bootstrap, topic, partitions=1, config={
        "karnak.value.format": "json",
        "karnak.value.schema": "amount double precision, at timestamptz, qty int, note text"})
    ck.produce_and_wait(b.bootstrap, topic, [
        {"partition": 0, "value": b'{"amount": "12.5", "at": "2024-05-01T12:00:00Z", "qty": 3}'},
        {"partition": 0, "value": b'{"amount": 1, "at": 1714564860000, "qty": 99999999999}'},
    ])
    with connect(b) as conn:
        cur = conn.execute(f"insert into \"{topic}\" (amount, qty, note) values (2.25, 7, 'sql')")
        assert cur.rowcount == 1
        rows = conn.execute(
            f'select amount, cast(extract(epoch from at) as bigint), qty, note '
            f'from "{topic}" order by "offset"').fetchall()
    assert rows[0] == (12.5, 1714564800, 3, None)
    assert rows[1] == (1.0, 1714564860, None, None), "int overflow is NULL"
    assert rows[2] == (2.25, None, 7, "sql")
    got = consume(b.bootstrap, topic, 1, 3)
    assert json.loads(got[2].value()) == {"amount": 2.25, "qty": 7, "note": "sql"}


def test_bad_value_format_config_is_rejected(shared_broker):
    with pytest.raises(KafkaException) as e:
        ck.create_topic(shared_broker.bootstrap, unique_topic("sqljsonbad"),
                        config={"karnak.value.format": "xml"})
    assert "INVALID_CONFIG" in str(e.value) or "karnak.value.format" in str(e.value)


def test_a_value_schema_that_does_not_parse_is_refused_with_its_reason(shared_broker):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       NewTopic, ResourceType)

    a = ck.admin(shared_broker.bootstrap)
    bad = unique_topic("sqljsonschema")
    f = a.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1, config={
        "karnak.value.format": "json", "karnak.value.schema": "total dollars"})],
        request_timeout=30)[bad]
    with pytest.raises(KafkaException) as e:
        f.result(timeout=30)
    err = e.value.args[0]
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "karnak.value.schema" in err.str() and "dollars" in err.str(), err.str()
    assert bad not in a.list_topics(timeout=10).topics

    # On an existing topic: refused, and the topic keeps its schema.
    topic = unique_topic("sqljsonschema")
    ck.create_topic(shared_broker.bootstrap, topic, config={
        "karnak.value.format": "json", "karnak.value.schema": "total double precision"})
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("karnak.value.schema", "total double precision, total text",
                    incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([res], request_timeout=30)[res].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value
    assert "repeated" in e.value.args[0].str(), e.value.args[0].str()
    desc = ConfigResource(ResourceType.TOPIC, topic)
    cfg = a.describe_configs([desc], request_timeout=30)[desc].result(timeout=30)
    assert cfg["karnak.value.schema"].value == "total double precision"
