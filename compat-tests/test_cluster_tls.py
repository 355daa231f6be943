"""Brokers of a cluster talk to each other over mutual TLS (issue 19) when
their inter-broker listener is SSL: replication, transaction markers and the
metadata group's Raft traffic are encrypted, and each side requires the
other's certificate from the truststore. Clients stay on a PLAINTEXT
listener. A peer with no certificate, or one from another CA, is refused on
the Raft port and on the inter-broker listener."""

from __future__ import annotations

import socket
import ssl
import struct
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

import ck
from conftest import Broker, free_port, openssl, unique_topic, wait_until

T = 30


def make_ca(d: Path, name: str) -> None:
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}")


def make_peer_cert(d: Path, ca: str, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 usable as a server's and as a client's."""
    (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n"
                                   "extendedKeyUsage=serverAuth,clientAuth\n"
                                   "subjectAltName=IP:127.0.0.1\n")
    openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture
def tls_cluster(karnak_bin, tmp_path, request):
    d = tmp_path / "certs"
    d.mkdir()
    make_ca(d, "cluster-ca")
    make_ca(d, "rogue-ca")
    pem, key = make_peer_cert(d, "cluster-ca", "broker")
    rogue = make_peer_cert(d, "rogue-ca", "rogue")
    raft_ports = [free_port() for _ in range(3)]
    peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(raft_ports))
    cluster_id = "mtls-" + uuid.uuid4().hex
    nodes = []
    request.node._karnak_brokers = nodes
    for i in range(3):
        b = Broker(karnak_bin, tmp_path / f"node{i}", tmp_path / "logs", [], node_id=i)
        b.pick_ports()
        b.internal_port = free_port()
        b.raft_port = raft_ports[i]
        b.extra_args = [
            "--listeners", f"CLIENT://127.0.0.1:{b.kafka_port},"
                           f"INTERNAL://127.0.0.1:{b.internal_port}",
            "--listener-security-protocol-map", "CLIENT:PLAINTEXT,INTERNAL:SSL",
            "--inter-broker-listener-name", "INTERNAL",
            "--ssl-certificate-file", str(pem), "--ssl-key-file", str(key),
            "--ssl-truststore-file", str(d / "cluster-ca.pem"),
            "--cluster-peers", peers, "--cluster-id", cluster_id,
            "--sql-enabled", "false"]
        nodes.append(b)
    for b in nodes:
        b.spawn()
    for b in nodes:
        b.wait_ready()
    yield nodes, d, rogue
    for b in nodes:
        b.kill9()


def bootstrap(nodes):
    return ",".join(b.bootstrap for b in nodes if b.alive())


def refused(port: int, context: ssl.SSLContext | None, payload: bytes) -> bool:
    """Whether a peer gets no answer: the handshake fails, or the connection
    is closed with nothing sent back but a TLS alert (a record of type 21)."""
    with socket.create_connection(("127.0.0.1", port), timeout=T) as raw:
        try:
            s = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
            s.sendall(payload)
            got = b""
            while chunk := s.recv(4096):
                got += chunk
            return got == b"" or got[0] == 21
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True


def test_replication_and_raft_run_over_mutual_tls(tls_cluster):
    nodes, d, rogue = tls_cluster
    topic = unique_topic("mtls")
    a = ck.admin(bootstrap(nodes))
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)],
                    operation_timeout=T, request_timeout=T)[topic].result(T)

    def in_sync():
        md = a.list_topics(topic=topic, timeout=10).topics.get(topic)
        return (md is not None and md.error is None and len(md.partitions) == 3
                and all(len(p.isrs) == 3 for p in md.partitions.values()))
    wait_until(in_sync, T, msg="followers fetching over TLS")
    # Clients see the CLIENT listener only.
    brokers = a.list_topics(timeout=10).brokers
    assert {b.port for b in brokers.values()} == {b.kafka_port for b in nodes}

    p = ck.producer(bootstrap(nodes), acks="all")
    for i in range(300):
        p.produce(topic, f"v{i}".encode(), partition=i % 3)
    assert p.flush(T) == 0
    # Every record is on every replica: the high watermark moved with all
    # three in sync, over the inter-broker TLS connections.
    c = ck.consumer(bootstrap(nodes), **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, part, 0) for part in range(3)])
        got = []
        wait_until(lambda: got.extend(m.value() for m in c.consume(100, 0.5)
                                      if not m.error()) or len(got) >= 300, T,
                   msg="records back")
        assert sorted(got) == sorted(f"v{i}".encode() for i in range(300))
    finally:
        c.close()
    # A transaction across brokers: its markers go over TLS too.
    tx = ck.producer(bootstrap(nodes), **{"transactional.id": "mtls-" + uuid.uuid4().hex})
    tx.init_transactions(T)
    tx.begin_transaction()
    for part in range(3):
        tx.produce(topic, b"committed", partition=part)
    tx.commit_transaction(T)

    hello = b'{"Hello":{"cluster_id":"x","from":0}}'
    framed = struct.pack("!I", len(hello)) + hello
    # ApiVersions v0: header (key 18, version 0, correlation 1, no client id).
    header = struct.pack("!hhih", 18, 0, 1, -1)
    api_versions = struct.pack("!i", len(header)) + header
    b0 = nodes[0]
    # In plain text: nothing back on either port.
    assert refused(b0.raft_port, None, framed)
    assert refused(b0.internal_port, None, api_versions)
    # TLS without a client certificate, or with one from another CA.
    bare = ssl.create_default_context(cafile=str(d / "cluster-ca.pem"))
    other = ssl.create_default_context(cafile=str(d / "cluster-ca.pem"))
    other.load_cert_chain(str(rogue[0]), str(rogue[1]))
    for ctx in (bare, other):
        assert refused(b0.raft_port, ctx, framed)
        assert refused(b0.internal_port, ctx, api_versions)
    # The broker's own certificate is let in (the test is not vacuous).
    ok = ssl.create_default_context(cafile=str(d / "cluster-ca.pem"))
    ok.load_cert_chain(str(d / "broker.pem"), str(d / "broker.key"))
    with socket.create_connection(("127.0.0.1", b0.internal_port), timeout=T) as raw:
        with ok.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(api_versions)
            assert len(s.recv(4)) == 4
    log = "".join(p.read_text(errors="replace") for p in b0.log_paths)
    assert "refused a cluster connection: its TLS handshake failed" in log
    # The cluster is still whole after the refusals.
    assert in_sync()


def test_an_ssl_inter_broker_listener_needs_a_truststore(karnak_bin, tmp_path, certs):
    import subprocess
    pem, key = certs["server"]
    p1, p2 = free_port(), free_port()
    r = subprocess.run(
        [str(karnak_bin), "--data-dir", str(tmp_path / "d"), "--admin-addr", "127.0.0.1:0",
         "--sql-enabled", "false", "--node-id", "0",
         "--listeners", f"INTERNAL://127.0.0.1:{free_port()}",
         "--listener-security-protocol-map", "INTERNAL:SSL",
         "--inter-broker-listener-name", "INTERNAL",
         "--ssl-certificate-file", str(pem), "--ssl-key-file", str(key),
         "--cluster-peers", f"0@127.0.0.1:{p1},1@127.0.0.1:{p2}", "--cluster-id", "x"],
        capture_output=True, text=True, timeout=T)
    assert r.returncode != 0 and "--ssl-truststore-file" in r.stderr, r.stderr[-2000:]
