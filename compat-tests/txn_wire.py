"""Raw Kafka wire helpers for the idempotence and transaction tests: a
connection, Produce v3 with a transactional id, record batches with producer
fields and control batches, Fetch v4 with an isolation level, ListOffsets v2,
InitProducerId, DescribeProducers, and the error codes they answer with."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import kafka_wire as w

# Kafka error codes (kafka_wire.py has the generic ones).
INVALID_REQUEST = 42
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
INVALID_RECORD = 87
PRODUCER_FENCED = 90
TRANSACTIONAL_ID_NOT_FOUND = 105

API_INIT_PRODUCER_ID = 22
API_ADD_PARTITIONS_TO_TXN = 24
API_END_TXN = 26
API_DESCRIBE_PRODUCERS = 61
API_DESCRIBE_TRANSACTIONS = 65
API_LIST_TRANSACTIONS = 66

ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
CONTROL_ABORT = 0
CONTROL_COMMIT = 1


# --------------------------------------------------------------------------
# Raw wire helpers.
# --------------------------------------------------------------------------


class Wire:
    """One connection; requests answered in order. `call` returns a Reader
    positioned after the response header."""

    def __init__(self, bootstrap, timeout=20.0):
        self.sock = w.connect(bootstrap, timeout=timeout)
        self.timeout = timeout
        self.cid = 0

    def send(self, api, version, body, flexible=False):
        self.cid += 1
        hdr = (w.header_v2 if flexible else w.header_v1)(api, version, self.cid)
        self.sock.sendall(w.frame(hdr + body))
        return self.cid

    def recv(self, cid, flexible=False):
        r = w.Reader(w.recv_frame(self.sock, self.timeout))
        got = r.i32()
        assert got == cid, f"correlation id {got}, expected {cid}"
        if flexible:
            r.skip_tags()  # response header v1
        return r

    def call(self, api, version, body, flexible=False):
        return self.recv(self.send(api, version, body, flexible), flexible)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def compact_array(items):
    return w.uvarint(len(items) + 1) + b"".join(items)


def now_ms():
    return int(time.time() * 1000)


def batch(values, pid=-1, epoch=-1, seq=-1, transactional=False, control=False,
          base_timestamp=None, raw_records=None):
    """A v2 RecordBatch (uncompressed) with producer fields and attributes."""
    ts = now_ms() if base_timestamp is None else base_timestamp
    if raw_records is None:
        recs = b"".join(w.encode_record(i, 0, None, v) for i, v in enumerate(values))
        n = len(values)
    else:
        recs, n = raw_records
    attrs = (ATTR_TRANSACTIONAL if transactional else 0) | (ATTR_CONTROL if control else 0)
    after_crc = (
        w.i16(attrs) + w.i32(n - 1) + w.i64(ts) + w.i64(ts)
        + w.i64(pid) + w.i16(epoch) + w.i32(seq) + w.i32(n) + recs
    )
    return (
        w.i64(0) + w.i32(4 + 1 + 4 + len(after_crc)) + w.i32(-1) + w.i8(2)
        + struct.pack(">I", w.crc32c(after_crc)) + after_crc
    )


def control_batch(pid, epoch, kind, transactional=True):
    """What a coordinator writes: one marker record (key: version, type;
    value: version, coordinator epoch)."""
    rec = w.encode_record(0, 0, w.i16(0) + w.i16(kind), w.i16(0) + w.i32(0))
    return batch(None, pid, epoch, -1, transactional=transactional, control=True,
                 raw_records=(rec, 1))


@dataclass
class Batch:
    base_offset: int
    last_offset: int
    attributes: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    count: int
    records: list = field(default_factory=list)  # [(offset, key, value)], uncompressed only

    @property
    def transactional(self):
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def control(self):
        return bool(self.attributes & ATTR_CONTROL)

    def control_type(self):
        assert self.control and self.records
        return struct.unpack(">hh", self.records[0][1])[1]


def parse_batches(data):
    out = []
    pos = 0
    data = data or b""
    while pos + 12 <= len(data):
        base, blen = struct.unpack(">qi", data[pos:pos + 12])
        end = pos + 12 + blen
        if end > len(data):
            break
        b = data[pos:end]
        assert b[16] == 2, f"magic {b[16]}"
        (crc,) = struct.unpack(">I", b[17:21])
        assert w.crc32c(b[21:]) == crc, "fetched batch has a bad CRC"
        attrs, last_delta, first_ts, _max_ts, pid, epoch, seq, count = struct.unpack(
            ">hiqqqhii", b[21:61])
        bt = Batch(base, base + last_delta, attrs, pid, epoch, seq, count)
        if attrs & 0x7 == 0:
            r = w._VarReader(b, 61)
            for _ in range(count):
                length = r.varint()
                start = r.pos
                r.pos += 1
                r.varint()  # timestamp delta
                off_delta = r.varint()
                klen = r.varint()
                key = None if klen < 0 else r.take(klen)
                vlen = r.varint()
                value = None if vlen < 0 else r.take(vlen)
                for _ in range(r.varint()):
                    r.take(r.varint())
                    hl = r.varint()
                    if hl >= 0:
                        r.take(hl)
                assert r.pos == start + length
                bt.records.append((base + off_delta, key, value))
        out.append(bt)
        pos = end
    return out


def init_producer_id(conn, transactional_id=None, timeout_ms=60000, version=1,
                     producer_id=-1, epoch=-1):
    """-> (error, producer_id, epoch). v0-1 classic, v2+ flexible (v3+ with the
    current producer id and epoch, KIP-360)."""
    if version >= 2:
        body = w.compact_string(transactional_id) + w.i32(timeout_ms)
        if version >= 3:
            body += w.i64(producer_id) + w.i16(epoch)
        body += w.EMPTY_TAGS
        r = conn.call(API_INIT_PRODUCER_ID, version, body, flexible=True)
    else:
        r = conn.call(API_INIT_PRODUCER_ID, version, w.string(transactional_id) + w.i32(timeout_ms))
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()


def produce_body(topic_parts, transactional_id=None, acks=-1, timeout_ms=10000):
    """topic_parts: [(topic, partition, batch_bytes)] -> Produce v3 body."""
    by_topic = {}
    for t, p, data in topic_parts:
        by_topic.setdefault(t, []).append(w.i32(p) + w.nbytes(data))
    return (w.string(transactional_id) + w.i16(acks) + w.i32(timeout_ms)
            + w.array([w.string(t) + w.array(ps) for t, ps in by_topic.items()]))


def produce(conn, topic, partition, data, transactional_id=None):
    """-> (error, base_offset) of one partition (Produce v3)."""
    r = conn.call(w.API_PRODUCE, 3, produce_body([(topic, partition, data)], transactional_id))
    return parse_produce(r)[(topic, partition)]


def parse_produce(r):
    """Produce v3 response body -> {(topic, partition): (error, base_offset)}."""
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p, err, base, _lat = r.i32(), r.i16(), r.i64(), r.i64()
            out[(t, p)] = (err, base)
    return out


@dataclass
class FetchResult:
    error: int
    high_watermark: int
    last_stable_offset: int
    aborted: list  # [(producer_id, first_offset)] or None
    batches: list

    def records(self, include_control=False):
        return [rec for b in self.batches if include_control or not b.control for rec in b.records]


def fetch(conn, topic, partition, offset=0, isolation=0, max_wait_ms=0, min_bytes=0):
    """Fetch v4 of one partition with an isolation level (0 read_uncommitted,
    1 read_committed)."""
    body = (
        w.i32(-1) + w.i32(max_wait_ms) + w.i32(min_bytes) + w.i32(50 << 20) + w.i8(isolation)
        + w.array([w.string(topic) + w.array([w.i32(partition) + w.i64(offset) + w.i32(10 << 20)])])
    )
    r = conn.call(w.API_FETCH, 4, body)
    r.i32()  # throttle
    out = None
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err, hw, lso = r.i16(), r.i64(), r.i64()
            n = r.i32()
            aborted = None if n < 0 else [(r.i64(), r.i64()) for _ in range(n)]
            records = r.nbytes()
            if (t, p) == (topic, partition):
                out = FetchResult(err, hw, lso, aborted, parse_batches(records))
    assert out is not None, "partition missing from the fetch response"
    return out


def fetch_all(conn, topic, partition, isolation=0):
    """Every batch from offset 0 up to the end the isolation level allows."""
    res = fetch(conn, topic, partition, 0, isolation)
    assert res.error == w.NONE, res
    batches = list(res.batches)
    aborted = list(res.aborted or [])
    end = res.last_stable_offset if isolation else res.high_watermark
    while batches and batches[-1].last_offset + 1 < end:
        more = fetch(conn, topic, partition, batches[-1].last_offset + 1, isolation)
        assert more.error == w.NONE and more.batches, more
        batches += more.batches
        aborted += [a for a in (more.aborted or []) if a not in aborted]
    return FetchResult(res.error, res.high_watermark, res.last_stable_offset, aborted, batches)


def list_offset(conn, topic, partition, timestamp=-1, isolation=0):
    """ListOffsets v2 -> (error, offset)."""
    body = (w.i32(-1) + w.i8(isolation)
            + w.array([w.string(topic) + w.array([w.i32(partition) + w.i64(timestamp)])]))
    r = conn.call(w.API_LIST_OFFSETS, 2, body)
    r.i32()  # throttle
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p, err, _ts, off = r.i32(), r.i16(), r.i64(), r.i64()
            if (t, p) == (topic, partition):
                return err, off
    raise AssertionError("partition missing from the ListOffsets response")


def describe_producers(conn, topic, partitions):
    """DescribeProducers v0 -> {partition: (error, [dict(producer state)])}."""
    body = compact_array([w.compact_string(topic)
                          + compact_array([w.i32(p) for p in partitions]) + w.EMPTY_TAGS]) + w.EMPTY_TAGS
    r = conn.call(API_DESCRIBE_PRODUCERS, 0, body, flexible=True)
    r.i32()
    out = {}
    for _ in range(r.uvarint() - 1):
        name = r.take(r.uvarint() - 1).decode()
        for _ in range(r.uvarint() - 1):
            p, err = r.i32(), r.i16()
            n = r.uvarint()
            if n:
                r.take(n - 1)  # error message
            producers = []
            for _ in range(r.uvarint() - 1):
                producers.append(dict(producer_id=r.i64(), producer_epoch=r.i32(),
                                      last_sequence=r.i32(), last_timestamp=r.i64(),
                                      coordinator_epoch=r.i32(),
                                      current_txn_start_offset=r.i64()))
                r.skip_tags()
            r.skip_tags()
            if name == topic:
                out[p] = (err, producers)
        r.skip_tags()
    r.skip_tags()
    return out


def hw(conn, topic, partition):
    err, off = list_offset(conn, topic, partition)
    assert err == w.NONE
    return off


# --------------------------------------------------------------------------
# confluent-kafka and kafka-python idempotent producers.
# --------------------------------------------------------------------------
