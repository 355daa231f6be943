"""The SQL gateway with real Postgres clients: psql, psycopg 3 and asyncpg
against topics produced with a real Kafka client, on the live broker."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
import psycopg
import pytest

import ck
from conftest import unique_topic

T = 30


def produce(bootstrap, topic, partitions, per_partition, prefix="v"):
    msgs = []
    for p in range(partitions):
        for i in range(per_partition):
            msgs.append({"partition": p, "key": f"k{p}-{i}".encode(),
                         "value": f"{prefix}{p}-{i}".encode(),
                         "headers": [("h", b"x")]})
    ck.produce_and_wait(bootstrap, topic, msgs)
    return msgs


def psql(broker, *args, check=True):
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(broker.sql_port), "-U", "anyone",
                        "-d", "anydb", "-X", "-v", "ON_ERROR_STOP=1", *args],
                       capture_output=True, text=True, timeout=T,
                       env={"PGCONNECT_TIMEOUT": "10", "PATH": "/usr/bin:/bin"})
    if check:
        assert r.returncode == 0, f"psql {args} failed ({r.returncode}): {r.stderr}"
    return r


def connect(broker, **kw):
    return psycopg.connect(host="127.0.0.1", port=broker.sql_port, user="anyone",
                           dbname="anydb", connect_timeout=10, autocommit=True, **kw)


def test_psql_sees_topics_as_tables(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlpsql")
    ck.create_topic(b.bootstrap, topic, partitions=3)
    produce(b.bootstrap, topic, 3, 10)
    out = psql(b, "-At", "-c", f'select count(*) from "{topic}"').stdout.strip()
    assert out == "30"
    listed = psql(b, "-c", r"\dt").stdout
    assert topic in listed, listed
    described = psql(b, "-c", rf'\d "{topic}"').stdout
    for col in ("partition", "offset", "timestamp", "key", "value", "headers", "value_text"):
        assert col in described, described
    rows = psql(b, "-At", "-F", ",", "-c",
                f'select partition, "offset", value_text from "{topic}" '
                f"where partition = 1 and \"offset\" >= 7 order by \"offset\"").stdout.split()
    assert rows == [f"1,{o},v1-{o}" for o in (7, 8, 9)]


def test_psycopg_parameters_types_and_read_your_writes(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlpg")
    ck.create_topic(b.bootstrap, topic, partitions=2)
    produce(b.bootstrap, topic, 2, 5)
    with connect(b) as conn:
        rows = conn.execute(
            f'select partition, "offset", key, value_text, timestamp from "{topic}" '
            f'where partition = %s order by "offset"', (0,)).fetchall()
        assert [r[1] for r in rows] == list(range(5))
        assert rows[0][2] == b"k0-0", "bytea comes back as bytes"
        assert rows[0][3] == "v0-0"
        assert rows[0][4].tzinfo is not None, "timestamp is timestamptz"
        # A record acknowledged now is in the next query.
        ck.produce_and_wait(b.bootstrap, topic, [{"partition": 1, "value": b"late"}])
        n = conn.execute(f'select count(*) from "{topic}" where value_text = %s',
                         ("late",)).fetchone()[0]
        assert n == 1
        agg = conn.execute(f'select partition, count(*) from "{topic}" '
                           "group by partition order by partition").fetchall()
        assert agg == [(0, 5), (1, 6)]


def test_errors_are_postgres_errors_and_the_connection_survives(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlerr")
    ck.create_topic(b.bootstrap, topic, partitions=1)
    with connect(b) as conn:
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("selec 1")
        with pytest.raises(psycopg.Error) as e:
            conn.execute("select * from no_such_topic_here")
        assert "no_such_topic_here" in str(e.value)
        with pytest.raises(psycopg.Error):
            conn.execute(f'select no_such_column from "{topic}"')
        assert conn.execute("select 1 + 1").fetchone()[0] == 2


def test_asyncpg_extended_protocol(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlapg")
    ck.create_topic(b.bootstrap, topic, partitions=2)
    produce(b.bootstrap, topic, 2, 4)

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=b.sql_port, user="anyone",
                                     database="anydb", timeout=10)
        try:
            rows = await conn.fetch(
                f'select "offset", value_text from "{topic}" where partition = $1 '
                f'order by "offset"', 1)
            assert [(r[0], r[1]) for r in rows] == [(i, f"v1-{i}") for i in range(4)]
            n = await conn.fetchval(f'select count(*) from "{topic}"')
            assert n == 8
        finally:
            await conn.close()
    asyncio.run(asyncio.wait_for(run(), T))


def test_ssl_request_is_declined_and_garbage_startup_is_survived(shared_broker):
    """An SSLRequest gets 'N' (no TLS configured) and the client may go on in
    plain text; a malformed or oversized startup packet closes only its own
    connection."""
    import socket
    import struct
    b = shared_broker
    with socket.create_connection(("127.0.0.1", b.sql_port), timeout=T) as s:
        s.sendall(struct.pack("!ii", 8, 80877103))
        assert s.recv(1) == b"N"
    for junk in (b"\x00\x00\x00\x04", struct.pack("!ii", 9, 196608) + b"\x01",
                 struct.pack("!i", 0x7FFFFFFF) + b"\x00" * 16, b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", b.sql_port), timeout=T) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    with connect(b) as conn:
        assert conn.execute("select 41 + 1").fetchone()[0] == 42


def test_psql_meta_commands_version_and_asyncpg_pool_reset(shared_broker):
    b = shared_broker
    topic = unique_topic("sqlpool")
    ck.create_topic(b.bootstrap, topic, partitions=1)
    produce(b.bootstrap, topic, 1, 3)
    assert "datafusion" in psql(b, "-c", r"\l").stdout
    expanded = psql(b, "-c", r"\x", "-c", f'select "offset", value_text from "{topic}" limit 1').stdout
    assert "-[ RECORD 1 ]" in expanded and "value_text" in expanded, expanded
    version = psql(b, "-At", "-c", "select version()").stdout.strip()
    assert version.startswith("PostgreSQL 16") and "Karnak" in version, version

    async def pool_cycles():
        pool = await asyncpg.create_pool(host="127.0.0.1", port=b.sql_port, user="anyone",
                                         database="anydb", min_size=1, max_size=1, timeout=T)
        try:
            seen = []
            # One connection, given back and taken again: each release runs
            # asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN *,
            # RESET ALL), which must succeed for the pool to keep it.
            for _ in range(3):
                async with pool.acquire() as conn:
                    seen.append(await conn.fetchval(f'select count(*) from "{topic}"'))
                    await conn.execute("SET application_name = 'x'")
            async with pool.acquire() as conn:
                await conn.execute("DISCARD ALL")
            return seen
        finally:
            await pool.close()

    assert asyncio.run(pool_cycles()) == [3, 3, 3]
