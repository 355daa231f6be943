"""A 3-broker Karnak cluster used by librdkafka (confluent-kafka) as a Kafka
cluster (issue 18): replicated topics, a transaction whose partitions, group
and coordinator sit on different brokers, a consumer group whose
coordinator is killed mid-stream, and a transactional id whose coordinator
is killed with a transaction open, and the checked queue workload under
every fault in random order."""

from __future__ import annotations

import random
import time
import uuid

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import ck
import cluster_workload
import kafka_wire as w
from conftest import Broker, free_port, unique_topic, wait_until


@pytest.fixture
def cluster(karnak_bin, tmp_path, request):
    """Three brokers, each a metadata voter, started together."""
    nodes = []
    request.node._karnak_brokers = nodes
    peers = ",".join(f"{i}@127.0.0.1:{free_port()}" for i in range(3))
    cluster_id = "compat-" + uuid.uuid4().hex
    for i in range(3):
        nodes.append(Broker(karnak_bin, tmp_path / f"node{i}", tmp_path / "logs",
                            ["--cluster-peers", peers, "--cluster-id", cluster_id,
                             "--sql-enabled", "false",
                             "--group-initial-rebalance-delay-ms", "0"],
                            node_id=i))
    for b in nodes:
        b.spawn()
    for b in nodes:
        b.wait_ready()
    yield nodes
    for b in nodes:
        b.kill9()


def bootstrap(nodes):
    return ",".join(b.bootstrap for b in nodes if b.alive())


def create(nodes, topic, partitions):
    a = ck.admin(bootstrap(nodes))
    a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3)],
                    operation_timeout=30, request_timeout=30)[topic].result(30)

    def in_sync():
        md = a.list_topics(topic=topic, timeout=10).topics.get(topic)
        return (md is not None and md.error is None and len(md.partitions) == partitions
                and all(len(p.isrs) == 3 for p in md.partitions.values()))
    wait_until(in_sync, 30, msg=f"{topic} in sync on 3 brokers")
    return a.list_topics(topic=topic, timeout=10).topics[topic]


