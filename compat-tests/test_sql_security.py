"""The SQL gateway's logins are the broker's users, and its port speaks TLS
with the broker's certificate (issue 19): a user made or changed with
Kafka's AlterUserScramCredentials logs into psql, psycopg and asyncpg with
SCRAM-SHA-256; `--sql-ssl on` serves TLS to clients that ask (checked
against the test's CA with verify-full), `require` refuses the others with
a Postgres FATAL."""

from __future__ import annotations

import asyncio
import ssl
import subprocess

import asyncpg
import psycopg
import pytest
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from conftest import wait_until

T = 30


def connect(b, user, password, **kw):
    return psycopg.connect(host="127.0.0.1", port=b.sql_port, user=user, password=password,
                           dbname="anydb", connect_timeout=10, autocommit=True, **kw)


def logs_in(b, user, password, **kw) -> bool:
    try:
        with connect(b, user, password, **kw) as conn:
            return conn.execute("select 1").fetchone()[0] == 1
    except psycopg.OperationalError as e:
        assert "password authentication failed" in str(e), e
        return False


def alter(b, *changes):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.alter_user_scram_credentials(list(changes), request_timeout=T).values():
        f.result(T)


def test_users_made_with_the_kafka_admin_api_log_into_sql(broker_factory):
    b = broker_factory("--sql-auth", "scram-sha-256")
    assert not logs_in(b, "carol", "first pw")
    sha256 = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192)
    alter(b, UserScramCredentialUpsertion("carol", sha256, b"first pw"))
    wait_until(lambda: logs_in(b, "carol", "first pw"), T, msg="carol's SQL login")
    assert not logs_in(b, "carol", "second pw")
    # A password changed through Kafka's API changes the SQL login.
    alter(b, UserScramCredentialUpsertion("carol", sha256, b"second pw"))
    wait_until(lambda: logs_in(b, "carol", "second pw"), T, msg="carol's new password")
    assert not logs_in(b, "carol", "first pw")
    # asyncpg and psql too.
    async def go():
        conn = await asyncpg.connect(host="127.0.0.1", port=b.sql_port, user="carol",
                                     password="second pw", database="x", timeout=T)
        try:
            return await conn.fetchval("select 6 * 7")
        finally:
            await conn.close()
    assert asyncio.run(go()) == 42
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(b.sql_port), "-U", "carol",
                        "-d", "x", "-X", "-tA", "-c", "select 7"], capture_output=True,
                       text=True, timeout=T, env={"PGPASSWORD": "second pw", "PATH": "/usr/bin:/bin"})
    assert (r.returncode, r.stdout.strip()) == (0, "7"), r.stderr
    # Postgres's SCRAM is SHA-256: a user with only a SHA-512 credential
    # cannot log in over SQL.
    alter(b, UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"dave pw"))
    assert not logs_in(b, "dave", "dave pw")
    # Deleted: refused, with the same words as a wrong password.
    alter(b, UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256))
    wait_until(lambda: not logs_in(b, "carol", "second pw"), T, msg="carol's login to go")


def test_the_sql_password_file_adds_kafka_users_too(broker_factory, tmp_path):
    """--sql-password-file bootstraps the one user store: its users log in
    over Kafka SASL as well."""
    users = tmp_path / "sql-users.txt"
    users.write_text("erin:erin pw\n")
    b = broker_factory("--sql-auth", "scram-sha-256", "--sql-password-file", str(users))
    assert logs_in(b, "erin", "erin pw")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    described = admin.describe_user_scram_credentials(["erin"], request_timeout=T)
    mechanisms = {i.mechanism for i in described["erin"].result(T).scram_credential_infos}
    assert mechanisms == {ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512}


@pytest.fixture
def tls_broker(broker_factory, tmp_path, certs):
    users = tmp_path / "users.txt"
    users.write_text("alice:alice pw\n")
    pem, key = certs["server"]

    def make(*extra):
        return broker_factory("--sql-auth", "scram-sha-256", "--sasl-users-file", str(users),
                              "--ssl-certificate-file", str(pem), "--ssl-key-file", str(key),
                              *extra)
    return make


def test_scram_over_tls_with_psql_psycopg_and_asyncpg(tls_broker, certs):
    b = tls_broker()  # --sql-ssl on: the default with a certificate
    ca = str(certs["ca"])
    with connect(b, "alice", "alice pw", sslmode="verify-full", sslrootcert=ca) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select 40 + 2").fetchone()[0] == 42
    # Clients that do not ask for TLS still get in under `on`.
    with connect(b, "alice", "alice pw", sslmode="disable") as conn:
        assert not conn.pgconn.ssl_in_use
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(b.sql_port), "-U", "alice",
                        "-d", "x", "-X", "-c", "\\conninfo"], capture_output=True, text=True,
                       timeout=T, env={"PGPASSWORD": "alice pw", "PGSSLMODE": "verify-full",
                                       "PGSSLROOTCERT": ca, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "SSL connection (protocol: TLSv1." in r.stdout, r.stdout + r.stderr

    async def go():
        conn = await asyncpg.connect(host="127.0.0.1", port=b.sql_port, user="alice",
                                     password="alice pw", database="x", timeout=T,
                                     ssl=ssl.create_default_context(cafile=ca))
        try:
            return await conn.fetchval("select 6 * 7")
        finally:
            await conn.close()
    assert asyncio.run(go()) == 42
    # A wrong password over TLS is refused as in plain text.
    assert not logs_in(b, "alice", "wrong", sslmode="require")


def test_sql_ssl_require_refuses_plaintext(tls_broker, certs):
    b = tls_broker("--sql-ssl", "require")
    with pytest.raises(psycopg.OperationalError) as e:
        connect(b, "alice", "alice pw", sslmode="disable")
    assert "requires SSL" in str(e.value), e.value
    with connect(b, "alice", "alice pw", sslmode="verify-full",
                 sslrootcert=str(certs["ca"])) as conn:
        assert conn.pgconn.ssl_in_use


def test_sql_ssl_off_declines_tls(tls_broker):
    b = tls_broker("--sql-ssl", "off")
    with pytest.raises(psycopg.OperationalError) as e:
        connect(b, "alice", "alice pw", sslmode="require")
    assert "does not support SSL" in str(e.value), e.value
    assert logs_in(b, "alice", "alice pw", sslmode="disable")


@pytest.mark.parametrize("args,says", [
    (["--sql-ssl", "on"], "needs --ssl-certificate-file"),
    (["--sql-ssl", "maybe"], "expected off, on or require"),
])
def test_bad_sql_ssl_settings_stop_the_broker(karnak_bin, tmp_path, args, says):
    r = subprocess.run([str(karnak_bin), "--data-dir", str(tmp_path / "d"),
                        "--kafka-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
                        "--sql-addr", "127.0.0.1:0", *args],
                       capture_output=True, text=True, timeout=T)
    assert r.returncode != 0 and says in r.stderr, (r.returncode, r.stderr[-2000:])
