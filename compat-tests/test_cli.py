"""The command-line contract: config file, KARNAK_* env vars, advertised
address, node id, bad flags."""

from __future__ import annotations

import socket
import subprocess

import ck
from conftest import free_port, unique_topic


def auto_create_partitions(b):
    topic = unique_topic("cli")
    ck.produce_and_wait(b.bootstrap, topic, [{"value": b"x"}])
    md = ck.admin(b.bootstrap).list_topics(topic=topic, timeout=10)
    return len(md.topics[topic].partitions)


def test_config_file(broker_factory, tmp_path):
    cfg = tmp_path / "karnak.toml"
    cfg.write_text('num_partitions = 2\nauto_create_topics = true\nlog_segment_bytes = 1048576\n')
    b = broker_factory("--config", str(cfg))
    assert auto_create_partitions(b) == 2


def test_flag_overrides_config_file(broker_factory, tmp_path):
    cfg = tmp_path / "karnak.toml"
    cfg.write_text("num_partitions = 2\n")
    b = broker_factory("--config", str(cfg), "--num-partitions", "5")
    assert auto_create_partitions(b) == 5


def test_env_vars(broker_factory):
    b = broker_factory(env={"KARNAK_NUM_PARTITIONS": "4", "KARNAK_AUTO_CREATE_TOPICS": "true"})
    assert auto_create_partitions(b) == 4


def test_node_id_and_advertised_address(broker_factory):
    adv_port = free_port()
    # advertise "localhost:<other port>": metadata must carry exactly that
    b = broker_factory("--advertised-kafka-addr", f"localhost:{adv_port}", node_id=7)
    a = ck.admin(b.bootstrap)
    md = a.list_topics(timeout=10)
    assert list(md.brokers) == [7]
    assert (md.brokers[7].host, md.brokers[7].port) == ("localhost", adv_port)
    assert md.controller_id == 7


def test_node_id_in_describe_cluster(broker_factory):
    b = broker_factory(node_id=7)
    a = ck.admin(b.bootstrap)  # keep a reference: the future dies with its client
    c = a.describe_cluster(request_timeout=10).result(timeout=10)
    assert [(n.id, n.host, n.port) for n in c.nodes] == [(7, "127.0.0.1", b.kafka_port)]
    assert c.controller.id == 7
    assert c.cluster_id


def test_default_advertised_is_kafka_addr(broker):
    md = ck.admin(broker.bootstrap).list_topics(timeout=10)
    b = md.brokers[broker.node_id]
    assert (b.host, b.port) == ("127.0.0.1", broker.kafka_port)


def test_cluster_id_is_stable_across_restart(broker):
    a = ck.admin(broker.bootstrap)
    cid = a.describe_cluster(request_timeout=10).result(timeout=10).cluster_id
    assert cid
    broker.restart()
    a2 = ck.admin(broker.bootstrap)
    assert a2.describe_cluster(request_timeout=10).result(timeout=10).cluster_id == cid


def test_bad_flag_exits_nonzero(karnak_bin, tmp_path):
    r = subprocess.run([str(karnak_bin), "--no-such-flag"], capture_output=True, timeout=30)
    assert r.returncode != 0
    r = subprocess.run([str(karnak_bin), "--data-dir", str(tmp_path / "d"),
                        "--num-partitions", "many"], capture_output=True, timeout=30)
    assert r.returncode != 0


def test_port_in_use_exits_nonzero(karnak_bin, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [str(karnak_bin), "--data-dir", str(tmp_path / "d"), "--kafka-addr",
             f"127.0.0.1:{port}", "--admin-addr", f"127.0.0.1:{free_port()}"],
            capture_output=True, timeout=30)
    assert r.returncode != 0, "karnak started although its Kafka port was taken"
    assert r.stderr, "no error message on stderr"
