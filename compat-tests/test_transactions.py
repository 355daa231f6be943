"""Transactions: confluent-kafka's transactional producer (and kafka-python's)
against read_committed / read_uncommitted consumers; the last stable offset
holding back open transactions; consume-transform-produce offsets; fencing;
coordinator timeouts; broker restart and kill -9 mid-transaction; the admin
APIs (DescribeTransactions, ListTransactions, DescribeProducers) and bad
requests on raw sockets; the SQL gateway shows committed data only.

confluent-kafka 2.16.1's AdminClient has no list/describe transactions, so
those are raw requests (helpers shared with test_idempotence.py)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import ck
import kafka_wire as w
from conftest import unique_topic, wait_until
from txn_wire import (
    INVALID_PRODUCER_EPOCH,
    API_ADD_PARTITIONS_TO_TXN,
    API_DESCRIBE_TRANSACTIONS,
    API_END_TXN,
    API_LIST_TRANSACTIONS,
    CONCURRENT_TRANSACTIONS,
    CONTROL_ABORT,
    CONTROL_COMMIT,
    INVALID_PRODUCER_ID_MAPPING,
    INVALID_REQUEST,
    INVALID_TRANSACTION_TIMEOUT,
    INVALID_TXN_STATE,
    PRODUCER_FENCED,
    TRANSACTIONAL_ID_NOT_FOUND,
    Wire,
    batch,
    compact_array,
    describe_producers,
    fetch,
    fetch_all,
    init_producer_id,
    list_offset,
    parse_batches,
    produce,
)

CLEANUP_FAST = ("--transaction-abort-timed-out-transaction-cleanup-interval-ms", "200")
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


# --------------------------------------------------------------------------
# Raw transaction requests.
# --------------------------------------------------------------------------


def add_partitions(conn, tid, pid, epoch, topics, version=2):
    """AddPartitionsToTxn v2 (classic encoding) -> {(topic, partition): error}."""
    body = (w.string(tid) + w.i64(pid) + w.i16(epoch)
            + w.array([w.string(t) + w.array([w.i32(p) for p in ps]) for t, ps in topics.items()]))
    r = conn.call(API_ADD_PARTITIONS_TO_TXN, version, body)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(t, p)] = r.i16()
    return out


def end_txn(conn, tid, pid, epoch, commit, version=2):
    body = w.string(tid) + w.i64(pid) + w.i16(epoch) + w.i8(1 if commit else 0)
    r = conn.call(API_END_TXN, version, body)
    r.i32()
    return r.i16()


def _cstr(r):
    n = r.uvarint()
    return None if n == 0 else r.take(n - 1).decode()


def describe_transactions(conn, tids):
    """DescribeTransactions v0 -> {tid: dict}."""
    body = compact_array([w.compact_string(t) for t in tids]) + w.EMPTY_TAGS
    r = conn.call(API_DESCRIBE_TRANSACTIONS, 0, body, flexible=True)
    r.i32()
    out = {}
    for _ in range(r.uvarint() - 1):
        d = dict(error=r.i16(), transactional_id=_cstr(r), state=_cstr(r),
                 timeout_ms=r.i32(), start_time_ms=r.i64(), producer_id=r.i64(),
                 producer_epoch=r.i16())
        topics = {}
        for _ in range(r.uvarint() - 1):
            t = _cstr(r)
            topics[t] = sorted(r.i32() for _ in range(r.uvarint() - 1))
            r.skip_tags()
        d["topics"] = topics
        r.skip_tags()
        out[d["transactional_id"]] = d
    r.skip_tags()
    return out


def list_transactions(conn, states=(), pids=(), duration_ms=None):
    """ListTransactions v0 (v1 with a duration filter) ->
    (error, unknown_state_filters, {tid: (producer_id, state)})."""
    version = 0 if duration_ms is None else 1
    body = compact_array([w.compact_string(s) for s in states]) + compact_array([w.i64(p) for p in pids])
    if version >= 1:
        body += w.i64(duration_ms)
    body += w.EMPTY_TAGS
    r = conn.call(API_LIST_TRANSACTIONS, version, body, flexible=True)
    r.i32()
    err = r.i16()
    unknown = [_cstr(r) for _ in range(r.uvarint() - 1)]
    txns = {}
    for _ in range(r.uvarint() - 1):
        tid, pid, state = _cstr(r), r.i64(), _cstr(r)
        r.skip_tags()
        txns[tid] = (pid, state)
    r.skip_tags()
    return err, unknown, txns


def txn_batch(values, pid, epoch, seq):
    return batch(values, pid, epoch, seq, transactional=True)


def raw_txn(conn, tid, timeout_ms=60000):
    err, pid, epoch = init_producer_id(conn, tid, timeout_ms)
    assert err == w.NONE and pid >= 0, (err, pid, epoch)
    return pid, epoch


# --------------------------------------------------------------------------
# Client helpers.
# --------------------------------------------------------------------------


def txn_producer(bootstrap, tid=None, **conf):
    p = ck.producer(bootstrap, **{"transactional.id": tid or unique_topic("txid"), **conf})
    p.init_transactions(30)
    return p


class Deliveries:
    def __init__(self):
        self.errors = []
        self.ok = 0

    def __call__(self, err, msg):
        if err is None:
            self.ok += 1
        else:
            self.errors.append(err)


def send(p, topic, partition, values, dl=None):
    """Produce inside the current transaction and wait until the records are
    in the log (flush), so they are visible to read_uncommitted."""
    dl = dl or Deliveries()
    for v in values:
        p.produce(topic, v, partition=partition, on_delivery=dl)
    assert p.flush(30) == 0
    assert not dl.errors, dl.errors
    return dl


def read_partition(bootstrap, topic, partition, isolation, timeout=30):
    """Values a confluent consumer reads from offset 0 until end of partition
    (the high watermark for read_uncommitted, the last stable offset for
    read_committed)."""
    c = ck.consumer(bootstrap, **{"isolation.level": isolation, "enable.partition.eof": True})
    out = []
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"no end of partition after {timeout}s; got {len(out)}"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consume error: {m.error()}")
            out.append(m.value())
    finally:
        c.close()


def committed_values(bootstrap, topic, partition):
    return read_partition(bootstrap, topic, partition, "read_committed")


def all_values(bootstrap, topic, partition):
    return read_partition(bootstrap, topic, partition, "read_uncommitted")


def vals(prefix, n):
    return [b"%s-%03d" % (prefix.encode(), i) for i in range(n)]


def lso_and_hw(conn, topic, partition):
    e1, lso = list_offset(conn, topic, partition, isolation=1)
    e0, hw = list_offset(conn, topic, partition, isolation=0)
    assert (e0, e1) == (w.NONE, w.NONE)
    return lso, hw


# --------------------------------------------------------------------------
# confluent-kafka transactional producer.
# --------------------------------------------------------------------------


def test_commit_is_visible_to_read_committed(broker):
    ta, tb = unique_topic("txa"), unique_topic("txb")
    ck.create_topic(broker.bootstrap, ta, partitions=3)
    ck.create_topic(broker.bootstrap, tb, partitions=2)
    parts = [(ta, p) for p in range(3)] + [(tb, p) for p in range(2)]
    p = txn_producer(broker.bootstrap)
    p.begin_transaction()
    for t, part in parts:
        send(p, t, part, vals(f"{t}-{part}", 10))
    p.commit_transaction(30)
    with Wire(broker.bootstrap) as c:
        pids = set()
        for t, part in parts:
            assert committed_values(broker.bootstrap, t, part) == vals(f"{t}-{part}", 10)
            # ten records and the commit marker
            assert lso_and_hw(c, t, part) == (11, 11)
            res = fetch_all(c, t, part)
            data = [b for b in res.batches if not b.control]
            markers = [b for b in res.batches if b.control]
            assert all(b.transactional and b.producer_id >= 0 for b in data)
            assert len(markers) == 1 and markers[0].base_offset == 10
            assert markers[0].control_type() == CONTROL_COMMIT
            pids |= {b.producer_id for b in res.batches}
        assert len(pids) == 1, f"one producer wrote all partitions: {pids}"
    # the producer goes on with a second transaction
    p.begin_transaction()
    send(p, ta, 0, vals("second", 3))
    p.commit_transaction(30)
    assert committed_values(broker.bootstrap, ta, 0) == vals(f"{ta}-0", 10) + vals("second", 3)


def test_abort_is_hidden_from_read_committed(broker):
    topic = unique_topic("txab")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap)
    p.begin_transaction()
    for part in range(2):
        send(p, topic, part, vals(f"ab{part}", 10))
    p.abort_transaction(30)
    with Wire(broker.bootstrap) as c:
        for part in range(2):
            assert committed_values(broker.bootstrap, topic, part) == []
            assert all_values(broker.bootstrap, topic, part) == vals(f"ab{part}", 10)
            assert lso_and_hw(c, topic, part) == (11, 11)
            res = fetch(c, topic, part, 0, isolation=1)
            pid = res.batches[0].producer_id
            assert res.aborted == [(pid, 0)], res.aborted
            # a fetch from inside the aborted transaction is told about it too
            mid = fetch(c, topic, part, 5, isolation=1)
            assert mid.aborted == [(pid, 0)], mid.aborted
            assert all(b.control or b.producer_id == pid for b in mid.batches)
            last = fetch_all(c, topic, part).batches[-1]
            assert last.control and last.control_type() == CONTROL_ABORT
    # after an abort the producer can commit
    p.begin_transaction()
    send(p, topic, 0, vals("after", 2))
    p.commit_transaction(30)
    assert committed_values(broker.bootstrap, topic, 0) == vals("after", 2)


def test_interleaved_commits_and_aborts(broker):
    """Also after kill -9: aborted transactions stay hidden (the aborted
    transaction index and producer state are rebuilt)."""
    topic = unique_topic("txmix")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap)
    aborted = {1, 4, 5, 8}
    want_committed = {0: [], 1: []}
    want_all = {0: [], 1: []}
    for i in range(10):
        p.begin_transaction()
        for part in range(2):
            v = vals(f"tx{i}-p{part}", 3 + i % 3)
            send(p, topic, part, v)
            want_all[part] += v
            if i not in aborted:
                want_committed[part] += v
        if i in aborted:
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
        # a plain (non-transactional) record between transactions
        plain = [b"plain-%d-p%d" % (i, part) for part in range(2)]
        ck.produce_and_wait(broker.bootstrap, topic,
                            [{"value": plain[part], "partition": part} for part in range(2)])
        for part in range(2):
            want_committed[part].append(plain[part])
            want_all[part].append(plain[part])
    with Wire(broker.bootstrap) as c:
        for part in range(2):
            assert committed_values(broker.bootstrap, topic, part) == want_committed[part]
            assert all_values(broker.bootstrap, topic, part) == want_all[part]
            res = fetch_all(c, topic, part, isolation=1)
            assert len(res.aborted) == len(aborted), res.aborted
            assert [b.control_type() for b in res.batches if b.control] == [
                CONTROL_ABORT if i in aborted else CONTROL_COMMIT for i in range(10)]
    broker.kill9()
    broker.restart()
    with Wire(broker.bootstrap) as c:
        for part in range(2):
            assert committed_values(broker.bootstrap, topic, part) == want_committed[part]
            assert len(fetch_all(c, topic, part, isolation=1).aborted) == len(aborted)
            hw_ = lso_and_hw(c, topic, part)
            assert hw_[0] == hw_[1]
    with psycopg.connect(host="127.0.0.1", port=broker.sql_port, user="anyone", dbname="anydb",
                         connect_timeout=10, autocommit=True) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{topic}"').fetchall() == [
            (len(want_committed[0]) + len(want_committed[1]),)]
    # the producer goes on after the restart
    p.begin_transaction()
    send(p, topic, 0, vals("post", 2))
    p.commit_transaction(30)
    assert committed_values(broker.bootstrap, topic, 0) == want_committed[0] + vals("post", 2)


def test_two_transactional_producers_in_one_partition(broker):
    """read_committed drops exactly the aborted producer's records; the
    stable offset waits for the older of two open transactions."""
    topic = unique_topic("txtwo")
    ck.create_topic(broker.bootstrap, topic)
    pa, pb = txn_producer(broker.bootstrap), txn_producer(broker.bootstrap)
    pa.begin_transaction()
    pb.begin_transaction()
    send(pa, topic, 0, vals("a1", 3))  # 0-2
    send(pb, topic, 0, vals("b1", 3))  # 3-5
    send(pa, topic, 0, vals("a2", 3))  # 6-8
    send(pb, topic, 0, vals("b2", 3))  # 9-11
    with Wire(broker.bootstrap) as c:
        assert lso_and_hw(c, topic, 0) == (0, 12)
        pb.commit_transaction(30)  # marker 12; a's transaction (from 0) still open
        assert lso_and_hw(c, topic, 0) == (0, 13)
        assert committed_values(broker.bootstrap, topic, 0) == []
        pa.abort_transaction(30)  # marker 13
        assert lso_and_hw(c, topic, 0) == (14, 14)
        res = fetch_all(c, topic, 0, isolation=1)
        pid_a = res.batches[0].producer_id
        assert res.aborted == [(pid_a, 0)], res.aborted
    assert committed_values(broker.bootstrap, topic, 0) == vals("b1", 3) + vals("b2", 3)
    assert all_values(broker.bootstrap, topic, 0) == (
        vals("a1", 3) + vals("b1", 3) + vals("a2", 3) + vals("b2", 3))


def test_open_transaction_holds_back_last_stable_offset(broker):
    topic = unique_topic("txlso")
    ck.create_topic(broker.bootstrap, topic)
    p = txn_producer(broker.bootstrap)
    p.begin_transaction()
    send(p, topic, 0, vals("A", 5))  # offsets 0-4, marker 5
    p.commit_transaction(30)
    p.begin_transaction()
    send(p, topic, 0, vals("B", 5))  # offsets 6-10, open
    # a plain producer writes behind the open transaction: acked, not yet stable
    ck.produce_and_wait(broker.bootstrap, topic,
                        [{"value": v, "partition": 0} for v in vals("plain", 3)])  # 11-13
    with Wire(broker.bootstrap) as c:
        assert lso_and_hw(c, topic, 0) == (6, 14)
        res = fetch(c, topic, 0, 0, isolation=1)
        assert (res.error, res.high_watermark, res.last_stable_offset) == (w.NONE, 14, 6)
        assert all(b.last_offset < 6 for b in res.batches), res.batches
        assert [v for _, _, v in res.records()] == vals("A", 5)
        # at the stable offset read_committed gets nothing, read_uncommitted everything
        assert fetch(c, topic, 0, 6, isolation=1).batches == []
        assert len(fetch(c, topic, 0, 6, isolation=0).records()) == 8
        # a read_uncommitted fetch reports the same last stable offset
        assert fetch(c, topic, 0, 0, isolation=0).last_stable_offset == 6
    assert committed_values(broker.bootstrap, topic, 0) == vals("A", 5)
    assert all_values(broker.bootstrap, topic, 0) == vals("A", 5) + vals("B", 5) + vals("plain", 3)
    # a read_committed consumer starting at the end starts at the stable offset
    cons = ck.consumer(broker.bootstrap, **{"isolation.level": "read_committed",
                                           "auto.offset.reset": "latest"})
    try:
        tp = TopicPartition(topic, 0)
        # librdkafka's watermark query asks ListOffsets with the consumer's isolation level
        assert cons.get_watermark_offsets(tp, timeout=10, cached=False) == (0, 6)
        c_unc = ck.consumer(broker.bootstrap, **{"isolation.level": "read_uncommitted"})
        try:
            assert c_unc.get_watermark_offsets(tp, timeout=10, cached=False) == (0, 14)
        finally:
            c_unc.close()
        cons.assign([TopicPartition(topic, 0, -1)])  # OFFSET_END
        # fetching (which follows the OFFSET_END lookup) has begun once the
        # cached watermarks are known
        wait_until(lambda: cons.consume(10, 0.1) == []
                   and cons.get_watermark_offsets(tp, cached=True)[1] >= 0,
                   15, msg="the consumer's first fetch")
        p.commit_transaction(30)  # marker at 14
        got = []
        wait_until(lambda: got.extend(m.value() for m in cons.consume(100, 0.2)
                                      if not m.error()) or len(got) >= 8,
                   20, msg="records after the commit")
        # started at offset 6 (the LSO), not 14: B and the plain records arrive
        assert got == vals("B", 5) + vals("plain", 3)
    finally:
        cons.close()
    with Wire(broker.bootstrap) as c:
        assert lso_and_hw(c, topic, 0) == (15, 15)
    assert committed_values(broker.bootstrap, topic, 0) == (
        vals("A", 5) + vals("B", 5) + vals("plain", 3))


API_OFFSET_FETCH = 9
UNSTABLE_OFFSET_COMMIT = 88


def offset_fetch(conn, group, topic, partition, require_stable):
    """OffsetFetch v7 -> (partition error, committed offset)."""
    body = (w.compact_string(group)
            + compact_array([w.compact_string(topic) + compact_array([w.i32(partition)])
                             + w.EMPTY_TAGS])
            + w.i8(1 if require_stable else 0) + w.EMPTY_TAGS)
    r = conn.call(API_OFFSET_FETCH, 7, body, flexible=True)
    r.i32()
    out = None
    for _ in range(r.uvarint() - 1):
        t = _cstr(r)
        for _ in range(r.uvarint() - 1):
            p, off, _epoch, _meta, err = r.i32(), r.i64(), r.i32(), _cstr(r), r.i16()
            r.skip_tags()
            if (t, p) == (topic, partition):
                out = (err, off)
        r.skip_tags()
    assert r.i16() == w.NONE
    return out


def test_consume_transform_produce_commits_offsets_with_the_transaction(broker_factory):
    broker = broker_factory("--group-initial-rebalance-delay-ms", "0")
    src, dst = unique_topic("ctpin"), unique_topic("ctpout")
    ck.create_topic(broker.bootstrap, src)
    ck.create_topic(broker.bootstrap, dst)
    ck.produce_and_wait(broker.bootstrap, src, [{"value": v, "partition": 0} for v in vals("in", 30)])
    group = unique_topic("ctpg")
    cons = ck.consumer(broker.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                           "isolation.level": "read_committed"})
    p = txn_producer(broker.bootstrap)
    tp = TopicPartition(src, 0)

    def take(n):
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n:
            assert time.monotonic() < deadline, f"consumed {len(got)}/{n}"
            for m in cons.consume(n - len(got), 0.5):
                assert not m.error(), m.error()
                got.append(m)
        return got

    def committed():
        return cons.committed([tp], timeout=15)[0].offset

    def transform_and_send(msgs, commit):
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, b"out-" + m.value(), partition=0)
        assert p.flush(30) == 0  # in the log, also when aborted (abort purges unsent records)
        p.send_offsets_to_transaction([TopicPartition(src, 0, msgs[-1].offset() + 1)],
                                      cons.consumer_group_metadata(), 30)
        # pending: a stable read is refused, a plain read gives the old offset
        before = msgs[0].offset() if msgs[0].offset() else -1
        with Wire(broker.bootstrap) as c:
            assert offset_fetch(c, group, src, 0, True) == (UNSTABLE_OFFSET_COMMIT, -1)
            assert offset_fetch(c, group, src, 0, False) == (w.NONE, before)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    try:
        cons.subscribe([src])
        first = take(10)
        transform_and_send(first, commit=True)
        assert committed() == 10
        second = take(10)
        transform_and_send(second, commit=False)
        assert committed() == 10, "an aborted transaction's offsets were committed"
        # the application rewinds to the committed offset and redoes the batch
        cons.seek(TopicPartition(src, 0, 10))
        again = take(10)
        assert [m.value() for m in again] == [m.value() for m in second]
        transform_and_send(again, commit=True)
        assert committed() == 20
    finally:
        cons.close()
    assert committed_values(broker.bootstrap, dst, 0) == [b"out-" + v for v in vals("in", 20)]
    assert len(all_values(broker.bootstrap, dst, 0)) == 30
    # a fresh member of the group resumes at the transactionally committed offset
    c2 = ck.consumer(broker.bootstrap, **{"group.id": group})
    try:
        assert c2.committed([tp], timeout=15)[0].offset == 20
    finally:
        c2.close()


def test_second_producer_fences_the_first(broker):
    topic = unique_topic("txfence")
    ck.create_topic(broker.bootstrap, topic)
    tid = unique_topic("fence")
    p1 = txn_producer(broker.bootstrap, tid)
    p1.begin_transaction()
    send(p1, topic, 0, vals("p1", 3))
    p2 = txn_producer(broker.bootstrap, tid)  # fences p1, aborts its transaction
    with pytest.raises(KafkaException) as ei:
        p1.commit_transaction(15)
    err = ei.value.args[0]
    assert err.fatal(), f"fenced producer got a non-fatal error: {err}"
    assert err.code() in FENCED_CODES, err
    # a fenced producer stays fenced
    with pytest.raises(KafkaException):
        p1.begin_transaction()
        p1.produce(topic, b"zombie", partition=0)
        p1.commit_transaction(15)
    p2.begin_transaction()
    send(p2, topic, 0, vals("p2", 3))
    p2.commit_transaction(30)
    assert committed_values(broker.bootstrap, topic, 0) == vals("p2", 3)
    assert all_values(broker.bootstrap, topic, 0) == vals("p1", 3) + vals("p2", 3)
    with Wire(broker.bootstrap) as c:
        d = describe_transactions(c, [tid])[tid]
        assert (d["error"], d["state"]) == (w.NONE, "CompleteCommit"), d
        assert d["producer_epoch"] >= 1, f"the second producer did not bump the epoch: {d}"


def test_transaction_timeout_is_aborted_by_the_broker(broker_factory):
    broker = broker_factory(*CLEANUP_FAST)
    topic = unique_topic("txto")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    tid = unique_topic("slow")
    p = txn_producer(broker.bootstrap, tid, **{"transaction.timeout.ms": 3000,
                                               "message.timeout.ms": 3000,
                                               "socket.timeout.ms": 3000})
    p.begin_transaction()
    for part in range(2):
        send(p, topic, part, vals(f"late{part}", 5))
    with Wire(broker.bootstrap) as c:
        before = describe_transactions(c, [tid])[tid]
        assert before["state"] == "Ongoing"
        assert lso_and_hw(c, topic, 0) == (0, 5)
        # the coordinator aborts it: the stable offset moves past the marker
        wait_until(lambda: all(lso_and_hw(c, topic, part) == (6, 6) for part in range(2)), 20,
                   msg="the timed-out transaction to be aborted")

        def complete_abort():
            d = describe_transactions(c, [tid])[tid]
            return d if d["state"] == "CompleteAbort" else None

        # the markers are written before the coordinator records the abort complete
        d = wait_until(complete_abort, 10, msg="the abort to complete")
        assert d["producer_id"] == before["producer_id"]
        assert d["producer_epoch"] > before["producer_epoch"], "abort on timeout must fence"
        for part in range(2):
            res = fetch(c, topic, part, 0, isolation=1)
            assert res.aborted == [(before["producer_id"], 0)]
    for part in range(2):
        assert committed_values(broker.bootstrap, topic, part) == []
        assert all_values(broker.bootstrap, topic, part) == vals(f"late{part}", 5)
    # the producer learns its transaction is gone
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    # the partition is not stuck: later records are readable committed
    ck.produce_and_wait(broker.bootstrap, topic, [{"value": b"later", "partition": 0}])
    assert committed_values(broker.bootstrap, topic, 0) == [b"later"]


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_broker_restart_mid_transaction(broker_factory, how):
    """Committed before the restart stays committed; open at the restart is
    aborted on timeout afterwards and is never visible to read_committed."""
    broker = broker_factory(*CLEANUP_FAST)
    topic = unique_topic("txrs")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    pa = txn_producer(broker.bootstrap)
    pa.begin_transaction()
    for part in range(2):
        send(pa, topic, part, vals(f"A{part}", 4))
    pa.commit_transaction(30)
    tid_b = unique_topic("open")
    pb = txn_producer(broker.bootstrap, tid_b, **{"transaction.timeout.ms": 3000,
                                                  "message.timeout.ms": 3000,
                                                  "socket.timeout.ms": 3000})
    pb.begin_transaction()
    for part in range(2):
        send(pb, topic, part, vals(f"B{part}", 4))
    if how == "kill9":
        broker.kill9()
    broker.restart()

    def settled(c):
        ends = []
        for part in range(2):
            res = fetch_all(c, topic, part, isolation=1)
            visible = [v for _, _, v in res.records()]
            aborted_pids = {pid for pid, _ in res.aborted}
            # a read_committed reader drops data of aborted producers' transactions
            shown = [v for b in res.batches if not b.control
                     and not (b.transactional and b.producer_id in aborted_pids)
                     for _, _, v in b.records]
            assert not any(v.startswith(b"B") for v in shown), (
                f"open transaction visible to read_committed: {visible}")
            ends.append(lso_and_hw(c, topic, part))
        return all(e == (10, 10) for e in ends)

    with Wire(broker.bootstrap) as c:
        wait_until(lambda: settled(c), 25, msg="the open transaction to be aborted after restart")
        # the markers are written before the coordinator records the abort complete
        wait_until(lambda: describe_transactions(c, [tid_b])[tid_b]["state"] == "CompleteAbort",
                   10, msg="the abort to complete")
    for part in range(2):
        assert committed_values(broker.bootstrap, topic, part) == vals(f"A{part}", 4)
        assert all_values(broker.bootstrap, topic, part) == vals(f"A{part}", 4) + vals(f"B{part}", 4)
    with pytest.raises(KafkaException):
        pb.commit_transaction(10)
    # and the committed transaction is still committed after one more restart
    broker.restart()
    for part in range(2):
        assert committed_values(broker.bootstrap, topic, part) == vals(f"A{part}", 4)


@pytest.mark.parametrize("how,segment_bytes", [("sigterm", None), ("kill9", None),
                                               ("kill9", 2000)],
                         ids=["sigterm", "kill9", "kill9-small-segments"])
def test_open_transaction_survives_restart_and_commits(broker_factory, how, segment_bytes):
    """Within its timeout an open transaction outlives a restart: the stable
    offset still waits for it, and its producer goes on and commits."""
    broker = broker_factory(*(["--log-segment-bytes", str(segment_bytes)] if segment_bytes else []))
    topic = unique_topic("txsurv")
    ck.create_topic(broker.bootstrap, topic)
    tid = unique_topic("surv")
    pad = b"p" * 60
    with Wire(broker.bootstrap) as c:
        for i in range(10):
            assert produce(c, topic, 0, batch([b"plain-%d" % i + pad]))[0] == w.NONE
        pid, epoch = raw_txn(c, tid, 60000)
        assert add_partitions(c, tid, pid, epoch, {topic: [0]}) == {(topic, 0): w.NONE}
        seq = 0
        for i in range(20):
            err, _ = produce(c, topic, 0, txn_batch([b"tx-%02d" % i + pad], pid, epoch, seq), tid)
            assert err == w.NONE
            seq += 1
        for i in range(10, 15):
            assert produce(c, topic, 0, batch([b"plain-%d" % i + pad]))[0] == w.NONE
        before = lso_and_hw(c, topic, 0)
        assert before == (10, 35)
    if segment_bytes:
        assert len(list(broker.data_dir.rglob("*.log"))) > 3, "segments did not roll"
    if how == "kill9":
        broker.kill9()
    broker.restart()
    with Wire(broker.bootstrap) as c:
        assert lso_and_hw(c, topic, 0) == before
        assert [v.rstrip(b"p") for _, _, v in fetch_all(c, topic, 0, isolation=1).records()] == [
            b"plain-%d" % i for i in range(10)]
        d = describe_transactions(c, [tid])[tid]
        assert (d["state"], d["producer_id"], d["producer_epoch"], d["topics"]) == (
            "Ongoing", pid, epoch, {topic: [0]})
        [st] = describe_producers(c, topic, [0])[0][1]
        assert (st["producer_id"], st["last_sequence"], st["current_txn_start_offset"]) == (
            pid, seq - 1, 10)
        # the producer's next batch is in sequence, its commit completes the transaction
        assert produce(c, topic, 0, txn_batch([b"tx-20"], pid, epoch, seq), tid) == (w.NONE, 35)
        assert end_txn(c, tid, pid, epoch, True) == w.NONE
        assert lso_and_hw(c, topic, 0) == (37, 37)
        got = [v.rstrip(b"p") for _, _, v in fetch_all(c, topic, 0, isolation=1).records()]
        assert got == ([b"plain-%d" % i for i in range(10)] + [b"tx-%02d" % i for i in range(20)]
                       + [b"plain-%d" % i for i in range(10, 15)] + [b"tx-20"])


def test_read_committed_long_poll_waits_for_the_commit(broker):
    """A read_committed fetch parked at the stable offset is not answered
    (empty) by transactional appends that stay unstable; the commit wakes it
    with the records."""
    topic = unique_topic("txlp")
    ck.create_topic(broker.bootstrap, topic)
    tid = unique_topic("lp")
    with Wire(broker.bootstrap) as c:
        pid, epoch = raw_txn(c, tid)
        assert add_partitions(c, tid, pid, epoch, {topic: [0]}) == {(topic, 0): w.NONE}
    fetcher = Wire(broker.bootstrap, timeout=30)
    try:
        body = (w.i32(-1) + w.i32(20000) + w.i32(1) + w.i32(50 << 20) + w.i8(1)
                + w.array([w.string(topic) + w.array([w.i32(0) + w.i64(0) + w.i32(10 << 20)])]))
        cid = fetcher.send(w.API_FETCH, 4, body)  # parks: nothing stable yet
        t0 = time.monotonic()
        with Wire(broker.bootstrap) as c:
            for i in range(3):
                assert produce(c, topic, 0, txn_batch([b"lp-%d" % i], pid, epoch, i), tid) == (
                    w.NONE, i)
            assert end_txn(c, tid, pid, epoch, True) == w.NONE
        r = fetcher.recv(cid)
        elapsed = time.monotonic() - t0
    finally:
        fetcher.close()
    r.i32()
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    part, err, hw_, lso = r.i32(), r.i16(), r.i64(), r.i64()
    n_aborted = r.i32()
    for _ in range(max(n_aborted, 0)):
        r.i64()
        r.i64()
    recs = [v for b in parse_batches(r.nbytes()) if not b.control for _, _, v in b.records]
    assert (part, err) == (0, w.NONE)
    assert recs == [b"lp-0", b"lp-1", b"lp-2"], (
        f"read_committed long poll answered with {recs} (hw {hw_}, lso {lso}) after {elapsed:.1f}s")
    assert elapsed < 10


def test_kafka_python_transactions(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    topic = unique_topic("kptx")
    ck.create_topic(broker.bootstrap, topic)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique_topic("kptid"))
    try:
        p.init_transactions()
        p.begin_transaction()
        futs = [p.send(topic, v, partition=0) for v in vals("c1", 5)]
        p.commit_transaction()
        p.begin_transaction()
        futs += [p.send(topic, v, partition=0) for v in vals("ab", 4)]
        p.flush()
        p.abort_transaction()
        p.begin_transaction()
        futs += [p.send(topic, v, partition=0) for v in vals("c2", 3)]
        p.commit_transaction()
        assert [f.get(timeout=10).offset for f in futs] == (
            list(range(0, 5)) + list(range(6, 10)) + list(range(11, 14)))
    finally:
        p.close(timeout=10)
    assert committed_values(broker.bootstrap, topic, 0) == vals("c1", 5) + vals("c2", 3)
    # kafka-python's own read_committed consumer agrees
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                       enable_auto_commit=False, consumer_timeout_ms=500)
    try:
        tp = KTP(topic, 0)
        kc.assign([tp])
        kc.seek(tp, 0)
        got = []

        def caught_up():
            for recs in kc.poll(timeout_ms=200).values():
                got.extend(r.value for r in recs)
            return kc.position(tp) >= 15

        wait_until(caught_up, 20, msg="kafka-python consumer past the last marker")
        assert got == vals("c1", 5) + vals("c2", 3)
    finally:
        kc.close()


# --------------------------------------------------------------------------
# Admin APIs (raw).
# --------------------------------------------------------------------------


def test_describe_and_list_transactions_and_producers(broker):
    topic = unique_topic("txadm")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    tid = unique_topic("adm")
    t0 = int(time.time() * 1000)
    with Wire(broker.bootstrap) as c:
        pid, epoch = raw_txn(c, tid, 45000)
        d = describe_transactions(c, [tid])[tid]
        assert (d["error"], d["state"], d["producer_id"], d["producer_epoch"], d["timeout_ms"],
                d["topics"]) == (w.NONE, "Empty", pid, epoch, 45000, {})
        assert add_partitions(c, tid, pid, epoch, {topic: [0, 1]}) == {
            (topic, 0): w.NONE, (topic, 1): w.NONE}
        assert produce(c, topic, 1, batch([b"plain"])) == (w.NONE, 0)
        assert produce(c, topic, 0, txn_batch([b"t0", b"t1"], pid, epoch, 0), tid) == (w.NONE, 0)
        assert produce(c, topic, 1, txn_batch([b"t2"], pid, epoch, 0), tid) == (w.NONE, 1)

        other = unique_topic("nosuchtid")
        ds = describe_transactions(c, [tid, other])
        d = ds[tid]
        assert (d["error"], d["state"], d["producer_id"], d["producer_epoch"]) == (
            w.NONE, "Ongoing", pid, epoch)
        assert d["topics"] == {topic: [0, 1]}
        assert t0 - 1000 <= d["start_time_ms"] <= int(time.time() * 1000) + 1000, d
        assert ds[other]["error"] == TRANSACTIONAL_ID_NOT_FOUND

        err, unknown, txns = list_transactions(c)
        assert (err, unknown) == (w.NONE, []) and txns[tid] == (pid, "Ongoing")
        assert list_transactions(c, states=["Ongoing"])[2].get(tid) == (pid, "Ongoing")
        assert tid not in list_transactions(c, states=["CompleteCommit", "Empty"])[2]
        err, unknown, _ = list_transactions(c, states=["Ongoing", "Bogus"])
        assert (err, unknown) == (w.NONE, ["Bogus"])
        assert list(list_transactions(c, pids=[pid])[2]) == [tid]
        assert tid not in list_transactions(c, pids=[pid + 1_000_000])[2]
        assert tid in list_transactions(c, duration_ms=-1)[2]
        assert tid not in list_transactions(c, duration_ms=3_600_000)[2]

        prod = describe_producers(c, topic, [0, 1])
        assert prod[0][0] == w.NONE and prod[1][0] == w.NONE
        [s0] = prod[0][1]
        [s1] = prod[1][1]
        assert (s0["producer_id"], s0["producer_epoch"], s0["last_sequence"],
                s0["current_txn_start_offset"]) == (pid, epoch, 1, 0)
        assert (s1["producer_id"], s1["last_sequence"], s1["current_txn_start_offset"]) == (pid, 0, 1)

        assert end_txn(c, tid, pid, epoch, commit=True) == w.NONE
        d = describe_transactions(c, [tid])[tid]
        assert (d["state"], d["topics"]) == ("CompleteCommit", {})
        assert tid not in list_transactions(c, states=["Ongoing"])[2]
        assert list_transactions(c, states=["CompleteCommit"])[2].get(tid) == (pid, "CompleteCommit")
        prod = describe_producers(c, topic, [0, 1])
        assert [s["current_txn_start_offset"] for s in prod[0][1]] == [-1]
        assert [s["current_txn_start_offset"] for s in prod[1][1]] == [-1]
        # an unknown partition is an error for that partition only
        assert describe_producers(c, topic, [7])[7][0] == w.UNKNOWN_TOPIC_OR_PARTITION


# --------------------------------------------------------------------------
# Bad input (raw).
# --------------------------------------------------------------------------


def test_wrong_producer_id_or_epoch(broker):
    topic = unique_topic("txbad")
    ck.create_topic(broker.bootstrap, topic)
    tid = unique_topic("bad")
    with Wire(broker.bootstrap) as c:
        raw_txn(c, tid)
        pid, epoch = raw_txn(c, tid)  # second init bumps the epoch
        assert epoch == 1
        parts = {topic: [0]}
        assert add_partitions(c, tid, pid + 7, epoch, parts) == {(topic, 0): INVALID_PRODUCER_ID_MAPPING}
        assert add_partitions(c, tid, pid, epoch - 1, parts) == {(topic, 0): PRODUCER_FENCED}
        assert add_partitions(c, tid, pid, epoch + 1, parts) == {(topic, 0): PRODUCER_FENCED}
        assert add_partitions(c, unique_topic("nope"), pid, epoch, parts) == {
            (topic, 0): INVALID_PRODUCER_ID_MAPPING}
        assert add_partitions(c, tid, pid, epoch, parts) == {(topic, 0): w.NONE}
        assert produce(c, topic, 0, txn_batch([b"x"], pid, epoch, 0), tid) == (w.NONE, 0)
        assert end_txn(c, tid, pid + 7, epoch, True) == INVALID_PRODUCER_ID_MAPPING
        assert end_txn(c, tid, pid, epoch - 1, True) == PRODUCER_FENCED
        assert end_txn(c, unique_topic("nope"), pid, epoch, True) == INVALID_PRODUCER_ID_MAPPING
        # Versions before KIP-588 (v0-1) do not know PRODUCER_FENCED: Kafka
        # answers them INVALID_PRODUCER_EPOCH.
        for v in (0, 1):
            assert add_partitions(c, tid, pid, epoch - 1, parts, version=v) == {
                (topic, 0): INVALID_PRODUCER_EPOCH}
            assert end_txn(c, tid, pid, epoch - 1, True, version=v) == INVALID_PRODUCER_EPOCH
        # none of that touched the transaction
        assert describe_transactions(c, [tid])[tid]["state"] == "Ongoing"
        assert end_txn(c, tid, pid, epoch, True) == w.NONE
        assert fetch(c, topic, 0, 0, isolation=1).records() == [(0, None, b"x")]


def test_end_txn_without_add_partitions_is_invalid_txn_state(broker):
    tid = unique_topic("noadd")
    with Wire(broker.bootstrap) as c:
        pid, epoch = raw_txn(c, tid)
        assert end_txn(c, tid, pid, epoch, True) == INVALID_TXN_STATE
        assert describe_transactions(c, [tid])[tid]["state"] == "Empty"


def test_transactional_produce_to_partition_not_in_transaction(broker):
    topic = unique_topic("txnotadded")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    tid = unique_topic("na")
    with Wire(broker.bootstrap) as c:
        pid, epoch = raw_txn(c, tid)
        # before any AddPartitionsToTxn
        err, _ = produce(c, topic, 0, txn_batch([b"early"], pid, epoch, 0), tid)
        assert err == INVALID_TXN_STATE
        assert add_partitions(c, tid, pid, epoch, {topic: [0]}) == {(topic, 0): w.NONE}
        err, _ = produce(c, topic, 1, txn_batch([b"stray"], pid, epoch, 0), tid)
        assert err == INVALID_TXN_STATE
        assert list_offset(c, topic, 1) == (w.NONE, 0)
        assert produce(c, topic, 0, txn_batch([b"ok"], pid, epoch, 0), tid) == (w.NONE, 0)
        assert end_txn(c, tid, pid, epoch, True) == w.NONE
        assert [v for _, _, v in fetch(c, topic, 0, 0, isolation=1).records()] == [b"ok"]
        assert list_offset(c, topic, 1) == (w.NONE, 0)
        # after the commit the partition is no longer in a transaction
        err, _ = produce(c, topic, 0, txn_batch([b"late"], pid, epoch, 1), tid)
        assert err == INVALID_TXN_STATE
        assert list_offset(c, topic, 0) == (w.NONE, 2)


def test_init_producer_id_bad_transactional_id_or_timeout(broker_factory):
    broker = broker_factory("--transaction-max-timeout-ms", "60000")
    with Wire(broker.bootstrap) as c:
        assert init_producer_id(c, "", 10000) == (INVALID_REQUEST, -1, -1)
        tid = unique_topic("tmo")
        assert init_producer_id(c, tid, 0)[0] == INVALID_TRANSACTION_TIMEOUT
        assert init_producer_id(c, tid, 60001)[0] == INVALID_TRANSACTION_TIMEOUT
        assert describe_transactions(c, [tid])[tid]["error"] == TRANSACTIONAL_ID_NOT_FOUND
        err, pid, epoch = init_producer_id(c, tid, 60000)
        assert err == w.NONE and pid >= 0 and epoch == 0


def test_concurrent_end_txn_commits_once(broker):
    topic = unique_topic("txconc")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    tid = unique_topic("conc")
    with Wire(broker.bootstrap) as c:
        pid, epoch = raw_txn(c, tid)
        assert add_partitions(c, tid, pid, epoch, {topic: [0, 1]}) == {
            (topic, 0): w.NONE, (topic, 1): w.NONE}
        for part in range(2):
            assert produce(c, topic, part, txn_batch(vals(f"c{part}", 3), pid, epoch, 0),
                           tid) == (w.NONE, 0)
    conns = [Wire(broker.bootstrap) for _ in range(2)]
    answers = [None, None]
    barrier = threading.Barrier(2)

    def run(i):
        barrier.wait(10)
        answers[i] = end_txn(conns[i], tid, pid, epoch, True)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for cn in conns:
        cn.close()
    assert all(a in (w.NONE, CONCURRENT_TRANSACTIONS) for a in answers), answers
    assert w.NONE in answers, answers
    with Wire(broker.bootstrap) as c:
        wait_until(lambda: describe_transactions(c, [tid])[tid]["state"] == "CompleteCommit", 10,
                   msg="the commit to complete")
        for part in range(2):
            res = fetch_all(c, topic, part)
            markers = [b for b in res.batches if b.control]
            assert [m.control_type() for m in markers] == [CONTROL_COMMIT], markers
            assert lso_and_hw(c, topic, part) == (4, 4)
            assert [v for _, _, v in fetch(c, topic, part, 0, isolation=1).records()] == vals(
                f"c{part}", 3)
        # a retried commit is answered NONE and writes nothing; an abort now is refused
        assert end_txn(c, tid, pid, epoch, True) == w.NONE
        assert end_txn(c, tid, pid, epoch, False) == INVALID_TXN_STATE
        assert lso_and_hw(c, topic, 0) == (4, 4)


# --------------------------------------------------------------------------
# SQL gateway.
# --------------------------------------------------------------------------


def test_sql_shows_committed_transactions_only(broker):
    topic = unique_topic("txsql")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap)
    p.begin_transaction()
    for part in range(2):
        send(p, topic, part, vals(f"A{part}", 5))
    p.commit_transaction(30)
    p.begin_transaction()
    for part in range(2):
        send(p, topic, part, vals(f"B{part}", 3))
    p.abort_transaction(30)
    ck.produce_and_wait(broker.bootstrap, topic, [{"value": b"P1-%d" % part, "partition": part}
                                                  for part in range(2)])
    p.begin_transaction()
    for part in range(2):
        send(p, topic, part, vals(f"C{part}", 2))
    # behind the open transaction: not stable yet
    ck.produce_and_wait(broker.bootstrap, topic, [{"value": b"P2-%d" % part, "partition": part}
                                                  for part in range(2)])

    def q(sql):
        with psycopg.connect(host="127.0.0.1", port=broker.sql_port, user="anyone",
                             dbname="anydb", connect_timeout=10, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    count = f'SELECT count(*) FROM "{topic}"'
    assert q(count) == [(12,)]  # A (10) + P1 (2)
    assert q(f"SELECT count(*) FROM \"{topic}\" WHERE value_text LIKE 'B%'") == [(0,)]
    assert q(f"SELECT count(*) FROM \"{topic}\" WHERE value_text LIKE 'C%'") == [(0,)]
    p.commit_transaction(30)
    assert q(count) == [(18,)]  # + C (4) + P2 (2)
    assert q(f"SELECT count(*) FROM \"{topic}\" WHERE value_text LIKE 'B%'") == [(0,)]
    rows = q(f'SELECT value_text FROM "{topic}" WHERE partition = 0 ORDER BY "offset"')
    assert [r[0].encode() for r in rows] == vals("A0", 5) + [b"P1-0"] + vals("C0", 2) + [b"P2-0"]
