"""SQL gateway passwords: SCRAM-SHA-256 as Postgres does it, with real
drivers (libpq through psql and psycopg, asyncpg); wrong passwords, unknown
users, auth methods the server does not offer and malformed SASL messages
each get a Postgres FATAL, and the broker goes on."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess

import asyncpg
import psycopg
import pytest

T = 30
USERS = "# SQL users\nalice:s3cret pass\nbob:hunter2\n"


@pytest.fixture
def scram_broker(broker_factory, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text(USERS)
    return broker_factory("--sql-auth", "scram-sha-256", "--sql-password-file", str(users))


def connect(b, user, password, **kw):
    return psycopg.connect(host="127.0.0.1", port=b.sql_port, user=user, password=password,
                           dbname="anydb", connect_timeout=10, autocommit=True, **kw)


def test_scram_with_psycopg_psql_and_asyncpg(scram_broker):
    b = scram_broker
    with connect(b, "alice", "s3cret pass") as conn:
        assert conn.execute("select 40 + 2").fetchone()[0] == 42
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(b.sql_port), "-U", "bob", "-d", "x",
                        "-X", "-tA", "-c", "select 7"], capture_output=True, text=True, timeout=T,
                       env={"PGPASSWORD": "hunter2", "PATH": "/usr/bin:/bin"})
    assert (r.returncode, r.stdout.strip()) == (0, "7"), r.stderr

    async def go():
        conn = await asyncpg.connect(host="127.0.0.1", port=b.sql_port, user="bob",
                                     password="hunter2", database="x", timeout=T)
        try:
            return await conn.fetchval("select $1::bigint * 2", 21)
        finally:
            await conn.close()
    assert asyncio.run(go()) == 42


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("alice", "S3CRET PASS"),
                                           ("mallory", "s3cret pass"), ("bob", "")])
def test_wrong_password_and_unknown_user_get_28P01(scram_broker, user, password):
    with pytest.raises(psycopg.OperationalError) as e:
        connect(scram_broker, user, password)
    if password:
        # Same answer for a wrong password and a user that does not exist
        # (libpq gives no SQLSTATE for a failed connection; the text is it).
        assert "password authentication failed" in str(e.value).lower(), e.value
    else:
        assert "password" in str(e.value), e.value
    with connect(scram_broker, "alice", "s3cret pass") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def test_client_that_allows_only_md5_or_cleartext_refuses_sasl(scram_broker):
    # libpq's require_auth: the server offers SASL only, so the driver
    # refuses rather than send a weaker proof.
    for method in ("md5", "password"):
        with pytest.raises(psycopg.OperationalError) as e:
            connect(scram_broker, "alice", "s3cret pass", require_auth=method)
        assert "SASL" in str(e.value), e.value


def startup(user: bytes) -> bytes:
    body = struct.pack("!i", 196608) + b"user\0" + user + b"\0database\0x\0\0"
    return struct.pack("!i", len(body) + 4) + body


def read_message(s) -> tuple[bytes, bytes]:
    head = b""
    while len(head) < 5:
        chunk = s.recv(5 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    kind, n = head[:1], struct.unpack("!i", head[1:])[0]
    body = b""
    while len(body) < n - 4:
        chunk = s.recv(n - 4 - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return kind, body


def error_fields(body: bytes) -> dict[str, str]:
    return {f[:1].decode(): f[1:].decode() for f in body.split(b"\0") if f}


@pytest.mark.parametrize("answer", [
    # A mechanism the server did not offer.
    b"SCRAM-SHA-1\0" + struct.pack("!i", 4) + b"n,,x",
    # A cleartext PasswordMessage where SASL was asked for.
    b"s3cret pass\0",
    # SASL initial response whose data length lies.
    b"SCRAM-SHA-256\0" + struct.pack("!i", 0x7FFFFFF0) + b"n,,n=,r=abc",
    # SCRAM client-first that is not SCRAM.
    b"SCRAM-SHA-256\0" + struct.pack("!i", 9) + b"\xff\xfe junk",
    # Empty body.
    b"",
])
def test_malformed_or_unsupported_sasl_answers_get_fatal(scram_broker, answer):
    b = scram_broker
    with socket.create_connection(("127.0.0.1", b.sql_port), timeout=T) as s:
        s.sendall(startup(b"alice"))
        kind, body = read_message(s)
        # AuthenticationSASL (10) offering SCRAM-SHA-256.
        assert kind == b"R" and struct.unpack("!i", body[:4])[0] == 10, (kind, body)
        assert b"SCRAM-SHA-256\0" in body[4:]
        s.sendall(b"p" + struct.pack("!i", len(answer) + 4) + answer)
        kind, body = read_message(s)
        assert kind == b"E", (kind, body)
        fields = error_fields(body)
        assert fields["S"] == "FATAL" and fields["C"] in ("08P01", "28P01", "28000"), fields
    with connect(b, "bob", "hunter2") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def test_gssapi_encryption_request_is_declined(shared_broker):
    """libpq asks for GSSAPI encryption first when it has Kerberos
    credentials; the answer is 'N' and the client goes on in plain text."""
    with socket.create_connection(("127.0.0.1", shared_broker.sql_port), timeout=T) as s:
        s.sendall(struct.pack("!ii", 8, 80877104))
        assert s.recv(1) == b"N"
        s.sendall(startup(b"anyone"))
        kind, body = read_message(s)
        # Trust: AuthenticationOk at once.
        assert (kind, body) == (b"R", struct.pack("!i", 0))


@pytest.mark.parametrize("args,says", [
    (["--sql-auth", "md5"], "expected trust or scram-sha-256"),
    (["--sql-password-file", "/nonexistent"], "needs --sql-auth scram-sha-256"),
    (["--sql-auth", "scram-sha-256", "--sql-password-file", "/nonexistent"], "/nonexistent"),
    (["--sql-auth", "scram-sha-256", "--sql-password-file", "{bad}"], "line 2"),
])
def test_bad_auth_settings_stop_the_broker_with_a_reason(karnak_bin, tmp_path, args, says):
    bad = tmp_path / "bad.txt"
    bad.write_text("alice:pw\nno colon here\n")
    args = [a.replace("{bad}", str(bad)) for a in args]
    r = subprocess.run([str(karnak_bin), "--data-dir", str(tmp_path / "d"),
                        "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
                        "--sql-addr", "127.0.0.1:0", *args],
                       capture_output=True, text=True, timeout=T)
    assert r.returncode != 0 and says in r.stderr, (r.returncode, r.stderr[-2000:])


def test_the_sasl_users_file_serves_sql_logins_too(broker_factory, tmp_path):
    """One users file for Kafka and SQL: --sql-auth scram-sha-256 without
    --sql-password-file takes --sasl-users-file's users."""
    users = tmp_path / "users.txt"
    users.write_text(USERS)
    b = broker_factory("--sql-auth", "scram-sha-256", "--sasl-users-file", str(users))
    with connect(b, "bob", "hunter2") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1
    with pytest.raises(psycopg.OperationalError):
        connect(b, "bob", "wrong")
