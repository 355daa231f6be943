"""Seed corpora for the fuzz targets from real clients' traffic.

Starts the built broker behind two recording relays (Kafka and SQL; the
broker advertises the relay, so every connection a client makes goes
through it), drives it with real clients (librdkafka through
confluent-kafka and kcat, kafka-python, aiokafka, psycopg and psql): every
codec, idempotent and transactional producers, consumer groups, admin
calls, SQL queries. Then writes:

  corpus/request/           request frames as clients sent them
  corpus/pg_frontend/       startup and session messages as SQL clients sent them
  corpus/record_batches/    segment files (the batches as producers sent them)
  corpus/columnar/, corpus/cleaner_records/   the same segments
  corpus/partition_dir/     whole partition directories, in the target's format
  corpus/producer_snapshot/ producer-state snapshots
  corpus/shard_record/      coordinator records (key length, key, value)
  corpus/metadata_files/    the metadata group's Raft log with its snapshot or state

Run with the compat tests' venv:
  compat-tests/.venv/bin/python fuzz/capture_corpus.py target/debug/karnak
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
sys.path.insert(0, str(FUZZ.parent / "compat-tests"))

import ck  # noqa: E402
from conftest import Broker, free_port  # noqa: E402

CORPUS = FUZZ / "corpus"
PER_KIND = 4  # frames kept per (api key, version, client)


def save(target: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


class Relay:
    """Accepts on a port, relays each connection to `upstream`, and hands
    the client's bytes of each connection to `record` when it ends."""

    def __init__(self, upstream: int, record):
        self.upstream = upstream
        self.record = record
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.sock.accept()
            server = socket.create_connection(("127.0.0.1", self.upstream))
            sent = bytearray()
            threading.Thread(target=self._pump, args=(client, server, sent, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None, False),
                             daemon=True).start()

    def _pump(self, src, dst, keep, from_client):
        try:
            while chunk := src.recv(65536):
                if keep is not None:
                    keep += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if from_client:
                self.record(bytes(keep))


kafka_kinds = defaultdict(int)
lock = threading.Lock()


def record_kafka(stream: bytes) -> None:
    at = 0
    while at + 4 <= len(stream):
        (size,) = struct.unpack(">i", stream[at:at + 4])
        frame = stream[at + 4:at + 4 + size]
        at += 4 + size
        if len(frame) < 8 or len(frame) < size:
            break
        key, version = struct.unpack(">hh", frame[:4])
        (cid_len,) = struct.unpack(">h", frame[8:10]) if len(frame) >= 10 else (-1,)
        client = frame[10:10 + max(cid_len, 0)][:12]
        with lock:
            kafka_kinds[(key, version, client)] += 1
            if kafka_kinds[(key, version, client)] > PER_KIND:
                continue
        save("request", frame)


def record_pg(stream: bytes) -> None:
    """The startup message (state 1: awaiting startup) and the typed
    messages after it (state 2: a started session) as two inputs."""
    if len(stream) < 8:
        return
    (size,) = struct.unpack(">i", stream[:4])
    save("pg_frontend", b"\x01" + stream[:size])
    if stream[size:]:
        save("pg_frontend", b"\x02" + stream[size:size + 60000])


def traffic(bootstrap: str, sql_port: int) -> None:
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        topic = f"seed-{codec}"
        ck.create_topic(bootstrap, topic, partitions=2)
        ck.produce_and_wait(bootstrap, topic,
                            [{"key": b"k%d" % (i % 7), "value": b"v" * (i % 300),
                              "headers": [("h", b"x")]} for i in range(500)],
                            **{"compression.type": codec, "linger.ms": 20})
        ck.consume_range(bootstrap, topic, 0, 0, 10)
    ck.create_topic(bootstrap, "seed-compact", config={"cleanup.policy": "compact"})
    ck.produce_and_wait(bootstrap, "seed-compact",
                        [{"key": b"k%d" % (i % 5), "value": None if i % 9 == 0 else b"x"}
                         for i in range(100)])
    # A transaction, committed and aborted, with offsets.
    from confluent_kafka import Consumer, Producer, TopicPartition
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "seed-txn"})
    p.init_transactions(30)
    for commit in (True, False):
        p.begin_transaction()
        for i in range(20):
            p.produce("seed-none", value=b"t%d" % i, partition=i % 2)
        p.send_offsets_to_transaction([TopicPartition("seed-none", 0, 5)],
                                      Consumer({"bootstrap.servers": bootstrap,
                                                "group.id": "seed-g"}).consumer_group_metadata())
        (p.commit_transaction if commit else p.abort_transaction)(30)
    # A consumer group, classic and KIP-848, committing.
    for protocol in ("classic", "consumer"):
        conf = {"bootstrap.servers": bootstrap, "group.id": f"seed-{protocol}",
                "auto.offset.reset": "earliest", "group.protocol": protocol}
        c = Consumer(conf)
        c.subscribe(["seed-gzip"])
        got = 0
        for _ in range(100):
            if c.poll(0.2) is not None:
                got += 1
            if got > 20:
                break
        c.commit(asynchronous=False)
        c.close()
    # Admin calls.
    a = ck.admin(bootstrap)
    from confluent_kafka.admin import ConfigResource
    for f in a.describe_configs([ConfigResource("topic", "seed-none")]).values():
        f.result(30)
    a.list_consumer_groups().result(30)
    for f in a.delete_topics(["seed-compact"]).values():
        f.result(30)
    # kafka-python (its own encoders) and aiokafka.
    import kafka
    kp = kafka.KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    for i in range(50):
        kp.send("seed-kp", key=b"k", value=b"kafka-python %d" % i)
    kp.flush()
    kc = kafka.KafkaConsumer("seed-kp", bootstrap_servers=bootstrap, group_id="seed-kp",
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    for _ in kc:
        pass
    kc.close()

    async def aio():
        import aiokafka
        pr = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
        await pr.start()
        for i in range(30):
            await pr.send_and_wait("seed-aio", b"aiokafka %d" % i)
        await pr.stop()
    asyncio.run(aio())
    subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "seed-kcat", "-z", "snappy"],
                   input=b"\n".join(b"kcat %d" % i for i in range(40)), check=True)
    subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "seed-kcat", "-e", "-q"],
                   check=True, capture_output=True)
    # SQL, through its relay.
    import psycopg
    with psycopg.connect(f"host=127.0.0.1 port={sql_port} user=seed dbname=seed",
                         autocommit=True) as conn:
        conn.execute('select count(*), max("offset") from "seed-gzip"').fetchall()
        conn.execute('select value from "seed-none" where "offset" > %s limit 5', (3,)).fetchall()
        conn.execute("select * from information_schema.tables").fetchall()
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(sql_port), "-U", "seed", "-d", "seed",
                    "-c", "\\dt", "-c", "select 1"], check=True, capture_output=True)


