"""Consumer groups with real clients (confluent-kafka, kafka-python,
aiokafka, kcat): partitions split between members, takeover when a member
leaves, dies (kill -9), freezes (SIGSTOP) or stops polling, eager and
cooperative assignors, static membership, committed offsets across broker
restarts, auto.offset.reset, errors real clients can provoke, and the
KIP-848 consumer protocol (last section).

Every member runs in its own process (groups_util.py) so it can be killed;
it reports what it was given and what it committed, and the assertions are
made on those reports and on the group's committed offsets read back with
OffsetFetch.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition

import ck
from conftest import unique_topic, wait_until
from groups_util import (
    CLIENTS,
    HEARTBEAT_MS,
    MAX_POLL_MS,
    SESSION_MS,
    Members,
    committed_offsets,
    produce_tagged,
    wait_split,
)

PARTS = 6
# Slack on top of a timeout the broker enforces (session expiry, max poll
# interval): the survivors learn of the rebalance on their next heartbeat
# (1 s), then JoinGroup + SyncGroup, all on a debug build on 2 cores.
MARGIN_S = 10
# First assignment of a freshly started group: process start, Kafka's
# group.initial.rebalance.delay.ms (3 s) and one rebalance per late joiner.
JOIN_TIMEOUT = 45


def wait_committed(members, topic, want, timeout, msg="commits acknowledged"):
    """Wait until the members' acknowledged commits reach want {p: offset}."""
    def check():
        got = {}
        for m in members:
            for (t, p), o in m.committed().items():
                if t == topic:
                    got[p] = max(o, got.get(p, -1))
        return got if all(got.get(p, -1) >= o for p, o in want.items()) else None
    return wait_until(check, timeout, msg=f"{msg} {want}")


def delivered(members, topic):
    """[(member name, partition, offset, value)] over all members."""
    return [(m.name, p, o, v) for m in members for (_, p, o, v) in m.recs(topic)]


def assert_values_match(recs, produced):
    wrong = [(n, p, o, v) for n, p, o, v in recs if produced.get((p, o)) != v]
    assert not wrong, f"records delivered with the wrong content (member, p, o, value): {wrong[:5]}"


def counts(recs):
    out = {}
    for _, p, o, _ in recs:
        out[(p, o)] = out.get((p, o), 0) + 1
    return out


def broker_for(broker_factory, client, session_ms):
    """A broker for `client`; "confluent-848" means confluent-kafka with
    group.protocol=consumer, whose session timeout the broker sets.
    Returns (broker, client, protocol)."""
    if client == "confluent-848":
        return (broker_factory("--group-consumer-session-timeout-ms", str(session_ms),
                               "--group-consumer-heartbeat-interval-ms", str(HEARTBEAT_MS)),
                "confluent", "consumer")
    return broker_factory(), client, "classic"


# ---------------------------------------------------------------------------
# split, leave, die, takeover; nothing committed is consumed twice
# ---------------------------------------------------------------------------

