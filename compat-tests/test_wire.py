"""Well-formed raw requests whose timing or exact answer a client library
would hide: Fetch long-poll, ListOffsets, concurrent producers."""

from __future__ import annotations

import threading
import time

import ck
import kafka_wire as w
from conftest import unique_topic


def test_fetch_long_poll_is_woken_by_append(broker):
    topic = unique_topic("lp")
    ck.create_topic(broker.bootstrap, topic)
    result = {}

    def fetcher():
        t0 = time.monotonic()
        data = w.roundtrip(broker.bootstrap, w.fetch_v4(1, topic, 0, 0, max_wait_ms=15000),
                           timeout=30)
        result["elapsed"] = time.monotonic() - t0
        result["resp"] = w.parse_fetch_v4(data)

    th = threading.Thread(target=fetcher)
    th.start()
    time.sleep(0.5)  # let the fetch park at the log end (not a synchronisation: any delay works)
    assert "resp" not in result, "fetch at log end returned before max_wait with min_bytes=1"
    ck.produce_and_wait(broker.bootstrap, topic, [{"value": b"wake", "partition": 0}])
    th.join(30)
    assert not th.is_alive()
    _, res = result["resp"]
    err, hw, records = res[(topic, 0)]
    assert (err, hw) == (w.NONE, 1)
    assert [r[3] for r in w.parse_record_batches(records)] == [b"wake"]
    assert result["elapsed"] < 10, f"long poll not woken by the append ({result['elapsed']:.1f}s)"


def test_fetch_max_wait_is_honoured(broker):
    topic = unique_topic("mw")
    ck.create_topic(broker.bootstrap, topic)
    t0 = time.monotonic()
    _, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap,
                                          w.fetch_v4(1, topic, 0, 0, max_wait_ms=1000)))
    elapsed = time.monotonic() - t0
    assert res[(topic, 0)][0] == w.NONE and not res[(topic, 0)][2]
    assert 0.8 <= elapsed < 5, f"empty fetch with max_wait 1000 ms took {elapsed:.2f}s"
    # min_bytes=0 answers at once
    t0 = time.monotonic()
    w.roundtrip(broker.bootstrap, w.fetch_v4(2, topic, 0, 0, max_wait_ms=5000, min_bytes=0))
    assert time.monotonic() - t0 < 2


def test_list_offsets_earliest_latest_timestamp(broker):
    topic = unique_topic("lo")
    ck.create_topic(broker.bootstrap, topic)
    base = 1_650_000_000_000
    ck.produce_and_wait(broker.bootstrap, topic, [
        {"value": b"%d" % i, "partition": 0, "timestamp": base + 10 * i} for i in range(20)])

    def lo(ts):
        _, res = w.parse_list_offsets_v1(
            w.roundtrip(broker.bootstrap, w.list_offsets_v1(3, topic, 0, ts)))
        return res[(topic, 0)]

    assert lo(-2)[0] == w.NONE and lo(-2)[2] == 0
    assert lo(-1)[0] == w.NONE and lo(-1)[2] == 20
    assert lo(base + 50)[::2] == (w.NONE, 5)
    assert lo(base + 55) == (w.NONE, base + 60, 6)
    assert lo(base) == (w.NONE, base, 0)
    # after the last timestamp: no such offset (-1)
    assert lo(base + 10_000)[2] == -1
    _, res = w.parse_list_offsets_v1(
        w.roundtrip(broker.bootstrap, w.list_offsets_v1(3, topic, 7, -1)))
    assert res[(topic, 7)][0] == w.UNKNOWN_TOPIC_OR_PARTITION


