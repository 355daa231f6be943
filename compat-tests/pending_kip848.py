"""KIP-848 compat tests, written ahead of the broker serving
ConsumerGroupHeartbeat / ConsumerGroupDescribe (issue 3, next step).

Not collected (the file name does not start with test_): move each test
back into test_groups.py / test_groups_admin.py, whose imports and helpers
they use, when the broker serves the API.
"""

# ---- from test_groups.py ----
# ---------------------------------------------------------------------------
# KIP-848: the consumer group protocol (ConsumerGroupHeartbeat)
#
# Deselect with -k "not kip848" while the broker does not serve it.
# ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_kip848_consumer_protocol_group(broker, tmp_path):
    """confluent-kafka with group.protocol=consumer (server-side assignment,
    ConsumerGroupHeartbeat): two members split 6 partitions 3/3, consume
    every record once and commit; when one leaves the other gets all six and
    continues from the commits."""
    topic, group = unique_topic("g848"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=PARTS)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = [ms.start(f"n{i}", "confluent", group, topic, protocol="consumer")
               for i in range(2)]
        wait_split(mem, topic, PARTS, JOIN_TIMEOUT, sizes=[3, 3])
        produced = produce_tagged(broker.bootstrap, topic, PARTS, 20, "one")
        wait_committed(mem, topic, {p: 20 for p in range(PARTS)}, 60)
        mem[0].close()
        wait_split(mem[1:], topic, PARTS, SESSION_MS / 1000 + MARGIN_S, sizes=[PARTS])
        produced.update(produce_tagged(broker.bootstrap, topic, PARTS, 5, "two"))
        wait_committed(mem[1:], topic, {p: 25 for p in range(PARTS)}, 60)
        recs = delivered(mem, topic)
        assert_values_match(recs, produced)
        assert sorted(counts(recs).values()) == [1] * len(produced)
    assert committed_offsets(broker.bootstrap, group, topic, PARTS) == {p: 25 for p in range(PARTS)}

# ---- from test_groups_admin.py ----
# ---------------------------------------------------------------------------
# KIP-848 (consumer protocol groups). Deselect with -k "not kip848".
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
