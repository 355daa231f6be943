"""Consumer-group administration with real admin clients: list groups
(with state filters), describe groups (members, client ids, hosts,
assignments, state, protocol), list / alter / reset committed offsets,
delete offsets, delete groups (NON_EMPTY_GROUP while members are in it),
with confluent-kafka's AdminClient, kafka-python's KafkaAdminClient and
aiokafka's AIOKafkaAdminClient. Live members run in subprocesses
(groups_util.py); groups that only hold offsets are made with plain commits
from a consumer that never joins (generation -1), as admin tools do.
"""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    KafkaException,
    TopicPartition,
)

import ck
from conftest import unique_topic, wait_until
from groups_util import Members, committed_offsets, produce_tagged, wait_split

JOIN_TIMEOUT = 45
T = 30  # admin request timeout, seconds


def plain_commit(bootstrap, group, topic, offsets, metadata=None):
    """Commit {partition: offset} for `group` without joining it."""
    metadata = metadata or {}
    c = ck.consumer(bootstrap, **{"group.id": group})
    try:
        tps = [TopicPartition(topic, p, o, metadata=metadata[p]) if p in metadata
               else TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
        res = c.commit(offsets=tps, asynchronous=False)
        assert all(r.error is None for r in res), res
    finally:
        c.close()


def start_stable_group(ms, bootstrap, topic, group, partitions, n=2, client="confluent",
                       **opts):
    mem = [ms.start(f"{group[-4:]}-{i}", client, group, topic, client_id=f"adm-{client}-{i}",
                    **opts) for i in range(n)]
    wait_split(mem, topic, partitions, JOIN_TIMEOUT, sizes=[partitions // n] * n)
    return mem


def alter_errors(fut):
    """{partition: error name or None} from an alter_consumer_group_offsets
    future. librdkafka puts partition-level errors in the result and raises
    only for a group-level one, reported here as {"group": name}."""
    try:
        r = fut.result(T)
    except KafkaException as e:
        return {"group": e.args[0].name()}
    return {tp.partition: (tp.error.name() if tp.error is not None else None)
            for tp in r.topic_partitions}


def listing(admin, **kw):
    res = admin.list_consumer_groups(request_timeout=T, **kw).result(T)
    assert not res.errors, res.errors
    return {g.group_id: g for g in res.valid}


# ---------------------------------------------------------------------------
# confluent-kafka AdminClient
# ---------------------------------------------------------------------------


def test_confluent_list_groups_with_state_filter(broker, tmp_path):
    """list_consumer_groups: a group with live members is STABLE, a group
    that only holds committed offsets is EMPTY (and 'simple': no protocol
    type); the states filter (ListGroups v4) selects each of them."""
    topic = unique_topic("adm")
    stable, empty = unique_topic("gs"), unique_topic("ge")
    ck.create_topic(broker.bootstrap, topic, partitions=4)
    plain_commit(broker.bootstrap, empty, topic, {0: 3})
    a = ck.admin(broker.bootstrap)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        start_stable_group(ms, broker.bootstrap, topic, stable, 4)
        groups = wait_until(
            lambda: (g := listing(a)).get(stable) and g[stable].state == ConsumerGroupState.STABLE
            and g, 30, msg="stable group listed")
        assert empty in groups, sorted(groups)
        assert groups[stable].state == ConsumerGroupState.STABLE
        assert not groups[stable].is_simple_consumer_group
        assert groups[empty].state == ConsumerGroupState.EMPTY
        assert groups[empty].is_simple_consumer_group
        assert groups[stable].type in (ConsumerGroupType.CLASSIC, ConsumerGroupType.UNKNOWN)

        only_stable = listing(a, states={ConsumerGroupState.STABLE})
        assert stable in only_stable and empty not in only_stable, sorted(only_stable)
        only_empty = listing(a, states={ConsumerGroupState.EMPTY})
        assert empty in only_empty and stable not in only_empty, sorted(only_empty)
        both = listing(a, states={ConsumerGroupState.EMPTY, ConsumerGroupState.STABLE})
        assert {stable, empty} <= set(both)


def test_confluent_describe_groups(broker, tmp_path):
    """describe_consumer_groups: state, assignor, coordinator, and per member
    the member id, client id, host and assignment, matching what the member
    processes themselves were told."""
    topic = unique_topic("adm")
    live, empty, missing = unique_topic("gl"), unique_topic("ge"), unique_topic("gm")
    ck.create_topic(broker.bootstrap, topic, partitions=4)
    plain_commit(broker.bootstrap, empty, topic, {1: 9})
    a = ck.admin(broker.bootstrap)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = start_stable_group(ms, broker.bootstrap, topic, live, 4, strategy="roundrobin")
        futs = a.describe_consumer_groups([live, empty], request_timeout=T)
        d = futs[live].result(T)
        assert d.group_id == live
        assert d.state == ConsumerGroupState.STABLE
        assert d.partition_assignor == "roundrobin"
        assert not d.is_simple_consumer_group
        assert d.coordinator.id == broker.node_id
        assert (d.coordinator.host, d.coordinator.port) == ("127.0.0.1", broker.kafka_port)
        assert len(d.members) == 2, d.members
        by_client = {m.client_id: m for m in d.members}
        assert set(by_client) == {"adm-confluent-0", "adm-confluent-1"}
        for i, proc in enumerate(mem):
            desc = by_client[f"adm-confluent-{i}"]
            assert desc.member_id == proc.member_id(), (desc.member_id, proc.member_id())
            assert desc.host == "/127.0.0.1", desc.host  # Kafka's "/" + client address
            assert desc.group_instance_id is None
            got = {(tp.topic, tp.partition) for tp in desc.assignment.topic_partitions}
            assert got == {(topic, p) for p in proc.owned(topic)}, (got, proc.owned())

        e = futs[empty].result(T)
        assert e.state == ConsumerGroupState.EMPTY
        assert e.members == []

        # An unknown group: DescribeGroups before v6 answers state Dead, v6
        # (Kafka 4) GROUP_ID_NOT_FOUND. Either is what Kafka does.
        f = a.describe_consumer_groups([missing], request_timeout=T)[missing]
        try:
            m = f.result(T)
        except KafkaException as ex:
            assert ex.args[0].name() == "GROUP_ID_NOT_FOUND", ex
        else:
            assert m.state == ConsumerGroupState.DEAD and m.members == [], (m.state, m.members)


def test_confluent_static_member_is_described(broker, tmp_path):
    """A static member's group.instance.id is reported by DescribeGroups."""
    topic, group = unique_topic("adm"), unique_topic("gst")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    a = ck.admin(broker.bootstrap)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        start_stable_group(ms, broker.bootstrap, topic, group, 2, n=1, instance_id="inst-x",
                           session_ms=10000)
        d = a.describe_consumer_groups([group], request_timeout=T)[group].result(T)
        assert [m.group_instance_id for m in d.members] == ["inst-x"]


def test_confluent_list_group_offsets(broker):
    """list_consumer_group_offsets: all committed offsets of a group (with
    their metadata), or the requested partitions (-1001 where nothing is
    committed); an unknown group has no offsets."""
    topic, group, other = unique_topic("adm"), unique_topic("go"), unique_topic("gx")
    ck.create_topic(broker.bootstrap, topic, partitions=3)
    produce_tagged(broker.bootstrap, topic, 3, 30, "x")
    plain_commit(broker.bootstrap, group, topic, {0: 11, 1: 22}, metadata={0: "meta-zero"})
    a = ck.admin(broker.bootstrap)

    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                        request_timeout=T)[group].result(T)
    assert res.group_id == group
    got = {(tp.topic, tp.partition): tp for tp in res.topic_partitions}
    assert {k: v.offset for k, v in got.items()} == {(topic, 0): 11, (topic, 1): 22}
    assert all(tp.error is None for tp in got.values())
    assert got[(topic, 0)].metadata == "meta-zero"

    res = a.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0), TopicPartition(topic, 2)])],
        request_timeout=T)[group].result(T)
    assert sorted((tp.partition, tp.offset) for tp in res.topic_partitions) == [(0, 11), (2, -1001)]

    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(other)],
                                        request_timeout=T)[other].result(T)
    assert res.topic_partitions == []


