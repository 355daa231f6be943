"""karnak-bench, the load tool (benches/src/load): its raw produce and
consume modes move exactly the records asked for through a real broker, and
`limits` measures the machine. Figures are not judged here (that is
benches/RESULTS.md); counts, errors and the JSON contract are."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import ck
from conftest import karnak_binary, unique_topic


def bench_binary():
    p = karnak_binary().with_name("karnak-bench")
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"karnak-bench not found at {p} (cargo build --bins)", pytrace=False)
    return p


def run(*args, timeout=120):
    r = subprocess.run([str(bench_binary()), *args], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "RUST_BACKTRACE": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("acks", ["0", "1", "-1"])
def test_raw_produce_then_consume_counts_every_record(broker, acks):
    topic = unique_topic("lt")
    out = run("produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", "3",
              "--record-size", "200", "--batch-records", "100", "--connections", "2",
              "--records", "30000", "--acks", acks, "--broker-pid", str(broker.proc.pid))
    assert out["errors"] == 0
    # Whole requests only: --records is reached, rounded up to the last request.
    produced = out["records"]
    assert 30000 <= produced < 30000 + 300, out
    assert out["broker"]["cpu_seconds"] >= 0 and out["broker"]["rss_MB"] > 0
    if acks != "0":
        assert out["latency_send_to_ack"]["samples"] > 0
        assert out["latency_send_to_ack"]["p50_ms"] <= out["latency_send_to_ack"]["max_ms"]
    # acks=0 is fire-and-forget: wait until the broker has it all.
    total = lambda: sum(ck.watermarks(broker.bootstrap, topic, p)[1] for p in range(3))  # noqa: E731
    from conftest import wait_until
    wait_until(lambda: total() == produced, 30, msg=f"{produced} records in the topic")
    got = run("consume", "--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", "3",
              "--connections", "3", "--records", "1000000", "--duration", "60")
    assert got["errors"] == 0
    assert got["records"] == produced, got


def test_rate_limited_produce_keeps_its_rate(broker):
    topic = unique_topic("lt-rate")
    out = run("produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--acks", "1",
              "--batch-records", "1", "--in-flight", "50", "--rate", "2000",
              "--records", "2000", "--duration", "30")
    assert out["records"] == 2000 and out["errors"] == 0
    # 2000 records at 2000/s: about a second, never much faster.
    assert out["seconds"] >= 0.9, out


def test_limits_reports_every_reference(tmp_path):
    out = run("limits", "--dir", str(tmp_path), "--seconds", "0.2")
    lim = out["limits"]
    for k in ("disk_write_fdatasync_MBps", "page_cache_read_MBps", "fdatasync_4k_per_s",
              "loopback_tcp_MBps", "crc32c_MBps"):
        assert lim[k] > 0, (k, lim)
    assert lim["fdatasync_4k_p50_ms"] <= lim["fdatasync_4k_p99_ms"]
    assert list(tmp_path.iterdir()) == [], "limits leaves no files behind"


def test_unknown_broker_is_an_error_not_a_hang():
    r = subprocess.run([str(bench_binary()), "produce", "--bootstrap", "127.0.0.1:1",
                        "--records", "10"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "RUST_BACKTRACE": "0"})
    assert r.returncode != 0
    assert "connecting to 127.0.0.1:1" in r.stderr
