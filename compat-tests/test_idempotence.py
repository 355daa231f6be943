"""Idempotent producers: confluent-kafka (`enable.idempotence`) and
kafka-python (`enable_idempotence`) deliver every record exactly once and in
order per partition, also when the broker restarts (SIGTERM or kill -9)
under them; raw wire batches with producer ids and sequences check the
broker's rules one by one (duplicate, gap, old epoch, control batch, producer
state across restarts)."""

from __future__ import annotations

import threading

import pytest

import ck
import kafka_wire as w
from conftest import unique_topic, wait_until
from txn_wire import (
    API_INIT_PRODUCER_ID,
    CONTROL_ABORT,
    CONTROL_COMMIT,
    INVALID_PRODUCER_EPOCH,
    INVALID_RECORD,
    INVALID_REQUEST,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    Wire,
    batch,
    control_batch,
    describe_producers,
    fetch_all,
    hw,
    init_producer_id,
    parse_produce,
    produce,
    produce_body,
)

def _seq(value: bytes) -> int:
    return int(value.split(b"-")[1])


def _check_partitions_exactly_once(bootstrap, topic, partitions, sent):
    """Every seq 0..sent-1 was produced to partition seq % partitions: each
    partition must hold exactly its seqs, once each, in order."""
    for p in range(partitions):
        expected = list(range(p, sent, partitions))
        lo, hi = ck.watermarks(bootstrap, topic, p)
        assert (lo, hi) == (0, len(expected)), (
            f"partition {p}: watermarks {(lo, hi)}, expected (0, {len(expected)}): "
            "records lost or written twice")
        got = [_seq(m.value()) for m in ck.consume_range(bootstrap, topic, p, 0, hi)]
        dups = len(got) - len(set(got))
        assert got == expected, (
            f"partition {p}: {dups} duplicates; first difference at index "
            f"{next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)}")