def test_confluent_alter_offsets(broker, tmp_path):
    """alter_consumer_group_offsets on an empty group moves its offsets and a
    member that joins afterwards starts there; on a group with live members
    it is refused and nothing changes."""
    topic, group = unique_topic("adm"), unique_topic("ga")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    produced = produce_tagged(broker.bootstrap, topic, 2, 20, "x")
    plain_commit(broker.bootstrap, group, topic, {0: 15, 1: 15})
    a = ck.admin(broker.bootstrap)
    res = a.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3),
                                              TopicPartition(topic, 1, 18)])],
        request_timeout=T)[group]
    assert alter_errors(res) == {0: None, 1: None}
    assert committed_offsets(broker.bootstrap, group, topic, 2) == {0: 3, 1: 18}

    with Members(broker.bootstrap, tmp_path / "members") as ms:
        m = ms.start("m", "confluent", group, topic)
        wait_until(lambda: m.committed() == {(topic, 0): 20, (topic, 1): 20}, JOIN_TIMEOUT + 30,
                   msg="member consumes from the altered offsets")
        assert sorted((p, o) for _, p, o, _ in m.recs(topic)) == (
            [(0, o) for o in range(3, 20)] + [(1, o) for o in (18, 19)])
        assert all(produced[(p, o)] == v for _, p, o, v in m.recs(topic))

        # Kafka: a commit without generation/member id is accepted only
        # while the group is empty, else UNKNOWN_MEMBER_ID
        errs = alter_errors(a.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])],
            request_timeout=T)[group])
        assert errs in ({0: "UNKNOWN_MEMBER_ID"}, {"group": "UNKNOWN_MEMBER_ID"}), errs
        assert committed_offsets(broker.bootstrap, group, topic, 2) == {0: 20, 1: 20}


