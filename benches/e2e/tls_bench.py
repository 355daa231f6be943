#!/usr/bin/env python3
"""What TLS and SASL cost (issue 19), for benches/RESULTS.md: one broker
with PLAINTEXT, SSL and SASL_SSL (SCRAM-SHA-256) listeners, in one run:

- produce and consume throughput through librdkafka (confluent-kafka) on
  each listener, with the broker's CPU seconds per GB (plaintext fetch is
  sent with sendfile; TLS fetch is copied through the broker);
- TLS handshakes per second and SCRAM logins per second (two client
  threads on raw sockets, Python's ssl module and hashlib).

Certificates are made with the openssl command. Bounded in time.

  compat-tests/.venv/bin/python benches/e2e/tls_bench.py --count 300000 --rounds 3
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compat-tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import librdkafka_bench as lb  # noqa: E402
from conftest import Broker, free_port, leaf, openssl  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


def certificates(d: Path) -> dict:
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench-ca")
    return {"ca": d / "ca.pem", "server": leaf(d, "server", "bench", client=False)}


def start(binary: Path, d: Path, certs) -> Broker:
    (d / "users.txt").write_text(f"{USER}:{PASSWORD}\n")
    b = Broker(binary, d / "data", d / "logs", [])
    b.pick_ports()
    b.ssl_port, b.sasl_port = free_port(), free_port()
    pem, key = certs["server"]
    b.extra_args = ["--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},SSL://127.0.0.1:{b.ssl_port},"
                    f"SASL_SSL://127.0.0.1:{b.sasl_port}",
                    "--ssl-certificate-file", str(pem), "--ssl-key-file", str(key),
                    "--sasl-users-file", str(d / "users.txt"), "--sql-enabled", "false"]
    return b.start()


def client_conf(b, certs, kind: str) -> dict:
    if kind == "PLAINTEXT":
        return {"bootstrap.servers": b.bootstrap}
    c = {"ssl.ca.location": str(certs["ca"])}
    if kind == "SSL":
        return {**c, "bootstrap.servers": f"127.0.0.1:{b.ssl_port}", "security.protocol": "SSL"}
    return {**c, "bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": USER, "sasl.password": PASSWORD}


def throughput(b, certs, kind: str, count: int, size: int) -> dict:
    conf = client_conf(b, certs, kind)
    topic = f"bench-{kind.lower()}-{os.urandom(4).hex()}"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({**conf, "acks": "1", "linger.ms": 5, "batch.size": 1048576,
                  "queue.buffering.max.kbytes": 1048576, "queue.buffering.max.messages": 1000000})
    value = os.urandom(size)
    cpu0, t0 = lb.cpu_seconds(b.proc.pid), time.perf_counter()
    for i in range(count):
        while True:
            try:
                p.produce(topic, value, partition=0)
                break
            except BufferError:
                p.poll(0.005)
        if i % 10000 == 0:
            p.poll(0)
    assert p.flush(300) == 0
    produce_s, produce_cpu = time.perf_counter() - t0, lb.cpu_seconds(b.proc.pid) - cpu0
    c = Consumer({**conf, "group.id": "bench-unused", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    cpu0, t0 = lb.cpu_seconds(b.proc.pid), time.perf_counter()
    deadline = t0 + 600
    while got < count and time.perf_counter() < deadline:
        got += sum(1 for m in c.consume(num_messages=100000, timeout=1.0) if m.error() is None)
    consume_s, consume_cpu = time.perf_counter() - t0, lb.cpu_seconds(b.proc.pid) - cpu0
    c.close()
    gb = count * size / 1e9
    return {"listener": kind, "produce_mb_s": round(count * size / 1e6 / produce_s, 1),
            "produce_cpu_s_per_gb": round(produce_cpu / gb, 2),
            "consume_mb_s": round(count * size / 1e6 / consume_s, 1),
            "consume_cpu_s_per_gb": round(consume_cpu / gb, 2), "consumed": got}


def rate(work, seconds: float, threads: int = 2) -> float:
    """Completed `work()` calls per second over `seconds`, in `threads` threads."""
    done = [0] * threads
    stop = time.monotonic() + seconds

    def loop(i):
        while time.monotonic() < stop:
            work()
            done[i] += 1

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.monotonic() - t0)


def kafka_call(sock, api_key: int, version: int, body: bytes) -> bytes:
    client = b"bench"
    header = struct.pack(">hhih", api_key, version, 1, len(client)) + client
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)[4:]  # after the correlation id


def recv_exact(sock, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def scram_login(ctx, port: int):
    """A SASL_SSL connection, SaslHandshake v1 and a SCRAM-SHA-256 exchange (SaslAuthenticate v1)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        mech = b"SCRAM-SHA-256"
        r = kafka_call(s, 17, 1, struct.pack(">h", len(mech)) + mech)
        assert struct.unpack(">h", r[:2])[0] == 0, r
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n={USER},r={nonce}"

        def authenticate(token: bytes) -> bytes:
            r = kafka_call(s, 36, 1, struct.pack(">i", len(token)) + token)
            code = struct.unpack(">h", r[:2])[0]
            assert code == 0, code
            msg_len = struct.unpack(">h", r[2:4])[0]
            at = 4 + max(msg_len, 0)
            n = struct.unpack(">i", r[at:at + 4])[0]
            return r[at + 4:at + 4 + n]

        server_first = authenticate(f"n,,{first_bare}".encode()).decode()
        attrs = dict(p.split("=", 1) for p in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth = f"{first_bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored, auth, "sha256").digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
        authenticate(f"{without_proof},p={proof}".encode())


def tls_handshake(ctx, port: int):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", type=Path, default=lb.default_karnak())
    ap.add_argument("--count", type=int, default=300_000)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="per handshake/login rate measurement")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="karnak-tls-bench."))
    b = None
    try:
        certs = certificates(d)
        b = start(a.bin, d, certs)
        print(f"# {a.bin}: {a.count} x {a.record_size} B records per listener, {a.rounds} rounds", flush=True)
        ctx = ssl.create_default_context(cafile=str(certs["ca"]))
        for r in range(a.rounds):
            # The order rotates each round: a run pays for the writeback of the one before.
            kinds = ["PLAINTEXT", "SSL", "SASL_SSL"]
            for kind in kinds[r % 3:] + kinds[:r % 3]:
                print(json.dumps({"round": r, **throughput(b, certs, kind, a.count, a.record_size)}),
                      flush=True)
            print(json.dumps({
                "round": r,
                "tls_handshakes_per_s": round(rate(lambda: tls_handshake(ctx, b.ssl_port), a.seconds)),
                "scram_logins_per_s": round(rate(lambda: scram_login(ctx, b.sasl_port), a.seconds)),
            }), flush=True)
        b.stop()
    finally:
        if b is not None and b.alive():
            b.kill9()  # a failed run leaves no broker behind
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
