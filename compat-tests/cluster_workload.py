"""A queue workload and its checker for a Karnak cluster under faults (issue
18), in the manner of Jepsen's Kafka tests, with real librdkafka clients.

While faults come and go, three producers write unique values with
acks=all and log every acknowledgement: a plain one, an idempotent one, and
a transactional one that commits or aborts each transaction at random. A
read_committed consumer reads everything as it arrives. Once the cluster is
healed, ``check()`` consumes every partition from the beginning and reports
(and ``assert_clean()`` insists on):

- lost: acknowledged values missing, or not at the offset they were
  acknowledged at;
- duplicated: values of the idempotent producer found more than once
  (the plain producer may duplicate on a retry; those are only counted);
- gaps: offsets that are not dense in the queue topic (it has no
  transactions, so no control records);
- backwards: a consumer that saw a partition's offset go backwards;
- aborted_seen: read_committed returned a value of an aborted transaction;
- committed_missing: a committed transaction's value that read_committed
  never returned;
- group_rewound: a consumer group member resumed a partition before an
  offset the group had committed (and been told so): the coordinator lost
  a commit across a failover;
- group_missing: queue values the group never consumed (it skipped past
  what it had not processed);
- diverged: partitions whose segment files differ between replicas once
  quiet (the same value at the same offset on every replica, byte for
  byte).

``run()`` drives the workload under faults picked at random (SIGKILL of a
partition leader, of the controller, or of the transaction's coordinator,
SIGSTOP of a leader past its session, a rolling restart, and, inside a
network namespace of its own, a leader cut off from the other brokers
while its clients still reach it), each healed before the next; the CI
test (test_cluster.py) runs each process fault once (the network cut is a
Rust test there), compat-tests/cluster/soak.sh all of them for as long as
asked.

Bounded: every client call has a timeout; ``stop()`` ends the threads.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

COMMON = {"socket.timeout.ms": 10000, "api.version.request.timeout.ms": 10000}


def start_cluster(binary, work: Path, extra=(), uids=None):
    """Three brokers on loopback, every one a metadata voter, started together
    (distinct cluster ports: free_port() may hand one out twice); broker i
    runs as user uids[i] when given."""
    from conftest import Broker, free_port
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(sorted(ports)))
    cid = "cluster-" + uuid.uuid4().hex
    nodes = [Broker(binary, work / f"n{i}", work / "logs",
                    ["--cluster-peers", peers, "--cluster-id", cid, "--sql-enabled", "false",
                     *extra], node_id=i, uid=uids[i] if uids else None)
             for i in range(3)]
    from conftest import BrokerStartError
    for b in nodes:
        b.spawn()
    for b in nodes:
        for attempt in range(3):
            try:
                b.wait_ready()
                break
            except BrokerStartError as e:
                # Another process took a port free_port() gave us (the race
                # Broker.start also retries): new client ports, same node.
                if "in use" not in e.log.lower() or attempt == 2:
                    raise
                b.pick_ports()
                b.spawn()
    return nodes


def bootstrap(nodes) -> str:
    return ",".join(b.bootstrap for b in nodes if b.alive())


def wait_until(cond, timeout, msg):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - a broker may be down meanwhile
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s: {msg}")


class Workload:
    def __init__(self, nodes, partitions=3, seed=0, group=True):
        self.nodes = nodes
        self.partitions = partitions
        self.rng = random.Random(seed)
        tag = uuid.uuid4().hex[:8]
        self.topic = f"queue-{tag}"
        self.txn_topic = f"txn-{tag}"
        self.txn_id = f"soak-{tag}"
        self.group = f"soak-group-{tag}"
        # The group's member: what it consumed, the offsets its commits
        # were acknowledged for, and resumptions before them.
        self.group_seen = set()
        self.group_committed = {}
        self.group_rewound = []
        self.group_stopping = threading.Event()
        self.group_thread = None
        self.with_group = group
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.acked = defaultdict(list)  # producer name -> [(partition, offset, value)]
        self.failed = Counter()  # producer name -> deliveries refused
        self.committed = set()
        self.aborted = set()
        self.txn_outcomes = Counter()
        self.txn_how = {}  # value -> how its transaction ended (for a failure's detail)
        self.seen_committed = set()
        self.seen_at = {}  # value -> (partition, offset) read_committed read it at
        self.backwards = []
        self.threads = []

    # -- set-up ------------------------------------------------------
    def create_topics(self):
        a = AdminClient({"bootstrap.servers": bootstrap(self.nodes), **COMMON})
        topics = [NewTopic(t, num_partitions=self.partitions, replication_factor=3,
                           config={"min.insync.replicas": "2"})
                  for t in (self.topic, self.txn_topic)]
        for t, f in a.create_topics(topics, operation_timeout=30, request_timeout=30).items():
            f.result(30)
        self.wait_in_sync(60)

    def wait_in_sync(self, timeout):
        """Every partition of both topics has a leader and three in sync."""
        def ok():
            a = AdminClient({"bootstrap.servers": bootstrap(self.nodes), **COMMON})
            md = a.list_topics(timeout=5)
            for t in (self.topic, self.txn_topic):
                tm = md.topics.get(t)
                if tm is None or tm.error is not None or len(tm.partitions) != self.partitions:
                    return False
                if any(p.leader < 0 or len(p.isrs) != 3 for p in tm.partitions.values()):
                    return False
            return True
        wait_until(ok, timeout, "every partition led with 3 in sync")

    # -- the running workload ----------------------------------------
    def start(self):
        for name, conf in (("plain", {"enable.idempotence": False}),
                           ("idempotent", {"enable.idempotence": True})):
            self._spawn(self._produce, name, conf)
        self._spawn(self._transact)
        self._spawn(self._consume)
        if self.with_group:
            self.group_thread = threading.Thread(target=self._group_consume, daemon=True)
            self.group_thread.start()

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(120)
            assert not t.is_alive(), "a workload thread did not stop"

    def _produce(self, name, conf):
        p = Producer({"bootstrap.servers": bootstrap(self.nodes), "acks": "all",
                      "linger.ms": 5, "message.timeout.ms": 60000, **COMMON, **conf})

        def delivered(err, msg):
            with self.lock:
                if err is None:
                    self.acked[name].append((msg.partition(), msg.offset(), msg.value()))
                else:
                    self.failed[name] += 1

        i = 0
        while not self.stopping.is_set():
            p.produce(self.topic, f"{name}-{i}".encode(), partition=i % self.partitions,
                      on_delivery=delivered)
            p.poll(0)
            i += 1
            time.sleep(0.004)
        p.flush(90)

    def _transact(self):
        tid = self.txn_id
        p = None
        k = 0
        while not self.stopping.is_set():
            if p is None:
                p = Producer({"bootstrap.servers": bootstrap(self.nodes), "acks": "all",
                              "transactional.id": tid, **COMMON})
                try:
                    p.init_transactions(30)
                except KafkaException:
                    p = None
                    time.sleep(0.5)
                    continue
            values = [f"txn-{k}-{j}".encode() for j in range(4)]
            k += 1
            commit = self.rng.random() < 0.5
            how = "commit" if commit else "abort"
            try:
                p.begin_transaction()
                for j, v in enumerate(values):
                    p.produce(self.txn_topic, v, partition=j % self.partitions)
                if commit:
                    p.commit_transaction(30)
                else:
                    p.abort_transaction(30)
                outcome = "committed" if commit else "aborted"
            except KafkaException as e:
                err = e.args[0]
                outcome = "uncertain"
                how = f"{how} failed ({err.name()}: {err.str()})"
                if err.txn_requires_abort():
                    try:
                        p.abort_transaction(30)
                        outcome = "aborted"
                        how += ", then abort_transaction"
                    except KafkaException:
                        p = None
                elif not err.retriable():
                    p = None  # fatal: a new producer fences this one
            with self.lock:
                self.txn_outcomes[outcome] += 1
                self.txn_how.update((v, how) for v in values)
                if outcome == "committed":
                    self.committed.update(values)
                elif outcome == "aborted":
                    self.aborted.update(values)
            time.sleep(0.02)

    def _consume(self):
        c = Consumer({"bootstrap.servers": bootstrap(self.nodes), "group.id": "unused",
                      "enable.auto.commit": False, "isolation.level": "read_committed",
                      "auto.offset.reset": "earliest", **COMMON})
        c.assign([TopicPartition(t, p, 0) for t in (self.topic, self.txn_topic)
                  for p in range(self.partitions)])
        last = {}
        try:
            while not self.stopping.is_set():
                for m in c.consume(500, 0.2):
                    if m.error():
                        continue
                    key = (m.topic(), m.partition())
                    if key in last and m.offset() <= last[key]:
                        with self.lock:
                            self.backwards.append((key, last[key], m.offset()))
                    last[key] = m.offset()
                    if m.topic() == self.txn_topic:
                        with self.lock:
                            self.seen_committed.add(m.value())
                            self.seen_at[m.value()] = (m.partition(), m.offset())
        finally:
            c.close()

    def _group_consume(self):
        """A consumer group member on the queue topic: commits what it has
        consumed after every poll (synchronously), and on every assignment
        checks that it resumes at or after what it was told is committed.
        Runs until check() has seen it catch up."""
        fresh = set()

        def on_assign(consumer, partitions):
            fresh.update(tp.partition for tp in partitions)

        conf = {"bootstrap.servers": bootstrap(self.nodes), "group.id": self.group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": 10000, **COMMON}
        trace = os.environ.get("KARNAK_WORKLOAD_GROUP_TRACE")
        if trace:
            # librdkafka's consumer-group debug log, for a group that does not settle.
            import logging
            log = logging.getLogger(f"group-member-{self.group}")
            log.addHandler(logging.FileHandler(trace))
            log.setLevel(logging.DEBUG)
            conf.update({"debug": "cgrp,protocol,broker", "logger": log})
        c = Consumer(conf)
        c.subscribe([self.topic], on_assign=on_assign)
        try:
            while not self.group_stopping.is_set():
                msgs = [m for m in c.consume(500, 0.2) if not m.error()]
                ends = {}
                with self.lock:
                    for m in msgs:
                        p = m.partition()
                        if p in fresh:
                            fresh.discard(p)
                            if m.offset() < self.group_committed.get(p, 0):
                                self.group_rewound.append(
                                    (p, self.group_committed[p], m.offset()))
                        self.group_seen.add(m.value())
                        ends[p] = m.offset() + 1
                if not ends:
                    continue
                try:
                    done = c.commit(offsets=[TopicPartition(self.topic, p, o)
                                             for p, o in ends.items()], asynchronous=False)
                except KafkaException:
                    continue  # not known to be committed: nothing recorded
                with self.lock:
                    for tp in done or []:
                        if tp.error is None:
                            prev = self.group_committed.get(tp.partition, 0)
                            self.group_committed[tp.partition] = max(prev, tp.offset)
        finally:
            c.close()

    def _group_caught_up(self, queue, timeout=60):
        """Waits until the group member has consumed every value of `queue`
        (or `timeout`), then stops it; returns the values it never saw."""
        want = {v for part in queue.values() for v in part.values()}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                missing = want - self.group_seen
            if not missing:
                break
            time.sleep(0.2)
        self.group_stopping.set()
        if self.group_thread is not None:
            self.group_thread.join(30)
            assert not self.group_thread.is_alive(), "the group member did not stop"
        with self.lock:
            return sorted(want - self.group_seen)

    # -- the checker -------------------------------------------------
    def _read_all(self, topic, isolation):
        """Every record of `topic`: {partition: {offset: value}}. Read to
        the high watermark (read_uncommitted), or until nothing more comes
        for 3 s (read_committed: its position stops short of markers and
        aborted records)."""
        c = Consumer({"bootstrap.servers": bootstrap(self.nodes), "group.id": "unused",
                      "enable.auto.commit": False, "isolation.level": isolation,
                      "auto.offset.reset": "earliest", **COMMON})
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(self.partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(self.partitions)])
        out = {p: {} for p in range(self.partitions)}
        deadline = time.monotonic() + 120
        idle_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                msgs = [m for m in c.consume(1000, 0.5) if not m.error()]
                for m in msgs:
                    out[m.partition()][m.offset()] = m.value()
                if msgs:
                    idle_since = time.monotonic()
                if isolation == "read_uncommitted":
                    pos = c.position([TopicPartition(topic, p) for p in range(self.partitions)])
                    if all(ends[tp.partition] == 0 or tp.offset >= ends[tp.partition]
                           for tp in pos):
                        return out
                elif time.monotonic() - idle_since > 3:
                    return out
        finally:
            c.close()
        raise AssertionError(f"{topic}: could not read to the end in 120 s")

    def _segments(self, broker, topic, p):
        d = Path(broker.data_dir) / f"{topic}-{p}"
        return b"".join(f.read_bytes() for f in sorted(d.glob("*.log")))

    def check(self):
        queue = self._read_all(self.topic, "read_uncommitted")
        txn = self._read_all(self.txn_topic, "read_committed")
        t0 = time.monotonic()
        group_missing = self._group_caught_up(queue) if self.with_group else []
        group_catch_up_s = round(time.monotonic() - t0, 1)
        found = Counter(v for part in queue.values() for v in part.values())
        with self.lock:
            acked = {n: list(a) for n, a in self.acked.items()}
            committed, aborted = set(self.committed), set(self.aborted)
            seen = set(self.seen_committed)
            backwards = list(self.backwards)
            group_rewound = list(self.group_rewound)
        lost = [(n, p, o, v) for n, a in acked.items() for (p, o, v) in a
                if queue[p].get(o) != v]
        idem = {v for (_, _, v) in acked.get("idempotent", [])}
        duplicated = [v for v in idem if found[v] > 1]
        plain_dups = sum(1 for (_, _, v) in acked.get("plain", []) if found[v] > 1)
        gaps = [p for p, offs in queue.items()
                if offs and sorted(offs) != list(range(min(offs), max(offs) + 1))]
        txn_values = {v for part in txn.values() for v in part.values()}
        aborted_seen = sorted((txn_values | seen) & aborted)
        final_at = {v: (p, o) for p, part in txn.items() for o, v in part.items()}
        with self.lock:
            aborted_how = [(v, self.txn_how.get(v), "live" if v in seen else "",
                            self.seen_at.get(v), "final" if v in txn_values else "",
                            final_at.get(v)) for v in aborted_seen[:10]]
        committed_missing = sorted(committed - txn_values)
        diverged = []
        for t in (self.topic, self.txn_topic):
            for p in range(self.partitions):
                try:
                    wait_until(lambda: len({self._segments(b, t, p) for b in self.nodes}) == 1,
                               30, f"{t}-{p} identical on every replica")
                except AssertionError:
                    diverged.append(f"{t}-{p}")
        return {
            "acked": sum(len(a) for a in acked.values()),
            "refused": sum(self.failed.values()),
            "found": sum(found.values()),
            "lost": len(lost),
            "duplicated": len(duplicated),
            "plain_duplicates": plain_dups,
            "gaps": gaps,
            "backwards": len(backwards),
            "transactions": dict(self.txn_outcomes),
            "aborted_seen": len(aborted_seen),
            "committed_missing": len(committed_missing),
            "group_rewound": len(group_rewound),
            "group_missing": len(group_missing),
            "group_catch_up_s": group_catch_up_s,
            "diverged": diverged,
            "_detail": {"lost": lost[:10], "duplicated": duplicated[:10],
                        "backwards": backwards[:10], "aborted_seen": aborted_how,
                        "committed_missing": committed_missing[:10],
                        "group_rewound": group_rewound[:10], "group_missing": group_missing[:10]},
        }


# ---------------------------------------------------------------- faults

FAULTS = ("kill_leader", "kill_controller", "kill_txn_coordinator", "pause_leader",
          "rolling_restart")
# Needs a network namespace of its own (see NetworkCuts).
NETWORK_FAULTS = ("isolate_leader",)


def metadata(nodes):
    return AdminClient({"bootstrap.servers": bootstrap(nodes), **COMMON}).list_topics(timeout=10)


def leader_of(nodes, w, rng):
    p = rng.randrange(w.partitions)
    return metadata(nodes).topics[w.topic].partitions[p].leader


def wait_new_leader(nodes, w, gone):
    """The survivors lead every partition of the queue topic without `gone`
    (as the brokers other than `gone` see it)."""
    def ok():
        md = metadata([b for i, b in enumerate(nodes) if b.alive() and i != gone])
        return all(p.leader >= 0 and p.leader != gone
                   for p in md.topics[w.topic].partitions.values())
    wait_until(ok, 60, f"partitions led without broker {gone}")


def kill(nodes, w, rng, victim):
    nodes[victim].kill9()
    wait_new_leader(nodes, w, victim)
    time.sleep(rng.uniform(1, 3))
    nodes[victim].spawn()
    nodes[victim].wait_ready()
    w.wait_in_sync(60)


def kill_leader(nodes, w, rng):
    victim = leader_of(nodes, w, rng)
    kill(nodes, w, rng, victim)
    return victim


def kill_controller(nodes, w, rng):
    victim = metadata(nodes).controller_id
    kill(nodes, w, rng, victim)
    return victim


def txn_coordinator(nodes, w) -> int:
    """The broker coordinating the workload's transactional id
    (FindCoordinator v1, key type 1)."""
    import kafka_wire as kw
    for b in nodes:
        if not b.alive():
            continue
        req = kw.header_v1(10, 1, 1) + kw.string(w.txn_id) + kw.i8(1)
        r = kw.Reader(kw.roundtrip(b.bootstrap, req))
        r.i32()  # correlation id
        r.i32()  # throttle
        code, _, node = r.i16(), r.string(), r.i32()
        if code == 0:
            return node
    raise AssertionError(f"no coordinator for {w.txn_id}")


def kill_txn_coordinator(nodes, w, rng):
    """An open transaction's coordinator lost: its shard moves to a survivor,
    which finishes or aborts what was prepared or open."""
    victim = txn_coordinator(nodes, w)
    kill(nodes, w, rng, victim)
    return victim


def pause_leader(nodes, w, rng):
    victim = leader_of(nodes, w, rng)
    pid = nodes[victim].proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_new_leader(nodes, w, victim)
        time.sleep(rng.uniform(1, 3))
    finally:
        os.kill(pid, signal.SIGCONT)
    w.wait_in_sync(60)
    return victim


def rolling_restart(nodes, w, rng):
    for b in nodes:
        rc = b.stop()
        assert rc == 0, f"broker {b.node_id} exited {rc} on SIGTERM\n{b.log_tail()}"
        b.spawn()
        b.wait_ready()
        w.wait_in_sync(60)
    return None


def run(nodes, seed, faults=None, minutes=None, log=print, kinds=FAULTS, group=True):
    """Runs the workload under faults of `kinds` (with the consumer group
    member unless `group` is false); returns the checker's result."""
    rng = random.Random(seed)
    w = Workload(nodes, seed=seed, group=group)
    w.create_topics()
    w.start()
    try:
        time.sleep(2)
        end = time.monotonic() + (minutes or 0) * 60
        done = 0
        plan = []
        while (done < faults) if faults else (time.monotonic() < end):
            if not plan:
                # Every fault once per round, in a random order.
                plan = list(kinds)
                rng.shuffle(plan)
            name = plan.pop()
            t0 = time.monotonic()
            victim = FAULT_FNS[name](nodes, w, rng)
            log(f"fault {done}: {name} (broker {victim}) healed in {time.monotonic() - t0:.1f}s")
            done += 1
            time.sleep(rng.uniform(1, 3))
    finally:
        t0 = time.monotonic()
        w.stop()
        log(f"workload stopped in {time.monotonic() - t0:.1f}s")
    w.wait_in_sync(60)
    t0 = time.monotonic()
    result = w.check()
    log(f"checked in {time.monotonic() - t0:.1f}s")
    log(json.dumps({k: v for k, v in result.items() if k != "_detail"}))
    return result