def test_confluent_alter_offsets_unknown_partition(broker):
    """Altering the offset of a partition that does not exist fails for
    that partition (UNKNOWN_TOPIC_OR_PARTITION) and stores nothing for it;
    the valid partition of the same request is stored."""
    topic, group = unique_topic("adm"), unique_topic("gu")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    a = ck.admin(broker.bootstrap)
    errs = alter_errors(a.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1),
                                              TopicPartition(topic, 5, 1)])],
        request_timeout=T)[group])
    assert errs == {0: None, 5: "UNKNOWN_TOPIC_OR_PART"}, errs
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                        request_timeout=T)[group].result(T)
    assert [(tp.partition, tp.offset) for tp in res.topic_partitions] == [(0, 1)]


def test_confluent_delete_groups(broker, tmp_path):
    """delete_consumer_groups: NON_EMPTY_GROUP while the group has members;
    after they leave the group and its offsets are gone; an unknown group is
    GROUP_ID_NOT_FOUND."""
    topic, group, missing = unique_topic("adm"), unique_topic("gd"), unique_topic("gm")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    produce_tagged(broker.bootstrap, topic, 2, 5, "x")
    a = ck.admin(broker.bootstrap)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = start_stable_group(ms, broker.bootstrap, topic, group, 2)
        wait_until(lambda: committed_offsets(broker.bootstrap, group, topic, 2) == {0: 5, 1: 5},
                   30, msg="offsets committed")
        with pytest.raises(KafkaException) as ei:
            a.delete_consumer_groups([group], request_timeout=T)[group].result(T)
        assert ei.value.args[0].name() == "NON_EMPTY_GROUP", ei.value
        assert committed_offsets(broker.bootstrap, group, topic, 2) == {0: 5, 1: 5}
        for m in mem:
            m.close()
    wait_until(lambda: listing(a).get(group) is not None
               and listing(a)[group].state == ConsumerGroupState.EMPTY, 30,
               msg="group empty after members closed")
    a.delete_consumer_groups([group], request_timeout=T)[group].result(T)
    assert group not in listing(a)
    assert committed_offsets(broker.bootstrap, group, topic, 2) == {0: -1001, 1: -1001}

    with pytest.raises(KafkaException) as ei:
        a.delete_consumer_groups([missing], request_timeout=T)[missing].result(T)
    assert ei.value.args[0].name() == "GROUP_ID_NOT_FOUND", ei.value


def test_confluent_legacy_list_groups(broker, tmp_path):
    """AdminClient.list_groups (the older librdkafka API: ListGroups, then
    DescribeGroups per group) shows protocol type, protocol and members."""
    topic, group = unique_topic("adm"), unique_topic("glg")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    a = ck.admin(broker.bootstrap)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        start_stable_group(ms, broker.bootstrap, topic, group, 2, n=2)
        gs = a.list_groups(group=group, timeout=T)
        assert [g.id for g in gs] == [group]
        g = gs[0]
        assert g.error is None, g.error
        assert (g.protocol_type, g.protocol, g.state) == ("consumer", "range", "Stable")
        assert sorted(m.client_id for m in g.members) == ["adm-confluent-0", "adm-confluent-1"]
        assert all(m.client_host == "/127.0.0.1" for m in g.members)
        assert all(m.assignment for m in g.members)


# ---------------------------------------------------------------------------
# kafka-python KafkaAdminClient
# ---------------------------------------------------------------------------


def kp_admin(bootstrap):
    from kafka import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)


