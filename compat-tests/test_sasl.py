"""SASL (issue 19) with real clients: librdkafka (confluent-kafka, kcat) and
kafka-python log in with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over
SASL_PLAINTEXT and SASL_SSL; a wrong password and an unknown user are told
the same thing; a librdkafka producer logs in again and again while it
produces when logins expire (KIP-368)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from conftest import Broker, free_port, unique_topic

T = 60
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
USERS = "alice:wonder land\nbob:builder\n"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def start_sasl(karnak_bin, tmp: Path, certs, *extra, mechanisms=MECHANISMS) -> Broker:
    """PLAINTEXT on kafka_port, SASL_PLAINTEXT on .sasl_port, SASL_SSL on .sasl_ssl_port."""
    users = tmp / "users.txt"
    users.write_text(USERS)
    b = Broker(karnak_bin, tmp / "data", tmp / "logs", [])
    b.pick_ports()
    taken = {b.kafka_port, b.admin_port, b.sql_port}
    ports = []
    while len(ports) < 2:
        p = free_port()
        if p not in taken:
            taken.add(p)
            ports.append(p)
    b.sasl_port, b.sasl_ssl_port = ports
    pem, key = certs["server"]
    b.extra_args = [
        "--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},"
                       f"SASL_PLAINTEXT://127.0.0.1:{b.sasl_port},"
                       f"SASL_SSL://127.0.0.1:{b.sasl_ssl_port}",
        "--ssl-certificate-file", str(pem), "--ssl-key-file", str(key),
        "--sasl-users-file", str(users), "--sasl-enabled-mechanisms", ",".join(mechanisms),
        "--sql-enabled", "false", *extra]
    return b.start()


@pytest.fixture(scope="module")
def sasl_broker(karnak_bin, tmp_path_factory, certs, request):
    b = start_sasl(karnak_bin, tmp_path_factory.mktemp("sasl"), certs)
    request.module._karnak_module_brokers = [b]
    yield b
    b.kill9()


def conf(b, certs, mechanism, user="alice", password="wonder land", tls=False, **more):
    c = {"bootstrap.servers": f"127.0.0.1:{b.sasl_ssl_port if tls else b.sasl_port}",
         "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
         "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password,
         "socket.timeout.ms": 10000, **more}
    if tls:
        c["ssl.ca.location"] = str(certs["ca"])
    return c


@pytest.mark.parametrize("tls", [False, True], ids=["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_librdkafka_logs_in_produces_and_consumes(sasl_broker, certs, mechanism, tls):
    b = sasl_broker
    topic = unique_topic("sasl")
    p = Producer(conf(b, certs, mechanism, tls=tls, acks="all"))
    values = [f"{mechanism}-{i}-{uuid.uuid4().hex}".encode() for i in range(100)]
    for v in values:
        p.produce(topic, v, partition=0)
    assert p.flush(T) == 0
    c = Consumer(conf(b, certs, mechanism, user="bob", password="builder", tls=tls,
                      **{"group.id": unique_topic("g"), "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + T
    while len(got) < len(values) and time.monotonic() < deadline:
        for m in c.consume(500, 1.0):
            assert m.error() is None, m.error()
            got.append(m.value())
    c.close()
    assert got == values


def login_error(b, certs, mechanism, user, password) -> str:
    errors = []
    a = AdminClient(conf(b, certs, mechanism, user=user, password=password,
                         error_cb=lambda e: errors.append(e)))
    with pytest.raises(KafkaException):
        a.list_topics(timeout=5)
    deadline = time.monotonic() + 10
    while not any("uthentication" in e.str() for e in errors) and time.monotonic() < deadline:
        a.poll(0.2)  # error callbacks are served by poll
    msgs = [e.str() for e in errors if "uthentication" in e.str()]
    assert msgs, [e.str() for e in errors]
    # librdkafka adds the broker's name and its own timing: keep what the broker said.
    return re.sub(r" \(after \d+ms in state \w+\)$", "", msgs[0].split(": ", 1)[-1])


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_and_an_unknown_user_hear_the_same(sasl_broker, certs, mechanism):
    b = sasl_broker
    wrong = login_error(b, certs, mechanism, "alice", "wonderland")
    unknown = login_error(b, certs, mechanism, "mallory", "wonder land")
    assert "invalid credentials" in wrong, wrong
    assert wrong.replace("alice", "?") == unknown.replace("mallory", "?")
    # Others are not affected.
    assert AdminClient(conf(b, certs, mechanism)).list_topics(timeout=T).brokers


def test_kcat_with_scram(sasl_broker, certs):
    if not KCAT:
        pytest.fail("kcat not found on PATH (apt-get install kcat)", pytrace=False)
    b = sasl_broker
    topic = unique_topic("sasl-kcat")
    login = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={certs['ca']}",
             "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=bob",
             "-X", "sasl.password=builder"]
    bootstrap = f"127.0.0.1:{b.sasl_ssl_port}"
    lines = "".join(f"k{i}:v{i}\n" for i in range(30))
    r = subprocess.run([KCAT, "-b", bootstrap, *login, "-P", "-t", topic, "-K:"],
                       input=lines.encode(), capture_output=True, timeout=T)
    assert r.returncode == 0, r.stderr.decode()
    r = subprocess.run([KCAT, "-b", bootstrap, *login, "-C", "-t", topic, "-o", "beginning", "-e",
                        "-f", "%k=%s@%o\n"], capture_output=True, timeout=T)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == "".join(f"k{i}=v{i}@{i}\n" for i in range(30))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_logs_in(sasl_broker, mechanism):
    from kafka import KafkaConsumer, KafkaProducer
    b = sasl_broker
    topic = unique_topic("sasl-kp")
    common = {"bootstrap_servers": f"127.0.0.1:{b.sasl_port}",
              "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
              "sasl_plain_username": "alice", "sasl_plain_password": "wonder land"}
    p = KafkaProducer(acks="all", **common)
    for i in range(10):
        p.send(topic, f"m{i}".encode(), partition=0).get(timeout=T)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **common)
    # Stops at the last one expected (the timeout bounds a shortfall).
    got = [m.value for _, m in zip(range(10), c)]
    c.close()
    assert got == [f"m{i}".encode() for i in range(10)]


def test_librdkafka_logs_in_again_when_its_login_expires(karnak_bin, tmp_path, certs, request):
    """KIP-368: with logins lasting 1.5 s, a producer that runs for 5 s logs
    in again (and again) and loses nothing."""
    b = start_sasl(karnak_bin, tmp_path, certs, "--connections-max-reauth-ms", "1500")
    request.node._karnak_brokers = [b]
    try:
        topic = unique_topic("reauth")
        p = Producer(conf(b, certs, "SCRAM-SHA-256", acks="all", **{"linger.ms": 20}))
        failed = []
        sent = 0
        end = time.monotonic() + 5
        while time.monotonic() < end:
            p.produce(topic, f"r{sent}".encode(), partition=0,
                      on_delivery=lambda err, _m: err and failed.append(err))
            sent += 1
            p.poll(0.01)
        assert p.flush(T) == 0
        assert not failed, failed[:3]
        logins = b.metrics().find("karnak_sasl_authentications_total", result="ok")
        assert sum(logins.values()) >= 3, logins
    finally:
        b.kill9()


def test_scram_credentials_are_managed_with_the_admin_api(sasl_broker, certs):
    """AlterUserScramCredentials / DescribeUserScramCredentials (what
    `kafka-configs --entity-type users` uses): a user made over PLAINTEXT
    logs in with SCRAM and PLAIN; its password changes; deleted, it cannot
    log in; the users file's users are listed; bad requests get Kafka's
    errors per user."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion,
                                       UserScramCredentialUpsertion)
    b = sasl_broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    user = f"carol-{uuid.uuid4().hex[:6]}"
    sha512 = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    for f in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, sha512, b"first pw")]).values():
        f.result(T)
    desc = admin.describe_user_scram_credentials([user])[user].result(T)
    assert [(i.mechanism, i.iterations) for i in desc.scram_credential_infos] == \
        [(ScramMechanism.SCRAM_SHA_512, 8192)]
    listed = admin.describe_user_scram_credentials().result(T)
    assert {"alice", "bob", user} <= set(listed), listed.keys()
    ok = AdminClient(conf(b, certs, "SCRAM-SHA-512", user=user, password="first pw"))
    assert ok.list_topics(timeout=T).brokers
    plain = AdminClient(conf(b, certs, "PLAIN", user=user, password="first pw"))
    assert plain.list_topics(timeout=T).brokers
    # A new password: the old one no longer works.
    for f in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, sha512, b"second pw")]).values():
        f.result(T)
    login_error(b, certs, "SCRAM-SHA-512", user, "first pw")
    assert AdminClient(conf(b, certs, "SCRAM-SHA-512", user=user, password="second pw")) \
        .list_topics(timeout=T).brokers
    # Deleted: it cannot log in; deleting again is RESOURCE_NOT_FOUND.
    for f in admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)]).values():
        f.result(T)
    login_error(b, certs, "SCRAM-SHA-512", user, "second pw")
    again = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)])
    with pytest.raises(KafkaException) as e:
        again[user].result(T)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    # Too few iterations.
    few = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1024), b"pw")])
    with pytest.raises(KafkaException) as e:
        few["dave"].result(T)
    assert e.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    missing = admin.describe_user_scram_credentials(["nobody"])
    with pytest.raises(KafkaException) as e:
        missing["nobody"].result(T)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