TAKEOVER = [
    ("confluent", "close"), ("confluent", "kill9"), ("confluent", "sigstop"),
    ("confluent", "stop-polling"),
    ("kafka-python", "close"), ("kafka-python", "kill9"),
    ("aiokafka", "close"), ("aiokafka", "kill9"),
    # KIP-848 (group.protocol=consumer): the broker sets the session timeout.
    ("confluent-848", "close"), ("confluent-848", "kill9"),
]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("client,departure", TAKEOVER, ids=[f"{c}-{d}" for c, d in TAKEOVER])
def test_split_and_takeover(broker_factory, tmp_path, client, departure):
    """3 members split 6 partitions 2/2/2. Phase 1 is consumed and
    committed; the victim then receives phase 2a without committing it and
    leaves (close = LeaveGroup), dies (kill -9), freezes (SIGSTOP: its
    session must expire while its TCP connection stays open) or stops
    polling (max.poll.interval.ms: the client leaves by itself). The two
    survivors must take its partitions over within the bound, resume exactly
    at its last commit (phase 2a is redelivered, phase 1 never is), and
    consume everything produced afterwards."""
    # close: a longer session, so a takeover within it proves LeaveGroup
    # was honoured rather than the session expiring.
    session_ms = 10000 if departure == "close" else SESSION_MS
    max_poll_ms = 7000 if departure == "stop-polling" else MAX_POLL_MS
    broker, client, protocol = broker_for(broker_factory, client, session_ms)
    topic, group = unique_topic("gsplit"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=PARTS)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = [ms.start(f"m{i}", client, group, topic, session_ms=session_ms,
                        max_poll_ms=max_poll_ms, client_id=f"split-{i}", protocol=protocol)
               for i in range(3)]
        wait_split(mem, topic, PARTS, JOIN_TIMEOUT, sizes=[2, 2, 2], msg="3 members own 2 each")

        produced = produce_tagged(broker.bootstrap, topic, PARTS, 50, "one")
        wait_committed(mem, topic, {p: 50 for p in range(PARTS)}, 60, msg="phase 1 committed")

        victim, survivors = mem[1], [mem[0], mem[2]]
        vparts = victim.owned(topic)
        assert len(vparts) == 2
        victim.hold()
        produced.update(produce_tagged(broker.bootstrap, topic, PARTS, 10, "two"))
        # the victim has phase 2a of its partitions (uncommitted), the
        # survivors have theirs committed
        wait_until(lambda: {(p, o) for _, p, o, _ in victim.recs(topic)}
                   >= {(p, o) for p in vparts for o in range(50, 60)}, 30,
                   msg="victim received phase 2a")
        wait_committed(survivors, topic, {p: 60 for p in range(PARTS) if p not in vparts}, 30)

        marks = {m.name: m.mark() for m in survivors}
        t0 = time.monotonic()
        if departure == "close":
            victim.close()
            bound = session_ms / 1000  # strictly less: no session expiry involved
        elif departure == "kill9":
            victim.kill9()
            bound = session_ms / 1000 + MARGIN_S
        elif departure == "sigstop":
            victim.sigstop()
            bound = session_ms / 1000 + MARGIN_S
        else:
            victim.send("stop-polling")
            victim.wait_event("stopped-polling", 10)
            bound = max_poll_ms / 1000 + MARGIN_S
        after = wait_split(survivors, topic, PARTS, bound + 20, sizes=[3, 3],
                           msg=f"survivors take over after {departure}")
        took = time.monotonic() - t0
        assert took < bound, (
            f"takeover after {departure} took {took:.1f}s, bound {bound:.1f}s "
            f"(session.timeout.ms={session_ms}, max.poll.interval.ms={max_poll_ms})")
        assert set().union(*after.values()) >= vparts

        produced.update(produce_tagged(broker.bootstrap, topic, PARTS, 10, "three"))
        everything = {(p, o) for p in range(PARTS) for o in range(70)}
        wait_until(lambda: {(p, o) for _, p, o, _ in delivered(mem, topic)} >= everything, 60,
                   msg="every record delivered to the group")
        wait_committed(survivors, topic, {p: 70 for p in range(PARTS)}, 60,
                       msg="survivors committed everything")
        assert committed_offsets(broker.bootstrap, group, topic, PARTS) == {
            p: 70 for p in range(PARTS)}

        recs = delivered(mem, topic)
        assert_values_match(recs, produced)
        c = counts(recs)
        dup_committed = sorted(po for po, n in c.items() if po[1] < 50 and n != 1)
        assert not dup_committed, (
            f"committed records delivered more than once (partition, offset): {dup_committed[:10]}")
        for p in vparts:
            taken = sorted(o for m in survivors for (_, pp, o, _) in m.recs(topic) if pp == p)
            assert taken and taken[0] == 50, (
                f"partition {p}: survivors resumed at {taken[:1]}, expected the victim's "
                f"last commit 50 (offsets 50-59 were delivered to it but never committed)")
        for m in survivors:
            assert not m.events_since(marks[m.name], "lost"), f"{m.name} lost its partitions"

        if departure == "sigstop":
            # Thawed, the frozen member finds itself fenced and rejoins: the
            # group goes back to three members.
            victim.sigcont()
            wait_split(mem, topic, PARTS, SESSION_MS / 1000 + MARGIN_S + 20, sizes=[2, 2, 2],
                       msg="thawed member rejoins")


