"""The Prometheus endpoint on the admin port."""

from __future__ import annotations

import urllib.request

import ck
import kafka_wire as w
from conftest import unique_topic, wait_until


def test_metrics_after_produce_and_consume(broker):
    topic = unique_topic("met")
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    counts = {0: 1234, 1: 567}
    msgs = [{"value": b"m-%d" % i + b"." * 200, "partition": p}
            for p, n in counts.items() for i in range(n)]
    ck.produce_and_wait(broker.bootstrap, topic, msgs, **{"acks": "all"})
    for p, n in counts.items():
        got = ck.consume_range(broker.bootstrap, topic, p, 0, n)
        assert len(got) == n

    def ok():
        m = broker.metrics()
        return m if (m.get_value("karnak_fetch_sendfile_bytes_total") or 0) > 0 else None

    m = wait_until(ok, 10, msg="karnak_fetch_sendfile_bytes_total > 0")

    produce_ok = m.get_value("karnak_requests_total", api="Produce", error="NONE")
    fetch_ok = m.get_value("karnak_requests_total", api="Fetch", error="NONE")
    assert produce_ok is not None and produce_ok >= 1, m.find("karnak_requests_total")
    assert fetch_ok is not None and fetch_ok >= 2, m.find("karnak_requests_total")
    assert (m.get_value("karnak_requests_total", api="Metadata", error="NONE") or 0) >= 1
    assert (m.get_value("karnak_requests_total", api="ApiVersions", error="NONE") or 0) >= 1
    assert (m.get_value("karnak_requests_total", api="CreateTopics", error="NONE") or 0) >= 1

    record_bytes = sum(len(x["value"]) for x in msgs)
    sendfile = m.get_value("karnak_fetch_sendfile_bytes_total")
    assert sendfile >= record_bytes, (sendfile, record_bytes)
    assert m.get_value("karnak_fetch_copied_bytes_total") == 0

    # Log-end-offset gauges are refreshed once a second, off the produce path.
    def leo_matches():
        m = broker.metrics()
        if all(m.get_value("karnak_log_end_offset", topic=topic, partition=p) == n
               for p, n in counts.items()):
            return m
        return None

    wait_until(leo_matches, 10, msg=f"karnak_log_end_offset of {topic} = {counts}")


def test_metrics_count_errors(broker):
    # The error label carries the response's top-level error code: an
    # ApiVersions request at an unknown version is answered with
    # UNSUPPORTED_VERSION at the top level.
    for cid in range(3):
        _, err, _ = w.parse_api_versions_v0(
            w.roundtrip(broker.bootstrap, w.api_versions_v0_request(cid, version=127)))
        assert err == w.UNSUPPORTED_VERSION

    def seen():
        m = broker.metrics()
        return m.get_value("karnak_requests_total", api="ApiVersions", error="UNSUPPORTED_VERSION")

    # The counter is bumped after the response is written (its latency includes
    # the write), so the client can read its answer before the third count
    # lands: poll for the exact figure, then check it does not over-count.
    wait_until(lambda: seen() == 3, 10,
               msg='karnak_requests_total{api="ApiVersions",error="UNSUPPORTED_VERSION"} == 3')
    assert seen() == 3
    assert broker.metrics().get_value("karnak_requests_total", api="ApiVersions", error="NONE") is None


def test_metrics_endpoint_format(broker):
    _, err, _ = w.parse_api_versions_v0(w.roundtrip(broker.bootstrap, w.api_versions_v0_request(3)))
    assert err == 0
    # Prometheus text exposition: every sample line parses
    m = wait_until(lambda: broker.metrics().find("karnak_requests_total", api="ApiVersions"), 10,
                   msg="ApiVersions counted")
    assert sum(m.values()) >= 1
    with urllib.request.urlopen(broker.admin_url + "/metrics", timeout=10) as r:
        assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers


def test_metrics_count_transactions(broker):
    topic = unique_topic("met-txn")
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    p = ck.producer(broker.bootstrap, **{"transactional.id": unique_topic("met-tid")})
    p.init_transactions(30)
    for commit in (True, False, True):
        p.begin_transaction()
        p.produce(topic, value=b"x")
        p.flush(30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    def counts():
        m = broker.metrics()
        c = m.get_value("karnak_transactions_total", result="commit")
        a = m.get_value("karnak_transactions_total", result="abort")
        return (c, a) if (c, a) == (2, 1) else None

    wait_until(counts, 10, msg="karnak_transactions_total commit=2 abort=1")
    m = broker.metrics()
    assert m.get_value("karnak_produce_duplicate_batches_total") == 0
    assert (m.get_value("karnak_requests_total", api="EndTxn", error="NONE") or 0) == 3