# -- OAUTHBEARER ---------------------------------------------------------------
def b64url(raw: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def jwt_signer(tmp_path_factory):
    """An RSA key, its JWKS file, and sign(claims, header=None) -> JWT (RS256,
    signed with the openssl command)."""
    import json
    d = tmp_path_factory.mktemp("jwt")
    subprocess.run(["openssl", "genrsa", "-out", str(d / "key.pem"), "2048"],
                   check=True, capture_output=True, timeout=T)
    out = subprocess.run(["openssl", "rsa", "-in", str(d / "key.pem"), "-noout", "-modulus"],
                         check=True, capture_output=True, text=True, timeout=T).stdout
    n = bytes.fromhex(out.strip().split("=", 1)[1])
    (d / "jwks.json").write_text(json.dumps(
        {"keys": [{"kty": "RSA", "kid": "test-key", "n": b64url(n), "e": "AQAB"}]}))

    def sign(claims: dict, header=None) -> str:
        h = header or {"alg": "RS256", "kid": "test-key", "typ": "JWT"}
        signed = f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}"
        if h.get("alg") == "none":
            return signed + "."
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(d / "key.pem")],
                             input=signed.encode(), check=True, capture_output=True,
                             timeout=T).stdout
        return f"{signed}.{b64url(sig)}"

    sign.jwks = d / "jwks.json"
    return sign