def test_confluent_idempotent_exactly_once_in_order(broker):
    topic = unique_topic("idem")
    ck.create_topic(broker.bootstrap, topic, partitions=3)
    n = 30000
    msgs = [{"value": b"v-%07d-" % i + b"x" * (i % 40), "partition": i % 3} for i in range(n)]
    offs = ck.produce_and_wait(broker.bootstrap, topic, msgs, timeout=60,
                               **{"enable.idempotence": True, "linger.ms": 2})
    for p in range(3):
        assert [o for pp, o in offs if pp == p] == list(range(n // 3))
    _check_partitions_exactly_once(broker.bootstrap, topic, 3, n)
    # the records were written by an idempotent producer: one producer id,
    # sequences counting up from 0 with no hole, batch after batch
    with Wire(broker.bootstrap) as c:
        for p in range(3):
            res = fetch_all(c, topic, p)
            pids = {(b.producer_id, b.producer_epoch) for b in res.batches}
            assert len(pids) == 1 and next(iter(pids))[0] >= 0, pids
            expect = 0
            for b in res.batches:
                assert b.base_sequence == expect, (p, b)
                expect += b.count
            assert expect == n // 3
        # and DescribeProducers knows it with the last sequence it wrote
        desc = describe_producers(c, topic, [0, 1, 2])
        pid = next(iter(pids))[0]
        for p in range(3):
            err, producers = desc[p]
            assert err == w.NONE
            assert [(x["producer_id"], x["last_sequence"]) for x in producers] == [
                (pid, n // 3 - 1)], producers


class IdempotentBackgroundProducer:
    """A confluent-kafka idempotent producer in a thread: seq i goes to
    partition i % partitions; never more than `window` records unacknowledged."""

    def __init__(self, bootstrap, topic, partitions, window=4000):
        self.topic = topic
        self.partitions = partitions
        self.window = window
        self.acked = 0
        self.errors = []
        self.sent = 0
        self.stop_flag = threading.Event()
        self.crash = None
        self.p = ck.producer(bootstrap, **{
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 90000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 50,
        })
        self.thread = threading.Thread(target=self.run, daemon=True)

    def cb(self, err, msg):
        if err is None:
            self.acked += 1
        else:
            self.errors.append((msg.value()[:12], err))

    def run(self):
        try:
            while not self.stop_flag.is_set():
                if self.sent - self.acked - len(self.errors) >= self.window:
                    self.p.poll(0.05)
                    continue
                try:
                    self.p.produce(self.topic, b"v-%07d-" % self.sent + b"y" * (self.sent % 30),
                                   partition=self.sent % self.partitions, on_delivery=self.cb)
                    self.sent += 1
                except BufferError:
                    self.p.poll(0.05)
                if self.sent % 200 == 0:
                    self.p.poll(0)
            self.unflushed = self.p.flush(90)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.crash = e

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), "producer thread did not stop"
        assert self.crash is None, self.crash
        assert self.unflushed == 0, f"{self.unflushed} records neither acked nor failed"


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_confluent_idempotent_producer_across_broker_restart(broker, how):
    """Batches in flight when the broker goes away are retried with their
    sequence numbers: all deliveries succeed, nothing is written twice."""
    topic = unique_topic("idemrs")
    ck.create_topic(broker.bootstrap, topic, partitions=3)
    bg = IdempotentBackgroundProducer(broker.bootstrap, topic, 3).start()
    wait_until(lambda: bg.acked >= 3000 or bg.crash, 30, msg="3000 acks before the restart")
    if how == "kill9":
        broker.kill9()
    broker.restart()
    at_restart = bg.acked
    wait_until(lambda: bg.acked >= at_restart + 3000 or bg.crash or bg.errors, 60,
               msg="3000 more acks after the restart")
    bg.stop()
    assert not bg.errors, f"{len(bg.errors)} delivery errors, e.g. {bg.errors[:3]}"
    assert bg.acked == bg.sent
    _check_partitions_exactly_once(broker.bootstrap, topic, 3, bg.sent)


def test_kafka_python_idempotent_producer(broker):
    from kafka import KafkaProducer

    # kafka-python 3.0.12: `enable_idempotence` (True by default since KIP-679).
    topic = unique_topic("kpidem")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all",
                      linger_ms=5, retry_backoff_ms=50, reconnect_backoff_ms=50,
                      reconnect_backoff_max_ms=200, request_timeout_ms=15000)
    try:
        n1, n2 = 3000, 3000
        futs = [p.send(topic, value=b"v-%07d" % i, partition=i % 2) for i in range(n1)]
        wait_until(lambda: futs[200].is_done, 30, msg="first acks")
        # restart while the rest of the first half may still be in flight
        broker.restart()
        futs += [p.send(topic, value=b"v-%07d" % i, partition=i % 2) for i in range(n1, n1 + n2)]
        p.flush(timeout=60)
        metas = [f.get(timeout=60) for f in futs]
    finally:
        p.close(timeout=10)
    n = n1 + n2
    for part in range(2):
        assert [m.offset for i, m in enumerate(metas) if i % 2 == part] == list(range(n // 2))
    _check_partitions_exactly_once(broker.bootstrap, topic, 2, n)
    with Wire(broker.bootstrap) as c:
        for part in range(2):
            res = fetch_all(c, topic, part)
            seen = {}
            for b in res.batches:
                assert b.producer_id >= 0, f"kafka-python did not write idempotent batches: {b}"
                nxt = seen.get((b.producer_id, b.producer_epoch), 0)
                assert b.base_sequence == nxt, (part, b, nxt)
                seen[(b.producer_id, b.producer_epoch)] = nxt + b.count


# --------------------------------------------------------------------------
# Raw wire: the broker's idempotence rules.
# --------------------------------------------------------------------------


def _new_pid(c):
    err, pid, epoch = init_producer_id(c)
    assert err == w.NONE and pid >= 0 and epoch == 0, (err, pid, epoch)
    return pid


def test_wire_duplicate_batch_answered_with_original_offset(broker):
    topic = unique_topic("dup")
    ck.create_topic(broker.bootstrap, topic)
    with Wire(broker.bootstrap) as c:
        pid = _new_pid(c)
        b0 = batch([b"a0", b"a1", b"a2"], pid, 0, 0)
        b1 = batch([b"b0", b"b1"], pid, 0, 3)
        assert produce(c, topic, 0, b0) == (w.NONE, 0)
        # a plain producer's record in between
        assert produce(c, topic, 0, batch([b"plain"])) == (w.NONE, 3)
        assert produce(c, topic, 0, b1) == (w.NONE, 4)
        # retries of both batches: the original base offsets, nothing written
        assert produce(c, topic, 0, b1) == (w.NONE, 4)
        assert produce(c, topic, 0, b0) == (w.NONE, 0)
        # a retry built anew (other timestamp, same sequence range) is still a duplicate
        assert produce(c, topic, 0, batch([b"b0", b"b1"], pid, 0, 3, base_timestamp=1)) == (w.NONE, 4)
        assert hw(c, topic, 0) == 6
        assert [v for _, _, v in fetch_all(c, topic, 0).records()] == [
            b"a0", b"a1", b"a2", b"plain", b"b0", b"b1"]
        # the next sequence appends as usual
        c0 = batch([b"c0", b"c1", b"c2"], pid, 0, 5)
        assert produce(c, topic, 0, c0) == (w.NONE, 6)
        assert hw(c, topic, 0) == 9
    # the same batch sent at once on several connections (pipelined): one
    # write, every answer the same offset
    conns = [Wire(broker.bootstrap) for _ in range(3)]
    nxt = batch([b"d0", b"d1"], pid, 0, 8)
    answers, errors = [], []
    barrier = threading.Barrier(3)

    def run(conn):
        try:
            barrier.wait(10)
            cids = [conn.send(w.API_PRODUCE, 3, produce_body([(topic, 0, nxt)])) for _ in range(5)]
            answers.extend(parse_produce(conn.recv(cid))[(topic, 0)] for cid in cids)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(cn,)) for cn in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for cn in conns:
        cn.close()
    assert not errors, errors
    assert answers == [(w.NONE, 9)] * 15, answers
    with Wire(broker.bootstrap) as c:
        assert hw(c, topic, 0) == 11
        assert [v for _, _, v in fetch_all(c, topic, 0).records()][-5:] == [
            b"c0", b"c1", b"c2", b"d0", b"d1"]


def test_wire_sequence_gap_is_out_of_order(broker):
    topic = unique_topic("gap")
    ck.create_topic(broker.bootstrap, topic)
    with Wire(broker.bootstrap) as c:
        pid = _new_pid(c)
        assert produce(c, topic, 0, batch([b"a", b"b", b"c"], pid, 0, 0)) == (w.NONE, 0)
        err, _ = produce(c, topic, 0, batch([b"gap"], pid, 0, 5))
        assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
        # overlapping but not a batch we wrote: out of order too
        err, _ = produce(c, topic, 0, batch([b"x", b"y"], pid, 0, 2))
        assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert hw(c, topic, 0) == 3
        assert produce(c, topic, 0, batch([b"d"], pid, 0, 3)) == (w.NONE, 3)
        assert [v for _, _, v in fetch_all(c, topic, 0).records()] == [b"a", b"b", b"c", b"d"]


def test_wire_older_epoch_is_invalid_producer_epoch(broker):
    topic = unique_topic("epoch")
    ck.create_topic(broker.bootstrap, topic)
    with Wire(broker.bootstrap) as c:
        pid = _new_pid(c)
        assert produce(c, topic, 0, batch([b"e0"], pid, 0, 0)) == (w.NONE, 0)
        # a newer epoch starts again at sequence 0 ...
        err, _ = produce(c, topic, 0, batch([b"bad"], pid, 1, 1))
        assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert produce(c, topic, 0, batch([b"e1"], pid, 1, 0)) == (w.NONE, 1)
        # ... and from then on the old epoch is refused
        err, _ = produce(c, topic, 0, batch([b"old"], pid, 0, 1))
        assert err == INVALID_PRODUCER_EPOCH
        # even a retry of the old epoch's batch is no longer a duplicate
        err, _ = produce(c, topic, 0, batch([b"e0"], pid, 0, 0))
        assert err == INVALID_PRODUCER_EPOCH
        assert hw(c, topic, 0) == 2
        assert produce(c, topic, 0, batch([b"e1b"], pid, 1, 1)) == (w.NONE, 2)


@pytest.mark.parametrize("transactional", [False, True], ids=["plain-control", "txn-control"])
def test_wire_client_control_batch_is_invalid_record(broker, transactional):
    topic = unique_topic("ctl")
    ck.create_topic(broker.bootstrap, topic)
    with Wire(broker.bootstrap) as c:
        pid = _new_pid(c)
        assert produce(c, topic, 0, batch([b"x"], pid, 0, 0)) == (w.NONE, 0)
        err, _ = produce(c, topic, 0, control_batch(pid, 0, CONTROL_COMMIT, transactional))
        assert err == INVALID_RECORD
        err, _ = produce(c, topic, 0, control_batch(-1, -1, CONTROL_ABORT, transactional))
        assert err == INVALID_RECORD
        assert hw(c, topic, 0) == 1
        res = fetch_all(c, topic, 0)
        assert not any(b.control for b in res.batches)
        assert produce(c, topic, 0, batch([b"y"], pid, 0, 1)) == (w.NONE, 1)


@pytest.mark.parametrize("version", [1, 4])
def test_init_producer_id_empty_transactional_id_is_invalid_request(broker, version):
    with Wire(broker.bootstrap) as c:
        err, pid, epoch = init_producer_id(c, "", version=version)
        assert (err, pid, epoch) == (INVALID_REQUEST, -1, -1)
        # the connection still serves; a null id is an idempotent producer
        err, pid, epoch = init_producer_id(c, None, version=version)
        assert err == w.NONE and pid >= 0 and epoch == 0


def test_init_producer_id_storm_gives_distinct_ids(broker):
    n_conns, per_conn = 4, 500
    results = [[] for _ in range(n_conns)]
    errors = []

    def run(i):
        try:
            with Wire(broker.bootstrap, timeout=60) as c:
                # pipelined: all requests first, then all answers in order
                cids = [c.send(API_INIT_PRODUCER_ID, 1, w.string(None) + w.i32(60000))
                        for _ in range(per_conn)]
                for cid in cids:
                    r = c.recv(cid)
                    r.i32()
                    results[i].append((r.i16(), r.i64(), r.i16()))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    flat = [x for r in results for x in r]
    assert len(flat) == n_conns * per_conn
    assert {(e, ep) for e, _, ep in flat} == {(w.NONE, 0)}
    pids = [pid for _, pid, _ in flat]
    assert min(pids) >= 0
    assert len(set(pids)) == len(pids), f"{len(pids) - len(set(pids))} producer ids handed out twice"
    # ids handed out after a restart are new too
    before = set(pids)
    broker.restart()
    with Wire(broker.bootstrap) as c:
        after = [_new_pid(c) for _ in range(50)]
    assert len(set(after)) == 50 and not before & set(after)


@pytest.mark.parametrize("how,segment_bytes", [("sigterm", None), ("kill9", None),
                                               ("kill9", 2000)],
                         ids=["sigterm", "kill9", "kill9-small-segments"])
def test_wire_producer_state_survives_restart(broker_factory, how, segment_bytes):
    broker = broker_factory(*(["--log-segment-bytes", str(segment_bytes)] if segment_bytes else []))
    topic = unique_topic("pstate")
    ck.create_topic(broker.bootstrap, topic)
    n_batches = 40 if segment_bytes else 3
    with Wire(broker.bootstrap) as c:
        pid = _new_pid(c)
        batches, offsets, seq = [], [], 0
        for i in range(n_batches):
            vals = [b"r%03d-%d" % (i, j) + b"z" * 40 for j in range(1 + i % 3)]
            batches.append(batch(vals, pid, 0, seq))
            err, off = produce(c, topic, 0, batches[-1])
            assert err == w.NONE
            offsets.append(off)
            seq += len(vals)
        end = hw(c, topic, 0)
    if segment_bytes:
        segs = list(broker.data_dir.rglob("*.log"))
        assert len(segs) > 3, f"segments did not roll: {segs}"
    if how == "kill9":
        broker.kill9()
    broker.restart()
    with Wire(broker.bootstrap) as c:
        # the last batch, and the oldest of the last five, are still duplicates
        for i in (n_batches - 1, max(0, n_batches - 5)):
            assert produce(c, topic, 0, batches[i]) == (w.NONE, offsets[i]), f"batch {i}"
        assert hw(c, topic, 0) == end
        # the sequence goes on where it stopped: a gap is still a gap
        err, _ = produce(c, topic, 0, batch([b"gap"], pid, 0, seq + 1))
        assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert produce(c, topic, 0, batch([b"next"], pid, 0, seq)) == (w.NONE, end)
        err, producers = describe_producers(c, topic, [0])[0]
        assert err == w.NONE
        assert [(x["producer_id"], x["producer_epoch"], x["last_sequence"]) for x in producers] == [
            (pid, 0, seq)]
    # and once more, now that the state has been through a clean restart too
    broker.restart()
    with Wire(broker.bootstrap) as c:
        assert produce(c, topic, 0, batch([b"next"], pid, 0, seq)) == (w.NONE, end)
        assert hw(c, topic, 0) == end + 1