def test_concurrent_producers_same_partition(broker):
    topic = unique_topic("conc")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    n_threads, per_thread = 4, 20000
    errors = []

    def run(t):
        try:
            msgs = [{"value": b"t%d-%06d" % (t, i), "partition": i % 2}
                    for i in range(per_thread)]
            ck.produce_and_wait(broker.bootstrap, topic, msgs, timeout=120)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    assert not errors, errors
    total = n_threads * per_thread
    seen = {}
    for p in (0, 1):
        assert ck.watermarks(broker.bootstrap, topic, p) == (0, total // 2)
        for m in ck.consume_range(broker.bootstrap, topic, p, 0, total // 2):
            t, i = m.value()[1:].split(b"-")
            seen.setdefault((p, int(t)), []).append(int(i))
    for t in range(n_threads):
        for p in (0, 1):
            # each producer's records keep their order within the partition
            assert seen[(p, t)] == list(range(p, per_thread, 2))


def test_pipelined_requests_answered_in_order(broker):
    """Kafka answers the requests of one connection in order, even when an
    earlier one (a long-polling fetch) is slower than the later ones."""
    topic = unique_topic("pipe")
    ck.create_topic(broker.bootstrap, topic)
    ck.produce_and_wait(broker.bootstrap, topic, [{"value": b"x", "partition": 0}])
    reqs = []
    for cid in range(60):
        kind = cid % 4
        if kind == 0:
            reqs.append(w.fetch_v4(cid, topic, 0, 1, max_wait_ms=300))  # parks at the end
        elif kind == 1:
            reqs.append(w.api_versions_v0_request(cid))
        elif kind == 2:
            reqs.append(w.list_offsets_v1(cid, topic, 0, -1))
        else:
            reqs.append(w.fetch_v4(cid, topic, 0, 0, max_wait_ms=0))
    with w.connect(broker.bootstrap, timeout=60) as s:
        s.sendall(b"".join(w.frame(r) for r in reqs))
        for cid in range(60):
            data = w.recv_frame(s, timeout=60)
            got_cid = int.from_bytes(data[:4], "big", signed=True)
            assert got_cid == cid, f"response #{cid} carries correlation id {got_cid}"
            kind = cid % 4
            if kind == 1:
                assert w.parse_api_versions_v0(data)[1] == 0
            elif kind == 2:
                assert w.parse_list_offsets_v1(data)[1][(topic, 0)] == (w.NONE, -1, 1)
            else:
                err, hw, records = w.parse_fetch_v4(data)[1][(topic, 0)]
                assert (err, hw) == (w.NONE, 1)
                assert len(w.parse_record_batches(records or b"")) == (1 if kind == 3 else 0)


def test_fetch_returns_whole_first_batch_even_if_over_max_bytes(broker):
    """KIP-74: the first batch is returned whole even when it exceeds
    max_bytes / partition_max_bytes, so consumers always make progress."""
    topic = unique_topic("kip74")
    ck.create_topic(broker.bootstrap, topic)
    big = bytes(range(256)) * 200  # 51200 bytes
    err, base, _ = w.parse_produce_v3(w.roundtrip(
        broker.bootstrap, w.produce_v3(1, topic, 0, w.record_batch([(b"k", big), (b"k2", b"y")]))))[1][(topic, 0)]
    assert (err, base) == (w.NONE, 0)
    _, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap, w.fetch_v4(
        2, topic, 0, 0, max_bytes=100, partition_max_bytes=100)))
    err, hw, records = res[(topic, 0)]
    assert (err, hw) == (w.NONE, 2)
    parsed = w.parse_record_batches(records)
    assert [(p[0], p[2], p[3]) for p in parsed] == [(0, b"k", big), (1, b"k2", b"y")]


def test_fetch_from_inside_a_batch(broker):
    """A fetch offset in the middle of a batch returns that batch (clients
    skip the records before the offset)."""
    topic = unique_topic("mid")
    ck.create_topic(broker.bootstrap, topic)
    recs = [(None, b"r%d" % i) for i in range(10)]
    w.roundtrip(broker.bootstrap, w.produce_v3(1, topic, 0, w.record_batch(recs)))
    w.roundtrip(broker.bootstrap, w.produce_v3(2, topic, 0, w.record_batch([(None, b"r10")])))
    _, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap, w.fetch_v4(3, topic, 0, 5)))
    err, hw, records = res[(topic, 0)]
    assert (err, hw) == (w.NONE, 11)
    offsets = [p[0] for p in w.parse_record_batches(records)]
    assert 5 in offsets and offsets == sorted(offsets) and offsets[-1] == 10
    # the client-side view: offsets 5..10 exactly
    got = ck.consume_range(broker.bootstrap, topic, 0, 5, 11)
    assert [m.offset() for m in got] == list(range(5, 11))
    assert [m.value() for m in got] == [b"r%d" % i for i in range(5, 11)]


def test_client_base_offset_is_rewritten(broker):
    """Whatever base offset the producer put in the batch, the broker assigns
    its own offsets."""
    topic = unique_topic("base")
    ck.create_topic(broker.bootstrap, topic)
    for i, client_base in enumerate([0, 12345, 2**40]):
        batch = w.record_batch([(None, b"a%d" % i), (None, b"b%d" % i)], base_offset=client_base)
        _, res = w.parse_produce_v3(w.roundtrip(broker.bootstrap, w.produce_v3(i, topic, 0, batch)))
        assert res[(topic, 0)][:2] == (w.NONE, 2 * i)
    _, res = w.parse_fetch_v4(w.roundtrip(broker.bootstrap, w.fetch_v4(9, topic, 0, 0)))
    parsed = w.parse_record_batches(res[(topic, 0)][2])
    assert [(p[0], p[3]) for p in parsed] == [
        (0, b"a0"), (1, b"b0"), (2, b"a1"), (3, b"b1"), (4, b"a2"), (5, b"b2")]