def test_group_survives_broker_restart(broker, tmp_path):
    """Members stay up while the broker restarts (SIGTERM): they reconnect,
    keep (or rejoin) the group, resume from the committed offsets and
    consume what is produced afterwards without redelivering committed
    records."""
    topic, group = unique_topic("grst"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=4)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = [ms.start(f"m{i}", "confluent", group, topic) for i in range(2)]
        wait_split(mem, topic, 4, JOIN_TIMEOUT, sizes=[2, 2])
        produced = produce_tagged(broker.bootstrap, topic, 4, 30, "before")
        wait_committed(mem, topic, {p: 30 for p in range(4)}, 60)
        assert broker.stop() == 0
        broker.restart()
        produced.update(produce_tagged(broker.bootstrap, topic, 4, 20, "after"))
        wait_committed(mem, topic, {p: 50 for p in range(4)}, SESSION_MS / 1000 + MARGIN_S + 40,
                       msg="records produced after the restart consumed and committed")
        wait_split(mem, topic, 4, 30, sizes=[2, 2])
        recs = delivered(mem, topic)
        assert_values_match(recs, produced)
        c = counts(recs)
        assert all(c.get((p, o)) == 1 for p in range(4) for o in range(30)), (
            "records committed before the restart were delivered again: "
            f"{sorted(po for po, n in c.items() if po[1] < 30 and n > 1)[:10]}")
        assert {(p, o) for p in range(4) for o in range(50)} <= set(c)
    assert committed_offsets(broker.bootstrap, group, topic, 4) == {p: 50 for p in range(4)}


# ---------------------------------------------------------------------------
# assignment strategies
# ---------------------------------------------------------------------------

SHAPES = {
    # 6 partitions of one topic over 3 members (sorted by member id)
    "range": [{0, 1}, {2, 3}, {4, 5}],
    "roundrobin": [{0, 3}, {1, 4}, {2, 5}],
}
EAGER = [(c, s) for c in CLIENTS for s in ("range", "roundrobin")]


@pytest.mark.parametrize("client,strategy", EAGER, ids=[f"{c}-{s}" for c, s in EAGER])
def test_eager_assignor(broker, tmp_path, client, strategy):
    """The broker picks the members' protocol and hands every member the
    leader's assignment: range gives contiguous pairs, roundrobin strides of
    3; each member then receives exactly its partitions' records."""
    topic, group = unique_topic("gasg"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=PARTS)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = [ms.start(f"m{i}", client, group, topic, strategy=strategy) for i in range(3)]
        sets = wait_split(mem, topic, PARTS, JOIN_TIMEOUT, sizes=[2, 2, 2])
        assert sorted(sets.values(), key=min) == SHAPES[strategy], sets
        produced = produce_tagged(broker.bootstrap, topic, PARTS, 20, "x")
        wait_until(lambda: len(delivered(mem, topic)) >= len(produced), 60,
                   msg="all records delivered")
        recs = delivered(mem, topic)
        assert_values_match(recs, produced)
        assert sorted(counts(recs).values()) == [1] * len(produced)
        for m in mem:
            assert {p for _, p, _, _ in m.recs(topic)} == sets[m.name], m.name


def test_mixed_clients_agree_on_common_protocol(broker, tmp_path):
    """One group of three different client libraries. Only roundrobin is
    supported by all of them (kafka-python offers nothing else), so the
    broker must select it even though the others prefer range."""
    topic, group = unique_topic("gmix"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=PARTS)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        mem = [
            ms.start("ck", "confluent", group, topic, strategy="range,roundrobin"),
            ms.start("kp", "kafka-python", group, topic, strategy="roundrobin"),
            ms.start("aio", "aiokafka", group, topic, strategy="range,roundrobin"),
        ]
        sets = wait_split(mem, topic, PARTS, JOIN_TIMEOUT, sizes=[2, 2, 2])
        assert sorted(sets.values(), key=min) == SHAPES["roundrobin"], sets
        produced = produce_tagged(broker.bootstrap, topic, PARTS, 10, "mix")
        wait_committed(mem, topic, {p: 10 for p in range(PARTS)}, 60)
        recs = delivered(mem, topic)
        assert_values_match(recs, produced)
        assert sorted(counts(recs).values()) == [1] * len(produced)


