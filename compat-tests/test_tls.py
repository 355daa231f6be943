"""TLS on the Kafka listeners (issue 19) with real clients: librdkafka
(confluent-kafka and kcat) and kafka-python over an SSL listener beside a
PLAINTEXT one, client certificates (mutual TLS), and clients that speak
the wrong protocol to a listener. Certificates are made by the tests with
the openssl command (conftest's `certs`)."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import shutil

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import Broker, free_port, unique_topic, wait_until

T = 60
KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def start_tls(karnak_bin, tmp: Path, certs, *extra) -> Broker:
    """A broker with PLAINTEXT on kafka_port and SSL on .ssl_port."""
    b = Broker(karnak_bin, tmp / "data", tmp / "logs", [])
    b.pick_ports()
    b.ssl_port = free_port()
    while b.ssl_port in (b.kafka_port, b.admin_port, b.sql_port):
        b.ssl_port = free_port()
    pem, key = certs["server"]
    b.extra_args = ["--listeners",
                    f"PLAINTEXT://127.0.0.1:{b.kafka_port},SSL://127.0.0.1:{b.ssl_port}",
                    "--ssl-certificate-file", str(pem), "--ssl-key-file", str(key),
                    "--sql-enabled", "false", *extra]
    return b.start()


@pytest.fixture(scope="module")
def tls_broker(karnak_bin, tmp_path_factory, certs, request):
    b = start_tls(karnak_bin, tmp_path_factory.mktemp("tls"), certs)
    request.module._karnak_module_brokers = [b]
    yield b
    b.kill9()


def ssl_conf(b, certs, **more):
    return {"bootstrap.servers": f"127.0.0.1:{b.ssl_port}", "security.protocol": "SSL",
            "ssl.ca.location": str(certs["ca"]), "socket.timeout.ms": 10000, **more}


def test_librdkafka_produces_consumes_and_commits_over_ssl(tls_broker, certs):
    b = tls_broker
    topic = unique_topic("tls")
    p = Producer(ssl_conf(b, certs, **{"acks": "all", "linger.ms": 5}))
    values = [f"v{i}-{uuid.uuid4().hex}".encode() * 50 for i in range(300)]
    for v in values:
        p.produce(topic, v, partition=0)
    assert p.flush(T) == 0
    # Metadata over SSL names the SSL listener's address.
    md = AdminClient(ssl_conf(b, certs)).list_topics(timeout=T)
    assert [(x.id, x.port) for x in md.brokers.values()] == [(0, b.ssl_port)]
    group = unique_topic("tls-group")
    c = Consumer(ssl_conf(b, certs, **{"group.id": group, "auto.offset.reset": "earliest",
                                       "enable.auto.commit": False}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + T
    while len(got) < len(values) and time.monotonic() < deadline:
        for m in c.consume(500, 1.0):
            assert m.error() is None, m.error()
            got.append(m.value())
    assert got == values
    c.commit(asynchronous=False)
    c.close()
    # The same data and the group's offset over PLAINTEXT.
    plain = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    [tp] = plain.committed([TopicPartition(topic, 0)], timeout=T)
    assert tp.offset == len(values)
    plain.close()
    assert b.metrics().get_value("karnak_fetch_copied_bytes_total") > 0


def test_kcat_over_ssl(tls_broker, certs):
    if not KCAT:
        pytest.fail("kcat not found on PATH (apt-get install kcat)", pytrace=False)
    b = tls_broker
    topic = unique_topic("tls-kcat")
    ssl = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={certs['ca']}"]
    lines = "".join(f"k{i}:v{i}\n" for i in range(50))
    r = subprocess.run([KCAT, "-b", f"127.0.0.1:{b.ssl_port}", *ssl, "-P", "-t", topic, "-K:"],
                       input=lines.encode(), capture_output=True, timeout=T)
    assert r.returncode == 0, r.stderr.decode()
    r = subprocess.run([KCAT, "-b", f"127.0.0.1:{b.ssl_port}", *ssl, "-C", "-t", topic,
                        "-o", "beginning", "-e", "-f", "%k=%s@%o\n"],
                       capture_output=True, timeout=T)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == "".join(f"k{i}=v{i}@{i}\n" for i in range(50))


def test_kafka_python_over_ssl(tls_broker, certs):
    from kafka import KafkaConsumer, KafkaProducer
    b = tls_broker
    topic = unique_topic("tls-kp")
    common = {"bootstrap_servers": f"127.0.0.1:{b.ssl_port}", "security_protocol": "SSL",
              "ssl_cafile": str(certs["ca"]), "ssl_check_hostname": True}
    p = KafkaProducer(acks="all", **common)
    for i in range(20):
        p.send(topic, f"m{i}".encode(), partition=0).get(timeout=T)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **common)
    # Stops at the last one expected (the timeout bounds a shortfall).
    got = [m.value for _, m in zip(range(20), c)]
    c.close()
    assert got == [f"m{i}".encode() for i in range(20)]


def test_a_plaintext_client_on_the_ssl_listener_is_refused_and_others_go_on(tls_broker, certs):
    b = tls_broker
    wrong = AdminClient({"bootstrap.servers": f"127.0.0.1:{b.ssl_port}",
                         "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        wrong.list_topics(timeout=5)
    md = AdminClient(ssl_conf(b, certs)).list_topics(timeout=T)
    assert md.brokers


def test_mutual_tls(karnak_bin, tmp_path, certs, request):
    b = start_tls(karnak_bin, tmp_path, certs, "--ssl-client-auth", "required",
                  "--ssl-truststore-file", str(certs["ca"]))
    request.node._karnak_brokers = [b]
    try:
        pem, key = certs["client"]
        ok = AdminClient(ssl_conf(b, certs, **{"ssl.certificate.location": str(pem),
                                               "ssl.key.location": str(key)}))
        assert ok.list_topics(timeout=T).brokers
        without = AdminClient(ssl_conf(b, certs))
        with pytest.raises(KafkaException):
            without.list_topics(timeout=5)
        wait_until(lambda: "TLS handshake failed" in b.log_path_text(), 10,
                   msg="the refused handshake logged")
    finally:
        b.kill9()