def read_committed(nodes, topic, partitions, expect, timeout=60):
    c = ck.consumer(bootstrap(nodes), **{"isolation.level": "read_committed",
                                         "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            for m in c.consume(100, 0.5):
                assert not m.error(), m.error()
                got.append(m.value())
        # Nothing more shows up (the aborted records stay hidden).
        for m in c.consume(100, 1.0):
            assert not m.error(), m.error()
            got.append(m.value())
    finally:
        c.close()
    return got


def test_a_transaction_spanning_brokers_commits_and_aborts_everywhere(cluster):
    topic = unique_topic("xb")
    md = create(cluster, topic, 3)
    leaders = {p.leader for p in md.partitions.values()}
    assert len(leaders) > 1, f"placement put every leader on one broker: {leaders}"
    group = unique_topic("xbg")
    p = ck.producer(bootstrap(cluster), **{"transactional.id": unique_topic("xbt")})
    p.init_transactions(30)
    cons = ck.consumer(bootstrap(cluster), **{"group.id": group})
    meta = cons.consumer_group_metadata()

    def txn(tag, commit):
        p.begin_transaction()
        for i in range(30):
            p.produce(topic, f"{tag}-{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 100 if commit else 200)], meta, 30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    txn("a", commit=True)
    txn("b", commit=False)
    txn("c", commit=True)
    got = read_committed(cluster, topic, 3, 60)
    assert sorted(got) == sorted(f"{t}-{i}".encode() for t in "ac" for i in range(30))
    # The group's offset came with the committed transactions, not the aborted one.
    committed = cons.committed([TopicPartition(topic, 0)], timeout=15)[0].offset
    cons.close()
    assert committed == 100


def test_a_consumer_group_keeps_its_offsets_when_its_coordinator_is_killed(cluster):
    topic = unique_topic("cg")
    create(cluster, topic, 3)
    ck.produce_and_wait(bootstrap(cluster), topic,
                        [{"value": f"m-{i}".encode(), "partition": i % 3} for i in range(300)],
                        **{"acks": "all"})
    group = unique_topic("cgg")
    a = ck.admin(bootstrap(cluster))
    desc = a.describe_consumer_groups([group], request_timeout=30)[group].result(30)
    coordinator = desc.coordinator.id
    conf = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "enable.auto.offset.store": True}
    seen = []
    c = ck.consumer(bootstrap(cluster), **conf)
    c.subscribe([topic])
    try:
        while len(seen) < 150:
            for m in c.consume(150 - len(seen), 0.5):
                assert not m.error(), m.error()
                seen.append(m.value())
        c.commit(asynchronous=False)
    finally:
        c.close()
    cluster[coordinator].kill9()
    survivors = [b for b in cluster if b.alive()]

    # A new member resumes where the group committed: every record once.
    c = ck.consumer(bootstrap(survivors), **conf)
    c.subscribe([topic])
    rest = []
    deadline = time.monotonic() + 60
    try:
        while len(seen) + len(rest) < 300 and time.monotonic() < deadline:
            for m in c.consume(300, 0.5):
                assert not m.error(), m.error()
                rest.append(m.value())
    finally:
        c.close()
    assert sorted(seen + rest) == sorted(f"m-{i}".encode() for i in range(300))


def txn_coordinator(bootstrap_one, tid):
    """FindCoordinator v1 for a transactional id: the coordinator's node id."""
    payload = w.header_v1(10, 1, 7) + w.string(tid) + w.i8(1)
    r = w.Reader(w.roundtrip(bootstrap_one, payload))
    assert r.i32() == 7
    r.i32()  # throttle
    err = r.i16()
    r.string()
    node = r.i32()
    return node if err == 0 else None


def test_an_open_transaction_is_aborted_and_a_committed_one_kept_when_its_coordinator_dies(
        cluster):
    topic = unique_topic("tc")
    create(cluster, topic, 3)
    tid = unique_topic("tct")
    first = ck.producer(bootstrap(cluster), **{"transactional.id": tid})
    first.init_transactions(30)
    first.begin_transaction()
    for i in range(30):
        first.produce(topic, f"kept-{i}".encode(), partition=i % 3)
    first.commit_transaction(30)
    first.begin_transaction()
    for i in range(30):
        first.produce(topic, f"open-{i}".encode(), partition=i % 3)
    assert first.flush(30) == 0
    coordinator = txn_coordinator(cluster[0].bootstrap, tid)
    assert coordinator is not None
    cluster[coordinator].kill9()
    survivors = [b for b in cluster if b.alive()]
    # The application starts again with the same transactional id: the new
    # coordinator fences the old producer and aborts its open transaction.
    second = ck.producer(bootstrap(survivors), **{"transactional.id": tid})
    second.init_transactions(60)
    second.begin_transaction()
    for i in range(30):
        second.produce(topic, f"after-{i}".encode(), partition=i % 3)
    second.commit_transaction(60)
    got = read_committed(survivors, topic, 3, 60)
    assert sorted(got) == sorted(f"{t}-{i}".encode() for t in ("kept", "after") for i in range(30))


def test_a_commit_waits_until_the_coordinators_followers_hold_it(cluster):
    """A transaction's coordinator acts on a commit (writes its markers)
    only once the other replicas of its shard hold the prepare record, as
    Kafka writes its transaction log with acks=all: else a coordinator
    killed after some markers leaves its successor an open transaction it
    may abort, with records already read as committed (what the fault
    test's checker caught once as 'aborted_seen'). The shard's followers
    are frozen: the commit must not show; thawed, it completes once."""
    import signal
    tid = unique_topic("rpt")
    coord = None

    def found():
        nonlocal coord
        coord = txn_coordinator(cluster[0].bootstrap, tid)
        return coord is not None
    wait_until(found, 30, msg=f"a coordinator for {tid}")
    leader = next(b for b in cluster if b.node_id == coord)
    others = [b for b in cluster if b.node_id != coord]
    # The data partition lives on the coordinator alone: its marker needs
    # nobody else, so only the coordinator's own log can hold the commit back.
    topic = unique_topic("rp")
    a = ck.admin(leader.bootstrap)
    a.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[coord]],
                              config={"min.insync.replicas": "1"})],
                    operation_timeout=30)[topic].result(30)
    p = ck.producer(leader.bootstrap, **{"transactional.id": tid})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, b"committed-once", partition=0)
    assert p.flush(30) == 0

    def visible(timeout):
        c = ck.consumer(leader.bootstrap, **{"isolation.level": "read_committed",
                                             "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                got += [m.value() for m in c.consume(10, 0.5) if not m.error()]
        finally:
            c.close()
        return got

    for b in others:
        b.proc.send_signal(signal.SIGSTOP)
    try:
        try:
            p.commit_transaction(5)
            committed = True
        except KafkaException as e:
            assert e.args[0].retriable(), e
            committed = False
        shown = visible(3)
    finally:
        for b in others:
            b.proc.send_signal(signal.SIGCONT)
    assert not committed and shown == [], (
        f"committed={committed}, read_committed saw {shown} while the shard's followers were frozen")
    # librdkafka lets a commit that timed out be retried.
    deadline = time.monotonic() + 60
    while True:
        try:
            p.commit_transaction(10)
            break
        except KafkaException as e:
            assert e.args[0].retriable() and time.monotonic() < deadline, e
    assert visible(3) == [b"committed-once"]


def test_every_fault_in_random_order_loses_nothing_acknowledged(cluster):
    """The checked queue workload (cluster_workload.py: plain, idempotent
    and transactional producers with acks=all, a read_committed consumer)
    under each fault once, in an order from a printed seed: SIGKILL of a
    partition leader, SIGKILL of the controller, SIGKILL of the transactional
    producer's coordinator, SIGSTOP of a leader past its session, a rolling
    restart. Then: nothing acknowledged lost or out of place, no idempotent
    duplicate, dense offsets, no consumer going backwards, no aborted value
    read_committed, every committed one there, replicas byte-identical.
    A consumer group member consumes the queue throughout, committing
    after every poll: it must never resume before an offset it was told
    is committed, and must end up with every value. compat-tests/cluster/
    soak.sh runs the same, and a leader cut off from the other brokers
    (the CI test of that is broker/tests/cluster/partition.rs), for as
    long as asked."""
    seed = random.SystemRandom().randrange(1 << 31)
    n = len(cluster_workload.FAULTS)
    print(f"seed {seed} (replay: compat-tests/cluster/soak.sh --no-network "
          f"--faults {n} --seed {seed})")
    result = cluster_workload.run(cluster, seed, faults=len(cluster_workload.FAULTS))
    cluster_workload.assert_clean(result)


def test_sql_on_any_broker_reads_every_partition_of_every_topic(karnak_bin, tmp_path):
    """The SQL gateway of every broker answers for every topic: what its
    broker holds it scans locally, the rest it fetches from the partition's
    leader (a read_committed Fetch). Replication factor 1 puts some
    partitions, and a whole one-partition topic, on other brokers; every
    gateway counts every row, filters by offset and timestamp on remote
    partitions, infers a remote JSON topic's columns, never shows an
    aborted transaction's records, and INSERTs into partitions led
    elsewhere (forwarded to their leaders)."""
    import psycopg
    peers = ",".join(f"{i}@127.0.0.1:{free_port()}" for i in range(3))
    cluster_id = "sql-" + uuid.uuid4().hex
    nodes = [Broker(karnak_bin, tmp_path / f"node{i}", tmp_path / "logs",
                    ["--cluster-peers", peers, "--cluster-id", cluster_id], node_id=i)
             for i in range(3)]
    for b in nodes:
        b.spawn()
    try:
        for b in nodes:
            b.wait_ready()
        topic, single = unique_topic("sqlc"), unique_topic("sqlone")
        a = ck.admin(bootstrap(nodes))
        futures = a.create_topics(
            [NewTopic(topic, num_partitions=3, replication_factor=1),
             NewTopic(single, num_partitions=1, replication_factor=1,
                      config={"karnak.value.format": "json"})],
            operation_timeout=30)
        for f in futures.values():
            f.result(30)

        def leaders(t):
            md = a.list_topics(topic=t, timeout=10).topics[t]
            return {i: pm.leader for i, pm in md.partitions.items()}
        wait_until(lambda: all(l >= 0 for t in (topic, single) for l in leaders(t).values()),
                   30, msg="leaders")
        p = ck.producer(bootstrap(nodes))
        t0 = int(time.time() * 1000) - 60_000
        for part in range(3):
            for i in range(10):
                p.produce(topic, f"v{i}".encode(), partition=part, timestamp=t0 + i)
        for i in range(5):
            p.produce(single, ('{"n": %d, "name": "x%d"}' % (i, i)).encode())
        assert p.flush(30) == 0
        # An aborted and a committed transaction on every partition.
        tx = ck.producer(bootstrap(nodes), **{"transactional.id": "sql-remote-" + uuid.uuid4().hex})
        tx.init_transactions(30)
        for commit in (False, True):
            tx.begin_transaction()
            for part in range(3):
                tx.produce(topic, b"aborted" if not commit else b"committed", partition=part)
            (tx.commit_transaction if commit else tx.abort_transaction)(30)
        placed = leaders(topic)
        single_on = leaders(single)[0]
        assert len(set(placed.values())) > 1, f"all partitions on one broker: {placed}"
        def sql(b):
            return psycopg.connect(host="127.0.0.1", port=b.sql_port, user="anyone",
                                   dbname="anydb", connect_timeout=10, autocommit=True)
        # INSERTs on every broker: a partition led elsewhere is produced to
        # its leader.
        for b in nodes:
            with sql(b) as conn:
                for part in range(3):
                    conn.execute(f'INSERT INTO "{topic}" (partition, value_text) '
                                 f"VALUES ({part}, 'ins{b.node_id}')")
                conn.execute(f'INSERT INTO "{single}" (n, name) VALUES (100, \'a\')')
        for b in nodes:
            remote = [i for i, l in placed.items() if l != b.node_id]
            with sql(b) as conn:
                got = conn.execute(
                    f'SELECT partition, count(*), sum(CASE WHEN value_text = \'committed\' '
                    f'THEN 1 ELSE 0 END), sum(CASE WHEN value_text = \'aborted\' THEN 1 ELSE 0 END) '
                    f'FROM "{topic}" GROUP BY partition ORDER BY partition').fetchall()
                assert got == [(i, 14, 1, 0) for i in range(3)], (b.node_id, placed, got)
                for part in remote:
                    got = conn.execute(
                        f'SELECT "offset", value_text FROM "{topic}" WHERE partition = {part} '
                        f'AND "offset" >= 3 AND "offset" < 6 ORDER BY "offset"').fetchall()
                    assert got == [(3, "v3"), (4, "v4"), (5, "v5")], (b.node_id, part, got)
                    got = conn.execute(
                        f'SELECT count(*) FROM "{topic}" WHERE partition = {part} '
                        f"AND timestamp >= to_timestamp_millis({t0 + 7})").fetchone()[0]
                    # v7..v9, the committed one and the three INSERTs
                    assert got == 3 + 1 + 3, (b.node_id, part, got)
                names = [r[0] for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public'").fetchall()]
                assert topic in names and single in names, (b.node_id, names)
                got = conn.execute(f'SELECT sum(n), max(name) FROM "{single}"').fetchone()
                assert got == (310, "x4"), (b.node_id, single_on, got)
        # Replication factor 3: every broker holds every partition, but a
        # follower's high watermark trails the leader's: a follower reads
        # its own replica only up to the leader's last stable offset, asked
        # at query start, and only once it holds that much (else the leader
        # is read). A row acknowledged by an INSERT is seen at once on every
        # broker.
        rf3 = unique_topic("sqlrf3")
        a.create_topics([NewTopic(rf3, num_partitions=3, replication_factor=3)],
                        operation_timeout=30)[rf3].result(30)
        wait_until(lambda: all(len(pm.isrs) == 3 for pm in
                               a.list_topics(topic=rf3, timeout=10).topics[rf3].partitions.values()),
                   30, msg="rf3 in sync")
        for n, writer in enumerate(nodes, start=1):
            with sql(writer) as conn:
                conn.execute(f'INSERT INTO "{rf3}" (partition, value_text) '
                             "VALUES (0, 'a'), (1, 'b'), (2, 'c')")
            for b in nodes:
                with sql(b) as conn:
                    got = conn.execute(f'SELECT count(*) FROM "{rf3}"').fetchone()[0]
                    assert got == 3 * n, (writer.node_id, b.node_id, got)
        # Quiet, with an aborted and a committed transaction in it: every
        # broker reads the partitions it follows from its own replica, and
        # answers the same.
        for commit in (False, True):
            tx.begin_transaction()
            for part in range(3):
                tx.produce(rf3, b"aborted" if not commit else b"committed", partition=part)
            (tx.commit_transaction if commit else tx.abort_transaction)(30)

        def follower_reads(b):
            m = b.metrics().get_value("karnak_sql_partition_reads_total", source="follower")
            return m or 0
        query = (f"SELECT partition, count(*), sum(CASE WHEN value_text = 'aborted' "
                 f'THEN 1 ELSE 0 END) FROM "{rf3}" GROUP BY partition ORDER BY partition')
        rf3_leaders = leaders(rf3)
        for b in nodes:
            followed = sum(1 for l in rf3_leaders.values() if l != b.node_id)

            def read_locally():
                before = follower_reads(b)
                with sql(b) as conn:
                    got = conn.execute(query).fetchall()
                assert got == [(i, 4, 0) for i in range(3)], (b.node_id, got)
                # Every partition it does not lead, from its own replica.
                return follower_reads(b) - before == followed
            wait_until(read_locally, 30, interval=0.2, msg=f"broker {b.node_id} reads its replicas")
        # A topic created through one broker is a table on every other at
        # once. A gateway that has not applied the creation yet (its broker
        # frozen while the topic was made, and asked before it thaws) first
        # applies what the metadata leader has committed (a read barrier),
        # rather than answer "does not exist".
        _sql_sees_a_topic_created_while_its_broker_was_frozen(nodes)
    finally:
        for b in nodes:
            b.kill9()


def _sql_sees_a_topic_created_while_its_broker_was_frozen(nodes):
    import signal
    from test_sql_limits import _started_session
    a = ck.admin(bootstrap(nodes))
    controller = a.describe_cluster(request_timeout=10).result(10).controller.id
    late = next(b for b in nodes if b.node_id != controller)
    creator = next(b for b in nodes if b.node_id == controller)
    fresh = unique_topic("sqllate")
    s = _started_session(late)
    late.proc.send_signal(signal.SIGSTOP)
    try:
        # Its own admin client, bootstrapped from the leader alone (the
        # frozen broker would answer nothing).
        on_leader = ck.admin(creator.bootstrap)
        on_leader.create_topics([NewTopic(fresh, num_partitions=1, replication_factor=3)],
                                operation_timeout=30)[fresh].result(30)
        query = f'SELECT count(*) FROM "{fresh}"\0'.encode()
        s.sendall(b"Q" + (len(query) + 4).to_bytes(4, "big") + query)
    finally:
        late.proc.send_signal(signal.SIGCONT)
    s.settimeout(30)
    buf = b""
    while b"Z\x00\x00\x00\x05" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"closed: {buf!r}"
        buf += chunk
    s.close()
    raw, kinds = buf, []
    while buf:
        kinds.append(buf[:1])
        buf = buf[1 + int.from_bytes(buf[1:5], "big"):]
    assert b"E" not in kinds and b"D" in kinds, (late.node_id, raw)
