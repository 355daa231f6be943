"""confluent-kafka helpers shared by the test modules: create topics, produce
with delivery reports, consume a partition range with assign(), and a quick
produce+consume round trip used to prove the broker still serves."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

COMMON = {
    "socket.timeout.ms": 10000,
    "api.version.request.timeout.ms": 10000,
}


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, **COMMON})


def create_topic(bootstrap, topic, partitions=1, config=None, timeout=30):
    a = admin(bootstrap)
    futs = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout, request_timeout=timeout,
    )
    futs[topic].result(timeout=timeout)
    # metadata must show the topic with all partitions
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = a.list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return md
        time.sleep(0.05)
    raise AssertionError(f"topic {topic} not visible with {partitions} partitions after create")


def producer(bootstrap, **conf):
    c = {"bootstrap.servers": bootstrap, **COMMON, "linger.ms": 5, **conf}
    return Producer(c)


def consumer(bootstrap, **conf):
    c = {
        "bootstrap.servers": bootstrap,
        **COMMON,
        # group.id is required by the Consumer class; it is never used for
        # subscribe (no consumer groups yet): we assign() partitions by hand.
        "group.id": "karnak-compat-unused-" + uuid.uuid4().hex[:6],
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        **conf,
    }
    return Consumer(c)


def produce_and_wait(bootstrap, topic, messages, timeout=60, **conf):
    """messages: list of dicts for Producer.produce (value, key, partition,
    headers, timestamp). Returns list of (partition, offset) in input order;
    fails on any delivery error."""
    p = producer(bootstrap, **{"acks": "all", **conf})
    results = [None] * len(messages)
    errors = []

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                results[i] = (msg.partition(), msg.offset())
        return cb

    deadline = time.monotonic() + timeout
    for i, m in enumerate(messages):
        while True:
            try:
                p.produce(topic, on_delivery=cb_for(i), **m)
                break
            except BufferError:
                p.poll(0.1)
                assert time.monotonic() < deadline, "producer queue stuck"
    while len(p) > 0 and time.monotonic() < deadline:
        p.poll(0.1)
    assert len(p) == 0, f"{len(p)} messages still undelivered after {timeout}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert all(r is not None for r in results)
    return results


def watermarks(bootstrap, topic, partition, timeout=10):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout,
                                       cached=False)
    finally:
        c.close()


def consume_range(bootstrap, topic, partition, start, end, timeout=60, **conf):
    """Consume [start, end) of one partition with assign(); returns list of
    Message. Fails if not all arrive by the deadline."""
    out = []
    if end <= start:
        return out
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while len(out) < end - start and time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                if m.offset() < end:
                    out.append(m)
    finally:
        c.close()
    assert len(out) == end - start, (
        f"{topic}[{partition}]: wanted offsets {start}..{end - 1}, got {len(out)} records"
    )
    return out


def round_trip(bootstrap, topic=None, n=20):
    """Produce n records with acks=all to a fresh (auto-created) topic and read
    them back: proves the broker still serves real clients."""
    topic = topic or "alive-" + uuid.uuid4().hex[:10]
    msgs = [{"key": b"k%d" % i, "value": b"alive-%d-" % i + uuid.uuid4().bytes, "partition": 0}
            for i in range(n)]
    offsets = produce_and_wait(bootstrap, topic, msgs, timeout=60)
    first = offsets[0][1]
    got = consume_range(bootstrap, topic, 0, first, first + n)
    assert [m.value() for m in got] == [m["value"] for m in msgs]
    assert [m.key() for m in got] == [m["key"] for m in msgs]
    return topic
