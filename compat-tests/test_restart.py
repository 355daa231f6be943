"""Durability across restarts: clean SIGTERM shutdown, and kill -9 while a
producer is running (every acknowledged record must survive)."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from confluent_kafka import TopicPartition

import ck
import kafka_wire as w
from conftest import unique_topic, wait_until


@pytest.mark.parametrize("segment_bytes", [None, 100000], ids=["default-segments", "100KB-segments"])
def test_sigterm_restart_keeps_data_and_offsets(broker_factory, segment_bytes):
    broker = broker_factory(*(["--log-segment-bytes", str(segment_bytes)] if segment_bytes else []))
    topic = unique_topic("rs")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    n = 20000
    msgs = [{"key": b"k%d" % i, "value": b"before-%08d" % i + b"x" * (i % 50),
             "partition": i % 2, "headers": [("i", b"%d" % i)]} for i in range(n)]
    offs = ck.produce_and_wait(broker.bootstrap, topic, msgs, timeout=120)
    per_part = {0: n // 2, 1: n // 2}
    for p in (0, 1):
        assert sorted(o for (pp, o) in offs if pp == p) == list(range(per_part[p]))

    rc = broker.stop(signal.SIGTERM)
    assert rc == 0, f"exit code {rc} after SIGTERM"
    broker.restart()

    for p in (0, 1):
        assert ck.watermarks(broker.bootstrap, topic, p) == (0, per_part[p])
        got = ck.consume_range(broker.bootstrap, topic, p, 0, per_part[p])
        exp = [m for m in msgs if m["partition"] == p]
        assert [(m.key(), m.value(), m.headers()) for m in got] == [
            (e["key"], e["value"], e["headers"]) for e in exp
        ]

    more = [{"value": b"after-%d" % i, "partition": i % 2} for i in range(100)]
    offs2 = ck.produce_and_wait(broker.bootstrap, topic, more)
    for p in (0, 1):
        assert sorted(o for (pp, o) in offs2 if pp == p) == list(range(per_part[p], per_part[p] + 50))
    got = ck.consume_range(broker.bootstrap, topic, 0, per_part[0], per_part[0] + 50)
    assert [m.value() for m in got] == [m["value"] for m in more if m["partition"] == 0]

    # a second clean stop/start cycle is also fine, and SIGINT (Ctrl-C) is clean too
    rc = broker.stop(signal.SIGINT)
    assert rc == 0, f"exit code {rc} after SIGINT"
    broker.restart()
    assert ck.watermarks(broker.bootstrap, topic, 1) == (0, per_part[1] + 50)
    ck.round_trip(broker.bootstrap)


def test_sigterm_with_idle_connections_exits_promptly(broker):
    """Open client connections must not keep the broker from shutting down."""
    topic = unique_topic("idle")
    ck.create_topic(broker.bootstrap, topic)
    c = ck.consumer(broker.bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    c.consume(num_messages=1, timeout=1.0)  # long-polling fetch in flight
    t0 = time.monotonic()
    rc = broker.stop(signal.SIGTERM, timeout=20)
    assert rc == 0
    assert time.monotonic() - t0 < 20
    c.close()


class BackgroundProducer:
    """confluent-kafka producer in a thread: produces until stopped and keeps
    the (partition, offset, value) of every ACKNOWLEDGED record."""

    def __init__(self, bootstrap, topic, partitions, acks):
        self.topic = topic
        self.partitions = partitions
        self.acked = []
        self.failed = 0
        self.sent = 0
        self.stop_flag = threading.Event()
        self.p = ck.producer(bootstrap, **{
            "acks": acks,
            "linger.ms": 2,
            "message.timeout.ms": 5000,
            "retries": 2,
            "reconnect.backoff.max.ms": 200,
        })
        self.thread = threading.Thread(target=self.run, daemon=True)

    def cb(self, err, msg):
        if err is None:
            self.acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            self.failed += 1

    def run(self):
        seq = 0
        while not self.stop_flag.is_set():
            v = b"bg-%010d-" % seq + b"p" * (seq % 64)
            try:
                self.p.produce(self.topic, v, key=b"%d" % seq,
                               partition=seq % self.partitions, on_delivery=self.cb)
                seq += 1
                self.sent = seq
            except BufferError:
                self.p.poll(0.01)
            if seq % 100 == 0:
                self.p.poll(0)
                time.sleep(0.001)
        deadline = time.monotonic() + 30
        while len(self.p) and time.monotonic() < deadline:
            self.p.poll(0.1)
        self.unflushed = len(self.p)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "producer thread did not stop"
        assert self.unflushed == 0, f"{self.unflushed} records neither acked nor failed"


def _verify_after_restart(broker, topic, partitions, acked, segment_bytes):
    if segment_bytes:
        logs = list(broker.data_dir.rglob("*.log"))
        assert len(logs) > 2 * partitions, f"segments did not roll: {sorted(map(str, logs))}"

    broker.restart()

    by_part = {p: {} for p in range(partitions)}
    for p, off, v in acked:
        assert off not in by_part[p], f"offset {off} acknowledged twice in partition {p}"
        by_part[p][off] = v
    for p in range(partitions):
        if not by_part[p]:
            continue
        max_acked = max(by_part[p])
        lo, hi = ck.watermarks(broker.bootstrap, topic, p)
        assert lo == 0
        assert hi >= max_acked + 1, f"partition {p}: log end {hi} < max acked offset {max_acked} + 1"
        got = ck.consume_range(broker.bootstrap, topic, p, 0, hi, timeout=120)
        stored = {m.offset(): m.value() for m in got}
        assert sorted(stored) == list(range(hi)), f"partition {p}: offsets not contiguous"
        missing = [o for o in by_part[p] if o not in stored]
        assert not missing, f"partition {p}: {len(missing)} acked records lost, e.g. {missing[:5]}"
        wrong = [o for o, v in by_part[p].items() if stored[o] != v]
        assert not wrong, f"partition {p}: acked records changed at offsets {wrong[:5]}"

        # produces continue right after the recovered log end
        offs = ck.produce_and_wait(broker.bootstrap, topic,
                                   [{"value": b"after-%d" % i, "partition": p} for i in range(5)])
        assert [o for _, o in offs] == list(range(hi, hi + 5)), (offs, hi)
        got = ck.consume_range(broker.bootstrap, topic, p, hi, hi + 5)
        assert [m.value() for m in got] == [b"after-%d" % i for i in range(5)]

    # and after another clean restart everything is still there
    broker.restart()
    for p in range(partitions):
        if by_part[p]:
            lo, hi = ck.watermarks(broker.bootstrap, topic, p)
            assert hi >= max(by_part[p]) + 1 + 5


@pytest.mark.timeout(300)
@pytest.mark.parametrize("segment_bytes", [None, 65536], ids=["default-segments", "64KiB-segments"])
@pytest.mark.parametrize("acks", ["all", "1"])
def test_kill9_keeps_acknowledged_records(broker_factory, acks, segment_bytes):
    # small segments: the kill lands in a log of many segments, recovery must
    # cope with a torn tail in the newest one and keep the sealed ones
    broker = broker_factory(*(["--log-segment-bytes", str(segment_bytes)] if segment_bytes else []))
    topic = unique_topic(f"k9-{acks}")
    partitions = 3
    ck.create_topic(broker.bootstrap, topic, partitions=partitions)
    bp = BackgroundProducer(broker.bootstrap, topic, partitions, acks).start()
    # wait until a good amount has been acknowledged, then kill -9 mid-load
    wait_until(lambda: len(bp.acked) >= 20000, 120, msg="20000 acked records before kill")
    rc = broker.kill9()
    assert rc == -signal.SIGKILL
    acked_at_kill, sent_at_kill = len(bp.acked), bp.sent
    # The producer was still producing when the broker died: it goes on
    # queueing records no broker can acknowledge. (Every record sent before
    # the kill may have been acknowledged by then: a loaded machine.)
    wait_until(lambda: bp.sent > sent_at_kill, 30, msg="the producer goes on after the kill")
    bp.stop()
    acked = list(bp.acked)
    assert len(acked) >= acked_at_kill >= 20000
    assert bp.sent > len(acked), "records sent after the kill cannot have been acknowledged"

    _verify_after_restart(broker, topic, partitions, acked, segment_bytes)


def test_restart_keeps_topic_metadata_and_indexes(broker_factory):
    """After a restart: empty topics keep their partition count, deleted
    topics stay deleted, and lookups by offset (index) and by timestamp
    (time index) in the middle of a multi-segment log still work."""
    broker = broker_factory("--log-segment-bytes", "50000")
    empty, deleted, full = unique_topic("empty"), unique_topic("deleted"), unique_topic("full")
    ck.create_topic(broker.bootstrap, empty, partitions=5)
    ck.create_topic(broker.bootstrap, deleted, partitions=2)
    ck.create_topic(broker.bootstrap, full, partitions=1)
    base = 1_690_000_000_000
    n = 5000
    msgs = [{"value": b"v%05d" % i + b"-" * 40, "partition": 0, "timestamp": base + i}
            for i in range(n)]
    ck.produce_and_wait(broker.bootstrap, full, msgs, timeout=120)
    a = ck.admin(broker.bootstrap)
    a.delete_topics([deleted], operation_timeout=30)[deleted].result(timeout=30)

    assert broker.stop() == 0
    broker.restart()

    md = ck.admin(broker.bootstrap).list_topics(timeout=10)
    assert empty in md.topics and len(md.topics[empty].partitions) == 5
    assert deleted not in md.topics
    assert ck.watermarks(broker.bootstrap, empty, 4) == (0, 0)
    assert ck.watermarks(broker.bootstrap, full, 0) == (0, n)
    for start in (0, 1, 2499, 4321, n - 1):
        got = ck.consume_range(broker.bootstrap, full, 0, start, min(start + 50, n))
        assert [m.value() for m in got] == [m["value"] for m in msgs[start:start + 50]]
    for ts, off in ((base, 0), (base + 2500, 2500), (base + n - 1, n - 1)):
        _, res = w.parse_list_offsets_v1(
            w.roundtrip(broker.bootstrap, w.list_offsets_v1(1, full, 0, ts)))
        assert res[(full, 0)] == (w.NONE, ts, off)


@pytest.mark.timeout(300)
def test_sigterm_under_load_is_clean_and_keeps_acknowledged_records(broker_factory):
    broker = broker_factory("--log-segment-bytes", "65536")
    topic = unique_topic("term")
    partitions = 3
    ck.create_topic(broker.bootstrap, topic, partitions=partitions)
    bp = BackgroundProducer(broker.bootstrap, topic, partitions, "all").start()
    wait_until(lambda: len(bp.acked) >= 20000, 120, msg="20000 acked records before SIGTERM")
    rc = broker.stop(signal.SIGTERM, timeout=30)
    assert rc == 0, f"exit code {rc} after SIGTERM under load"
    bp.stop()
    assert len(bp.acked) >= 20000
    _verify_after_restart(broker, topic, partitions, list(bp.acked), 65536)


def _newest_segment(broker, topic, partition):
    d = broker.data_dir / f"{topic}-{partition}"
    logs = sorted(d.glob("*.log"), key=lambda p: int(p.stem))
    assert logs, f"no segment files in {d}: {list(broker.data_dir.iterdir())}"
    return logs[-1]


@pytest.mark.parametrize("damage", ["partial-batch-appended", "last-batch-crc-bad", "zeros-appended"])
def test_torn_tail_is_truncated_on_restart(broker, damage):
    """A crash can leave half a batch (or a CRC-bad one) at the end of the
    newest segment: recovery truncates it and keeps everything before."""
    topic = unique_topic("torn")
    ck.create_topic(broker.bootstrap, topic)
    batches = [[(b"k%d" % b, b"b%d-r%d" % (b, r)) for r in range(5)] for b in range(3)]
    for i, recs in enumerate(batches):
        _, res = w.parse_produce_v3(w.roundtrip(
            broker.bootstrap, w.produce_v3(i, topic, 0, w.record_batch(recs))))
        assert res[(topic, 0)][:2] == (w.NONE, 5 * i)
    assert broker.kill9() == -signal.SIGKILL

    seg = _newest_segment(broker, topic, 0)
    data = bytearray(seg.read_bytes())
    if damage == "partial-batch-appended":
        extra = w.record_batch([(None, b"never-acked" * 10)])
        data += extra[: len(extra) // 2]
        survivors = 15
    elif damage == "zeros-appended":
        data += b"\x00" * 4096
        survivors = 15
    else:
        data[-3] ^= 0xFF  # inside the last batch's records: its CRC no longer matches
        survivors = 10
    seg.write_bytes(bytes(data))

    broker.restart()
    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, survivors)
    got = ck.consume_range(broker.bootstrap, topic, 0, 0, survivors)
    flat = [r for recs in batches for r in recs][:survivors]
    assert [(m.key(), m.value()) for m in got] == flat
    offs = ck.produce_and_wait(broker.bootstrap, topic, [{"value": b"next", "partition": 0}])
    assert offs == [(0, survivors)]
    assert ck.consume_range(broker.bootstrap, topic, 0, survivors, survivors + 1)[0].value() == b"next"