def test_inconsistent_protocol_is_rejected(broker, tmp_path):
    """A member whose assignors share nothing with the group's gets
    INCONSISTENT_GROUP_PROTOCOL; the existing member is not disturbed."""
    topic, group = unique_topic("ginc"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=PARTS)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        a = ms.start("a", "confluent", group, topic, strategy="range")
        wait_split([a], topic, PARTS, JOIN_TIMEOUT)
        mark = a.mark()
        b = ms.start("b", "confluent", group, topic, strategy="roundrobin")
        b.wait_event("error", 30, pred=lambda e: e.get("name") == "INCONSISTENT_GROUP_PROTOCOL")
        assert not b.owned(topic), b.owned(topic)
        assert a.owned(topic) == set(range(PARTS))
        assert not a.events_since(mark, "revoke"), "existing member was rebalanced"


COOP = ["confluent", "kafka-python"]


@pytest.mark.parametrize("client", COOP)
def test_cooperative_sticky_is_incremental(broker, tmp_path, client):
    """cooperative-sticky (KIP-429): when a third member joins, the two
    existing members give up exactly one partition each (incremental revoke)
    and never stop owning the rest; the newcomer gets the revoked ones."""
    topic, group = unique_topic("gcoop"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=PARTS)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        a = ms.start("a", client, group, topic, strategy="cooperative-sticky")
        b = ms.start("b", client, group, topic, strategy="cooperative-sticky")
        before = wait_split([a, b], topic, PARTS, JOIN_TIMEOUT, sizes=[3, 3])
        marks = {m.name: m.mark() for m in (a, b)}
        c = ms.start("c", client, group, topic, strategy="cooperative-sticky")
        after = wait_split([a, b, c], topic, PARTS, JOIN_TIMEOUT, sizes=[2, 2, 2])
        moved = set()
        for m in (a, b):
            initial = before[m.name]
            assert after[m.name] < initial, f"{m.name}: {initial} -> {after[m.name]} is not sticky"
            revoked = set()
            for e in m.events_since(marks[m.name], "revoke"):
                parts = {p for t, p in e["parts"] if t == topic}
                assert parts < initial, (
                    f"{m.name}: revoke of {sorted(parts)} while owning {sorted(initial)}: "
                    "an eager (full) revoke, not an incremental one")
                revoked |= parts
            assert revoked == initial - after[m.name], (m.name, revoked, initial, after[m.name])
            snaps = [{p for t, p in s if t == topic} for s in m.owned_since(marks[m.name])]
            assert all(s for s in snaps), f"{m.name} was left with no partitions: {snaps}"
            assert not m.events_since(marks[m.name], "lost"), f"{m.name} lost its partitions"
            moved |= revoked
        assert after["c"] == moved


# kafka-python as a returning static *leader* is left out: it joins before it
# has the topic's metadata ("No partition metadata for topic"), so once the
# metadata arrives it sends JoinGroup again as the leader of a Stable group,
# and Kafka rebalances on that too (broker log: generation 2, then 3). The
# rebalance is the client's doing, not the broker's.
STATIC = [("confluent", "close", "leader"), ("confluent", "close", "follower"),
          ("confluent", "kill9", "follower"), ("kafka-python", "close", "follower"),
          ("aiokafka", "close", "follower"),
          # KIP-848: close is a static leave (member epoch -2). After kill -9
          # the instance id stays held until the session expires
          # (UNRELEASED_INSTANCE_ID, fatal in librdkafka), as in Kafka.
          ("confluent-848", "close", "follower")]


