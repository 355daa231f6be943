"""Clients older than Kafka 4.0's protocol floor (KIP-896) against karnak:
Produce v0-2 (message format v0/v1), Fetch v0-3 (down-converted to magic 0/1),
ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0, CreateTopics v0-1,
DeleteTopics v0, DescribeConfigs v0, Describe/Create/DeleteAcls v0.

- Debian's python3-kafka (kafka-python 2.0.2, under /usr/bin/python3; driver
  old_clients/kafka_python_old.py) with api_version 0.8.1 .. 0.11 and
  auto-detection, every codec it has (gzip; snappy and lz4 from python3-snappy,
  python3-lz4 and python3-xxhash);
- kcat (Debian: 1.7.1, librdkafka 2.0.2) with api.version.request=false and
  broker.version.fallback 0.8.2.2 / 0.9.0.1 / 0.10.0.1;
- Sarama 1.22.1 and segmentio/kafka-go 0.2.1 (the versions Debian packages;
  driver old_clients/sarama/, built once per session with `go build`).

Every broker here is reached through capture_proxy.py in proxy mode (karnak
advertises the proxy's address), so each test also asserts which request
versions the client really sent: a client that silently negotiated a newer
version would not test what the name says.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ck
from conftest import HERE, Broker, unique_topic

sys.path.insert(0, str(HERE / "old_clients"))
import capture_proxy  # noqa: E402

OLD = HERE / "old_clients"
DEBIAN_PY = "/usr/bin/python3"
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
TS0 = 1700000000000  # the drivers' record timestamps: TS0 + i ms
N = 20  # records per round trip, written in 2 produce requests


# ------------------------------------------------------------------ fixtures
class ProxiedBroker:
    """A karnak broker whose advertised address is a capture proxy in this
    process: every client connection passes through it."""

    def __init__(self, broker: Broker, proxy):
        self.broker = broker
        self.proxy = proxy

    @property
    def bootstrap(self):
        host, port = self.proxy.server_address[:2]
        return f"{host}:{port}"

    def reset(self):
        self.proxy.capturer.reset()

    def versions(self, api):
        return self.proxy.capturer.versions(api)


def start_proxied(karnak_bin, tmp: Path, *extra_args) -> ProxiedBroker:
    proxy = capture_proxy.start_in_thread("proxy", str(tmp / "captures"), "test")
    host, port = proxy.server_address[:2]
    b = Broker(karnak_bin, tmp / "data", tmp / "logs",
               ["--advertised-kafka-addr", f"{host}:{port}", *extra_args])
    try:
        b.start()
    except BaseException:
        proxy.shutdown()
        raise
    proxy.upstream = ("127.0.0.1", b.kafka_port)
    return ProxiedBroker(b, proxy)


@pytest.fixture(scope="module")
def legacy(karnak_bin, tmp_path_factory, request):
    """One proxied broker for the module (tests use their own topics and groups)."""
    pb = start_proxied(karnak_bin, tmp_path_factory.mktemp("legacy"))
    request.module._karnak_module_brokers = [pb.broker]
    yield pb
    pb.proxy.shutdown()
    pb.broker.kill9()


@pytest.fixture
def legacy_no_autocreate(karnak_bin, tmp_path, request):
    pb = start_proxied(karnak_bin, tmp_path, "--auto-create-topics", "false")
    request.node._karnak_brokers = [pb.broker]
    yield pb
    pb.proxy.shutdown()
    pb.broker.kill9()


@pytest.fixture(scope="session")
def debian_kafka_python():
    if not os.access(DEBIAN_PY, os.X_OK):
        pytest.fail(f"{DEBIAN_PY} missing (Debian's python3)", pytrace=False)
    r = subprocess.run(
        [DEBIAN_PY, "-c", "import kafka, kafka.codec as c; "
         "print(kafka.__version__, c.has_gzip(), c.has_snappy(), c.has_lz4())"],
        capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.fail("Debian's python3-kafka is not installed (apt-get install python3-kafka "
                    f"python3-snappy python3-lz4 python3-xxhash): {r.stderr}", pytrace=False)
    version, gz, sn, lz = r.stdout.split()
    assert version == "2.0.2", f"expected Debian's kafka-python 2.0.2, found {version}"
    missing = [name for name, ok in (("gzip", gz), ("snappy (python3-snappy)", sn),
                                     ("lz4 (python3-lz4, python3-xxhash)", lz)) if ok != "True"]
    if missing:
        pytest.fail(f"kafka-python 2.0.2 lacks codecs: {missing}", pytrace=False)
    return DEBIAN_PY


@pytest.fixture(scope="session")
def oldgo(tmp_path_factory):
    """The Go driver (Sarama 1.22.1, kafka-go 0.2.1), built once per session."""
    go = shutil.which("go")
    if not go:
        pytest.fail("go not found on PATH (needed for the Sarama / kafka-go tests)", pytrace=False)
    out = tmp_path_factory.mktemp("oldgo") / "oldgo"
    t0 = time.monotonic()
    r = subprocess.run([go, "build", "-o", str(out), "."], cwd=OLD / "sarama",
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"go build failed:\n{r.stdout}\n{r.stderr}"
    print(f"built {out} in {time.monotonic() - t0:.1f}s")
    return out


def run_json(cmd, timeout=180):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"{cmd} printed no JSON\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return json.loads(lines[-1]), r.stderr


def expected_records(n, offset0=0):
    return [(offset0 + i, f"k{i}", f"v{i}") for i in range(n)]


# ------------------------------------------------------------------ kafka-python 2.0.2
# api_version -> (Produce, Fetch, ListOffsets, OffsetCommit, OffsetFetch) versions that
# kafka-python 2.0.2 sends (kafka/producer/sender.py, consumer/fetcher.py,
# coordinator/consumer.py); None: it negotiates (auto) or sends what Kafka 4 serves.
KP_VERSIONS = {
    "0.8.1": (0, 0, 0, 0, 0),
    "0.8.2": (0, 0, 0, 1, 1),
    "0.9": (1, 1, 0, 2, 1),
    "0.10.0": (2, 2, 0, 2, 1),
    "0.10.1": (2, 3, 1, 2, 1),
    # (0, 11) < (0, 11, 0): fetcher.py's `>= (0, 11, 0)` picks Fetch v3, not v4
    "0.11": (3, 3, 1, 2, 1),
    "auto": None,
}
KP_CASES = [("0.8.1", "none")] + [
    (api, codec) for api in ("0.8.2", "0.9", "0.10.0", "0.10.1", "0.11", "auto")
    for codec in ("none", "gzip", "snappy", "lz4")
]


def run_kafka_python(py, bootstrap, topic, group, api, codec, n=N, batches=2, extra=()):
    out, stderr = run_json([py, OLD / "kafka_python_old.py", "--bootstrap", bootstrap,
                            "--topic", topic, "--group", group, "--api-version", api,
                            "--codec", codec, "--n", n, "--batches", batches,
                            "--consume-timeout", 30, "--deadline", 90, *extra])
    assert out["kafka_python"] == "2.0.2"
    assert out["errors"] == [], f"kafka-python {api} {codec}: {out['errors']}\n{stderr}"
    return out


@pytest.mark.parametrize("api,codec", KP_CASES, ids=[f"{a}-{c}" for a, c in KP_CASES])
def test_kafka_python_2_0_2(debian_kafka_python, legacy, api, codec):
    """Produce N keyed records in two requests, read them back from the beginning
    (offsets, keys, values, timestamps), end offset by ListOffsets, commit offset N
    with metadata for a group and read both back with a fresh consumer."""
    topic, group = unique_topic(f"kp-{api}-{codec}"), unique_topic("kp-group")
    legacy.reset()
    out = run_kafka_python(debian_kafka_python, legacy.bootstrap, topic, group, api, codec)

    magic1 = api == "auto" or tuple(int(x) for x in api.split(".")) >= (0, 10)
    assert [(p["partition"], p["offset"]) for p in out["produced"]] == [(0, i) for i in range(N)]
    # RecordMetadata.timestamp: the record's CreateTime from message format v1 on, -1 before
    assert [p["timestamp"] for p in out["produced"]] == (
        [TS0 + i for i in range(N)] if magic1 else [-1] * N)
    got = [(r["offset"], r["key"], r["value"]) for r in out["consumed"]]
    assert got == expected_records(N)
    assert {r["partition"] for r in out["consumed"]} == {0}
    if magic1:
        assert [r["timestamp"] for r in out["consumed"]] == [TS0 + i for i in range(N)]
        assert {r["timestamp_type"] for r in out["consumed"]} == {0}  # CreateTime
    else:
        # message format v0 has no timestamps: kafka-python reports none
        assert {r["timestamp"] for r in out["consumed"]} == {None}
    assert out["beginning_offset"] == 0
    assert out["end_offset"] == N
    assert out["committed"] == N
    assert out["committed_metadata"] == f"meta-{N}"
    assert out["group_position"] == N

    want = KP_VERSIONS[api]
    if want is None:
        assert out["detected_api_version"] >= "2", out["detected_api_version"]
        assert min(legacy.versions("Produce")) >= 3  # negotiated: a v2 batch producer
    else:
        produce, fetch, list_offsets, commit, offset_fetch = want
        assert out["detected_api_version"] == api
        assert legacy.versions("Produce") == {produce}
        assert legacy.versions("Fetch") == {fetch}
        assert legacy.versions("ListOffsets") == {list_offsets}
        assert legacy.versions("OffsetCommit") == {commit}
        assert legacy.versions("OffsetFetch") == {offset_fetch}

    # what the old producer wrote, a current client (librdkafka 2.16, Fetch v4+ of
    # v2 batches) reads the same
    msgs = ck.consume_range(legacy.bootstrap, topic, 0, 0, N)
    assert [(m.offset(), m.key(), m.value()) for m in msgs] == [
        (i, f"k{i}".encode(), f"v{i}".encode()) for i in range(N)]
    if magic1:
        assert [m.timestamp()[1] for m in msgs] == [TS0 + i for i in range(N)]


@pytest.mark.parametrize("api", ["0.8.2", "0.9", "0.10.0", "0.10.1"])
@pytest.mark.parametrize("codec", ["none", "gzip", "lz4"])
def test_kafka_python_2_0_2_reads_current_batches(debian_kafka_python, legacy, api, codec):
    """Records a current producer wrote as v2 batches (compressed, with headers),
    fetched by old kafka-python versions: Fetch v0-3 down-converts them to message
    format v0/v1 with the same offsets, keys and values (headers dropped)."""
    topic, group = unique_topic(f"kpd-{api}-{codec}"), unique_topic("kpd-group")
    p = ck.producer(legacy.bootstrap, **{"compression.codec": codec})
    for i in range(N):
        p.produce(topic, key=f"k{i}", value=f"v{i}", partition=0, timestamp=TS0 + i,
                  headers=[("h", b"x")])
        if i == N // 2:
            p.flush(30)  # two batches at least
    assert p.flush(30) == 0
    legacy.reset()
    out = run_kafka_python(debian_kafka_python, legacy.bootstrap, topic, group, api, codec,
                           extra=["--no-produce"])
    assert [(r["offset"], r["key"], r["value"]) for r in out["consumed"]] == expected_records(N)
    if tuple(int(x) for x in api.split(".")) >= (0, 10):
        assert [r["timestamp"] for r in out["consumed"]] == [TS0 + i for i in range(N)]
    assert out["end_offset"] == N
    assert out["committed"] == N
    assert legacy.versions("Fetch") == {KP_VERSIONS[api][1]}
    assert legacy.versions("Produce") == set()


# ------------------------------------------------------------------ kcat (librdkafka 2.0.2)
KCAT_FALLBACKS = ["0.8.2.2", "0.9.0.1", "0.10.0.1"]


@pytest.fixture(scope="module")
def kcat():
    if not KCAT:
        pytest.fail("kcat not found on PATH (apt-get install kcat)", pytrace=False)
    return KCAT


@pytest.mark.parametrize("fallback", KCAT_FALLBACKS)
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_kcat_old_protocol(kcat, legacy, fallback, codec):
    """kcat forced to a pre-0.10 protocol (api.version.request=false): produce keyed
    lines with a codec, consume from the beginning; exact output. With fallback
    0.10.0.1 librdkafka 2.0.2 asks ApiVersions anyway and negotiates current
    versions: that case checks the forced config still round-trips."""
    topic = unique_topic(f"kcat-{fallback}-{codec}")
    old = ["-X", "api.version.request=false", "-X", f"broker.version.fallback={fallback}",
           "-X", "socket.timeout.ms=10000"]
    lines = "".join(f"k{i}:v{i}\n" for i in range(N))
    legacy.reset()
    r = subprocess.run([kcat, "-b", legacy.bootstrap, *old, "-P", "-t", topic, "-p", "0", "-K:",
                        "-z", codec, "-X", "linger.ms=50"],
                       input=lines.encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    r = subprocess.run([kcat, "-b", legacy.bootstrap, *old, "-C", "-t", topic, "-p", "0",
                        "-o", "beginning", "-e", "-f", "%k=%s@%o\n"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout.decode() == "".join(f"k{i}=v{i}@{i}\n" for i in range(N)), \
        r.stderr.decode(errors="replace")
    if fallback == "0.8.2.2":
        assert legacy.versions("Produce") == {0}
        assert legacy.versions("Fetch") == {0}
        assert legacy.versions("ListOffsets") == {0}
        assert legacy.versions("Metadata") == {0}
    elif fallback == "0.9.0.1":
        assert legacy.versions("Produce") == {1}
        assert legacy.versions("Fetch") == {1}
        assert legacy.versions("ListOffsets") == {0}
    else:
        assert 18 in {k for k, _ in legacy.proxy.capturer.requests}  # ApiVersions was asked
    # the same records for a current client, compressed as kcat sent them
    msgs = ck.consume_range(legacy.bootstrap, topic, 0, 0, N)
    assert [(m.key(), m.value()) for m in msgs] == [
        (f"k{i}".encode(), f"v{i}".encode()) for i in range(N)]


# ------------------------------------------------------------------ Sarama 1.22.1
# Config.Version -> (Produce, Fetch, ListOffsets) versions Sarama 1.22.1 sends
SARAMA_VERSIONS = {"0.8.2.0": (0, 0, 0), "0.10.0.0": (2, 2, 0), "0.10.2.0": (2, 3, 1)}
SARAMA_CASES = [(v, c) for v in SARAMA_VERSIONS for c in ("none", "gzip", "snappy", "lz4")
                if not (v == "0.8.2.0" and c == "lz4")]  # Sarama: lz4 needs Version >= 0.10


@pytest.mark.parametrize("version,codec", SARAMA_CASES, ids=[f"{v}-{c}" for v, c in SARAMA_CASES])
def test_sarama_1_22_1(oldgo, legacy, version, codec):
    """SyncProducer (two SendMessages calls), Consumer from OffsetOldest,
    client.GetOffset(OffsetOldest / OffsetNewest), OffsetManager commit and re-read."""
    topic, group = unique_topic(f"sarama-{version}-{codec}"), unique_topic("sarama-group")
    legacy.reset()
    out, stderr = run_json([oldgo, "sarama", "-bootstrap", legacy.bootstrap, "-topic", topic,
                            "-group", group, "-version", version, "-codec", codec, "-n", N,
                            "-batches", 2, "-consume-timeout", "30s", "-deadline", "120s"])
    assert out["errors"] == [], f"{out['errors']}\n{stderr}"
    o = out["out"]
    assert [(p["partition"], p["offset"]) for p in o["produced"]] == [(0, i) for i in range(N)]
    assert [(c["offset"], c["key"], c["value"]) for c in o["consumed"]] == expected_records(N)
    if version == "0.8.2.0":
        assert {c["timestamp"] for c in o["consumed"]} == {0}  # message format v0: none
    else:
        assert [c["timestamp"] for c in o["consumed"]] == [TS0 + i for i in range(N)]
    assert (o["oldest"], o["newest"]) == (0, N)
    assert o["initial_next_offset"] == -2  # nothing committed yet: Offsets.Initial
    assert o["committed"] == N
    assert o["committed_metadata"] == f"meta-{N}"
    produce, fetch, list_offsets = SARAMA_VERSIONS[version]
    assert legacy.versions("Produce") == {produce}
    assert legacy.versions("Fetch") == {fetch}
    assert legacy.versions("ListOffsets") == {list_offsets}
    if version == "0.8.2.0":
        assert legacy.versions("OffsetCommit") == {1}
        assert legacy.versions("OffsetFetch") == {1}
        assert legacy.versions("Metadata") == {0}


@pytest.mark.parametrize("version", ["0.10.2.0", "0.11.0.0"])
def test_sarama_1_22_1_cluster_admin(oldgo, legacy_no_autocreate, version):
    """Sarama's ClusterAdmin: CreateTopics v0 (0.10.2) / v1 (0.11) with a config,
    duplicate create, DescribeTopics; from 0.11 DescribeConfigs v0, ListTopics (which
    describes every topic's configs) and the ACL APIs v0, answered SECURITY_DISABLED
    as Kafka does without an authorizer; DeleteTopics v0 / v1 and the topic is gone."""
    pb = legacy_no_autocreate
    topic = unique_topic("sarama-admin")
    pb.reset()
    out, stderr = run_json([oldgo, "sarama-admin", "-bootstrap", pb.bootstrap, "-topic", topic,
                            "-version", version, "-deadline", "120s"])
    assert out["errors"] == [], f"{out['errors']}\n{stderr}"
    o = out["out"]
    assert o["create_topic"] == ""
    assert "already exists" in o["create_topic_again"]
    assert o["partitions"] == 3
    assert o["delete_topic"] == ""
    assert "does not exist" in o["after_delete"]
    if version == "0.10.2.0":
        assert pb.versions("CreateTopics") == {0}
        assert pb.versions("DeleteTopics") == {0}
    else:
        assert pb.versions("CreateTopics") == {1}
        assert pb.versions("DescribeConfigs") == {0}
        assert pb.versions("CreateAcls") == {0}
        assert pb.versions("DescribeAcls") == {0}
        assert pb.versions("DeleteAcls") == {0}
        assert o["config"]["retention.ms"] == {"value": "3600000", "default": False,
                                               "read_only": False}
        assert o["config"]["cleanup.policy"]["value"] == "delete"
        assert o["config"]["cleanup.policy"]["default"] is True
        assert o["listed"] is True
        assert o["listed_partitions"] == 3
        assert o["listed_retention_ms"] == "3600000"
        assert o["create_acls_errors"] == [54]  # SECURITY_DISABLED
        assert o["describe_acls_error"] == 54
        assert o["describe_acls_resources"] == 0
        assert o["delete_acls_errors"] == [54]


# ------------------------------------------------------------------ segmentio/kafka-go 0.2.1
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_kafka_go_0_2_1(oldgo, legacy, codec):
    """kafka-go 0.2.1's Writer (Produce v2, message format v1) and Reader (Fetch v2,
    ListOffsets v1): keys, values, timestamps, first/last offsets."""
    topic = unique_topic(f"kafka-go-{codec}")
    ck.create_topic(legacy.bootstrap, topic, partitions=1)  # kafka-go 0.2.1 does not create
    legacy.reset()
    out, stderr = run_json([oldgo, "kafkago", "-bootstrap", legacy.bootstrap, "-topic", topic,
                            "-codec", codec, "-n", N, "-consume-timeout", "30s",
                            "-deadline", "120s"])
    assert out["errors"] == [], f"{out['errors']}\n{stderr}"
    o = out["out"]
    assert [(c["offset"], c["key"], c["value"]) for c in o["consumed"]] == expected_records(N)
    assert [c["timestamp"] for c in o["consumed"]] == [TS0 + i for i in range(N)]
    assert (o["first_offset"], o["last_offset"]) == (0, N)
    assert legacy.versions("Produce") == {2}
    assert legacy.versions("Fetch") == {2}
