#!/usr/bin/env python3
"""Failed logins against everyone else (issue 19), for benches/RESULTS.md:
one client process (from 127.0.0.2; the producer is on 127.0.0.1) makes
up to --rate failed SASL logins a second over
--connections at once (each a new connection, SaslHandshake,
SaslAuthenticate with a wrong password, answered after the broker's
failed-authentication delay, then closed) while a logged-in librdkafka producer writes as
fast as it can. Each round measures the producer alone, then beside a
PLAIN flood (the broker checks each password with PBKDF2), then beside a
SCRAM flood (a wrong proof: HMACs only), in one run on one broker.

Reported per phase: the producer's records/s and p99 delivery latency, the
failed logins/s the flood reached, and the broker's CPU seconds.

  compat-tests/.venv/bin/python benches/e2e/auth_flood_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compat-tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from conftest import Broker, free_port  # noqa: E402
import librdkafka_bench as lb  # noqa: E402
from tls_bench import kafka_call  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


def start(binary: Path, d: Path, per_ip: float | None) -> Broker:
    (d / "users.txt").write_text(f"{USER}:{PASSWORD}\nvictim:victim-password\n")
    b = Broker(binary, d / "data", d / "logs", [])
    b.pick_ports()
    b.sasl_port = free_port()
    b.extra_args = ["--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},"
                    f"SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}",
                    "--sasl-users-file", str(d / "users.txt"),
                    "--sasl-enabled-mechanisms", "SCRAM-SHA-256,PLAIN", "--sql-enabled", "false",
                    *([] if per_ip is None else ["--failed-authentication-rate-per-ip", str(per_ip)])]
    return b.start()


# The flooding client's own address: loopback, but not the producer's
# 127.0.0.1 (the broker limits failed logins per address).
FLOOD_FROM = ("127.0.0.2", 0)


def failed_login(port: int, mechanism: str) -> bool:
    """One failed login; True when the broker refused it (error 58)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=FLOOD_FROM) as s:
        mech = mechanism.encode()
        r = kafka_call(s, 17, 1, struct.pack(">h", len(mech)) + mech)
        if struct.unpack(">h", r[:2])[0] != 0:
            return False
        if mechanism == "PLAIN":
            token = f"\0{USER}\0wrong-{os.urandom(4).hex()}".encode()
        else:
            nonce = base64.b64encode(os.urandom(18)).decode()
            token = f"n,,n={USER},r={nonce}".encode()
            r = kafka_call(s, 36, 1, struct.pack(">i", len(token)) + token)
            if struct.unpack(">h", r[:2])[0] != 0:
                # Refused at the first message (its address over budget).
                return struct.unpack(">h", r[:2])[0] == 58
            msg_len = struct.unpack(">h", r[2:4])[0]
            at = 4 + max(msg_len, 0)
            n = struct.unpack(">i", r[at:at + 4])[0]
            server_first = r[at + 4:at + 4 + n].decode()
            combined = dict(p.split("=", 1) for p in server_first.split(","))["r"]
            proof = base64.b64encode(os.urandom(32)).decode()
            token = f"c=biws,r={combined},p={proof}".encode()
        r = kafka_call(s, 36, 1, struct.pack(">i", len(token)) + token)
        return struct.unpack(">h", r[:2])[0] == 58


def flood(port: int, mechanism: str, rate: float, seconds: float, connections: int, out) -> None:
    """Paced failed logins from one process over `connections` threads (a
    failed login is answered only after the broker's failed-authentication
    delay, so one connection at a time would not reach the rate); puts the
    rate reached."""
    done = [0] * connections
    t0 = time.monotonic()

    def worker(i: int):
        k = 0
        while (now := time.monotonic()) - t0 < seconds:
            ahead = t0 + (k * connections + i) / rate - now
            if ahead > 0:
                time.sleep(ahead)
            k += 1
            try:
                done[i] += failed_login(port, mechanism)
            except OSError:
                pass

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(sum(done) / (time.monotonic() - t0))


def produce_for(b, topic: str, seconds: float, size: int) -> dict:
    p = Producer({"bootstrap.servers": f"127.0.0.1:{b.sasl_port}",
                  "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                  "sasl.username": "victim", "sasl.password": "victim-password",
                  "linger.ms": 5, "acks": "all", "queue.buffering.max.messages": 20000})
    lat: list[float] = []
    payload = os.urandom(size)

    def cb(sent):
        def on(err, _m):
            if err is None:
                lat.append(time.monotonic() - sent)
        return on

    p.produce(topic, payload, on_delivery=cb(time.monotonic()))
    p.flush(30)  # logged in and the topic's leader known before the clock starts
    lat.clear()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            p.produce(topic, payload, on_delivery=cb(time.monotonic()))
        except BufferError:
            p.poll(0.005)
        p.poll(0)
    p.flush(30)
    took = time.monotonic() - t0
    lat.sort()
    return {"records_per_s": round(len(lat) / took),
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None}


def refusals(b) -> dict:
    """The broker's failed logins so far: checked, and refused unchecked
    (their address over --failed-authentication-rate-per-ip)."""
    text = urllib.request.urlopen(f"{b.admin_url}/metrics", timeout=10).read().decode()
    out = {"checked": 0.0, "unchecked": 0.0}
    for line in text.splitlines():
        if line.startswith("karnak_sasl_authentications_total{"):
            if 'result="failed"' in line:
                out["checked"] += float(line.rsplit(" ", 1)[1])
            elif 'result="unchecked"' in line:
                out["unchecked"] += float(line.rsplit(" ", 1)[1])
    return out


def phase(b, topic: str, mechanism, a) -> dict:
    cpu0 = lb.cpu_seconds(b.proc.pid)
    before = refusals(b)
    q = mp.Queue()
    proc = None
    if mechanism:
        proc = mp.Process(target=flood, args=(b.sasl_port, mechanism, a.rate, a.seconds + 2,
                                              a.connections, q))
        proc.start()
        time.sleep(1)  # the flood is running before the producer starts
    out = {"flood": mechanism or "none", **produce_for(b, topic, a.seconds, a.record_size)}
    if proc:
        proc.join(a.seconds + 30)
        out["failed_logins_per_s"] = round(q.get(timeout=5))
        after = refusals(b)
        out["checked"] = round(after["checked"] - before["checked"])
        out["unchecked"] = round(after["unchecked"] - before["unchecked"])
    out["broker_cpu_s"] = round(lb.cpu_seconds(b.proc.pid) - cpu0, 2)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", type=Path, default=lb.default_karnak())
    ap.add_argument("--rate", type=float, default=1000.0, help="failed logins per second to aim at")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=200,
                    help="failed logins in flight at once (each waits out the failure delay)")
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-ip-rate", type=float, default=None,
                    help="the broker's --failed-authentication-rate-per-ip (default: its own, 10)")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="karnak-auth-flood."))
    b = None
    try:
        b = start(a.bin, d, a.per_ip_rate)
        topic = f"flood-{os.urandom(4).hex()}"
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        print(f"# {a.bin}: {a.rate:.0f} failed logins/s aimed at, {a.seconds} s phases, "
              f"per-ip rate {a.per_ip_rate if a.per_ip_rate is not None else 'default'}, "
              f"{a.rounds} rounds, cores {os.cpu_count()}", flush=True)
        for r in range(a.rounds):
            for mechanism in (None, "PLAIN", "SCRAM-SHA-256"):
                print(json.dumps({"round": r, **phase(b, topic, mechanism, a)}), flush=True)
        del admin
        b.stop()
    finally:
        if b is not None and b.alive():
            b.kill9()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
