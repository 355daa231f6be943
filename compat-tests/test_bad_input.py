"""Malformed and hostile input over raw sockets. After every case the broker
must still serve a real client, and data acknowledged before must be intact."""

from __future__ import annotations

import socket
import struct
import time

import pytest

import ck
import kafka_wire as w
from conftest import unique_topic

SMALL_MAX = 1048576


@pytest.fixture
def seeded(broker):
    """A broker with a 1-partition topic holding 10 acked records."""
    topic = unique_topic("seed")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    values = [b"seed-%d" % i for i in range(10)]
    offs = ck.produce_and_wait(broker.bootstrap, topic,
                               [{"value": v, "partition": 0} for v in values])
    assert [o for _, o in offs] == list(range(10))
    return broker, topic, values


def assert_healthy(broker, topic=None, values=None):
    """Broker process alive, a fresh real client round trip works, and the
    previously acknowledged records are intact."""
    assert broker.alive(), f"broker died\n{broker.log_tail()}"
    ck.round_trip(broker.bootstrap)
    if topic is not None:
        assert ck.watermarks(broker.bootstrap, topic, 0) == (0, len(values))
        got = ck.consume_range(broker.bootstrap, topic, 0, 0, len(values))
        assert [m.value() for m in got] == values


def list_offsets_latest(bootstrap, topic, partition=0):
    _, res = w.parse_list_offsets_v1(
        w.roundtrip(bootstrap, w.list_offsets_v1(7, topic, partition, -1)))
    err, _, off = res[(topic, partition)]
    assert err == w.NONE
    return off


# ----------------------------------------------------------------- framing


@pytest.mark.parametrize("size", [-1, -100, -(2**31)])
def test_negative_size_prefix_closes_connection(seeded, size):
    broker, topic, values = seeded
    with w.connect(broker.bootstrap) as s:
        s.sendall(struct.pack(">i", size) + b"\x00" * 16)
        w.wait_closed(s)
    assert_healthy(broker, topic, values)


def test_oversized_frame_closed_without_reading_it(broker_factory):
    broker = broker_factory("--socket-request-max-bytes", str(SMALL_MAX))
    topic = unique_topic("seed")
    ck.create_topic(broker.bootstrap, topic)
    values = [b"a", b"b"]
    ck.produce_and_wait(broker.bootstrap, topic, [{"value": v, "partition": 0} for v in values])

    # a bystander connection opened before the bad one must keep working
    bystander = w.connect(broker.bootstrap)
    # 2 MiB announced, only the first bytes sent: the broker must close at
    # once instead of waiting for (or allocating) the body.
    with w.connect(broker.bootstrap) as s:
        s.sendall(struct.pack(">i", 2 * 1024 * 1024) + w.api_versions_v0_request(1)[:8])
        t0 = time.monotonic()
        w.wait_closed(s, timeout=10)
        assert time.monotonic() - t0 < 10
    # same with the largest positive size
    with w.connect(broker.bootstrap) as s:
        s.sendall(struct.pack(">i", 2**31 - 1))
        w.wait_closed(s, timeout=10)

    bystander.sendall(w.frame(w.api_versions_v0_request(42)))
    cid, err, apis = w.parse_api_versions_v0(w.recv_frame(bystander))
    assert (cid, err) == (42, 0) and 0 in apis
    bystander.close()

    # a request just under the limit is still accepted (a big produce)
    big = b"z" * (SMALL_MAX - 4096)
    offs = ck.produce_and_wait(broker.bootstrap, topic, [{"value": big, "partition": 0}],
                               **{"message.max.bytes": 2 * SMALL_MAX})
    assert offs == [(0, 2)]
    assert_healthy(broker, topic, values + [big])


def test_oversized_frame_default_limit(seeded):
    broker, topic, values = seeded
    with w.connect(broker.bootstrap) as s:
        s.sendall(struct.pack(">i", 104857600 + 1) + b"\x00\x12\x00\x00")
        w.wait_closed(s, timeout=10)
    assert_healthy(broker, topic, values)


def test_truncated_frame_then_disconnect(seeded):
    broker, topic, values = seeded
    for partial in (b"", b"\x00", b"\x00\x12\x00\x00\x00\x00"):
        with w.connect(broker.bootstrap) as s:
            s.sendall(struct.pack(">i", 100) + partial)
    # half a size prefix
    with w.connect(broker.bootstrap) as s:
        s.sendall(b"\x00\x00")
    assert_healthy(broker, topic, values)


