"""INSERT INTO a topic through the SQL gateway: rows are produced through
the Kafka produce path and real Kafka consumers read them."""

from __future__ import annotations

import time

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import ck
from conftest import unique_topic
from test_sql import connect, psql

T = 30


def consume(bootstrap, topic, partitions, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = []
        deadline = time.monotonic() + T
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m)
        return got
    finally:
        c.close()


def test_insert_values_is_seen_by_kafka_consumers(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlins")
    ck.create_topic(b.bootstrap, topic, partitions=3)
    out = psql(b, "-c", f"insert into \"{topic}\" (key_text, value_text) values "
                        f"('user-1', 'one'), ('user-2', 'two'), (NULL, 'three')").stdout
    assert "INSERT 0 3" in out, out
    got = consume(b.bootstrap, topic, 3, 3)
    assert sorted((m.value(), m.key()) for m in got) == [
        (b"one", b"user-1"), (b"three", None), (b"two", b"user-2")]
    # Keyed rows go where Kafka's default (Java, murmur2) partitioner puts
    # them: librdkafka's murmur2_random partitioner is the same function.
    p = Producer({"bootstrap.servers": b.bootstrap, "partitioner": "murmur2_random"})
    acked = {}
    for k in (b"user-1", b"user-2"):
        p.produce(topic, key=k, value=b"from-kafka",
                  on_delivery=lambda err, m: acked.__setitem__(m.key(), (err, m.partition())))
    assert p.flush(T) == 0
    for m in got:
        if m.key() is not None:
            err, part = acked[m.key()]
            assert err is None
            assert m.partition() == part, (m.key(), m.partition(), part)
    # And SQL sees both kinds of rows.
    with connect(b) as conn:
        n = conn.execute(f'select count(*) from "{topic}"').fetchone()[0]
        assert n == 5


def test_insert_with_parameters_partition_timestamp_and_bytes(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlinsp")
    ck.create_topic(b.bootstrap, topic, partitions=2)
    with connect(b) as conn:
        cur = conn.execute(
            f'insert into "{topic}" (partition, key, value, timestamp) values (%s, %s, %s, %s)',
            (1, b"\x00\xffk", b"\x01\x02\x00bin", "2024-05-01T12:00:00Z"))
        assert cur.rowcount == 1
        cur = conn.execute(
            f'insert into "{topic}" (partition, value_text) values (0, %s), (0, %s)',
            ("a", "b"))
        assert cur.rowcount == 2
        rows = conn.execute(
            f'select partition, "offset", key, value, '
            f'cast(extract(epoch from timestamp) as bigint), timestamp_type '
            f'from "{topic}" order by partition, "offset"').fetchall()
        assert [(r[0], r[1]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
        assert rows[2][2] == b"\x00\xffk" and rows[2][3] == b"\x01\x02\x00bin"
        assert rows[2][4] == 1714564800
        assert rows[2][5] == "CreateTime"
    got = consume(b.bootstrap, topic, 2, 3)
    by_part = {(m.partition(), m.offset()): m for m in got}
    m = by_part[(1, 0)]
    assert (m.key(), m.value(), m.timestamp()[1]) == (b"\x00\xffk", b"\x01\x02\x00bin",
                                                      1714564800000)
    assert by_part[(0, 1)].value() == b"b"


def test_insert_select_copies_a_topic(shared_broker):
    b = shared_broker
    src, dst = unique_topic("sqlsrc"), unique_topic("sqldst")
    ck.create_topic(b.bootstrap, src, partitions=2)
    ck.create_topic(b.bootstrap, dst, partitions=2)
    msgs = [{"partition": i % 2, "key": b"k%d" % i, "value": b"v%d" % i,
             "headers": [("h", b"x%d" % i)]} for i in range(500)]
    ck.produce_and_wait(b.bootstrap, src, msgs)
    with connect(b) as conn:
        cur = conn.execute(f'insert into "{dst}" select * from "{src}"')
        assert cur.rowcount == 500
        diff = conn.execute(
            f'select count(*) from "{src}" s join "{dst}" d '
            f'on s.partition = d.partition and s."offset" = d."offset" '
            f'and s.key = d.key and s.value = d.value and s.timestamp = d.timestamp').fetchone()[0]
        assert diff == 500, "same partition, offset, key, value and timestamp"
    got = consume(b.bootstrap, dst, 2, 500)
    assert len(got) == 500
    assert all(m.headers() == [("h", b"x" + m.value()[1:])] for m in got)


def test_bad_inserts_are_postgres_errors(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlinsbad")
    ck.create_topic(b.bootstrap, topic, partitions=2, config={"max.message.bytes": "2000"})
    with connect(b) as conn:
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"insert into \"{topic}\" (partition, value_text) values (7, 'x')")
        assert e.value.sqlstate == "22023", e.value
        assert "partition 7 does not exist" in str(e.value)
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f'insert into "{topic}" (value) values (%s)', (b"x" * 5000,))
        assert e.value.sqlstate == "54000", e.value
        with pytest.raises(psycopg.Error) as e:
            conn.execute(f"insert into \"{topic}\" (partition) values ('not a number')")
        assert e.value.sqlstate in ("22P02", "42804"), e.value
        with pytest.raises(psycopg.Error) as e:
            conn.execute("insert into no_such_topic (value_text) values ('x')")
        assert e.value.sqlstate == "42P01", e.value
        # None of it reached the log, and the connection still works.
        assert conn.execute(f'select count(*) from "{topic}"').fetchone()[0] == 0