@pytest.mark.parametrize("client,departure,who", STATIC, ids=["-".join(c) for c in STATIC])
def test_static_member_restart_keeps_partitions(broker_factory, tmp_path, client, departure,
                                                who):
    """Static membership (KIP-345, group.instance.id): a member that goes
    away (close sends no LeaveGroup for static members; kill -9 sends
    nothing) and comes back with the same instance id before its session
    expires gets its own partitions back, the other members see no
    rebalance at all, and it resumes from its committed offsets. The group
    leader (the first member to join; it ran the assignor) and a follower
    are both restarted: Kafka answers a rejoining static leader without a
    rebalance too."""
    topic, group = unique_topic("gstat"), unique_topic("g")
    session_ms = 10000
    broker, client, protocol = broker_for(broker_factory, client, session_ms)
    ck.create_topic(broker.bootstrap, topic, partitions=PARTS)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        def start(name, inst):
            return ms.start(name, client, group, topic, instance_id=inst, session_ms=session_ms,
                            protocol=protocol)
        # s0 joins an empty group first: it is the leader
        mem = [start("s0", "inst-0")]
        wait_split(mem, topic, PARTS, JOIN_TIMEOUT, sizes=[PARTS], msg="first member owns all")
        mem += [start("s1", "inst-1"), start("s2", "inst-2")]
        wait_split(mem, topic, PARTS, JOIN_TIMEOUT, sizes=[2, 2, 2])
        produced = produce_tagged(broker.bootstrap, topic, PARTS, 10, "one")
        wait_committed(mem, topic, {p: 10 for p in range(PARTS)}, 60)
        i = 0 if who == "leader" else 1
        target, others = mem[i], [m for m in mem if m is not mem[i]]
        marks = {m.name: m.mark() for m in others}
        mine = target.owned(topic)
        t0 = time.monotonic()
        if departure == "close":
            target.close()
        else:
            target.kill9()
        back = start(f"s{i}-again", f"inst-{i}")
        back.wait(lambda m: m.owned(topic), session_ms / 1000 + 20, "rejoined with partitions")
        took = time.monotonic() - t0
        assert back.owned(topic) == mine, f"came back with {back.owned(topic)}, had {mine}"
        assert took < session_ms / 1000, (
            f"static rejoin took {took:.1f}s, more than session.timeout.ms={session_ms}")
        for m in others:
            churn = [e["ev"] for e in m.events_since(marks[m.name])
                     if e["ev"] in ("assign", "revoke", "lost")]
            assert not churn, f"{m.name} was rebalanced by a static member's restart: {churn}"
        produced.update(produce_tagged(broker.bootstrap, topic, PARTS, 5, "two"))

        def settled(m):
            return m.events_since(marks.get(m.name, 0), "commit_failed") or all(
                m.committed().get((topic, p), -1) >= 15 for p in m.owned(topic))
        wait_until(lambda: all(settled(m) for m in others + [back]), 60,
                   msg="every member committed the new records (or failed to)")
        for m in others:
            failed = m.events_since(marks[m.name], "commit_failed")
            assert not failed, (
                f"{m.name}'s commits failed after a static member's restart: the group was "
                f"put into a rebalance: {failed}")
        wait_committed(others + [back], topic, {p: 15 for p in range(PARTS)}, 30)
        got = sorted((p, o) for _, p, o, _ in back.recs(topic))
        assert got == sorted((p, o) for p in mine for o in range(10, 15)), (
            f"restarted static member should resume at the committed offset 10: {got[:12]}")
        for m in others:
            churn = [e["ev"] for e in m.events_since(marks[m.name])
                     if e["ev"] in ("assign", "revoke", "lost")]
            assert not churn, f"{m.name} was rebalanced after the static restart: {churn}"
        assert_values_match(delivered(mem + [back], topic), produced)


# ---------------------------------------------------------------------------
# committed offsets across broker restarts; auto.offset.reset
# ---------------------------------------------------------------------------

