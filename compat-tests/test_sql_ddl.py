"""Topics from SQL: CREATE TABLE makes a topic Kafka clients use at once;
ALTER TABLE ... SET declares how a topic's values read. On psql (simple
protocol) and psycopg (extended), with Postgres SQLSTATEs for what cannot be
done, and the settings kept across a restart."""

from __future__ import annotations

import json

import psycopg
import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

import ck
from conftest import unique_topic
from test_sql import connect, psql


def topic_configs(bootstrap, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    admin = ck.admin(bootstrap)  # kept alive until the answer is in
    got = admin.describe_configs([res])[res].result(30)
    return {k: v.value for k, v in got.items()}


def test_create_table_makes_a_topic_with_typed_json_columns(broker):
    b = broker
    t = unique_topic("orders")
    psql(b, "-c", f'CREATE TABLE "{t}" (key bytea, total double precision, status text, '
                  f"at timestamptz) WITH (partitions = 3, \"retention.ms\" = 86400000)")
    md = ck.admin(b.bootstrap).list_topics(t, timeout=30).topics[t]
    assert md.error is None and len(md.partitions) == 3
    cfg = topic_configs(b.bootstrap, t)
    assert cfg["retention.ms"] == "86400000" and cfg["karnak.value.format"] == "json"
    ck.produce_and_wait(b.bootstrap, t, [
        {"partition": 1, "value": json.dumps({"total": 12.5, "status": "paid",
                                              "at": "2026-11-30T10:00:00Z"}).encode()},
        {"partition": 2, "value": b'{"total": "oops"}'},
        {"partition": 0, "value": b"not json"},
    ])
    r = psql(b, "-tA", "-F", "|", "-c",
             f'select partition, total, status, at from "{t}" order by partition')
    rows = r.stdout.strip().splitlines()
    assert rows[0] == "0|||" and rows[2] == "2|||", r.stdout
    assert rows[1].startswith("1|12.5|paid|2026-11-30 10:00:00") and rows[1].endswith("+00"), rows
    d = psql(b, "-c", f'\\d "{t}"').stdout
    assert "total" in d and "double precision" in d and "status" in d, d
    # Created from SQL, the same as from Kafka: restart keeps it all.
    b.restart()
    with connect(b) as conn:
        assert conn.execute(f'select sum(total) from "{t}"').fetchone()[0] == 12.5


def test_alter_table_declares_the_value_format_of_a_kafka_topic(shared_broker):
    b = shared_broker
    t = unique_topic("clicks")
    ck.create_topic(b.bootstrap, t, partitions=1)
    ck.produce_and_wait(b.bootstrap, t, [
        {"partition": 0, "value": json.dumps({"user_id": i, "url": f"/p/{i}"}).encode()}
        for i in range(5)])
    with connect(b) as conn:
        cols = lambda: [r[0] for r in conn.execute(  # noqa: E731
            "select column_name from information_schema.columns where table_name = %s "
            "order by ordinal_position", (t,)).fetchall()]
        assert "user_id" not in cols()
        # Extended protocol (psycopg), inferred from the data.
        conn.execute(f"ALTER TABLE \"{t}\" SET (value_format = 'json')")
        assert cols()[-2:] == ["user_id", "url"]
        assert conn.execute(f'select sum(user_id) from "{t}"').fetchone()[0] == 10
        # Declared: only what is named, typed as named.
        conn.execute(f"ALTER TABLE \"{t}\" SET (value_schema = 'url text')")
        assert cols()[-1] == "url" and "user_id" not in cols()
        assert topic_configs(b.bootstrap, t)["karnak.value.schema"] == "url text"
        # Kafka's topic configs change on the live topic too (kafka-configs --alter).
        conn.execute(f'ALTER TABLE "{t}" SET ("retention.ms" = 86400000)')
        assert topic_configs(b.bootstrap, t)["retention.ms"] == "86400000"


def test_ddl_errors_are_postgres_errors(shared_broker):
    b = shared_broker
    t = unique_topic("ddl")
    with connect(b) as conn:
        conn.execute(f'CREATE TABLE "{t}" (n bigint)')
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{t}" (n bigint)')
        cases = [
            (f'CREATE TABLE "{t}" (n bigint)', psycopg.errors.DuplicateTable),
            (f'ALTER TABLE "{t}-missing" SET (value_format = \'json\')',
             psycopg.errors.UndefinedTable),
            (f'ALTER TABLE "{t}" SET ("retention.mss" = 5)', psycopg.errors.InvalidParameterValue),
            (f'ALTER TABLE "{t}" SET (value_format = \'xml\')',
             psycopg.errors.InvalidParameterValue),
            (f'ALTER TABLE "{t}" ADD COLUMN z int', psycopg.errors.FeatureNotSupported),
            (f'CREATE TABLE "{t}-x" (g geometry)', psycopg.errors.UndefinedObject),
            (f'CREATE TABLE "{t}-y" AS SELECT 1', psycopg.errors.FeatureNotSupported),
            (f'CREATE TABLE "{t}-z" (n int) WITH (partitions = 0)',
             psycopg.errors.InvalidParameterValue),
            ('CREATE TABLE "bad/name" (n int)', psycopg.errors.InvalidName),
        ]
        for sql, err in cases:
            with pytest.raises(err):
                conn.execute(sql)
        # Nothing half-made, and the connection goes on.
        assert conn.execute(f'select count(*) from "{t}"').fetchone()[0] == 0
    assert psql(b, "-c", f'CREATE TABLE "{t}" (n bigint)', check=False).stderr.strip() \
        .startswith(f'ERROR:  relation "{t}" already exists')