class NetworkCuts:
    """Cuts between brokers, in a network namespace the caller made (root,
    `unshare --net`): broker i runs as user FIRST_UID + i, each new
    connection is marked with the user that opened it (CONNMARK, which
    outlives the socket), and a cut drops the marked connections to the
    other broker's Kafka and cluster ports. Clients (this process) keep
    reaching every broker."""

    FIRST_UID = 47_000

    @staticmethod
    def iptables(rule: str):
        subprocess.run(["iptables", *rule.split()], check=True, capture_output=True)

    @classmethod
    def install(cls, n=3):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        for i in range(n):
            uid = cls.FIRST_UID + i
            cls.iptables(f"-A OUTPUT -m conntrack --ctstate NEW -m owner --uid-owner {uid} "
                         f"-j CONNMARK --set-mark {uid}")
        cls.iptables("-N KARNAK_CUT")
        cls.iptables("-A OUTPUT -j KARNAK_CUT")

    @classmethod
    def uids(cls, n=3):
        return [cls.FIRST_UID + i for i in range(n)]

    @classmethod
    def cut(cls, nodes, a, b):
        peers = next(x for i, x in enumerate(nodes[b].extra_args)
                     if i and nodes[b].extra_args[i - 1] == "--cluster-peers")
        cluster_port = int(peers.split(",")[b].rsplit(":", 1)[1])
        for port in (nodes[b].kafka_port, cluster_port):
            cls.iptables(f"-A KARNAK_CUT -p tcp -m connmark --mark {cls.FIRST_UID + a} "
                         f"--dport {port} -j DROP")

    @classmethod
    def heal(cls):
        cls.iptables("-F KARNAK_CUT")