COMMIT_MODES = [("confluent", "auto"), ("confluent", "sync"), ("confluent", "async"),
                ("kafka-python", "auto"), ("kafka-python", "sync"), ("aiokafka", "sync")]


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
@pytest.mark.parametrize("client,mode", COMMIT_MODES, ids=[f"{c}-{m}" for c, m in COMMIT_MODES])
def test_committed_offsets_survive_broker_restart(broker, tmp_path, client, mode, stop):
    """Offsets committed (auto-commit, commitSync, commitAsync) before the
    broker is stopped (SIGTERM) or killed (-9) are there after it restarts,
    and a consumer that rejoins the group resumes exactly there."""
    topic, group = unique_topic("goff"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=3)
    produced = produce_tagged(broker.bootstrap, topic, 3, 40, "before")
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        first = ms.start("first", client, group, topic, commit=mode)
        wait_committed([first], topic, {p: 40 for p in range(3)}, 60)
        first.close()
        assert committed_offsets(broker.bootstrap, group, topic, 3) == {p: 40 for p in range(3)}
        if stop == "sigterm":
            assert broker.stop(signal.SIGTERM) == 0
        else:
            assert broker.kill9() == -signal.SIGKILL
        broker.restart()
        assert committed_offsets(broker.bootstrap, group, topic, 3) == {p: 40 for p in range(3)}
        produced.update(produce_tagged(broker.bootstrap, topic, 3, 20, "after"))
        second = ms.start("second", client, group, topic, commit=mode)
        wait_until(lambda: len(second.recs(topic)) >= 60, 60, msg="records after the commit")
        wait_committed([second], topic, {p: 60 for p in range(3)}, 60)
        got = second.recs(topic)
        assert sorted((p, o) for _, p, o, _ in got) == [
            (p, o) for p in range(3) for o in range(40, 60)], (
            f"rejoined consumer must resume at the committed offset 40: {got[:5]}")
        assert_values_match([("second",) + r[1:] for r in got], produced)


@pytest.mark.parametrize("client", CLIENTS)
def test_offset_reset_latest(broker, tmp_path, client):
    """auto.offset.reset=latest: a new group starts at the log end, so it
    sees only records produced after it joined."""
    topic, group = unique_topic("glat"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=3)
    produce_tagged(broker.bootstrap, topic, 3, 30, "old")
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        m = ms.start("m", client, group, topic, offset_reset="latest")
        m.wait(lambda m: m.positions() and len(m.positions()) == 3, JOIN_TIMEOUT,
               "fetch positions resolved")
        assert m.positions() == {(topic, p): 30 for p in range(3)}
        produced = produce_tagged(broker.bootstrap, topic, 3, 10, "new")
        wait_committed([m], topic, {p: 40 for p in range(3)}, 60)
        got = m.recs(topic)
        assert sorted((p, o) for _, p, o, _ in got) == [(p, o) for p in range(3)
                                                       for o in range(30, 40)]
        assert all(v.startswith("new|") for *_, v in got), got[:3]
        assert_values_match([("m",) + r[1:] for r in got], produced)


def test_offset_reset_applies_only_without_committed_offset(broker, tmp_path):
    """A committed offset wins over auto.offset.reset; reset (earliest or
    latest) applies only to partitions the group has no offset for."""
    topic, g_latest, g_earliest = unique_topic("grst"), unique_topic("gl"), unique_topic("ge")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    produce_tagged(broker.bootstrap, topic, 2, 20, "a")
    # a plain commit without joining (generation -1), as an admin tool does
    c = ck.consumer(broker.bootstrap, **{"group.id": g_latest})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    finally:
        c.close()
    assert committed_offsets(broker.bootstrap, g_latest, topic, 2) == {0: 5, 1: -1001}
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        lat = ms.start("latest", "confluent", g_latest, topic, offset_reset="latest")
        ear = ms.start("earliest", "confluent", g_earliest, topic, offset_reset="earliest")
        # once both have a fetch position, what they get next shows where they started
        for m in (lat, ear):
            m.wait(lambda m: m.positions() and len(m.positions()) == 2, JOIN_TIMEOUT,
                   "positions resolved")
        produce_tagged(broker.bootstrap, topic, 2, 3, "b")
        wait_committed([lat], topic, {0: 23, 1: 23}, 60)
        wait_committed([ear], topic, {0: 23, 1: 23}, 60)
        assert sorted((p, o) for _, p, o, _ in lat.recs(topic)) == (
            [(0, o) for o in range(5, 23)] + [(1, o) for o in range(20, 23)])
        assert sorted((p, o) for _, p, o, _ in ear.recs(topic)) == [
            (p, o) for p in range(2) for o in range(23)]


# ---------------------------------------------------------------------------
# kcat balanced consumer (-G)
# ---------------------------------------------------------------------------