@pytest.mark.parametrize("body", [
    b"\x00\x12",  # api key only
    b"\x00\x12\x00\x00\x00",  # api key, version, part of the correlation id
    b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x20ab",  # client id length 32, 2 bytes present
    b"\x00\x00\x00\x03\x00\x00\x00\x02\xff\xff\x00",  # Produce v3 body cut short
    b"\x00\x01\x00\x04\x00\x00\x00\x03\xff\xff\x00\x00\x00\x01",  # Fetch v4 body cut short
])
def test_frame_cut_inside_request_closes_connection(seeded, body):
    broker, topic, values = seeded
    with w.connect(broker.bootstrap) as s:
        s.sendall(w.frame(body))
        got = w.wait_closed(s, timeout=10)
        if got:
            # Tolerated only if it is a well-formed error response; Kafka closes.
            (size,) = struct.unpack(">i", got[:4])
            assert size == len(got) - 4, "partial garbage before close"
    assert_healthy(broker, topic, values)


def test_unknown_api_key_closes_connection(seeded):
    broker, topic, values = seeded
    with w.connect(broker.bootstrap) as s:
        s.sendall(w.frame(w.header_v1(999, 0, 5)))
        got = w.wait_closed(s, timeout=10)
        assert got == b"", f"expected a close, got a {len(got)}-byte answer"
    assert_healthy(broker, topic, values)


def test_garbage_bytes(seeded):
    broker, topic, values = seeded
    import random
    rnd = random.Random(1234)
    for i in range(20):
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
        with w.connect(broker.bootstrap) as s:
            s.sendall(w.frame(body))
            try:
                w.wait_closed(s, timeout=2)
            except AssertionError:
                # A random body can happen to be a valid request: then the
                # broker must still answer it; the connection may stay open.
                pass
    assert_healthy(broker, topic, values)


# ---------------------------------------------------------- ApiVersions


def test_api_versions_unknown_version_gets_v0_error_response(seeded):
    broker, topic, values = seeded
    with w.connect(broker.bootstrap) as s:
        s.sendall(w.frame(w.api_versions_v0_request(1234, version=127)))
        data = w.recv_frame(s)
        cid, err, apis = w.parse_api_versions_v0(data)
        assert cid == 1234
        assert err == w.UNSUPPORTED_VERSION
        assert 18 in apis and apis[18][0] == 0, apis
        assert 0 in apis and 1 in apis, apis
        # the connection stays usable: a supported version works next
        s.sendall(w.frame(w.api_versions_v0_request(1235, version=0)))
        cid, err, apis0 = w.parse_api_versions_v0(w.recv_frame(s))
        assert (cid, err) == (1235, 0)
        assert apis0 == apis
    assert_healthy(broker, topic, values)


def test_api_versions_v3_flexible(seeded):
    broker, topic, values = seeded
    data = w.roundtrip(broker.bootstrap, w.api_versions_v3_request(77))
    cid, err, apis, throttle = w.parse_api_versions_v3(data)
    assert cid == 77 and err == 0
    assert throttle >= 0
    assert apis[0][0] == 0, f"Produce min version {apis[0]}"
    assert apis[0][1] >= 3
    # Fetch: any min up to 4 (Kafka 4 itself starts at 4), the tests use v4
    assert 1 in apis and apis[1][0] <= 4 <= apis[1][1], apis.get(1)
    assert 18 in apis and apis[18][1] >= 3
    for k in (2, 3, 19, 20, 60):  # ListOffsets, Metadata, CreateTopics, DeleteTopics, DescribeCluster
        assert k in apis, f"api {k} missing from {sorted(apis)}"
    for k, (lo, hi) in apis.items():
        assert 0 <= lo <= hi, (k, lo, hi)
    # v0 and v3 agree on the table
    _, err0, apis0 = w.parse_api_versions_v0(w.roundtrip(broker.bootstrap,
                                                         w.api_versions_v0_request(78)))
    assert err0 == 0 and apis0 == apis
    assert_healthy(broker, topic, values)


