"""confluent-kafka (librdkafka) against karnak: bulk round trips per acks mode
and the AdminClient topic lifecycle."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import ck
from bulk import BulkVerifier, make_key, make_value
from conftest import unique_topic, wait_until

BULK_N = int(os.environ.get("KARNAK_BULK_N", "1000000"))
PARTITIONS = 4


def produce_bulk(bootstrap, topic, n, acks, deadline_s=600):
    # Settings typical of users who care about throughput.
    p = ck.producer(
        bootstrap,
        **{
            "acks": acks,
            "linger.ms": 10,
            "batch.size": 262144,
            "queue.buffering.max.messages": 500000,
            "message.timeout.ms": 300000,
        },
    )
    errors = []
    delivered = [0]

    def on_delivery(err, msg):
        if err is not None:
            if len(errors) < 10:
                errors.append(str(err))
        else:
            delivered[0] += 1

    deadline = time.monotonic() + deadline_s
    produce = p.produce
    for seq in range(n):
        try:
            produce(topic, make_value(seq), make_key(seq), on_delivery=on_delivery)
        except BufferError:
            while True:
                p.poll(0.05)
                try:
                    produce(topic, make_value(seq), make_key(seq), on_delivery=on_delivery)
                    break
                except BufferError:
                    assert time.monotonic() < deadline, "producer queue never drained"
        if seq % 10000 == 0:
            p.poll(0)
    while len(p) and time.monotonic() < deadline:
        p.flush(1.0)
    assert len(p) == 0, f"{len(p)} records undelivered by the deadline"
    assert not errors, f"delivery errors: {errors}"
    assert delivered[0] == n


def consume_all(bootstrap, topic, partitions, n, verifier, deadline_s=600):
    c = ck.consumer(bootstrap, **{"fetch.max.bytes": 52428800,
                                  "max.partition.fetch.bytes": 10485760})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + deadline_s
        add = verifier.add
        while verifier.count < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=50000, timeout=0.5):
                e = m.error()
                if e is not None:
                    raise AssertionError(f"consume error: {e}")
                add(m.partition(), m.offset(), m.key(), m.value())
        # Nothing beyond n may follow: every partition's high watermark must be
        # exactly what we consumed.
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            assert lo == 0, f"partition {p} low watermark {lo}"
            assert hi == (verifier.next_offset[p] or 0), (
                f"partition {p}: high watermark {hi}, consumed up to {verifier.next_offset[p]}"
            )
    finally:
        c.close()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_bulk_round_trip(broker, acks):
    topic = unique_topic(f"bulk-acks{acks}")
    ck.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    t0 = time.monotonic()
    produce_bulk(broker.bootstrap, topic, BULK_N, acks)
    t1 = time.monotonic()
    v = BulkVerifier(BULK_N, PARTITIONS)
    consume_all(broker.bootstrap, topic, PARTITIONS, BULK_N, v)
    t2 = time.monotonic()
    print(f"acks={acks}: produced {BULK_N} in {t1 - t0:.1f}s, consumed in {t2 - t1:.1f}s")
    v.check()


# ---------------------------------------------------------------- admin


def test_admin_create_list_delete(broker):
    a = ck.admin(broker.bootstrap)
    topic = unique_topic("adm")
    futs = a.create_topics(
        [NewTopic(topic, num_partitions=5, replication_factor=1,
                  config={"retention.ms": "3600000"})],
        operation_timeout=30, request_timeout=30,
    )
    assert futs[topic].result(timeout=30) is None

    md = a.list_topics(timeout=10)
    assert topic in md.topics, f"{topic} not listed: {sorted(md.topics)}"
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2, 3, 4]
    for pid, p in t.partitions.items():
        assert p.leader == broker.node_id, f"partition {pid} leader {p.leader}"
        assert broker.node_id in p.replicas
        assert broker.node_id in p.isrs
        assert p.error is None
    assert list(md.brokers) == [broker.node_id]
    b = md.brokers[broker.node_id]
    assert (b.host, b.port) == ("127.0.0.1", broker.kafka_port)

    futs = a.delete_topics([topic], operation_timeout=30, request_timeout=30)
    assert futs[topic].result(timeout=30) is None

    def gone():
        return topic not in a.list_topics(timeout=10).topics

    wait_until(gone, 30, msg=f"{topic} to disappear from metadata")


def test_admin_create_existing_topic_fails(broker):
    a = ck.admin(broker.bootstrap)
    topic = unique_topic("dup")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    futs = a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)],
                           operation_timeout=30, request_timeout=30)
    with pytest.raises(KafkaException) as ei:
        futs[topic].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, ei.value
    # the original topic is untouched
    md = a.list_topics(topic=topic, timeout=10)
    assert len(md.topics[topic].partitions) == 2


@pytest.mark.parametrize("name", ["bad name!", "a/b", "x" * 250, ".", "..", "tab\there", "ünïcode"])
def test_admin_create_invalid_topic_name_fails(broker, name):
    a = ck.admin(broker.bootstrap)
    futs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                           operation_timeout=30, request_timeout=30)
    with pytest.raises(KafkaException) as ei:
        futs[name].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, ei.value  # INVALID_TOPIC_EXCEPTION (17)
    assert name not in a.list_topics(timeout=10).topics


def test_admin_delete_unknown_topic_fails(broker):
    a = ck.admin(broker.bootstrap)
    name = unique_topic("nope")
    futs = a.delete_topics([name], operation_timeout=30, request_timeout=30)
    with pytest.raises(KafkaException) as ei:
        futs[name].result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, ei.value


def test_admin_delete_then_recreate_starts_empty(broker):
    topic = unique_topic("recreate")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    ck.produce_and_wait(broker.bootstrap, topic,
                        [{"value": b"v%d" % i, "partition": 0} for i in range(10)])
    a = ck.admin(broker.bootstrap)
    a.delete_topics([topic], operation_timeout=30)[topic].result(timeout=30)
    wait_until(lambda: topic not in a.list_topics(timeout=10).topics, 30, msg="delete")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, 0)
    offs = ck.produce_and_wait(broker.bootstrap, topic, [{"value": b"new", "partition": 0}])
    assert offs == [(0, 0)]


def test_auto_create_uses_num_partitions(broker_factory):
    b = broker_factory("--num-partitions", "3")
    topic = unique_topic("auto")
    offs = ck.produce_and_wait(b.bootstrap, topic, [{"value": b"hello", "key": b"k"}])
    assert offs[0][1] == 0
    md = ck.admin(b.bootstrap).list_topics(topic=topic, timeout=10)
    assert topic in md.topics and md.topics[topic].error is None
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]
    p = offs[0][0]
    got = ck.consume_range(b.bootstrap, topic, p, 0, 1)
    assert got[0].value() == b"hello" and got[0].key() == b"k"


def test_auto_create_disabled(broker_factory):
    b = broker_factory("--auto-create-topics", "false")
    topic = unique_topic("noauto")
    p = ck.producer(b.bootstrap, **{"message.timeout.ms": 3000})
    errs = []
    p.produce(topic, b"x", on_delivery=lambda err, msg: errs.append(err))
    p.flush(20)
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                              KafkaError._MSG_TIMED_OUT), errs[0]
    md = ck.admin(b.bootstrap).list_topics(timeout=10)
    assert topic not in md.topics or md.topics[topic].error is not None


def test_admin_create_edge_cases(broker_factory):
    b = broker_factory("--num-partitions", "3")
    a = ck.admin(b.bootstrap)

    def create(topic, **kw):
        f = a.create_topics([NewTopic(topic, **kw)], operation_timeout=30,
                            request_timeout=30)[topic]
        try:
            f.result(timeout=30)
            return None
        except KafkaException as e:
            return e.args[0].code()

    # longest legal name, and the legal special characters
    longest = "L" * 249
    assert create(longest, num_partitions=1, replication_factor=1) is None
    dotted = unique_topic("a.b_c-D")
    assert create(dotted, num_partitions=2, replication_factor=1) is None
    offs = ck.produce_and_wait(b.bootstrap, longest, [{"value": b"long", "partition": 0}])
    assert offs == [(0, 0)]
    assert ck.consume_range(b.bootstrap, longest, 0, 0, 1)[0].value() == b"long"

    # -1 = the broker's default partition count
    dflt = unique_topic("dflt")
    assert create(dflt, num_partitions=-1, replication_factor=-1) is None
    assert len(a.list_topics(topic=dflt, timeout=10).topics[dflt].partitions) == 3

    # 0 partitions: INVALID_PARTITIONS (37)
    zero = unique_topic("zero")
    assert create(zero, num_partitions=0, replication_factor=1) == KafkaError.INVALID_PARTITIONS
    # more replicas than brokers: INVALID_REPLICATION_FACTOR (38)
    rf = unique_topic("rf")
    assert create(rf, num_partitions=1, replication_factor=3) == \
        KafkaError.INVALID_REPLICATION_FACTOR
    # unknown topic config: INVALID_CONFIG (40)
    cfg = unique_topic("cfg")
    assert create(cfg, num_partitions=1, replication_factor=1,
                  config={"no.such.config": "1"}) == KafkaError.INVALID_CONFIG
    names = a.list_topics(timeout=10).topics
    for t in (zero, rf, cfg):
        assert t not in names, f"{t} was created despite the error"


def test_admin_create_validate_only(broker):
    a = ck.admin(broker.bootstrap)
    topic = unique_topic("vo")
    f = a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)],
                        validate_only=True, operation_timeout=30, request_timeout=30)[topic]
    assert f.result(timeout=30) is None
    assert topic not in a.list_topics(timeout=10).topics
    # an invalid request is still rejected in validate-only mode
    f = a.create_topics([NewTopic("bad name!", num_partitions=1, replication_factor=1)],
                        validate_only=True, operation_timeout=30, request_timeout=30)["bad name!"]
    with pytest.raises(KafkaException):
        f.result(timeout=30)


def test_many_partitions(broker):
    topic = unique_topic("wide")
    parts = 64
    ck.create_topic(broker.bootstrap, topic, partitions=parts)
    msgs = [{"value": b"p%d-%d" % (p, i), "partition": p} for p in range(parts) for i in range(30)]
    ck.produce_and_wait(broker.bootstrap, topic, msgs)
    c = ck.consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
        got = {}
        deadline = time.monotonic() + 60
        while sum(map(len, got.values())) < len(msgs) and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                got.setdefault(m.partition(), []).append((m.offset(), m.value()))
    finally:
        c.close()
    for p in range(parts):
        assert got.get(p) == [(i, b"p%d-%d" % (p, i)) for i in range(30)], p


def test_admin_describe_topics_cluster_and_configs(broker):
    """What `kafka-topics --describe` and `kafka-configs --describe` users see
    through librdkafka's AdminClient."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    a = ck.admin(broker.bootstrap)
    topic = unique_topic("desc")
    a.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1,
                  config={"retention.ms": "3600000", "cleanup.policy": "compact"})],
        operation_timeout=30, request_timeout=30,
    )[topic].result(timeout=30)

    td = a.describe_topics(TopicCollection([topic]))[topic].result(timeout=30)
    assert td.name == topic
    assert td.topic_id is not None and str(td.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA", td.topic_id
    assert not td.is_internal
    assert [p.id for p in td.partitions] == [0, 1, 2]
    for p in td.partitions:
        assert p.leader.id == broker.node_id
        assert [n.id for n in p.replicas] == [broker.node_id]
        assert [n.id for n in p.isr] == [broker.node_id]

    cluster = a.describe_cluster(request_timeout=30).result(timeout=30)
    assert cluster.cluster_id, cluster
    assert [n.id for n in cluster.nodes] == [broker.node_id]
    assert cluster.controller is not None and cluster.controller.id == broker.node_id

    res = ConfigResource(ResourceType.TOPIC, topic)
    cfg = a.describe_configs([res], request_timeout=30)[res].result(timeout=30)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not cfg["retention.ms"].is_default
    assert cfg["cleanup.policy"].value == "compact"
    # An untouched setting shows Kafka's default, marked as such.
    assert cfg["segment.bytes"].value == "1073741824"
    assert cfg["segment.bytes"].is_default

    res = ConfigResource(ResourceType.BROKER, str(broker.node_id))
    bcfg = a.describe_configs([res], request_timeout=30)[res].result(timeout=30)
    assert bcfg["num.partitions"].value == "1"
    assert bcfg["auto.create.topics.enable"].value == "true"

    missing = ConfigResource(ResourceType.TOPIC, unique_topic("nope"))
    with pytest.raises(KafkaException) as e:
        a.describe_configs([missing], request_timeout=30)[missing].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