def test_kafka_python_list_and_describe_groups(broker, tmp_path):
    """list_groups (plain and with states_filter) and describe_groups, whose
    member metadata and assignments kafka-python decodes itself."""
    topic, live, empty = unique_topic("adm"), unique_topic("gl"), unique_topic("ge")
    ck.create_topic(broker.bootstrap, topic, partitions=4)
    plain_commit(broker.bootstrap, empty, topic, {0: 1})
    a = kp_admin(broker.bootstrap)
    try:
        with Members(broker.bootstrap, tmp_path / "members") as ms:
            mem = start_stable_group(ms, broker.bootstrap, topic, live, 4, client="kafka-python")
            groups = {g["group_id"]: g for g in a.list_groups()}
            assert groups[live]["protocol_type"] == "consumer"
            assert groups[empty]["protocol_type"] == ""
            stable = {g["group_id"] for g in a.list_groups(states_filter=["Stable"])}
            assert live in stable and empty not in stable, stable
            emp = {g["group_id"] for g in a.list_groups(states_filter=["Empty"])}
            assert empty in emp and live not in emp, emp

            d = a.describe_groups([live])[live]
            assert d["error"] is None, d
            assert (d["group_state"], d["protocol_type"], d["protocol_data"]) == (
                "Stable", "consumer", "range")
            by_client = {m["client_id"]: m for m in d["members"]}
            assert set(by_client) == {"adm-kafka-python-0", "adm-kafka-python-1"}
            for i, proc in enumerate(mem):
                m = by_client[f"adm-kafka-python-{i}"]
                assert m["client_host"] == "/127.0.0.1"
                assert m["member_id"] == proc.member_id()
                assert m["member_metadata"]["topics"] == [topic]
                parts = {(x["topic"], p) for x in m["member_assignment"]["assigned_partitions"]
                         for p in x["partitions"]}
                assert parts == {(topic, p) for p in proc.owned(topic)}

            e = a.describe_groups([empty])[empty]
            assert e["group_state"] == "Empty" and e["members"] == [], e
    finally:
        a.close()


def test_kafka_python_group_offsets(broker, tmp_path):
    """list_group_offsets, alter_group_offsets (per-partition errors),
    reset_group_offsets (earliest / latest / explicit), delete_group_offsets
    (refused with GROUP_SUBSCRIBED_TO_TOPIC while a member consumes the
    topic) and delete_groups (NON_EMPTY_GROUP, then OK)."""
    from kafka import OffsetAndMetadata
    from kafka import TopicPartition as KTP
    from kafka.admin import OffsetSpec
    from kafka.errors import (
        GroupSubscribedToTopicError,
        NoError,
        UnknownTopicOrPartitionError,
    )

    topic, group, live = unique_topic("adm"), unique_topic("gk"), unique_topic("glv")
    ck.create_topic(broker.bootstrap, topic, partitions=3)
    produce_tagged(broker.bootstrap, topic, 3, 10, "x")
    a = kp_admin(broker.bootstrap)
    try:
        res = a.alter_group_offsets(group, {
            KTP(topic, 0): OffsetAndMetadata(4, "m4", -1),
            KTP(topic, 1): OffsetAndMetadata(6, "", -1),
            KTP(topic, 42): OffsetAndMetadata(1, "", -1),
        })
        assert res == {KTP(topic, 0): NoError, KTP(topic, 1): NoError,
                       KTP(topic, 42): UnknownTopicOrPartitionError}, res

        offs = a.list_group_offsets(group)[group]
        assert {tp: (o.offset, o.metadata) for tp, o in offs.items()} == {
            KTP(topic, 0): (4, "m4"), KTP(topic, 1): (6, "")}
        some = a.list_group_offsets({group: [KTP(topic, 1), KTP(topic, 2)]})[group]
        assert {tp.partition: o.offset for tp, o in some.items()} == {1: 6, 2: -1}

        res = a.reset_group_offsets(group, {KTP(topic, 0): OffsetSpec.EARLIEST,
                                            KTP(topic, 1): OffsetSpec.LATEST,
                                            KTP(topic, 2): 7})
        assert {tp.partition: (r["error"], r["offset"]) for tp, r in res.items()} == {
            0: (NoError, 0), 1: (NoError, 10), 2: (NoError, 7)}
        assert committed_offsets(broker.bootstrap, group, topic, 3) == {0: 0, 1: 10, 2: 7}

        res = a.delete_group_offsets(group, [KTP(topic, 1)])
        assert res == {KTP(topic, 1): NoError}, res
        assert committed_offsets(broker.bootstrap, group, topic, 3) == {0: 0, 1: -1001, 2: 7}

        with Members(broker.bootstrap, tmp_path / "members") as ms:
            m = start_stable_group(ms, broker.bootstrap, topic, live, 3, n=1)[0]
            wait_until(lambda: m.committed() == {(topic, p): 10 for p in range(3)}, 30,
                       msg="live group committed")
            res = a.delete_group_offsets(live, [KTP(topic, 0)])
            assert res == {KTP(topic, 0): GroupSubscribedToTopicError}, res
            assert a.delete_groups([live]) == {live: "NonEmptyGroupError"}
            assert committed_offsets(broker.bootstrap, live, topic, 3) == {0: 10, 1: 10, 2: 10}
            m.close()
        wait_until(lambda: a.describe_groups([live])[live]["group_state"] == "Empty", 30,
                   msg="group empty after its member closed")
        assert a.delete_groups([group, live]) == {group: "OK", live: "OK"}
        assert a.list_group_offsets(group)[group] == {}
        names = {g["group_id"] for g in a.list_groups()}
        assert group not in names and live not in names
    finally:
        a.close()