class Kcat:
    """`kcat -G` in a subprocess; stdout = records, stderr = rebalances."""

    def __init__(self, name, bootstrap, group, topic, log_dir):
        self.name = name
        self.out_path = log_dir / f"kcat-{name}.out"
        self.err_path = log_dir / f"kcat-{name}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            ["kcat", "-b", bootstrap, "-G", group, "-u",
             "-X", "auto.offset.reset=earliest",
             "-X", f"session.timeout.ms={SESSION_MS}",
             "-X", f"heartbeat.interval.ms={HEARTBEAT_MS}",
             "-X", "auto.commit.interval.ms=500",
             "-f", "%p %o %s\\n", topic],
            stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)

    def records(self):
        out = []
        for line in self.out_path.read_text(errors="replace").splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0].isdigit():
                out.append((self.name, int(parts[0]), int(parts[1]), parts[2]))
        return out

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def assigned(self, topic):
        """Partitions of the last '... rebalanced ...: assigned: t [p], ...'
        line; None before the first assignment, empty after a revoke."""
        last = None
        for line in self.stderr().splitlines():
            if "rebalanced" not in line:
                continue
            if "assigned:" in line:
                tail = line.split("assigned:", 1)[1]
                last = set()
                for item in tail.split(","):
                    item = item.strip()
                    if item.startswith(topic + " [") and item.endswith("]"):
                        last.add(int(item[len(topic) + 2:-1]))
            elif "revoked" in line:
                last = set()
        return last

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # kcat closes the consumer: commit + leave
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"kcat {self.name} did not exit within {timeout}s of SIGTERM")
        return self.proc.returncode

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()


def test_kcat_balanced_consumers(broker, tmp_path):
    """Two `kcat -G` processes split a topic, consume every record exactly
    once between them; when one exits the other takes its partitions over
    and continues where the group's commits left off."""
    topic, group = unique_topic("gkcat"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=4)
    ks = []
    try:
        ks = [Kcat(n, broker.bootstrap, group, topic, tmp_path) for n in ("a", "b")]

        def split():
            sets = [k.assigned(topic) for k in ks]
            if any(s is None for s in sets) or sets[0] & sets[1] or sets[0] | sets[1] != {0, 1, 2, 3}:
                return None
            return sets if all(sets) else None

        sets = wait_until(split, JOIN_TIMEOUT, msg="two kcat -G split 4 partitions")
        produced = produce_tagged(broker.bootstrap, topic, 4, 25, "kc")
        wait_until(lambda: sum(len(k.records()) for k in ks) >= 100, 60, msg="100 records")
        recs = [r for k in ks for r in k.records()]
        assert_values_match(recs, produced)
        assert sorted(counts(recs).values()) == [1] * 100
        for k, s in zip(ks, sets):
            assert {p for _, p, _, _ in k.records()} == s, (k.name, s)
        # let the auto-commit catch up, then a leaves (SIGTERM: commit + LeaveGroup)
        wait_until(lambda: committed_offsets(broker.bootstrap, group, topic, 4)
                   == {p: 25 for p in range(4)}, 30, msg="kcat auto-commits")
        assert ks[0].stop() == 0, ks[0].stderr()[-2000:]
        wait_until(lambda: ks[1].assigned(topic) == {0, 1, 2, 3}, SESSION_MS / 1000 + MARGIN_S,
                   msg="remaining kcat takes all partitions")
        produced.update(produce_tagged(broker.bootstrap, topic, 4, 5, "late"))
        wait_until(lambda: len(ks[1].records()) >= len(sets[1]) * 25 + 20, 60,
                   msg="remaining kcat consumes the new records")
        recs = [r for k in ks for r in k.records()]
        assert_values_match(recs, produced)
        assert sorted(counts(recs).values()) == [1] * 120, "records delivered twice"
        assert ks[1].stop() == 0
        assert committed_offsets(broker.bootstrap, group, topic, 4) == {p: 30 for p in range(4)}
    except BaseException:
        for k in ks:
            print(f"==== kcat {k.name} stderr\n{k.stderr()[-3000:]}")
        raise
    finally:
        for k in ks:
            k.cleanup()


# ---------------------------------------------------------------------------
# errors a real client can provoke
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_empty_group_id_is_rejected(broker, tmp_path, client):
    """group_id='' is sent as is by these clients; the broker must refuse to
    let it join (INVALID_GROUP_ID)."""
    topic = unique_topic("gempty")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        m = ms.start("m", client, "", topic)
        m.wait_event("error", 30, pred=lambda e: e.get("name") == "InvalidGroupIdError")
        assert not m.owned(topic)
    ck.round_trip(broker.bootstrap)


