"""Seeds for the fuzz targets capture_corpus.py cannot record from traffic:

  corpus/decompress/    the compressed record sections of the batches real
                        producers sent (librdkafka's gzip, snappy, lz4 and
                        zstd, from corpus/record_batches/), with the target's
                        codec byte in front
  corpus/message_set/   magic 0 and 1 message sets as clients before Kafka
                        0.11 wrote them: plain and gzip-wrapped, keyed and
                        not, null values, timestamps (built here to the
                        format in Kafka's protocol guide, "Message sets")
  corpus/subscription/  ConsumerProtocolSubscription v0 to v3 (topics, user
                        data, owned partitions, generation, rack)
  corpus/broker_requests/
                        a byte choosing the broker (0: PLAINTEXT, 1: SASL),
                        then one connection's bytes: each captured request
                        frame (corpus/request/) with its size prefix, per
                        client id all of its frames in one connection
                        (ApiVersions first); on the SASL broker, PLAIN
                        logins as admin and alice before such a
                        connection, and SCRAM client-first messages

Python's standard library only:
  python3 fuzz/seed_corpus.py
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
CORPUS = FUZZ / "corpus"
HEADER = 61  # a v2 batch header
# Kafka's codec ids (attributes & 7) to the decompress target's first byte.
TARGET_CODEC = {1: 0, 2: 1, 3: 2, 4: 3}


def save(target: str, data: bytes):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def record_sections():
    """(codec, compressed records section) of every captured batch."""
    for f in sorted((CORPUS / "record_batches").iterdir()):
        b = f.read_bytes()
        pos = 0
        while pos + HEADER <= len(b):
            length = struct.unpack(">i", b[pos + 8:pos + 12])[0]
            if length < HEADER - 12 or pos + 12 + length > len(b):
                break
            codec = struct.unpack(">h", b[pos + 21:pos + 23])[0] & 7
            if codec in TARGET_CODEC:
                yield codec, b[pos + HEADER:pos + 12 + length]
            pos += 12 + length


def nbytes(b: bytes | None) -> bytes:
    return struct.pack(">i", -1) if b is None else struct.pack(">i", len(b)) + b


def message(offset: int, magic: int, key: bytes | None, value: bytes | None,
            attributes: int = 0, timestamp: int = 1_700_000_000_000) -> bytes:
    body = struct.pack(">bb", magic, attributes)
    if magic == 1:
        body += struct.pack(">q", timestamp)
    body += nbytes(key) + nbytes(value)
    inner = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF) + body
    return struct.pack(">qi", offset, len(inner)) + inner


def message_sets():
    for magic in (0, 1):
        plain = b"".join(message(i, magic, f"k{i}".encode() if i % 2 else None,
                                 None if i == 3 else f"value-{i}".encode() * (i + 1))
                         for i in range(5))
        yield plain
        # A gzip wrapper: the inner set's offsets are relative (0..n-1) in
        # magic 1, absolute in magic 0; the wrapper carries the last offset.
        wrapped = gzip.compress(plain)
        yield message(4, magic, None, wrapped, attributes=1)
        # Two wrappers in a row, and a set cut inside its last message.
        yield message(4, magic, None, wrapped, attributes=1) + message(9, magic, None, wrapped,
                                                                        attributes=1)
        yield plain[:-7]


def string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def subscriptions():
    topics = ["orders", "payments", "a" * 249]
    for version in range(4):
        out = struct.pack(">h", version)
        out += struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
        out += nbytes(b"user-data" if version % 2 else None)
        if version >= 1:
            out += struct.pack(">i", 1) + string("orders") + struct.pack(">iii", 2, 0, 3)
        if version >= 2:
            out += struct.pack(">i", 7)
        if version >= 3:
            out += string("rack-a")
        yield out
    yield struct.pack(">hi", 0, 0) + nbytes(None)  # no topics


def request(key: int, version: int, body: bytes, correlation: int = 1) -> bytes:
    """A size-prefixed request frame with a v1 header (client id "seed")."""
    frame = struct.pack(">hhi", key, version, correlation) + string("seed") + body
    return struct.pack(">i", len(frame)) + frame


def sasl_login(mechanism: str, token: bytes) -> bytes:
    """SaslHandshake v1, then SaslAuthenticate v1 carrying `token`."""
    return (request(17, 1, string(mechanism))
            + request(36, 1, struct.pack(">i", len(token)) + token, 2))


def connections():
    """(broker, bytes) of connections as clients open them."""
    frames = [p.read_bytes() for p in sorted((CORPUS / "request").iterdir())]
    framed = [struct.pack(">i", len(f)) + f for f in frames]
    sessions = []
    by_client: dict[bytes, list[tuple[int, bytes]]] = {}
    for f, whole in zip(frames, framed):
        if len(f) < 10:
            continue
        (key,) = struct.unpack(">h", f[:2])
        (id_len,) = struct.unpack(">h", f[8:10])
        client = f[10:10 + id_len] if id_len > 0 else b""
        # ApiVersions (18) first, as clients open with it.
        by_client.setdefault(client, []).append((key != 18, whole))
    for requests in by_client.values():
        if len(requests) > 1:
            sessions.append(b"".join(w for _, w in sorted(requests, key=lambda r: r[0])))
    for c in framed + sessions:
        yield 0, c
    for user in ("admin", "alice"):
        login = sasl_login("PLAIN", f"\0{user}\0{user}-secret".encode())
        yield 1, login
        for c in sessions:
            yield 1, login + c
    yield 1, sasl_login("PLAIN", b"\0alice\0wrong")
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        yield 1, sasl_login(mechanism, b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")


def main():
    n = {"decompress": 0, "message_set": 0, "subscription": 0, "broker_requests": 0}
    for which, c in connections():
        save("broker_requests", bytes([which]) + c)
        n["broker_requests"] += 1
    for codec, section in record_sections():
        save("decompress", bytes([TARGET_CODEC[codec]]) + section)
        n["decompress"] += 1
    for s in message_sets():
        save("message_set", s)
        n["message_set"] += 1
    for s in subscriptions():
        save("subscription", s)
        n["subscription"] += 1
    print(n)


if __name__ == "__main__":
    main()
