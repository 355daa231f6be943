"""ACLs (issue 19) with real clients against `--authorizer acl`: admin (a
super user) manages ACLs with CreateAcls / DescribeAcls / DeleteAcls, and
every unauthorised produce, fetch, group join, transactional init, topic
creation, metadata look-up and ACL change gets Apache Kafka's error and
changes nothing (each checked as admin). confluent-kafka throughout,
kafka-python for a refused DescribeAcls (librdkafka drops its error code) and
a group join, kcat for a denied produce; SASL_PLAINTEXT, SASL_SSL and the
unauthenticated User:ANONYMOUS on PLAINTEXT."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)

from conftest import Broker, free_port, unique_topic

T = 60
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
USERS = {"admin": "admin pw", "alice": "alice pw", "bob": "bob pw", "carol": "carol pw"}
TOPIC, GROUP, CLUSTER, TXN = (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER,
                              ResourceType.TRANSACTIONAL_ID)
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
Op = AclOperation
EVERYTHING = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                              Op.ANY, AclPermissionType.ANY)


def start_acl_broker(karnak_bin, tmp: Path, certs, *extra, mtls_rules=None, sql=False) -> Broker:
    """PLAINTEXT (User:ANONYMOUS) on kafka_port, SASL_PLAINTEXT on .sasl_port,
    SASL_SSL on .sasl_ssl_port; User:admin is the super user. With
    `mtls_rules`, also SSL on .ssl_port requiring client certificates, mapped
    to principals by those --ssl-principal-mapping-rules."""
    users = tmp / "users.txt"
    users.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    b = Broker(karnak_bin, tmp / "data", tmp / "logs", [])
    b.pick_ports()
    taken, ports = {b.kafka_port, b.admin_port, b.sql_port}, []
    while len(ports) < 3:
        p = free_port()
        if p not in taken:
            taken.add(p)
            ports.append(p)
    b.sasl_port, b.sasl_ssl_port, b.ssl_port = ports
    mtls = [] if mtls_rules is None else [
        "--ssl-client-auth", "required", "--ssl-truststore-file", str(certs["ca"]),
        "--ssl-principal-mapping-rules", mtls_rules]
    b.ca = certs["ca"]
    pem, key = certs["server"]
    b.extra_args = [
        "--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},"
                       f"SASL_PLAINTEXT://127.0.0.1:{b.sasl_port},"
                       f"SASL_SSL://127.0.0.1:{b.sasl_ssl_port}"
                       + ("" if mtls_rules is None else f",SSL://127.0.0.1:{b.ssl_port}"),
        "--ssl-certificate-file", str(pem), "--ssl-key-file", str(key),
        "--sasl-users-file", str(users), "--sasl-enabled-mechanisms", "SCRAM-SHA-256,PLAIN",
        *(["--sql-auth", "scram-sha-256"] if sql else ["--sql-enabled", "false"]),
        "--authorizer", "acl", "--super-users", "User:admin", *mtls,
        *extra]
    return b.start()


@pytest.fixture(scope="module")
def acl_broker(karnak_bin, tmp_path_factory, certs, request):
    b = start_acl_broker(karnak_bin, tmp_path_factory.mktemp("acl"), certs)
    request.module._karnak_module_brokers = [b]
    yield b
    b.__dict__.pop("clients", None)  # close the clients before their broker goes
    b.kill9()


def cfg(b, user, tls=False, **more):
    """confluent-kafka config logging in as `user` (None: anonymous on PLAINTEXT)."""
    if user is None:
        return {"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 10000, **more}
    c = {"bootstrap.servers": f"127.0.0.1:{b.sasl_ssl_port if tls else b.sasl_port}",
         "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
         "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": USERS[user],
         "socket.timeout.ms": 10000, **more}
    if tls:
        c["ssl.ca.location"] = str(b.ca)
    return c


def admin(b, user="admin"):
    """An AdminClient kept alive until the broker goes (a handle collected
    while its request is in flight fails it with _DESTROY): one for admin, a
    new one for anyone else, whose metadata cache must not outlive an ACL change."""
    kept = b.__dict__.setdefault("clients", {})
    if user != "admin" or "admin" not in kept:
        kept["admin" if user == "admin" else len(kept)] = AdminClient(cfg(b, user))
    return kept["admin" if user == "admin" else len(kept) - 1]


def acl(rt, name, principal, op, perm=ALLOW, pattern=LITERAL, host="*"):
    return AclBinding(rt, name, pattern, principal, host, op, perm)


def grant(b, *bindings):
    for f in admin(b).create_acls(list(bindings), request_timeout=T).values():
        f.result(T)


def describe(b, flt) -> set:
    return set(admin(b).describe_acls(flt, request_timeout=T).result(T))


def flt(rt=ResourceType.ANY, name=None, pattern=ResourcePatternType.ANY, principal=None,
        host=None, op=Op.ANY, perm=AclPermissionType.ANY):
    return AclBindingFilter(rt, name, pattern, principal, host, op, perm)


def code(excinfo) -> int:
    return excinfo.value.args[0].code()


def create(b, *topics):
    futs = admin(b).create_topics([NewTopic(t, 1, 1) for t in topics], request_timeout=T)
    for f in futs.values():
        f.result(T)


def topic_names(b) -> set:
    return set(admin(b).list_topics(timeout=T).topics)


def hwm(b, topic) -> int:
    c = Consumer(cfg(b, "admin", **{"group.id": "hwm-unused"}))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=T, cached=False)[1]
    finally:
        c.close()


def produce(b, user, topic, values, tls=False, **more) -> list:
    """Delivery results: None for each record written, else its KafkaError."""
    p = Producer(cfg(b, user, tls, acks="all", **{"message.timeout.ms": 20000}, **more))
    out = [None] * len(values)
    done = [False] * len(values)

    def cb(i):
        def on_delivery(err, _msg):
            out[i], done[i] = err, True
        return on_delivery

    for i, v in enumerate(values):
        p.produce(topic, v, partition=0, on_delivery=cb(i))
    assert p.flush(T) == 0 and all(done), "deliveries not reported in time"
    return out


def read_all(b, user, topic, n, **more) -> list:
    """n record values from offset 0 of partition 0, read with assign()."""
    c = Consumer(cfg(b, user, **{"group.id": unique_topic("read"), "enable.auto.commit": False,
                                 **more}))
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = [], time.monotonic() + T
    while len(got) < n and time.monotonic() < deadline:
        for m in c.consume(100, 0.5):
            assert m.error() is None, m.error()
            got.append(m.value())
    c.close()
    assert len(got) == n, got
    return got


def wait_for_error(c, want, errors, timeout=T) -> list:
    """Polls consumer `c` until an error with code `want` arrives (as a
    consumed event or through error_cb, appended to `errors`); returns the
    records that arrived meanwhile."""
    records, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in c.consume(100, 0.5):
            if m.error() is None:
                records.append(m.value())
            else:
                errors.append(m.error())
        if any(e.code() == want for e in errors):
            return records
    raise AssertionError(f"no error {want} within {timeout}s; got {[str(e) for e in errors]}")


def test_admin_manages_acls_and_others_may_not(acl_broker):
    b, u = acl_broker, uuid.uuid4().hex[:8]
    p1, p2 = f"User:p1-{u}", f"User:p2-{u}"
    orders, prefix = f"acl1-{u}-orders", f"acl1-{u}-"
    mine = [acl(TOPIC, orders, p1, Op.READ),
            acl(TOPIC, prefix, p2, Op.WRITE, pattern=PREFIXED),
            acl(TOPIC, f"acl1-{u}-other", p1, Op.DESCRIBE, DENY, host="10.0.0.1"),
            acl(GROUP, f"acl1-{u}-g", p1, Op.READ),
            acl(TOPIC, "*", p2, Op.DESCRIBE),
            acl(CLUSTER, "kafka-cluster", p2, Op.DESCRIBE_CONFIGS)]
    grant(b, *mine)
    assert describe(b, flt(principal=p1)) == {mine[0], mine[2], mine[3]}
    assert describe(b, flt(principal=p2)) == {mine[1], mine[4], mine[5]}
    assert describe(b, flt(principal=p1, perm=DENY)) == {mine[2]}
    assert describe(b, flt(principal=p1, host="10.0.0.1")) == {mine[2]}
    assert describe(b, flt(TOPIC, orders, LITERAL)) == {mine[0]}
    assert describe(b, flt(TOPIC, prefix)) == {mine[1]}
    assert describe(b, flt(CLUSTER)) >= {mine[5]}
    # MATCH: every pattern that applies to the topic `orders` (a literal of
    # its name, a prefix of it, the literal wildcard), from any principal.
    matched = describe(b, flt(TOPIC, orders, ResourcePatternType.MATCH))
    assert {mine[0], mine[1], mine[4]} <= matched, matched
    assert all(x.name in (orders, "*") or (x.resource_pattern_type == PREFIXED
                                           and orders.startswith(x.name)) for x in matched)
    # Non-admins (a SASL user, and ANONYMOUS on PLAINTEXT) may neither look nor change.
    # librdkafka drops DescribeAcls' error code (an empty, successful listing);
    # kafka-python raises it.
    from kafka import KafkaAdminClient
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType
    from kafka.admin import ResourcePatternFilter, ResourceType as KpResourceType
    from kafka.errors import ClusterAuthorizationFailedError
    everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                           ResourcePatternFilter(KpResourceType.ANY, None,
                                                 ACLResourcePatternType.ANY))
    attempt = acl(TOPIC, orders, "User:alice", Op.ALL)
    for who in ("alice", None):
        login = {"bootstrap_servers": b.bootstrap} if who is None else {
            "bootstrap_servers": f"127.0.0.1:{b.sasl_port}", "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN", "sasl_plain_username": who,
            "sasl_plain_password": USERS[who]}
        kp = KafkaAdminClient(**login)
        try:
            with pytest.raises(ClusterAuthorizationFailedError):
                kp.describe_acls(everything)
        finally:
            kp.close()
        assert admin(b, who).describe_acls(EVERYTHING, request_timeout=T).result(T) == []
        with pytest.raises(KafkaException) as e:
            admin(b, who).create_acls([attempt], request_timeout=T)[attempt].result(T)
        assert code(e) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert describe(b, flt(TOPIC, orders, LITERAL)) == {mine[0]}


@pytest.mark.parametrize("tls", [False, True], ids=["SASL_PLAINTEXT", "SASL_SSL"])
def test_produce_needs_write_on_the_topic(acl_broker, tls):
    b = acl_broker
    topic = unique_topic("orders")
    create(b, topic)
    # bob may DESCRIBE (so his client gets to send Produce) but not WRITE.
    grant(b, acl(TOPIC, topic, "User:alice", Op.WRITE), acl(TOPIC, topic, "User:bob", Op.DESCRIBE))
    assert produce(b, "alice", topic, [b"a0", b"a1", b"a2"], tls=tls) == [None] * 3
    assert hwm(b, topic) == 3
    errs = produce(b, "bob", topic, [b"b0", b"b1"], tls=tls)
    assert [e and e.code() for e in errs] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2, errs
    assert hwm(b, topic) == 3
    assert read_all(b, "admin", topic, 3) == [b"a0", b"a1", b"a2"]


def test_kcat_produce_is_denied(acl_broker):
    if not KCAT:
        pytest.fail("kcat not found on PATH (apt-get install kcat)", pytrace=False)
    b = acl_broker
    topic = unique_topic("kcat-acl")
    create(b, topic)
    grant(b, acl(TOPIC, topic, "User:alice", Op.WRITE))
    logins = {"bob": ["-b", f"127.0.0.1:{b.sasl_port}", "-X", "security.protocol=SASL_PLAINTEXT",
                      "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=bob",
                      "-X", f"sasl.password={USERS['bob']}"],
              "ANONYMOUS": ["-b", b.bootstrap]}
    for who, login in logins.items():
        r = subprocess.run([KCAT, *login, "-X", "socket.timeout.ms=10000",
                            "-X", "message.timeout.ms=20000", "-P", "-t", topic,
                            "-p", "0"], input=b"x1\nx2\n", capture_output=True, timeout=T)
        err = r.stderr.decode(errors="replace")
        assert r.returncode != 0, (who, err)
        # librdkafka refuses at produce() once a Metadata answer has said the
        # topic is not authorized ("Failed to produce message"), and at
        # delivery if the records were queued first: either way, denied.
        delivered_denied = err.count("Delivery failed for message: Broker: Topic authorization failed")
        produce_denied = "Failed to produce message" in err and "Topic authorization failed" in err
        assert delivered_denied == 2 or produce_denied, (who, err)
        assert hwm(b, topic) == 0, who


def test_fetch_needs_read_on_the_topic(acl_broker):
    b = acl_broker
    topic, group = unique_topic("fetch"), unique_topic("g-fetch")
    create(b, topic)
    grant(b, acl(TOPIC, topic, "User:alice", Op.WRITE), acl(TOPIC, topic, "User:alice", Op.READ),
          acl(GROUP, group, "User:alice", Op.READ), acl(TOPIC, topic, "User:bob", Op.DESCRIBE))
    values = [f"f{i}".encode() for i in range(5)]
    assert produce(b, "alice", topic, values) == [None] * 5
    errors = []
    c = Consumer(cfg(b, "bob", **{"group.id": unique_topic("g-bob"), "error_cb": errors.append}))
    c.assign([TopicPartition(topic, 0, 0)])
    assert wait_for_error(c, KafkaError.TOPIC_AUTHORIZATION_FAILED, errors) == []
    c.close()
    c = Consumer(cfg(b, "alice", tls=True, **{"group.id": group, "auto.offset.reset": "earliest",
                                              "enable.auto.commit": False}))
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + T
    while len(got) < 5 and time.monotonic() < deadline:
        for m in c.consume(100, 0.5):
            assert m.error() is None, m.error()
            got.append(m.value())
    assert got == values
    c.commit(asynchronous=False)
    assert [tp.offset for tp in c.committed([TopicPartition(topic, 0)], timeout=T)] == [5]
    c.close()


def test_group_join_needs_read_on_the_group(acl_broker):
    from kafka import KafkaConsumer
    from kafka.errors import GroupAuthorizationFailedError
    b = acl_broker
    topic, group = unique_topic("join"), unique_topic("g-join")
    create(b, topic)
    # alice may DESCRIBE the group (FindCoordinator passes), so JoinGroup is what refuses her.
    grant(b, acl(TOPIC, topic, "User:alice", Op.READ), acl(GROUP, group, "User:alice", Op.DESCRIBE),
          acl(TOPIC, topic, "User:bob", Op.READ))
    errors = []
    c = Consumer(cfg(b, "alice", **{"group.id": group, "error_cb": errors.append}))
    c.subscribe([topic])
    wait_for_error(c, KafkaError.GROUP_AUTHORIZATION_FAILED, errors)
    c.close()
    # kafka-python as bob, with nothing on the group: FindCoordinator refuses.
    kc = KafkaConsumer(topic, group_id=group, bootstrap_servers=f"127.0.0.1:{b.sasl_port}",
                       security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                       sasl_plain_username="bob", sasl_plain_password=USERS["bob"])
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            deadline = time.monotonic() + T
            while time.monotonic() < deadline:
                kc.poll(timeout_ms=500)
    finally:
        kc.close()
    listed = admin(b).list_consumer_groups(request_timeout=T).result(T)
    assert group not in {g.group_id for g in listed.valid}


def test_transactions_need_write_on_the_transactional_id(acl_broker):
    b = acl_broker
    topic, tid = unique_topic("txn-acl"), unique_topic("tid")
    create(b, topic)
    # DESCRIBE lets FindCoordinator through: InitProducerId is what refuses.
    grant(b, acl(TOPIC, topic, "User:alice", Op.WRITE), acl(TXN, tid, "User:alice", Op.DESCRIBE))
    p = Producer(cfg(b, "alice", **{"transactional.id": tid}))
    with pytest.raises(KafkaException) as e:
        p.init_transactions(T)
    assert code(e) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    del p
    assert hwm(b, topic) == 0
    grant(b, acl(TXN, tid, "User:alice", Op.WRITE))
    p = Producer(cfg(b, "alice", **{"transactional.id": tid}))
    p.init_transactions(T)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, f"t{i}".encode(), partition=0)
    p.commit_transaction(T)
    assert read_all(b, "admin", topic, 3, **{"isolation.level": "read_committed"}) == \
        [b"t0", b"t1", b"t2"]
    assert hwm(b, topic) == 4  # three records and the commit marker


def test_topic_creation_needs_create(acl_broker):
    b, u = acl_broker, uuid.uuid4().hex[:8]
    denied, auto = f"nocreate-{u}", f"auto-{u}"
    with pytest.raises(KafkaException) as e:
        admin(b, "alice").create_topics([NewTopic(denied, 1, 1)], request_timeout=T)[denied] \
            .result(T)
    assert code(e) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Auto-creation by a produce: WRITE (so DESCRIBE) on the name but no CREATE.
    grant(b, acl(TOPIC, auto, "User:alice", Op.WRITE))
    errs = produce(b, "alice", auto, [b"x"])
    assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    grant(b, acl(TOPIC, "alice-", "User:alice", Op.CREATE, pattern=PREFIXED))
    ok, no = f"alice-{u}", f"bob-{u}"
    futs = admin(b, "alice").create_topics([NewTopic(ok, 2, 1), NewTopic(no, 1, 1)],
                                           request_timeout=T)
    futs[ok].result(T)
    with pytest.raises(KafkaException) as e:
        futs[no].result(T)
    assert code(e) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    names = topic_names(b)
    assert ok in names and not {denied, auto, no} & names, names
    assert len(admin(b).list_topics(topic=ok, timeout=T).topics[ok].partitions) == 2


def test_metadata_lists_only_topics_the_principal_may_describe(acl_broker):
    b, u = acl_broker, uuid.uuid4().hex[:8]
    d, r, w, n = (f"md-{u}-{x}" for x in ("describe", "read", "write", "none"))
    create(b, d, r, w, n)
    grant(b, acl(TOPIC, d, "User:bob", Op.DESCRIBE), acl(TOPIC, r, "User:bob", Op.READ),
          acl(TOPIC, w, "User:bob", Op.WRITE), acl(TOPIC, n, "User:alice", Op.READ),
          # CREATE does not imply DESCRIBE.
          acl(TOPIC, f"md-{u}-", "User:bob", Op.CREATE, pattern=PREFIXED))
    bob = admin(b, "bob")
    assert set(bob.list_topics(timeout=T).topics) & {d, r, w, n} == {d, r, w}
    # Asked by name: a topic bob may not DESCRIBE, existing or not, is
    # TOPIC_AUTHORIZATION_FAILED (its existence is not disclosed) and is not created.
    ghost = f"ghost-{u}"
    for t in (n, ghost):
        md = bob.list_topics(topic=t, timeout=T)
        assert md.topics[t].error is not None, t
        assert md.topics[t].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, t
        assert not md.topics[t].partitions
    names = topic_names(b)
    assert {d, r, w, n} <= names and ghost not in names


def test_deny_wins_over_allow(acl_broker):
    b, u = acl_broker, uuid.uuid4().hex[:8]
    secret, public = f"secret-{u}-x", f"public-{u}"
    create(b, secret, public)
    for t in (secret, public):
        assert produce(b, "admin", t, [b"s0", b"s1"]) == [None, None]
    grant(b, acl(TOPIC, "*", "User:carol", Op.ALL), acl(GROUP, "*", "User:carol", Op.ALL),
          acl(TOPIC, f"secret-{u}-", "User:carol", Op.READ, DENY, pattern=PREFIXED),
          # A DENY for another host does not apply to carol's connection from 127.0.0.1.
          acl(TOPIC, f"secret-{u}-", "User:carol", Op.WRITE, DENY, PREFIXED, host="10.0.0.1"))
    assert read_all(b, "carol", public, 2) == [b"s0", b"s1"]
    errors = []
    c = Consumer(cfg(b, "carol", **{"group.id": unique_topic("g-carol"),
                                    "error_cb": errors.append}))
    c.assign([TopicPartition(secret, 0, 0)])
    assert wait_for_error(c, KafkaError.TOPIC_AUTHORIZATION_FAILED, errors) == []
    c.close()
    # Denying READ leaves WRITE and DESCRIBE as the ALLOW ALL says.
    assert produce(b, "carol", secret, [b"c0"]) == [None]
    assert secret in set(admin(b, "carol").list_topics(timeout=T).topics)
    assert hwm(b, secret) == 3


def test_delete_acls(acl_broker):
    b, u = acl_broker, uuid.uuid4().hex[:8]
    d1, d2 = f"User:d1-{u}", f"User:d2-{u}"
    mine = [acl(TOPIC, f"del-{u}-a", d1, Op.READ), acl(TOPIC, f"del-{u}-b", d1, Op.READ),
            acl(TOPIC, f"del-{u}-a", d1, Op.WRITE), acl(GROUP, f"del-{u}-g", d1, Op.READ),
            acl(TOPIC, f"del-{u}-", d2, Op.READ, pattern=PREFIXED)]
    grant(b, *mine)
    before = describe(b, EVERYTHING)
    assert set(mine) <= before
    for who in ("alice", None):
        with pytest.raises(KafkaException) as e:
            admin(b, who).delete_acls([EVERYTHING], request_timeout=T)[EVERYTHING].result(T)
        assert code(e) == KafkaError.CLUSTER_AUTHORIZATION_FAILED, who
    assert describe(b, EVERYTHING) == before
    only = flt(TOPIC, None, ResourcePatternType.ANY, d1, None, Op.READ, ALLOW)
    deleted = admin(b).delete_acls([only], request_timeout=T)[only].result(T)
    assert sorted(deleted) == sorted(mine[:2]), deleted
    assert describe(b, EVERYTHING) == before - set(mine[:2])
    assert describe(b, flt(principal=d1)) == {mine[2], mine[3]}


def test_allow_everyone_if_no_acl_found(karnak_bin, tmp_path, certs, request):
    b = start_acl_broker(karnak_bin, tmp_path, certs, "--allow-everyone-if-no-acl-found", "true")
    request.node._karnak_brokers = [b]
    try:
        open_t, guarded = unique_topic("open"), unique_topic("guarded")
        create(b, open_t, guarded)
        grant(b, acl(TOPIC, guarded, "User:alice", Op.WRITE))
        for who in ("bob", None):  # a SASL user and ANONYMOUS
            assert produce(b, who, open_t, [b"o"]) == [None], who
            errs = produce(b, who, guarded, [b"g"])
            assert errs[0] is not None, who
            assert errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (who, errs)
        assert read_all(b, "bob", open_t, 2) == [b"o", b"o"]
        assert hwm(b, guarded) == 0
        assert produce(b, "alice", guarded, [b"a"]) == [None]
        assert hwm(b, guarded) == 1
    finally:
        b.__dict__.pop("clients", None)
        b.kill9()


def test_create_acls_refuses_bad_bindings(acl_broker):
    b, u = acl_broker, uuid.uuid4().hex[:8]
    name, who = f"bad-{u}", f"User:b-{u}"
    good = acl(TOPIC, name, who, Op.READ)
    bad = [acl(TOPIC, "", who, Op.READ),                       # empty resource name
           acl(TOPIC, name, f"b-{u}", Op.WRITE),               # principal without a type
           acl(CLUSTER, "not-the-cluster", who, Op.ALTER)]     # the cluster has one name
    futs = admin(b).create_acls([good, *bad], request_timeout=T)
    futs[good].result(T)
    for x in bad:
        with pytest.raises(KafkaException) as e:
            futs[x].result(T)
        assert code(e) == KafkaError.INVALID_REQUEST, x
    assert describe(b, flt(principal=who)) == {good}
    assert describe(b, flt(TOPIC, name)) == {good}


def mtls_cfg(b, certs, **more):
    pem, key = certs["client"]
    return {"bootstrap.servers": f"127.0.0.1:{b.ssl_port}", "security.protocol": "SSL",
            "ssl.ca.location": str(certs["ca"]), "ssl.certificate.location": str(pem),
            "ssl.key.location": str(key), "socket.timeout.ms": 10000, **more}


def test_mtls_principal_comes_from_the_client_certificate(karnak_bin, tmp_path, certs, request):
    """The client certificate's subject (CN=alice), through Kafka's
    ssl.principal.mapping.rules, is the principal ACLs name: User:cert-alice."""
    b = start_acl_broker(karnak_bin, tmp_path, certs,
                         mtls_rules="RULE:^CN=([a-z]+)$/cert-$1/,DEFAULT")
    request.node._karnak_brokers = [b]
    try:
        topic = unique_topic("mtls")
        create(b, topic)
        p = Producer(mtls_cfg(b, certs, acks="all", **{"message.timeout.ms": 20000}))
        errs = []
        p.produce(topic, b"denied", partition=0, on_delivery=lambda e, _m: errs.append(e))
        assert p.flush(T) == 0
        assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert hwm(b, topic) == 0
        # SASL's User:alice is someone else: an ACL for it changes nothing here.
        grant(b, acl(TOPIC, topic, "User:alice", Op.WRITE))
        errs.clear()
        p = Producer(mtls_cfg(b, certs, acks="all", **{"message.timeout.ms": 20000}))
        p.produce(topic, b"still denied", partition=0, on_delivery=lambda e, _m: errs.append(e))
        assert p.flush(T) == 0
        assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        grant(b, acl(TOPIC, topic, "User:cert-alice", Op.WRITE))
        errs.clear()
        p = Producer(mtls_cfg(b, certs, acks="all", **{"message.timeout.ms": 20000}))
        p.produce(topic, b"allowed", partition=0, on_delivery=lambda e, _m: errs.append(e))
        assert p.flush(T) == 0 and errs == [None]
        assert hwm(b, topic) == 1
    finally:
        b.__dict__.pop("clients", None)
        b.kill9()


def test_mtls_certificate_no_rule_accepts_is_refused(karnak_bin, tmp_path, certs, request):
    """No DEFAULT and no rule matching CN=alice: Kafka refuses the
    connection, and so does Karnak (logged), while other clients carry on."""
    b = start_acl_broker(karnak_bin, tmp_path, certs, mtls_rules="RULE:^CN=bob$/bob/")
    request.node._karnak_brokers = [b]
    try:
        a = AdminClient(mtls_cfg(b, certs))
        with pytest.raises(KafkaException):
            a.list_topics(timeout=5)
        deadline = time.monotonic() + T
        while "no ssl.principal.mapping.rules rule matches" not in b.log_text():
            assert time.monotonic() < deadline, b.log_tail()
            time.sleep(0.1)
        t = unique_topic("after")
        create(b, t)
        assert t in topic_names(b)
    finally:
        b.__dict__.pop("clients", None)
        b.kill9()


def test_sql_statements_need_what_kafka_requests_need(karnak_bin, tmp_path, certs, request):
    """The SQL gateway logs in the same users (SCRAM over pgwire) and holds
    each statement to the same ACLs: SELECT needs READ on the topic, INSERT
    WRITE, CREATE TABLE CREATE; a refusal is Postgres's 42501 and changes
    nothing."""
    import psycopg
    b = start_acl_broker(karnak_bin, tmp_path, certs, sql=True)
    request.node._karnak_brokers = [b]
    try:
        topic = unique_topic("sqlacl")
        create(b, topic)
        assert produce(b, "admin", topic, [b"one", b"two"]) == [None, None]

        def sql(user, statement):
            with psycopg.connect(host="127.0.0.1", port=b.sql_port, user=user,
                                 password=USERS[user], dbname="x", connect_timeout=10,
                                 autocommit=True) as conn:
                cur = conn.execute(statement)
                return cur.fetchall() if cur.description else cur.rowcount

        select = f'SELECT count(*) FROM "{topic}"'
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sql("alice", select)
        grant(b, acl(TOPIC, topic, "User:alice", Op.READ))
        assert sql("alice", select) == [(2,)]
        # A CTE and a subquery name the topic too.
        assert sql("alice", f'WITH r AS (SELECT * FROM "{topic}") SELECT count(*) FROM r') == [(2,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sql("bob", f'SELECT 1 WHERE EXISTS (SELECT 1 FROM "{topic}")')

        insert = f"INSERT INTO \"{topic}\" (value_text) VALUES ('three')"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sql("alice", insert)
        assert hwm(b, topic) == 2
        grant(b, acl(TOPIC, topic, "User:alice", Op.WRITE))
        assert sql("alice", insert) == 1
        assert hwm(b, topic) == 3

        made = unique_topic("sqlmade")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sql("alice", f'CREATE TABLE "{made}" (a int)')
        assert made not in topic_names(b)
        # A super user needs no ACL.
        assert sql("admin", select) == [(3,)]
    finally:
        b.__dict__.pop("clients", None)
        b.kill9()


def test_sql_catalog_lists_only_topics_the_user_may_describe(karnak_bin, tmp_path, certs,
                                                             request):
    """psql's \\dt and \\d, information_schema and SHOW TABLES list only the
    topics the SQL user may DESCRIBE (as Kafka's Metadata does), through
    the simple and the extended protocol; a super user sees them all."""
    import psycopg
    b = start_acl_broker(karnak_bin, tmp_path, certs, sql=True)
    request.node._karnak_brokers = [b]
    try:
        seen, hidden = unique_topic("seen"), unique_topic("hidden")
        create(b, seen, hidden)
        grant(b, acl(TOPIC, seen, "User:alice", Op.DESCRIBE))

        def psql(user, command):
            r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(b.sql_port), "-U", user,
                                "-d", "x", "-X", "-tA", "-c", command],
                               capture_output=True, text=True, timeout=T,
                               env={"PGPASSWORD": USERS[user], "PATH": "/usr/bin:/bin"})
            return r.returncode, r.stdout + r.stderr

        code, out = psql("alice", "\\dt")
        assert code == 0 and seen in out and hidden not in out, out
        code, out = psql("admin", "\\dt")
        assert code == 0 and seen in out and hidden in out, out
        code, out = psql("alice", f'\\d "{hidden}"')
        assert "Did not find any relation" in out, out
        code, out = psql("alice", f'\\d "{seen}"')
        assert code == 0 and "value" in out, out
        code, out = psql("alice", "SHOW TABLES")
        assert code == 0 and seen in out and hidden not in out, out

        def tables(user) -> set:
            with psycopg.connect(host="127.0.0.1", port=b.sql_port, user=user,
                                 password=USERS[user], dbname="x", connect_timeout=10,
                                 autocommit=True) as conn:
                # psycopg sends parameters: the extended protocol.
                rows = conn.execute("SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = %s", ("public",)).fetchall()
                return {r[0] for r in rows}
        assert seen in tables("alice") and hidden not in tables("alice")
        assert {seen, hidden} <= tables("admin")
        # bob has no ACL: no topic at all.
        assert not {seen, hidden} & tables("bob")
        # A grant shows at once (ACLs are read at each statement).
        grant(b, acl(TOPIC, hidden, "User:bob", Op.READ))
        assert hidden in tables("bob") and seen not in tables("bob")
    finally:
        b.__dict__.pop("clients", None)
        b.kill9()