# ---------------------------------------------------------------------------
# aiokafka AIOKafkaAdminClient
# ---------------------------------------------------------------------------


def test_aiokafka_admin_groups(broker, tmp_path):
    """aiokafka's admin: list_consumer_groups (ListGroups), describe
    (DescribeGroups), list_consumer_group_offsets (OffsetFetch v1-3)."""
    from aiokafka import TopicPartition as ATP
    from aiokafka.admin import AIOKafkaAdminClient

    topic, live = unique_topic("adm"), unique_topic("gaio")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    produce_tagged(broker.bootstrap, topic, 2, 7, "x")

    async def run(mem):
        a = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
        await a.start()
        try:
            groups = dict(await a.list_consumer_groups())
            assert groups.get(live) == "consumer", groups
            [resp] = await a.describe_consumer_groups([live])
            desc = resp.to_object() if hasattr(resp, "to_object") else None
            raw = resp.groups
            assert len(raw) == 1
            g = raw[0]
            # (error_code, group_id, state, protocol_type, protocol, members[, ops])
            assert (g[0], g[1], g[2], g[3], g[4]) == (0, live, "Stable", "consumer", "roundrobin"), (g, desc)
            members = g[5]
            assert sorted(mm[0] for mm in members) == sorted(p.member_id() for p in mem)
            offs = await a.list_consumer_group_offsets(live)
            assert {tp: o.offset for tp, o in offs.items()} == {ATP(topic, 0): 7, ATP(topic, 1): 7}
            some = await a.list_consumer_group_offsets(live, partitions=[ATP(topic, 1)])
            assert {tp: o.offset for tp, o in some.items()} == {ATP(topic, 1): 7}
        finally:
            await a.close()

    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = start_stable_group(ms, broker.bootstrap, topic, live, 2, client="aiokafka",
                                 strategy="roundrobin")
        wait_until(lambda: committed_offsets(broker.bootstrap, live, topic, 2) == {0: 7, 1: 7},
                   30, msg="aiokafka members committed")
        asyncio.run(run(mem))


# ---------------------------------------------------------------------------
# KIP-848 (consumer protocol groups).
# ---------------------------------------------------------------------------


def test_kip848_describe_consumer_protocol_group(broker, tmp_path):
    """A group.protocol=consumer group is listed and described as a
    CONSUMER-type group (ListGroups v5 types, ConsumerGroupDescribe) with
    its members and their assignments."""
    topic, group = unique_topic("adm"), unique_topic("g848")
    ck.create_topic(broker.bootstrap, topic, partitions=4)
    a = ck.admin(broker.bootstrap)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = start_stable_group(ms, broker.bootstrap, topic, group, 4, protocol="consumer")
        listed = listing(a, types={ConsumerGroupType.CONSUMER})
        assert group in listed, sorted(listed)
        assert group not in listing(a, types={ConsumerGroupType.CLASSIC})
        d = a.describe_consumer_groups([group], request_timeout=T)[group].result(T)
        assert d.type == ConsumerGroupType.CONSUMER
        assert d.state == ConsumerGroupState.STABLE
        by_client = {m.client_id: m for m in d.members}
        assert set(by_client) == {"adm-confluent-0", "adm-confluent-1"}
        for i, proc in enumerate(mem):
            got = {(tp.topic, tp.partition)
                   for tp in by_client[f"adm-confluent-{i}"].assignment.topic_partitions}
            assert got == {(topic, p) for p in proc.owned(topic)}