@pytest.fixture(scope="module")
def oauth_broker(karnak_bin, tmp_path_factory, certs, jwt_signer, request):
    b = start_sasl(karnak_bin, tmp_path_factory.mktemp("oauth"), certs,
                   "--sasl-oauthbearer-jwks-endpoint-url", f"file://{jwt_signer.jwks}",
                   "--sasl-oauthbearer-expected-issuer", "https://issuer.test",
                   "--sasl-oauthbearer-expected-audience", "karnak",
                   mechanisms=["OAUTHBEARER", "SCRAM-SHA-256"])
    request.module._karnak_module_brokers = [b]
    yield b
    b.kill9()


def claims(sub="alice", lifetime=300, **over):
    now = int(time.time())
    return {"sub": sub, "iss": "https://issuer.test", "aud": ["karnak"], "iat": now,
            "exp": now + lifetime, **over}


def oauth_conf(b, token_fn, **more):
    return {"bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "oauth_cb": token_fn, "socket.timeout.ms": 10000,
            **more}


def test_oauthbearer_logs_in_with_a_signed_token(oauth_broker, jwt_signer):
    b = oauth_broker
    topic = unique_topic("oauth")

    def token(_config):
        c = claims()
        return jwt_signer(c), float(c["exp"])

    p = Producer(oauth_conf(b, token, acks="all"))
    for i in range(20):
        p.produce(topic, f"o{i}".encode(), partition=0)
    assert p.flush(T) == 0
    c = Consumer(oauth_conf(b, token, **{"group.id": unique_topic("g"),
                                          "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + T
    while len(got) < 20 and time.monotonic() < deadline:
        got += [m.value() for m in c.consume(100, 1.0) if m.error() is None]
    c.close()
    assert got == [f"o{i}".encode() for i in range(20)]


@pytest.mark.parametrize("bad", ["expired", "audience", "issuer", "unsigned", "tampered"])
def test_oauthbearer_refuses_bad_tokens(oauth_broker, jwt_signer, bad):
    b = oauth_broker
    if bad == "expired":
        t = jwt_signer(claims(lifetime=-120))
    elif bad == "audience":
        t = jwt_signer(claims(aud="someone-else"))
    elif bad == "issuer":
        t = jwt_signer(claims(iss="https://evil.test"))
    elif bad == "unsigned":
        t = jwt_signer(claims(), header={"alg": "none"})
    else:
        good = jwt_signer(claims())
        h, p, s = good.split(".")
        forged = b64url(b'{"sub":"admin","exp":9999999999}')
        t = f"{h}.{forged}.{s}"
    errors = []
    a = AdminClient(oauth_conf(b, lambda _c: (t, time.time() + 300),
                               error_cb=lambda e: errors.append(e)))
    with pytest.raises(KafkaException):
        a.list_topics(timeout=5)
    deadline = time.monotonic() + 10
    while not any("uthentication" in e.str() for e in errors) and time.monotonic() < deadline:
        a.poll(0.2)
    assert any("invalid credentials with SASL mechanism OAUTHBEARER" in e.str() for e in errors), \
        [e.str() for e in errors]


def test_oauthbearer_logins_last_until_the_token_expires(oauth_broker, jwt_signer):
    """A token valid for 4 s: the login lasts that long (KIP-368), librdkafka
    fetches a new token and logs in again while producing, losing nothing."""
    b = oauth_broker
    calls = []

    def token(_config):
        c = claims(lifetime=4)
        calls.append(c["exp"])
        return jwt_signer(c), float(c["exp"])

    topic = unique_topic("oauth-renew")
    p = Producer(oauth_conf(b, token, acks="all"))
    failed, sent = [], 0
    end = time.monotonic() + 8
    while time.monotonic() < end:
        p.produce(topic, f"r{sent}".encode(), partition=0,
                  on_delivery=lambda err, _m: err and failed.append(err))
        sent += 1
        p.poll(0.02)
    assert p.flush(T) == 0
    assert not failed, failed[:3]
    assert len(calls) >= 2, calls