def from_data_dir(data: Path) -> None:
    for seg in data.rglob("*.log"):
        body = seg.read_bytes()[:1 << 20]
        if not body:
            continue
        if "__karnak_coordinator" in str(seg):
            shard_records(body)
            continue
        for t in ("record_batches", "columnar", "cleaner_records"):
            save(t, body)
    for log in data.rglob("raft.log"):
        body = log.read_bytes()[:65535]
        for name, parity in (("metadata-snapshot.json", 0), ("raft-state.json", 1)):
            f = log.parent / name
            if f.exists():
                save("metadata_files",
                     bytes([parity]) + struct.pack(">H", len(body)) + body + f.read_bytes())
    for snap in data.rglob("*.snapshot"):
        save("producer_snapshot", snap.read_bytes())
    names = ["00000000000000000000.log", "00000000000000000000.index",
             "00000000000000000000.timeindex", "00000000000000000000.snapshot",
             "00000000000000000000.txnindex", "00000000000000000100.log",
             "00000000000000000100.index", "leader-epoch-checkpoint",
             "log-start-offset-checkpoint", ".kafka_cleanshutdown"]
    for part in {p.parent for p in data.rglob("00000000000000000000.log")}:
        if "__karnak" in part.name:
            continue
        out = bytearray()
        for tag, name in enumerate(names):
            f = part / name
            if f.exists():
                body = f.read_bytes()[:65535]
                out += bytes([tag]) + struct.pack(">H", len(body)) + body
        save("partition_dir", bytes(out))


def varint(buf: bytes, at: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), at


def shard_records(log: bytes) -> None:
    """(u16 key length, key, value) of each uncompressed coordinator record."""
    at = 0
    kept = 0
    while at + 61 <= len(log) and kept < 40:
        (length,) = struct.unpack(">i", log[at + 8:at + 12])
        batch = log[at:at + 12 + length]
        at += 12 + length
        (attrs,) = struct.unpack(">h", batch[21:23])
        if attrs & 0x07 or attrs & 0x20:  # compressed, or a control batch
            continue
        pos = 61
        try:
            while pos < len(batch):
                size, pos = varint(batch, pos)
                rec = batch[pos:pos + size]
                pos += size
                r = 1
                _, r = varint(rec, r)  # timestamp delta
                _, r = varint(rec, r)  # offset delta
                klen, r = varint(rec, r)
                key = rec[r:r + max(klen, 0)]
                r += max(klen, 0)
                vlen, r = varint(rec, r)
                value = rec[r:r + max(vlen, 0)]
                save("shard_record", struct.pack(">H", len(key)) + key + value)
                kept += 1
        except IndexError:
            continue


def main() -> None:
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else FUZZ.parent / "target/debug/karnak")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kafka_port = free_port()
        kafka_relay = Relay(kafka_port, record_kafka)
        b = Broker(binary, tmp / "data", tmp / "logs",
                   ["--advertised-kafka-addr", f"127.0.0.1:{kafka_relay.port}"])
        b.kafka_port = kafka_port
        b.admin_port = free_port()
        b.sql_port = free_port()
        b.spawn()
        b.wait_ready()
        sql_relay = Relay(b.sql_port, record_pg)
        try:
            traffic(f"127.0.0.1:{kafka_relay.port}", sql_relay.port)
        finally:
            b.stop() if hasattr(b, "stop") else b.kill9()
        from_data_dir(tmp / "data")
    for t in sorted(p.name for p in CORPUS.iterdir()):
        print(f"{t}: {len(list((CORPUS / t).iterdir()))} seeds")


if __name__ == "__main__":
    main()