def test_metadata_unsupported_version(seeded):
    broker, topic, values = seeded
    _, _, apis = w.parse_api_versions_v0(w.roundtrip(broker.bootstrap,
                                                     w.api_versions_v0_request(1)))
    too_high = apis[3][1] + 1
    with w.connect(broker.bootstrap) as s:
        s.sendall(w.frame(w.metadata_v1_request(4242, [topic], version=too_high)))
        # Either an UNSUPPORTED_VERSION answer or a close; never silence.
        try:
            data = w.recv_frame(s, timeout=10)
        except ConnectionError:
            data = None  # closed (Kafka's behaviour)
        if data is not None:
            (cid,) = struct.unpack(">i", data[:4])
            assert cid == 4242
            assert struct.pack(">h", w.UNSUPPORTED_VERSION) in data[4:], data
    assert_healthy(broker, topic, values)


# ---------------------------------------------------------------- Produce


def produce_raw(bootstrap, topic, partition, batch, acks=-1, cid=11):
    data = w.roundtrip(bootstrap, w.produce_v3(cid, topic, partition, batch, acks=acks))
    rcid, res = w.parse_produce_v3(data)
    assert rcid == cid
    assert (topic, partition) in res, res
    return res[(topic, partition)]


def test_raw_produce_v3_and_fetch_v4_round_trip(seeded):
    broker, topic, values = seeded
    recs = [(b"rk1", b"rv1", [("h", b"1")]), (None, b"rv2"), (b"rk3", None)]
    err, base, _ = produce_raw(broker.bootstrap, topic, 0, w.record_batch(recs, base_timestamp=1111))
    assert (err, base) == (w.NONE, 10)
    cid, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap, w.fetch_v4(5, topic, 0, 10)))
    err, hw, records = res[(topic, 0)]
    assert (cid, err, hw) == (5, w.NONE, 13)
    parsed = w.parse_record_batches(records)
    assert parsed == [(10, 1111, b"rk1", b"rv1", [(b"h", b"1")]),
                      (11, 1111, None, b"rv2", []),
                      (12, 1111, b"rk3", None, [])]
    assert_healthy(broker, topic, values + [b"rv1", b"rv2", None])


def test_produce_bad_crc_is_corrupt_message(seeded):
    broker, topic, values = seeded
    batch = w.record_batch([(b"k", b"corrupted")], corrupt_crc=True)
    err, _, _ = produce_raw(broker.bootstrap, topic, 0, batch)
    assert err == w.CORRUPT_MESSAGE
    assert list_offsets_latest(broker.bootstrap, topic) == 10
    # flipping a payload byte after computing the CRC is caught too
    good = bytearray(w.record_batch([(b"k", b"payload")]))
    good[-3] ^= 0x01
    err, _, _ = produce_raw(broker.bootstrap, topic, 0, bytes(good))
    assert err == w.CORRUPT_MESSAGE
    assert list_offsets_latest(broker.bootstrap, topic) == 10
    assert_healthy(broker, topic, values)


def test_produce_unknown_partition(seeded):
    broker, topic, values = seeded
    err, _, _ = produce_raw(broker.bootstrap, topic, 5, w.record_batch([(None, b"x")]))
    assert err == w.UNKNOWN_TOPIC_OR_PARTITION
    assert list_offsets_latest(broker.bootstrap, topic) == 10
    assert_healthy(broker, topic, values)


def test_produce_invalid_topic_name(seeded):
    broker, topic, values = seeded
    err, _, _ = produce_raw(broker.bootstrap, "bad name!", 0, w.record_batch([(None, b"x")]))
    assert err == w.INVALID_TOPIC_EXCEPTION
    md = ck.admin(broker.bootstrap).list_topics(timeout=10)
    assert "bad name!" not in md.topics
    assert_healthy(broker, topic, values)


def test_produce_acks0_gets_no_response(seeded):
    broker, topic, values = seeded
    with w.connect(broker.bootstrap) as s:
        s.sendall(w.frame(w.produce_v3(1, topic, 0, w.record_batch([(None, b"acks0")]), acks=0)))
        # the next request's response must be the first thing that arrives
        s.sendall(w.frame(w.api_versions_v0_request(2)))
        cid, err, _ = w.parse_api_versions_v0(w.recv_frame(s))
        assert (cid, err) == (2, 0)
    assert_healthy(broker, topic, values + [b"acks0"])


