"""Consumer-group helpers for test_groups.py and test_groups_admin.py.

Two halves:

* Run as a script (`python groups_util.py member --client ... --group ...`),
  this file is ONE group member in its own process: a confluent-kafka,
  kafka-python or aiokafka consumer that subscribes, polls, commits and reports
  everything it does as JSON lines on stdout (`{"ev": "recs", ...}`). It takes
  commands on stdin, one per line: `hold` (stop committing, answered by
  `held`), `release`, `stop-polling`, `resume-polling`, `commit-now` (commit
  the offsets after everything it was ever given, even partitions it no
  longer owns), `close` (clean close, then exit 0). End of stdin (the test
  process died) exits at once. Members run in subprocesses so a test can
  kill -9 or SIGSTOP them.

* Imported by the tests: `Members` (context manager that starts members and
  always kills them), `Member` (the parent's view of one: its events, the
  partitions it owns, what it was given and committed), and helpers to
  produce tagged records, read committed offsets and wait for a group to
  split a topic.

Event kinds a member prints: ready, member (member id), assign / revoke /
lost (rebalance callbacks, partitions as [topic, partition]), owned (the full
assignment whenever it changes, as seen from the poll loop), positions (once
per assignment, when every owned partition has a fetch position), recs
([topic, partition, offset, value] per record, in delivery order), committed
(acked commits: [topic, partition, offset]), commit_failed, error, held,
released, stopped-polling, closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENTS = ("confluent", "kafka-python", "aiokafka")

# Session timeout used by the group tests: Kafka's default
# group.min.session.timeout.ms is 6000, which karnak accepts too.
SESSION_MS = 6000
HEARTBEAT_MS = 1000
# max.poll.interval.ms is also the rebalance timeout the clients send in
# JoinGroup: keep it small so a member that died mid-rebalance cannot hold
# the group for the default five minutes.
MAX_POLL_MS = 10000


# ---------------------------------------------------------------------------
# member process
# ---------------------------------------------------------------------------

_out_lock = threading.Lock()
_error_counts = {}


def emit(ev, **kw):
    if ev == "error":
        # a client that cannot reach the broker reports it every few ms
        key = (kw.get("name"), kw.get("where"))
        _error_counts[key] = _error_counts.get(key, 0) + 1
        if _error_counts[key] > 20:
            return
    kw["ev"] = ev
    kw["ts"] = time.time()
    line = json.dumps(kw)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _tps(parts):
    return sorted([tp[0], tp[1]] for tp in parts)


class _Commands:
    def __init__(self):
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in sys.stdin:
            line = line.strip()
            if line:
                self.q.put(line)
        self.q.put("eof")

    def get(self):
        try:
            return self.q.get_nowait()
        except queue.Empty:
            return None


class _Adapter:
    """One client library behind the same small interface. Sync libraries
    implement the coroutines with blocking calls (their own background
    threads keep heartbeating); aiokafka needs the loop to keep running."""

    def __init__(self, a):
        self.a = a
        self.topics = a.topics.split(",")

    async def open(self): ...
    async def poll(self): ...          # -> list of (topic, partition, offset, value str)
    async def owned(self): ...         # -> set of (topic, partition)
    async def positions(self, parts): ...  # -> {(t, p): offset or None}
    async def commit(self, offsets, asynchronous=False): ...  # offsets {(t, p): next offset}
    async def close(self): ...

    def member_id(self):
        return None


class _Confluent(_Adapter):
    async def open(self):
        from confluent_kafka import Consumer
        a = self.a
        conf = {
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "client.id": a.client_id or "karnak-compat-confluent",
            "socket.timeout.ms": 10000,
            "api.version.request.timeout.ms": 10000,
            "enable.auto.commit": a.commit == "auto",
            "auto.commit.interval.ms": a.auto_commit_ms,
            "auto.offset.reset": a.offset_reset,
            "max.poll.interval.ms": a.max_poll_ms,
            "enable.partition.eof": False,
            "error_cb": lambda err: emit("error", name=err.name(), code=err.code(),
                                         str=err.str(), fatal=err.fatal(), where="error_cb"),
        }
        if a.protocol == "consumer":
            conf["group.protocol"] = "consumer"
        else:
            conf.update({
                "session.timeout.ms": a.session_ms,
                "heartbeat.interval.ms": a.heartbeat_ms,
                "partition.assignment.strategy": a.strategy,
            })
        if a.instance_id:
            conf["group.instance.id"] = a.instance_id
        if a.commit in ("auto", "async"):
            conf["on_commit"] = self._on_commit
        # position() stays invalid until a record is consumed; the fetcher's
        # resolved start offset is in the statistics
        conf["statistics.interval.ms"] = 200
        conf["stats_cb"] = self._on_stats
        self.fetch_stats = {}
        for kv in a.conf:
            k, v = kv.split("=", 1)
            conf[k] = v
        self.c = Consumer(conf)
        self.c.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                         on_lost=self._on_lost)

    def _on_assign(self, c, parts):
        emit("member", member_id=self.member_id())
        emit("assign", parts=_tps((p.topic, p.partition) for p in parts))

    def _on_revoke(self, c, parts):
        emit("revoke", parts=_tps((p.topic, p.partition) for p in parts))

    def _on_lost(self, c, parts):
        emit("lost", parts=_tps((p.topic, p.partition) for p in parts))

    def _on_stats(self, raw):
        st = json.loads(raw)
        for t, tv in st.get("topics", {}).items():
            for p, pv in tv.get("partitions", {}).items():
                if int(p) >= 0:
                    self.fetch_stats[(t, int(p))] = (pv.get("fetch_state"), pv.get("next_offset"))

    def _on_commit(self, err, parts):
        ok = [[p.topic, p.partition, p.offset] for p in parts if p.error is None and p.offset >= 0]
        bad = [[p.topic, p.partition, str(p.error)] for p in parts if p.error is not None]
        if err is not None or bad:
            emit("commit_failed", err=str(err), parts=bad)
        if ok and err is None:
            emit("committed", offsets=ok, how="callback")

    def member_id(self):
        try:
            return self.c.memberid()
        except Exception:  # noqa: BLE001 - not joined yet
            return None

    async def poll(self):
        out = []
        for m in self.c.consume(num_messages=self.a.batch, timeout=0.2):
            if m.error():
                e = m.error()
                emit("error", name=e.name(), code=e.code(), str=e.str(), fatal=e.fatal(),
                     where="consume")
                continue
            v = m.value()
            out.append((m.topic(), m.partition(), m.offset(), v.decode() if v else ""))
        return out

    async def owned(self):
        return {(p.topic, p.partition) for p in self.c.assignment()}

    async def positions(self, parts):
        from confluent_kafka import TopicPartition
        res = self.c.position([TopicPartition(t, p) for t, p in parts])
        out = {}
        for r in res:
            key = (r.topic, r.partition)
            if r.offset >= 0:
                out[key] = r.offset
            else:
                state, nxt = self.fetch_stats.get(key, (None, None))
                out[key] = nxt if state == "active" and nxt is not None and nxt >= 0 else None
        return out

    async def commit(self, offsets, asynchronous=False):
        from confluent_kafka import KafkaException, TopicPartition
        tps = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        if asynchronous:
            self.c.commit(offsets=tps, asynchronous=True)  # result via on_commit
            return
        try:
            res = self.c.commit(offsets=tps, asynchronous=False)
        except KafkaException as e:
            err = e.args[0]
            emit("commit_failed", err=err.name(), str=err.str(),
                 parts=[[t, p, err.name()] for (t, p) in offsets])
            return
        bad = [[r.topic, r.partition, r.error.name()] for r in res if r.error is not None]
        ok = [[r.topic, r.partition, r.offset] for r in res if r.error is None]
        if bad:
            emit("commit_failed", err="partition errors", parts=bad)
        if ok:
            emit("committed", offsets=ok, how="sync")

    async def close(self):
        self.c.close()


class _KafkaPython(_Adapter):
    async def open(self):
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
        from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
        a = self.a
        names = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
                 "sticky": StickyPartitionAssignor,
                 "cooperative-sticky": CooperativeStickyAssignor}
        strategies = tuple(names[s] for s in a.strategy.split(","))
        kw = dict(
            bootstrap_servers=a.bootstrap,
            group_id=a.group,
            client_id=a.client_id or "karnak-compat-kafka-python",
            enable_auto_commit=a.commit == "auto",
            auto_commit_interval_ms=a.auto_commit_ms,
            auto_offset_reset=a.offset_reset,
            session_timeout_ms=a.session_ms,
            heartbeat_interval_ms=a.heartbeat_ms,
            max_poll_interval_ms=a.max_poll_ms,
            partition_assignment_strategy=strategies,
            max_poll_records=a.batch,
            request_timeout_ms=30000,
        )
        if a.instance_id:
            kw["group_instance_id"] = a.instance_id
        if a.commit in ("auto", "async"):
            kw["default_offset_commit_callback"] = self._on_commit
        self.c = KafkaConsumer(**kw)

        outer = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                emit("revoke", parts=_tps((p.topic, p.partition) for p in revoked))

            def on_partitions_assigned(self, assigned):
                emit("member", member_id=outer.member_id())
                emit("assign", parts=_tps((p.topic, p.partition) for p in assigned))

            def on_partitions_lost(self, lost):
                emit("lost", parts=_tps((p.topic, p.partition) for p in lost))

        self.c.subscribe(self.topics, listener=Listener())

    def _on_commit(self, offsets, res_or_exc):
        if isinstance(res_or_exc, Exception):
            emit("commit_failed", err=type(res_or_exc).__name__, str=str(res_or_exc),
                 parts=[[tp.topic, tp.partition, "?"] for tp in offsets])
        else:
            emit("committed", offsets=[[tp.topic, tp.partition, om.offset]
                                       for tp, om in offsets.items()], how="callback")

    def member_id(self):
        try:
            return self.c._coordinator._generation.member_id  # noqa: SLF001 - diagnostics only
        except Exception:  # noqa: BLE001
            return None

    async def poll(self):
        try:
            batches = self.c.poll(timeout_ms=200, max_records=self.a.batch)
        except Exception as e:  # noqa: BLE001 - reported to the test, which decides
            emit("error", name=type(e).__name__, str=str(e), where="poll")
            time.sleep(0.2)  # a fatal join error is raised by every poll: do not spin
            return []
        out = []
        for tp, msgs in batches.items():
            for m in msgs:
                out.append((tp.topic, tp.partition, m.offset, m.value.decode() if m.value else ""))
        return out

    async def owned(self):
        return {(tp.topic, tp.partition) for tp in self.c.assignment()}

    async def positions(self, parts):
        from kafka import TopicPartition
        out = {}
        for t, p in parts:
            try:
                out[(t, p)] = self.c.position(TopicPartition(t, p), timeout_ms=2000)
            except Exception:  # noqa: BLE001 - not resolved yet / not assigned any more
                out[(t, p)] = None
        return out

    async def commit(self, offsets, asynchronous=False):
        from kafka import OffsetAndMetadata, TopicPartition
        oam = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        if asynchronous:
            self.c.commit_async(oam, callback=self._on_commit)
            return
        try:
            self.c.commit(oam)
        except Exception as e:  # noqa: BLE001
            emit("commit_failed", err=type(e).__name__, str=str(e),
                 parts=[[t, p, type(e).__name__] for (t, p) in offsets])
            return
        emit("committed", offsets=[[t, p, o] for (t, p), o in sorted(offsets.items())], how="sync")

    async def close(self):
        self.c.close()


class _AioKafka(_Adapter):
    async def open(self):
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor
        from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
        a = self.a
        names = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}
        strategies = tuple(names[s] for s in a.strategy.split(","))
        kw = dict(
            bootstrap_servers=a.bootstrap,
            group_id=a.group,
            client_id=a.client_id or "karnak-compat-aiokafka",
            enable_auto_commit=a.commit == "auto",
            auto_commit_interval_ms=a.auto_commit_ms,
            auto_offset_reset=a.offset_reset,
            session_timeout_ms=a.session_ms,
            heartbeat_interval_ms=a.heartbeat_ms,
            max_poll_interval_ms=a.max_poll_ms,
            rebalance_timeout_ms=a.max_poll_ms,
            partition_assignment_strategy=strategies,
            max_poll_records=a.batch,
        )
        if a.instance_id:
            kw["group_instance_id"] = a.instance_id
        self.c = AIOKafkaConsumer(**kw)
        outer = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                emit("revoke", parts=_tps((p.topic, p.partition) for p in revoked))

            def on_partitions_assigned(self, assigned):
                emit("member", member_id=outer.member_id())
                emit("assign", parts=_tps((p.topic, p.partition) for p in assigned))

        self.c.subscribe(self.topics, listener=Listener())
        await self.c.start()

    def member_id(self):
        try:
            return self.c._coordinator.member_id  # noqa: SLF001 - diagnostics only
        except Exception:  # noqa: BLE001
            return None

    async def poll(self):
        try:
            batches = await self.c.getmany(timeout_ms=200, max_records=self.a.batch)
        except Exception as e:  # noqa: BLE001
            emit("error", name=type(e).__name__, str=str(e), where="getmany")
            await asyncio.sleep(0.2)
            return []
        out = []
        for tp, msgs in batches.items():
            for m in msgs:
                out.append((tp.topic, tp.partition, m.offset, m.value.decode() if m.value else ""))
        return out

    async def owned(self):
        return {(tp.topic, tp.partition) for tp in self.c.assignment()}

    async def positions(self, parts):
        from aiokafka import TopicPartition
        out = {}
        for t, p in parts:
            try:
                out[(t, p)] = await asyncio.wait_for(self.c.position(TopicPartition(t, p)), 2)
            except Exception:  # noqa: BLE001
                out[(t, p)] = None
        return out

    async def commit(self, offsets, asynchronous=False):
        from aiokafka import TopicPartition
        try:
            await self.c.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except Exception as e:  # noqa: BLE001
            emit("commit_failed", err=type(e).__name__, str=str(e),
                 parts=[[t, p, type(e).__name__] for (t, p) in offsets])
            return
        emit("committed", offsets=[[t, p, o] for (t, p), o in sorted(offsets.items())], how="sync")

    async def close(self):
        await self.c.stop()


async def _drive(a):
    adapter = {"confluent": _Confluent, "kafka-python": _KafkaPython,
               "aiokafka": _AioKafka}[a.client](a)
    cmds = _Commands()
    try:
        await adapter.open()
    except Exception as e:  # noqa: BLE001 - aiokafka's start() raises join errors
        emit("error", name=type(e).__name__, str=str(e), where="open")
        raise
    emit("ready", pid=os.getpid())
    held = False
    polling = True
    last_owned = None
    positions_pending = False
    delivered = {}  # (topic, partition) -> next offset after the last record given to us
    while True:
        while (c := cmds.get()) is not None:
            if c == "eof":
                os._exit(3)  # the test process is gone: never linger
            elif c == "hold":
                held = True
                emit("held")
            elif c == "release":
                held = False
                emit("released")
            elif c == "stop-polling":
                polling = False
                emit("stopped-polling")
            elif c == "resume-polling":
                polling = True
                emit("resumed-polling")
            elif c == "commit-now":
                await adapter.commit(dict(delivered))
            elif c == "close":
                await adapter.close()
                emit("closed")
                return 0
            else:
                emit("error", name="BAD_COMMAND", str=c, where="stdin")
        if not polling:
            await asyncio.sleep(0.05)  # only heartbeats (background) go on
            continue
        recs = await adapter.poll()
        owned = await adapter.owned()
        if owned != last_owned:
            emit("owned", parts=_tps(owned), member_id=adapter.member_id())
            last_owned = owned
            positions_pending = bool(owned)
        if recs:
            emit("recs", recs=[list(r) for r in recs])
            batch = {}
            for t, p, o, _ in recs:
                batch[(t, p)] = o + 1
            delivered.update(batch)
            if not held and a.commit in ("sync", "async"):
                await adapter.commit(batch, asynchronous=a.commit == "async")
        if positions_pending:
            pos = await adapter.positions(sorted(owned))
            if all(v is not None for v in pos.values()):
                emit("positions", pos=[[t, p, o] for (t, p), o in sorted(pos.items())])
                positions_pending = False


def member_main(argv):
    ap = argparse.ArgumentParser(prog="groups_util.py member")
    ap.add_argument("--client", required=True, choices=CLIENTS)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topics", required=True, help="comma-separated")
    ap.add_argument("--client-id")
    ap.add_argument("--instance-id")
    ap.add_argument("--strategy", default="range", help="comma-separated assignor names")
    ap.add_argument("--session-ms", type=int, default=SESSION_MS)
    ap.add_argument("--heartbeat-ms", type=int, default=HEARTBEAT_MS)
    ap.add_argument("--max-poll-ms", type=int, default=MAX_POLL_MS)
    ap.add_argument("--commit", default="sync", choices=["sync", "async", "auto", "none"])
    ap.add_argument("--auto-commit-ms", type=int, default=500)
    ap.add_argument("--offset-reset", default="earliest")
    ap.add_argument("--protocol", default="classic", choices=["classic", "consumer"],
                    help="confluent only: group.protocol (consumer = KIP-848)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--conf", action="append", default=[], help="confluent only: extra k=v")
    ap.add_argument("--log-level", default="WARNING",
                    help="Python logging (kafka-python, aiokafka) to stderr")
    a = ap.parse_args(argv)
    import logging
    logging.basicConfig(level=a.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_drive(a))


# ---------------------------------------------------------------------------
# test side
# ---------------------------------------------------------------------------


def _wait_until(pred, timeout, msg):
    from conftest import wait_until
    return wait_until(pred, timeout, interval=0.05, msg=msg)


class Member:
    """The test's handle on one member process."""

    def __init__(self, name, client, bootstrap, group, topics, log_dir, **opts):
        self.name = name
        self.client = client
        self.group = group
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        args = [sys.executable, str(HERE / "groups_util.py"), "member",
                "--client", client, "--bootstrap", bootstrap, "--group", group,
                "--topics", ",".join(self.topics)]
        for k, v in opts.items():
            if v is None:
                continue
            flag = "--" + k.replace("_", "-")
            if isinstance(v, (list, tuple)):
                for item in v:
                    args += [flag, str(item)]
            else:
                args += [flag, str(v)]
        self.args = args
        self.stderr_path = Path(log_dir) / f"member-{name}-{os.getpid()}-{id(self):x}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.events = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, cwd=str(HERE))
        self.started = time.monotonic()
        self.eof = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            try:
                e = json.loads(raw)
            except ValueError:
                e = {"ev": "garbage", "line": raw.decode(errors="replace")}
            e["rt"] = time.monotonic()
            with self._lock:
                self.events.append(e)
        self.eof.set()

    # -- observation ----------------------------------------------------
    def evs(self, kind=None):
        with self._lock:
            return [e for e in self.events if kind is None or e["ev"] == kind]

    def owned(self, topic=None):
        """Partitions of the last `owned` event: {(topic, p)} or, with topic, {p}."""
        o = self.evs("owned")
        parts = {tuple(x) for x in o[-1]["parts"]} if o else set()
        if topic is None:
            return parts
        return {p for t, p in parts if t == topic}

    def owned_since(self, index):
        """Every `owned` snapshot after event index `index`."""
        with self._lock:
            return [{tuple(x) for x in e["parts"]} for e in self.events[index:] if e["ev"] == "owned"]

    def recs(self, topic=None):
        out = []
        for e in self.evs("recs"):
            for t, p, o, v in e["recs"]:
                if topic is None or t == topic:
                    out.append((t, p, o, v))
        return out

    def committed(self):
        """{(topic, p): highest acked committed offset}."""
        out = {}
        for e in self.evs("committed"):
            for t, p, o in e["offsets"]:
                out[(t, p)] = max(o, out.get((t, p), -1))
        return out

    def errors(self):
        return self.evs("error")

    def member_id(self):
        ids = [e.get("member_id") for e in self.evs() if e.get("member_id")]
        return ids[-1] if ids else None

    def positions(self):
        p = self.evs("positions")
        return {(t, pp): o for t, pp, o in p[-1]["pos"]} if p else None

    def mark(self):
        """Index to pass to *_since / events_since: 'from now on'."""
        with self._lock:
            return len(self.events)

    def events_since(self, index, kind=None):
        with self._lock:
            return [e for e in self.events[index:] if kind is None or e["ev"] == kind]

    def wait(self, pred, timeout, msg):
        return _wait_until(lambda: pred(self), timeout, f"{self.name}: {msg}")

    def wait_event(self, kind, timeout, since=0, pred=lambda e: True):
        def find():
            for e in self.events_since(since, kind):
                if pred(e):
                    return e
            if self.proc.poll() is not None and self.eof.is_set():
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} while waiting for {kind!r}"
                    f"\n{self.stderr_tail()}")
            return None
        return _wait_until(find, timeout, f"{self.name}: event {kind!r}")

    # -- control ----------------------------------------------------------
    def send(self, cmd):
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def hold(self, timeout=20):
        """Stop committing; returns once the member confirms (no commit in flight)."""
        m = self.mark()
        self.send("hold")
        self.wait_event("held", timeout, since=m)

    def close(self, timeout=30):
        """Clean close (LeaveGroup for dynamic members); waits for the exit."""
        self.send("close")
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not close within {timeout}s\n{self.stderr_tail()}")
        self.eof.wait(10)
        assert rc == 0, f"{self.name} exited {rc} on close\n{self.stderr_tail()}"
        assert self.evs("closed"), f"{self.name}: no 'closed' event"

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.eof.wait(10)  # every line it printed before dying is read

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)

    def sigcont(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def cleanup(self):
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)  # works on a stopped process too
                self.proc.wait(timeout=10)
        finally:
            for f in (self.proc.stdin, self._stderr):
                try:
                    f.close()
                except OSError:
                    pass

    def stderr_tail(self, n=40):
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def summary(self):
        kinds = {}
        for e in self.evs():
            kinds[e["ev"]] = kinds.get(e["ev"], 0) + 1
        return (f"member {self.name} ({self.client}, rc={self.proc.poll()}) owned={sorted(self.owned())} "
                f"committed={self.committed()} events={kinds} errors={self.errors()[-5:]} "
                f"commit_failed={self.evs('commit_failed')[-3:]}")


