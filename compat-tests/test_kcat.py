"""kcat (the Debian package, librdkafka inside) against karnak: metadata
listing, produce with keys/headers/every codec, consume from every kind of
start offset, byte-exact comparison."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time

import pytest

import ck
from conftest import unique_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def kcat():
    if not KCAT:
        pytest.fail("kcat not found on PATH (apt-get install kcat)", pytrace=False)
    return KCAT


def run_kcat(kcat, bootstrap, *args, input=None, timeout=60, check=True):
    cmd = [kcat, "-b", bootstrap, "-X", "socket.timeout.ms=10000", *args]
    r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check:
        assert r.returncode == 0, (
            f"{cmd} exited {r.returncode}\nstderr: {r.stderr.decode(errors='replace')}"
        )
    return r


def consume_json(kcat, bootstrap, topic, partition, offset, extra=()):
    r = run_kcat(kcat, bootstrap, "-C", "-t", topic, "-p", str(partition), "-o", str(offset),
                 "-e", "-J", "-q", *extra)
    return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]


def test_list_metadata(kcat, broker):
    t1, t2 = unique_topic("kl1"), unique_topic("kl2")
    ck.create_topic(broker.bootstrap, t1, partitions=3)
    ck.create_topic(broker.bootstrap, t2, partitions=1)

    text = run_kcat(kcat, broker.bootstrap, "-L").stdout.decode()
    assert "1 brokers:" in text, text
    assert f"broker {broker.node_id} at 127.0.0.1:{broker.kafka_port}" in text, text
    assert f'topic "{t1}" with 3 partitions:' in text, text
    assert f'topic "{t2}" with 1 partitions:' in text, text

    md = json.loads(run_kcat(kcat, broker.bootstrap, "-L", "-J").stdout)
    assert [b["id"] for b in md["brokers"]] == [broker.node_id]
    assert md["brokers"][0]["name"] == f"127.0.0.1:{broker.kafka_port}"
    topics = {t["topic"]: t for t in md["topics"]}
    assert {t1, t2} <= set(topics)
    parts = sorted(topics[t1]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == broker.node_id
        assert [r["id"] for r in p["replicas"]] == [broker.node_id]
        assert [r["id"] for r in p["isrs"]] == [broker.node_id]

    # metadata for one topic only
    md1 = json.loads(run_kcat(kcat, broker.bootstrap, "-L", "-J", "-t", t2).stdout)
    assert [t["topic"] for t in md1["topics"]] == [t2]
    assert "error" not in md1["topics"][0] or not md1["topics"][0]["error"]


@pytest.mark.parametrize("codec", CODECS)
def test_produce_keys_headers_codec(kcat, broker, codec):
    topic = unique_topic(f"kc-{codec}")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    n = 300
    lines = [b"key-%d:" % i + (b"value %d " % i) * (1 + i % 20) for i in range(n)]
    t_before = int(time.time() * 1000)
    run_kcat(kcat, broker.bootstrap, "-P", "-t", topic, "-p", "1", "-K:",
             "-H", "h1=v1", "-H", "trace-id=abc=def", "-H", "empty=",
             "-X", f"compression.codec={codec}", "-X", "linger.ms=20",
             input=b"\n".join(lines) + b"\n")
    t_after = int(time.time() * 1000)

    got = consume_json(kcat, broker.bootstrap, topic, 1, "beginning")
    assert len(got) == n, f"got {len(got)} of {n}"
    for i, m in enumerate(got):
        k, v = lines[i].split(b":", 1)
        assert m["topic"] == topic and m["partition"] == 1
        assert m["offset"] == i
        assert m["key"] == k.decode()
        assert m["payload"] == v.decode()
        assert m["headers"] == ["h1", "v1", "trace-id", "abc=def", "empty", ""], m["headers"]
        assert m["tstype"] == "create"
        assert t_before - 5 <= m["ts"] <= t_after + 5, (m["ts"], t_before, t_after)
    # nothing went to the other partition
    assert consume_json(kcat, broker.bootstrap, topic, 0, "beginning") == []

    # a different client reads the same bytes (librdkafka via python)
    msgs = ck.consume_range(broker.bootstrap, topic, 1, 0, n)
    assert [m.value() for m in msgs] == [ln.split(b":", 1)[1] for ln in lines]
    assert [m.headers() for m in msgs] == [
        [("h1", b"v1"), ("trace-id", b"abc=def"), ("empty", b"")]
    ] * n


def _parse_fmt_output(data: bytes):
    """Parse records printed with -f '%o %K %S %T\\n%k%s' (binary safe)."""
    out = []
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        off, klen, vlen, ts = (int(x) for x in data[pos:nl].split(b" "))
        pos = nl + 1
        key = None if klen < 0 else data[pos : pos + klen]
        pos += max(klen, 0)
        value = None if vlen < 0 else data[pos : pos + vlen]
        pos += max(vlen, 0)
        out.append((off, key, value, ts))
    return out


def test_binary_values_from_files(kcat, broker, tmp_path):
    """kcat -P with file arguments sends each file as one message: values with
    NUL, newline and every byte value must round-trip byte-exactly."""
    topic = unique_topic("kbin")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    blobs = [bytes(range(256)), b"\x00" * 1000, b"\n\r\n:\x00\xff", os.urandom(200_000)]
    files = []
    for i, b in enumerate(blobs):
        f = tmp_path / f"blob{i}.bin"
        f.write_bytes(b)
        files.append(str(f))
    run_kcat(kcat, broker.bootstrap, "-P", "-t", topic, "-p", "0", *files)

    r = run_kcat(kcat, broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning",
                 "-e", "-q", "-f", "%o %K %S %T\n%k%s")
    got = _parse_fmt_output(r.stdout)
    assert [g[0] for g in got] == [0, 1, 2, 3]
    assert [g[2] for g in got] == blobs
    assert all(g[1] is None for g in got), "kcat sent no key, so keys must be null"

    msgs = ck.consume_range(broker.bootstrap, topic, 0, 0, len(blobs))
    assert [m.value() for m in msgs] == blobs


def test_binary_keys_and_timestamps_from_other_client(kcat, broker):
    topic = unique_topic("kts")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    base = 1_700_000_000_000
    msgs = [
        {"key": bytes([i, 0, 10, 255 - i]), "value": bytes([255 - i]) * (i + 1) + b"\n\x00",
         "timestamp": base + i * 1000, "partition": 0}
        for i in range(10)
    ]
    ck.produce_and_wait(broker.bootstrap, topic, msgs)
    r = run_kcat(kcat, broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning",
                 "-e", "-q", "-f", "%o %K %S %T\n%k%s")
    got = _parse_fmt_output(r.stdout)
    assert got == [(i, m["key"], m["value"], m["timestamp"]) for i, m in enumerate(msgs)]

    # -o s@<timestamp>: first offset whose timestamp >= ts
    for ts, first in [(base + 5000, 5), (base + 4500, 5), (base, 0), (base - 1, 0)]:
        r = run_kcat(kcat, broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", f"s@{ts}",
                     "-e", "-q", "-f", "%o %K %S %T\n%k%s")
        got = _parse_fmt_output(r.stdout)
        assert [g[0] for g in got] == list(range(first, 10)), (ts, got)
        assert [g[3] for g in got] == [base + i * 1000 for i in range(first, 10)]

    # kcat -Q: ListOffsets by timestamp
    r = run_kcat(kcat, broker.bootstrap, "-Q", "-t", f"{topic}:0:{base + 3000}")
    out = r.stdout.decode()
    assert topic in out and re.search(r"\[0\]\s+offset\s+3\b", out), out


def test_consume_offsets(kcat, broker):
    topic = unique_topic("koff")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    values = [b"m%02d" % i for i in range(10)]
    run_kcat(kcat, broker.bootstrap, "-P", "-t", topic, "-p", "0",
             input=b"\n".join(values) + b"\n")

    def offsets(o):
        return [(m["offset"], m["payload"].encode())
                for m in consume_json(kcat, broker.bootstrap, topic, 0, o)]

    assert offsets("beginning") == [(i, values[i]) for i in range(10)]
    assert offsets("4") == [(i, values[i]) for i in range(4, 10)]
    assert offsets("9") == [(9, values[9])]
    assert offsets("-3") == [(i, values[i]) for i in range(7, 10)]
    assert offsets("end") == []
    assert offsets("10") == []


def test_consume_from_end_sees_only_new_messages(kcat, broker, tmp_path):
    topic = unique_topic("kend")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    ck.produce_and_wait(broker.bootstrap, topic,
                        [{"value": b"old-%d" % i, "partition": 0} for i in range(5)])
    cmd = [kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "end",
           "-c", "3", "-J"]
    out_path = tmp_path / "kcat.out"
    out_file = open(out_path, "wb")
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=subprocess.PIPE)
    err_lines = queue.Queue()

    def pump():
        for line in proc.stderr:
            err_lines.put(line.decode(errors="replace"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        # kcat reports "Reached end of topic ... at offset 5" once its first
        # fetch at the end offset came back empty: only then produce.
        deadline = time.monotonic() + 30
        seen = []
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"kcat never reached the end; stderr: {seen}"
            try:
                line = err_lines.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(line)
            if "Reached end" in line:
                assert "offset 5" in line, line
                break
        new = [{"value": b"new-%d" % i, "partition": 0} for i in range(3)]
        ck.produce_and_wait(broker.bootstrap, topic, new)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out_file.close()
    out = out_path.read_bytes()
    assert proc.returncode == 0
    got = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert [(m["offset"], m["payload"]) for m in got] == [(5, "new-0"), (6, "new-1"), (7, "new-2")]