BAD_SESSION = [("confluent", 1000), ("confluent", 3_600_000), ("kafka-python", 1000)]


@pytest.mark.parametrize("client,session_ms", BAD_SESSION,
                         ids=[f"{c}-{s}" for c, s in BAD_SESSION])
def test_session_timeout_out_of_range_is_rejected(broker, tmp_path, client, session_ms):
    """JoinGroup with a session timeout below group.min.session.timeout.ms
    (6000) or above group.max.session.timeout.ms (1800000) fails with
    INVALID_SESSION_TIMEOUT."""
    topic, group = unique_topic("gsess"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    want = {"confluent": "INVALID_SESSION_TIMEOUT", "kafka-python": "InvalidSessionTimeoutError"}
    with Members(broker.bootstrap, tmp_path / "members") as ms:
        m = ms.start("m", client, group, topic, session_ms=session_ms,
                     heartbeat_ms=min(HEARTBEAT_MS, session_ms // 3),
                     max_poll_ms=max(MAX_POLL_MS, session_ms))
        m.wait_event("error", 30, pred=lambda e: e.get("name") == want[client])
        assert not m.owned(topic)


def test_commit_to_unknown_partition_fails_per_partition(broker):
    """An OffsetCommit naming a partition that does not exist gets
    UNKNOWN_TOPIC_OR_PARTITION for it; the valid partition in the same
    request is committed."""
    topic, group = unique_topic("gunk"), unique_topic("g")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    c = ck.consumer(broker.bootstrap, **{"group.id": group})
    try:
        res = None
        try:
            res = c.commit(offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 99, 7)],
                           asynchronous=False)
        except KafkaException as e:
            assert e.args[0].name() == "UNKNOWN_TOPIC_OR_PART", e
        if res is not None:
            errs = {r.partition: (r.error.name() if r.error else None) for r in res}
            assert errs == {0: None, 99: "UNKNOWN_TOPIC_OR_PART"}, errs
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
        assert [(r.partition, r.offset) for r in got] == [(0, 7), (1, -1001)]
    finally:
        c.close()


# ---------------------------------------------------------------------------
# KIP-848: the consumer group protocol (ConsumerGroupHeartbeat)
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


@pytest.mark.timeout(120)
def test_kip848_regex_subscription_follows_new_topics(broker_factory):
    """group.protocol=consumer with a regex subscription (sent as
    SubscribedTopicRegex, matched by the broker against the whole topic
    name): the member gets every matching topic's partitions, not the
    others, and a matching topic created later is assigned on a following
    heartbeat and consumed."""
    broker = broker_factory("--group-consumer-heartbeat-interval-ms", str(HEARTBEAT_MS))
    prefix = unique_topic("rx")
    for t in (f"{prefix}-a", f"{prefix}-b", f"other-{prefix}"):
        ck.create_topic(broker.bootstrap, t, partitions=2)
    c = ck.consumer(broker.bootstrap, **{"group.id": unique_topic("g"),
                                         "group.protocol": "consumer",
                                         "auto.offset.reset": "earliest"})
    try:
        c.subscribe([f"^{prefix}-.*"])

        def assigned():
            c.poll(0.1)
            return {(tp.topic, tp.partition) for tp in c.assignment()}
        want = {(f"{prefix}-{x}", p) for x in "ab" for p in range(2)}
        wait_until(lambda: assigned() == want, 45, msg=f"regex assignment {want}")
        ck.create_topic(broker.bootstrap, f"{prefix}-c", partitions=2)
        want |= {(f"{prefix}-c", p) for p in range(2)}
        wait_until(lambda: assigned() == want, 45, msg="new matching topic assigned")
        ck.produce_and_wait(broker.bootstrap, f"{prefix}-c", [{"value": b"late", "partition": 1}])
        got = []

        def consumed():
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append((m.topic(), m.value()))
            return (f"{prefix}-c", b"late") in got
        wait_until(consumed, 30, msg="record on the new topic consumed")
    finally:
        c.close()