class Members:
    """Context manager: starts member processes, kills all of them on exit and
    prints what each did (and its stderr) when the test failed."""

    def __init__(self, bootstrap, log_dir):
        self.bootstrap = bootstrap
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.all = []

    def start(self, name, client, group, topics, **opts) -> Member:
        m = Member(name, client, self.bootstrap, group, topics, self.log_dir, **opts)
        self.all.append(m)
        return m

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            for m in self.all:
                print("=" * 20, m.summary())
                print(m.stderr_tail())
        for m in self.all:
            m.cleanup()
        return False


def wait_split(members, topic, partitions, timeout, sizes=None, msg="partitions split"):
    """Wait until the members' current assignments of `topic` are pairwise
    disjoint and together cover every partition (and, given `sizes`, have
    those sizes in any order). Returns {member name: set of partitions}."""
    want = set(range(partitions))

    def check():
        for m in members:
            if m.proc.poll() is not None:
                m.eof.wait(5)
                raise AssertionError(f"{m.name} exited with {m.proc.returncode} while waiting "
                                     f"for: {msg}\n{m.summary()}\n{m.stderr_tail()}")
        sets = {m.name: m.owned(topic) for m in members}
        union = set().union(*sets.values())
        total = sum(len(s) for s in sets.values())
        if union != want or total != len(want):
            return None
        if sizes is not None and sorted(len(s) for s in sets.values()) != sorted(sizes):
            return None
        return sets

    return _wait_until(check, timeout, f"{msg}: " + ", ".join(
        f"{m.name}={sorted(m.owned(topic))}" for m in members))


def produce_tagged(bootstrap, topic, partitions, per_partition, tag):
    """Produce `per_partition` keyed records to every partition (acks=all).
    Values are '<tag>|<partition>|<i>'. Returns {(partition, offset): value}."""
    import ck
    msgs = [{"partition": p, "key": b"k%d-%d" % (p, i), "value": f"{tag}|{p}|{i}".encode()}
            for i in range(per_partition) for p in range(partitions)]
    offs = ck.produce_and_wait(bootstrap, topic, msgs, timeout=60)
    return {po: m["value"].decode() for po, m in zip(offs, msgs)}


def committed_offsets(bootstrap, group, topic, partitions, timeout=20):
    """The group's committed offsets via a non-joining confluent consumer
    (OffsetFetch): {partition: offset}, -1001 where nothing is committed."""
    from confluent_kafka import TopicPartition

    import ck
    c = ck.consumer(bootstrap, **{"group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout)
    finally:
        c.close()
    for r in res:
        assert r.error is None, f"OffsetFetch {group} {topic}[{r.partition}]: {r.error}"
    return {r.partition: r.offset for r in res}


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "member":
        sys.exit("usage: groups_util.py member --client ... (see --help)")
    sys.exit(member_main(sys.argv[2:]))