def isolate_leader(nodes, w, rng):
    """A partition leader cut off from the other brokers, both ways, while
    its clients still reach it: the others fence it and elect a leader; it
    may acknowledge no acks=all write alone (min.insync.replicas=2); healed,
    it truncates what it took alone and rejoins."""
    victim = leader_of(nodes, w, rng)
    for o in range(len(nodes)):
        if o != victim:
            NetworkCuts.cut(nodes, victim, o)
            NetworkCuts.cut(nodes, o, victim)
    try:
        wait_new_leader(nodes, w, victim)
        time.sleep(rng.uniform(1, 3))
    finally:
        NetworkCuts.heal()
    w.wait_in_sync(60)
    return victim


FAULT_FNS = {"kill_leader": kill_leader, "kill_controller": kill_controller,
             "kill_txn_coordinator": kill_txn_coordinator, "pause_leader": pause_leader,
             "rolling_restart": rolling_restart, "isolate_leader": isolate_leader}


def assert_clean(result):
    bad = {k: result[k] for k in ("lost", "duplicated", "backwards", "aborted_seen",
                                  "committed_missing", "group_rewound", "group_missing")
           if result[k]}
    bad.update({k: result[k] for k in ("gaps", "diverged") if result[k]})
    assert result["acked"] > 0, "nothing was acknowledged"
    assert not bad, f"checker found {bad}: {result['_detail']}"