# ------------------------------------------------------------------ Fetch


def test_fetch_beyond_log_end_is_out_of_range(seeded):
    broker, topic, values = seeded
    for off in (11, 1000, 2**40):
        cid, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap, w.fetch_v4(9, topic, 0, off)))
        err, hw, records = res[(topic, 0)]
        assert err == w.OFFSET_OUT_OF_RANGE, (off, err)
        assert not records
    # at exactly the log end: no error, empty (after max_wait)
    cid, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap, w.fetch_v4(9, topic, 0, 10)))
    err, hw, records = res[(topic, 0)]
    assert (err, hw) == (w.NONE, 10) and not records
    assert_healthy(broker, topic, values)


def test_fetch_unknown_partition(seeded):
    broker, topic, values = seeded
    cid, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap, w.fetch_v4(9, topic, 3, 0)))
    assert res[(topic, 3)][0] == w.UNKNOWN_TOPIC_OR_PARTITION
    assert_healthy(broker, topic, values)


def test_big_fetch_then_disconnect(seeded):
    broker, topic, values = seeded
    big_topic = unique_topic("big")
    ck.create_topic(broker.bootstrap, big_topic)
    chunk = b"B" * 100_000
    ck.produce_and_wait(broker.bootstrap, big_topic,
                        [{"value": chunk + b"%d" % i, "partition": 0} for i in range(100)],
                        timeout=120)
    for i in range(5):
        s = w.connect(broker.bootstrap)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(w.frame(w.fetch_v4(i, big_topic, 0, 0, max_bytes=50_000_000,
                                     partition_max_bytes=50_000_000)))
        if i % 2:
            # abortive close (RST) while the broker is mid-sendfile
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # a slow reader that reads a little and then vanishes
    s = w.connect(broker.bootstrap)
    s.sendall(w.frame(w.fetch_v4(99, big_topic, 0, 0, max_bytes=50_000_000,
                                 partition_max_bytes=50_000_000)))
    s.recv(1000)
    s.close()
    assert_healthy(broker, topic, values)
    got = ck.consume_range(broker.bootstrap, big_topic, 0, 0, 100)
    assert [m.value() for m in got] == [chunk + b"%d" % i for i in range(100)]


# Batches with a valid CRC whose structure is inconsistent. Kafka answers
# CORRUPT_MESSAGE (2) or INVALID_RECORD (87) and appends nothing.
_RECS = [(b"k1", b"v1"), (b"k2", b"v2")]
_BAD_BATCHES = {
    "count-too-high": lambda: w.record_batch(_RECS, count=5),
    "count-too-low": lambda: w.record_batch(_RECS, count=1),
    "count-negative": lambda: w.record_batch(_RECS, count=-1),
    "last-offset-delta-wrong": lambda: w.record_batch(_RECS, last_offset_delta=7),
    "batch-length-beyond-data": lambda: w.record_batch(_RECS, batch_length_delta=100),
    "batch-length-short": lambda: w.record_batch(_RECS, batch_length_delta=-5),
    "record-length-overflows": lambda: w.record_batch(
        [(None, b"x")], raw_records=w.varint(1000) + b"\x00\x00\x00\x02x"),
    "record-garbage": lambda: w.record_batch(
        [(None, b"x"), (None, b"y")], raw_records=b"\x7f" * 40),
    "trailing-bytes-after-batch": lambda: w.record_batch(_RECS) + b"\x00" * 7,
}


@pytest.mark.parametrize("case", sorted(_BAD_BATCHES))
def test_produce_inconsistent_batch_rejected(seeded, case):
    broker, topic, values = seeded
    batch = _BAD_BATCHES[case]()
    err, _, _ = produce_raw(broker.bootstrap, topic, 0, batch)
    assert err in (w.CORRUPT_MESSAGE, 87), f"{case}: error {err}"
    assert list_offsets_latest(broker.bootstrap, topic) == 10
    assert_healthy(broker, topic, values)


def test_produce_old_magic_rejected(seeded):
    broker, topic, values = seeded
    err, _, _ = produce_raw(broker.bootstrap, topic, 0, w.record_batch(_RECS, magic=1))
    assert err != w.NONE
    assert list_offsets_latest(broker.bootstrap, topic) == 10
    assert_healthy(broker, topic, values)
