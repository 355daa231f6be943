package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import dev.karnak.compat.harness.ApacheKafka;
import dev.karnak.compat.harness.SaslKafka;
import dev.karnak.compat.harness.Cli;
import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.ClusterAuthorizationException;
import org.apache.kafka.common.errors.GroupAuthorizationException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.errors.TransactionalIdAuthorizationException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Kafka's ACLs (issue 19) with real clients over SASL (SCRAM-SHA-256): a broker started with
 * {@code --authorizer acl --super-users User:admin}, users admin, alice and bob from {@code --sasl-users-file}.
 * Kafka's own kafka-acls adds, lists and removes ACLs; the producer, consumer, transactional producer, AdminClient
 * and kafka-configs each get Kafka's *AuthorizationException where the principal lacks the operation, and what
 * was refused changes nothing.
 *
 * <p>With {@code -Dcompat.against=kafka} every test runs against an Apache Kafka (this classpath's version)
 * configured the same way (PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners, StandardAuthorizer,
 * super.users=User:admin, the same SCRAM users): the check that what these tests assert is what Kafka does.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class AclTest {
    static final String ACLS = "org.apache.kafka.tools.AclCommand";
    static final String CONFIGS = "org.apache.kafka.tools.ConfigCommand";
    static final String MECHANISM = "SCRAM-SHA-256";
    static final Map<String, String> PASSWORDS = Map.of(
            "admin", "admin-secret", "alice", "alice-secret", "bob", "bob-secret");
    static final String ORDERS = "orders";
    /** How long an ACL change may take to reach the authorizer (Kafka applies it from the metadata log). */
    static final Duration DEADLINE = Duration.ofSeconds(30);

    // =================================================================== 1. kafka-acls

    /**
     * kafka-acls --add (two operations on a topic, one on a group, a PREFIXED pattern), --list, --remove --force,
     * --list again; the PREFIXED ACL lets bob write to a topic named with the prefix. bob, not allowed to DESCRIBE
     * or ALTER the cluster, cannot list or add.
     */
    @Test
    void kafkaAclsToolAddsListsAndRemoves() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            Clients.createTopic(admin, ORDERS, 1);
            Clients.createTopic(admin, "logs-app", 1);
            Path adminConfig = broker.commandConfig("admin");
            String[] asAdmin = {"--bootstrap-server", broker.sasl, "--command-config", adminConfig.toString()};

            Cli.Result add = Cli.run(ACLS, concat(asAdmin, "--add", "--allow-principal", "User:alice",
                    "--operation", "Read", "--operation", "Write", "--topic", ORDERS));
            assertEquals(0, add.exitCode(), add.toString());
            assertTrue(add.out().contains("Adding ACLs for resource `"
                    + "ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)`"), add.toString());
            Cli.Result addGroup = Cli.run(ACLS, concat(asAdmin, "--add", "--allow-principal", "User:alice",
                    "--operation", "Read", "--group", "g1"));
            assertEquals(0, addGroup.exitCode(), addGroup.toString());

            Map<String, Set<String>> expected = new TreeMap<>();
            expected.put("ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)", Set.of(
                    "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)",
                    "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)"));
            expected.put("ResourcePattern(resourceType=GROUP, name=g1, patternType=LITERAL)", Set.of(
                    "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)"));
            awaitListing(asAdmin, expected);

            // An ACL that is already there: kafka-acls says so and adds nothing (it describes before it creates).
            Cli.Result again = Cli.run(ACLS, concat(asAdmin, "--add", "--allow-principal", "User:alice",
                    "--operation", "Read", "--group", "g1"));
            assertEquals(0, again.exitCode(), again.toString());
            assertTrue(again.out().contains("already exists"), again.toString());

            Cli.Result prefixed = Cli.run(ACLS, concat(asAdmin, "--add", "--allow-principal", "User:bob",
                    "--operation", "Write", "--topic", "logs-", "--resource-pattern-type", "prefixed"));
            assertEquals(0, prefixed.exitCode(), prefixed.toString());
            assertTrue(prefixed.out().contains("ResourcePattern(resourceType=TOPIC, name=logs-, "
                    + "patternType=PREFIXED)"), prefixed.toString());
            expected.put("ResourcePattern(resourceType=TOPIC, name=logs-, patternType=PREFIXED)", Set.of(
                    "(principal=User:bob, host=*, operation=WRITE, permissionType=ALLOW)"));
            awaitListing(asAdmin, expected);

            // --list --topic orders: that resource only.
            Cli.Result one = Cli.run(ACLS, concat(asAdmin, "--list", "--topic", ORDERS));
            assertEquals(0, one.exitCode(), one.toString());
            assertEquals(Map.of("ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)",
                    expected.get("ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)")),
                    parseListing(one.out()), one.toString());

            // The PREFIXED ACL authorizes bob's writes to logs-app (and nowhere else).
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, broker.login("bob"))) {
                RecordMetadata md = Poll.until(DEADLINE, "bob's write to logs-app",
                        () -> p.send(record("logs-app", "by bob")).get(30, TimeUnit.SECONDS));
                assertEquals(0L, md.offset());
                Throwable refused = sendFailure(p, record(ORDERS, "by bob"));
                assertInstanceOf(TopicAuthorizationException.class, refused);
            }

            Cli.Result remove = Cli.run(ACLS, concat(asAdmin, "--remove", "--force", "--allow-principal",
                    "User:alice", "--operation", "Write", "--topic", ORDERS));
            assertEquals(0, remove.exitCode(), remove.toString());
            expected.put("ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)", Set.of(
                    "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)"));
            Map<String, Set<String>> listed = awaitListing(asAdmin, expected);
            assertFalse(listed.values().stream().flatMap(Set::stream)
                    .anyMatch(e -> e.contains("User:alice") && e.contains("operation=WRITE")), listed.toString());

            // bob may neither DESCRIBE nor ALTER the cluster: kafka-acls fails for him, and adds nothing.
            String[] asBob = {"--bootstrap-server", broker.sasl, "--command-config",
                    broker.commandConfig("bob").toString()};
            Cli.Result bobList = Cli.run(ACLS, concat(asBob, "--list"));
            assertEquals(1, bobList.exitCode(), bobList.toString());
            assertTrue(bobList.out().contains("ClusterAuthorizationException"), bobList.toString());
            Cli.Result bobAdd = Cli.run(ACLS, concat(asBob, "--add", "--allow-principal", "User:bob",
                    "--operation", "All", "--topic", "*"));
            assertEquals(1, bobAdd.exitCode(), bobAdd.toString());
            assertTrue(bobAdd.out().contains("ClusterAuthorizationException"), bobAdd.toString());
            assertEquals(expected, parseListing(runOk(concat(asAdmin, "--list")).out()));
        }
    }

    /** Runs kafka-acls --list until it prints {@code expected} (Kafka applies ACLs asynchronously), returns it. */
    static Map<String, Set<String>> awaitListing(String[] asAdmin, Map<String, Set<String>> expected) {
        Map<String, Set<String>>[] last = new Map[1];
        try {
            return Poll.until(DEADLINE, "kafka-acls --list to print " + expected, () -> {
                last[0] = parseListing(runOk(concat(asAdmin, "--list")).out());
                return last[0].equals(expected) ? last[0] : null;
            });
        } catch (AssertionError e) {
            throw new AssertionError("kafka-acls --list printed " + last[0] + ", expected " + expected, e);
        }
    }

    static Cli.Result runOk(String... args) {
        Cli.Result r = Cli.run(ACLS, args);
        assertEquals(0, r.exitCode(), "kafka-acls " + Arrays.toString(args) + ": " + r);
        return r;
    }

    private static final Pattern RESOURCE = Pattern.compile("^Current ACLs for resource `(.+)`:\\s*$");
    private static final Pattern ENTRY = Pattern.compile("^\\s*(\\(principal=.*\\))\\s*$");

    /** kafka-acls --list output: each resource pattern with its entries. */
    static Map<String, Set<String>> parseListing(String out) {
        Map<String, Set<String>> m = new TreeMap<>();
        Set<String> current = null;
        for (String line : out.split("\\R")) {
            Matcher r = RESOURCE.matcher(line);
            Matcher e = ENTRY.matcher(line);
            if (r.matches()) {
                current = new TreeSet<>();
                m.put(r.group(1), current);
            } else if (e.matches()) {
                assertTrue(current != null, "an ACL before any resource in:\n" + out);
                current.add(e.group(1));
            } else if (!line.isBlank()) {
                throw new AssertionError("unexpected line " + line + " in kafka-acls --list output:\n" + out);
            }
        }
        return m;
    }

    // =================================================================== 2. producer

    /**
     * alice (WRITE on orders) produces; bob gets TopicAuthorizationException from the send future, first without
     * any ACL (Metadata hides the topic from him), then allowed to DESCRIBE but not WRITE (Produce refuses); a
     * DENY for alice wins over her ALLOW. The end offset only counts alice's records. Over SASL_PLAINTEXT and
     * SASL_SSL.
     */
    @ParameterizedTest
    @ValueSource(strings = {"SASL_PLAINTEXT", "SASL_SSL"})
    void producerNeedsWriteOnTheTopic(String protocol) throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            String bootstrap = broker.bootstrap(protocol);
            Clients.createTopic(admin, ORDERS, 1);
            TopicPartition tp = new TopicPartition(ORDERS, 0);
            grant(admin, allow("User:alice", topic(ORDERS), AclOperation.WRITE));
            // alice's producer is idempotent (the default): InitProducerId is allowed with WRITE on a topic (KIP-679).
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, broker.login("alice", protocol))) {
                for (int i = 0; i < 5; i++) {
                    assertEquals(i, p.send(record(ORDERS, "alice-" + i)).get(30, TimeUnit.SECONDS).offset());
                }
            }
            assertEquals(5L, endOffset(admin, tp));

            Map<String, Object> bobConfig = new HashMap<>(broker.login("bob", protocol));
            bobConfig.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
            bobConfig.put(ProducerConfig.ACKS_CONFIG, "all");
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, bobConfig)) {
                Throwable e = sendFailure(p, record(ORDERS, "bob-hidden"));
                assertInstanceOf(TopicAuthorizationException.class, e);
                assertEquals(Set.of(ORDERS), ((TopicAuthorizationException) e).unauthorizedTopics());
            }
            assertEquals(5L, endOffset(admin, tp), "bob's refused record was not written");

            grant(admin, allow("User:bob", topic(ORDERS), AclOperation.DESCRIBE));
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, bobConfig)) {
                Throwable e = sendFailure(p, record(ORDERS, "bob-described"));
                assertInstanceOf(TopicAuthorizationException.class, e);
            }
            assertEquals(5L, endOffset(admin, tp), "bob's refused record was not written");

            // DENY wins over ALLOW, and a PREFIXED pattern covers the topic.
            grant(admin, new AclBinding(new ResourcePattern(ResourceType.TOPIC, "ord", PatternType.PREFIXED),
                    new AccessControlEntry("User:alice", "*", AclOperation.WRITE, AclPermissionType.DENY)));
            Map<String, Object> aliceConfig = new HashMap<>(broker.login("alice", protocol));
            aliceConfig.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
            aliceConfig.put(ProducerConfig.ACKS_CONFIG, "all");
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, aliceConfig)) {
                assertInstanceOf(TopicAuthorizationException.class, sendFailure(p, record(ORDERS, "alice-denied")));
            }
            assertEquals(5L, endOffset(admin, tp), "alice's denied record was not written");
        }
    }

    // =================================================================== 3. consumer

    /** bob may READ the topic but not the group: the consumer gets GroupAuthorizationException, and no offset. */
    @ParameterizedTest
    @ValueSource(strings = {"classic", "consumer"})
    void consumerWithoutReadOnTheGroup(String groupProtocol) throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            Clients.createTopic(admin, ORDERS, 1);
            produceAsAdmin(broker, 3);
            grant(admin, allow("User:bob", topic(ORDERS), AclOperation.READ));
            Map<String, Object> c = new HashMap<>(broker.login("bob"));
            c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
            try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, "g-bob", c)) {
                consumer.subscribe(List.of(ORDERS));
                GroupAuthorizationException e = pollUntilThrows(consumer, GroupAuthorizationException.class);
                assertEquals("g-bob", e.groupId(), e.toString());
            }
            assertTrue(Clients.get(admin.listConsumerGroupOffsets("g-bob").partitionsToOffsetAndMetadata())
                    .isEmpty(), "bob's group committed nothing");
        }
    }

    /**
     * bob may READ the group but not the topic: subscribed without DESCRIBE on it (Metadata refuses) and assigned
     * with DESCRIBE but no READ (Fetch refuses), the consumer gets TopicAuthorizationException naming the topic.
     */
    @ParameterizedTest
    @ValueSource(strings = {"classic", "consumer"})
    void consumerWithoutReadOnTheTopic(String groupProtocol) throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            Clients.createTopic(admin, ORDERS, 1);
            produceAsAdmin(broker, 3);
            grant(admin, allow("User:bob", group("g-bob"), AclOperation.READ));
            Map<String, Object> c = new HashMap<>(broker.login("bob"));
            c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
            try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, "g-bob", c)) {
                consumer.subscribe(List.of(ORDERS));
                TopicAuthorizationException e = pollUntilThrows(consumer, TopicAuthorizationException.class);
                assertEquals(Set.of(ORDERS), e.unauthorizedTopics(), e.toString());
            }
            grant(admin, allow("User:bob", topic(ORDERS), AclOperation.DESCRIBE));
            try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, "g-bob", c)) {
                consumer.assign(List.of(new TopicPartition(ORDERS, 0)));
                TopicAuthorizationException e = pollUntilThrows(consumer, TopicAuthorizationException.class);
                assertEquals(Set.of(ORDERS), e.unauthorizedTopics(), e.toString());
            }
        }
    }

    /** alice, with WRITE and READ on the topic and READ on her group, consumes what she produced and commits. */
    @ParameterizedTest
    @ValueSource(strings = {"classic", "consumer"})
    void consumerWithReadOnTopicAndGroup(String groupProtocol) throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            Clients.createTopic(admin, ORDERS, 1);
            TopicPartition tp = new TopicPartition(ORDERS, 0);
            grant(admin, allow("User:alice", topic(ORDERS), AclOperation.WRITE),
                    allow("User:alice", topic(ORDERS), AclOperation.READ),
                    allow("User:alice", group("g1"), AclOperation.READ));
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, broker.login("alice"))) {
                for (int i = 0; i < 10; i++) {
                    p.send(record(ORDERS, "alice-" + i)).get(30, TimeUnit.SECONDS);
                }
            }
            Map<String, Object> c = new HashMap<>(broker.login("alice"));
            c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
            try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, "g1", c)) {
                consumer.subscribe(List.of(ORDERS));
                List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(consumer, 10, Duration.ofSeconds(60));
                List<String> values = got.stream().map(r -> new String(r.value(), StandardCharsets.UTF_8)).toList();
                assertEquals(List.of("alice-0", "alice-1", "alice-2", "alice-3", "alice-4", "alice-5", "alice-6",
                        "alice-7", "alice-8", "alice-9"), values);
                consumer.commitSync(Map.of(tp, new OffsetAndMetadata(10)), Duration.ofSeconds(30));
            }
            assertEquals(10L, Clients.get(admin.listConsumerGroupOffsets("g1").partitionsToOffsetAndMetadata())
                    .get(tp).offset());
        }
    }

    /**
     * Hosts, DENY and wildcards on groups: a DENY for bob's host wins over his ALLOW from any host, an ALLOW for
     * another host does not apply, an ALLOW for his host does; the topic is readable through an ALLOW for User:*
     * on the LITERAL resource "*".
     */
    @Test
    void groupAclsMatchHostsAndWildcards() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            Clients.createTopic(admin, ORDERS, 1);
            produceAsAdmin(broker, 3);
            grant(admin, allow("User:*", topic("*"), AclOperation.READ),
                    allow("User:bob", group("g-denied"), AclOperation.READ),
                    new AclBinding(group("g-denied"), new AccessControlEntry("User:bob", "127.0.0.1", AclOperation.READ,
                            AclPermissionType.DENY)),
                    new AclBinding(group("g-elsewhere"), new AccessControlEntry("User:bob", "10.9.9.9",
                            AclOperation.READ, AclPermissionType.ALLOW)),
                    new AclBinding(group("g-here"), new AccessControlEntry("User:bob", "127.0.0.1",
                            AclOperation.READ, AclPermissionType.ALLOW)));
            for (String g : List.of("g-denied", "g-elsewhere")) {
                try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, g, broker.login("bob"))) {
                    consumer.subscribe(List.of(ORDERS));
                    assertEquals(g, pollUntilThrows(consumer, GroupAuthorizationException.class).groupId());
                }
            }
            try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, "g-here", broker.login("bob"))) {
                consumer.subscribe(List.of(ORDERS));
                assertEquals("admin-2", new String(Clients.consume(consumer, 3, Duration.ofSeconds(60)).get(2).value(),
                        StandardCharsets.UTF_8));
            }
        }
    }

    /**
     * --allow-everyone-if-no-acl-found true (Kafka's allow.everyone.if.no.acl.found): a resource no ACL names is
     * open to every principal; one ACL on it, for anyone, closes it to the others.
     */
    @Test
    void allowEveryoneIfNoAclFound() throws Exception {
        try (SecureBroker broker = SecureBroker.start(true); Admin admin = broker.admin("admin");
             Admin bob = broker.admin("bob")) {
            Clients.createTopic(admin, ORDERS, 1);
            Clients.createTopic(admin, "open", 1);
            grant(admin, allow("User:alice", topic(ORDERS), AclOperation.WRITE));
            Map<String, Object> bobConfig = new HashMap<>(broker.login("bob"));
            bobConfig.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, bobConfig)) {
                assertEquals(0L, p.send(record("open", "by bob")).get(30, TimeUnit.SECONDS).offset());
                assertInstanceOf(TopicAuthorizationException.class, sendFailure(p, record(ORDERS, "by bob")));
            }
            assertEquals(0L, endOffset(admin, new TopicPartition(ORDERS, 0)));
            // No ACL on the cluster: bob may describe the ACLs; once one names the cluster, he may not.
            assertEquals(1, Clients.get(bob.describeAcls(AclBindingFilter.ANY).values()).size());
            grant(admin, allow("User:alice", new ResourcePattern(ResourceType.CLUSTER, "kafka-cluster",
                    PatternType.LITERAL), AclOperation.DESCRIBE));
            assertInstanceOf(ClusterAuthorizationException.class,
                    Clients.failure(bob.describeAcls(AclBindingFilter.ANY).values(), DEADLINE));
        }
    }

    // =================================================================== 4. transactions

    /**
     * bob may WRITE the topic but not his transactional.id: initTransactions throws
     * TransactionalIdAuthorizationException without any ACL on the id (FindCoordinator refuses) and with DESCRIBE
     * only (InitProducerId refuses). alice, with WRITE on hers, commits a transaction.
     */
    @Test
    void transactionalProducerNeedsWriteOnItsTransactionalId() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            Clients.createTopic(admin, ORDERS, 1);
            TopicPartition tp = new TopicPartition(ORDERS, 0);
            grant(admin, allow("User:bob", topic(ORDERS), AclOperation.WRITE),
                    allow("User:alice", topic(ORDERS), AclOperation.WRITE),
                    allow("User:alice", transactionalId("tx-alice"), AclOperation.WRITE),
                    allow("User:bob", transactionalId("tx-bob-described"), AclOperation.DESCRIBE));
            for (String txId : List.of("tx-bob", "tx-bob-described")) {
                Map<String, Object> c = new HashMap<>(broker.login("bob"));
                c.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txId);
                try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, c)) {
                    TransactionalIdAuthorizationException e =
                            assertThrows(TransactionalIdAuthorizationException.class, p::initTransactions, txId);
                    assertTrue(e.getMessage() != null, txId);
                }
            }
            assertEquals(0L, endOffset(admin, tp));

            Map<String, Object> c = new HashMap<>(broker.login("alice"));
            c.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "tx-alice");
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, c)) {
                p.initTransactions();
                p.beginTransaction();
                p.send(record(ORDERS, "in-tx")).get(30, TimeUnit.SECONDS);
                p.commitTransaction();
            }
            // Kafka writes the commit marker after EndTxn answered: wait for it.
            Poll.untilTrue(DEADLINE, "alice's record and the commit marker (end offset 2)",
                    () -> endOffset(admin, tp) == 2L);
            Map<String, Object> committed = new HashMap<>(broker.login("admin"));
            committed.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, null, committed)) {
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                assertEquals("in-tx", new String(Clients.consume(consumer, 1, Duration.ofSeconds(30)).get(0).value(),
                        StandardCharsets.UTF_8));
            }
        }
    }

    /**
     * Inside a transaction: AddPartitionsToTxn needs WRITE on the topic (bob, allowed his transactional.id but
     * only to DESCRIBE the topic, gets TopicAuthorizationException and aborts), AddOffsetsToTxn READ on the group
     * (alice's sendOffsetsToTransaction for a group she may not read gets GroupAuthorizationException, and she
     * aborts). Nothing becomes visible to a read_committed consumer and the group has no offset.
     */
    @Test
    void transactionsNeedWriteOnTheTopicAndReadOnTheGroup() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            Clients.createTopic(admin, ORDERS, 1);
            TopicPartition tp = new TopicPartition(ORDERS, 0);
            grant(admin, allow("User:bob", topic(ORDERS), AclOperation.DESCRIBE),
                    allow("User:bob", transactionalId("tx-bob"), AclOperation.WRITE),
                    allow("User:alice", topic(ORDERS), AclOperation.WRITE),
                    allow("User:alice", transactionalId("tx-alice"), AclOperation.WRITE));
            Map<String, Object> c = new HashMap<>(broker.login("bob"));
            c.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "tx-bob");
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, c)) {
                p.initTransactions();
                p.beginTransaction();
                Throwable e = sendFailure(p, record(ORDERS, "bob-in-tx"));
                assertInstanceOf(TopicAuthorizationException.class, e);
                p.abortTransaction();
            }
            assertEquals(0L, endOffset(admin, tp), "bob's transaction wrote nothing");

            c = new HashMap<>(broker.login("alice"));
            c.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "tx-alice");
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, c)) {
                p.initTransactions();
                p.beginTransaction();
                p.send(record(ORDERS, "alice-in-tx")).get(30, TimeUnit.SECONDS);
                Exception e = assertThrows(Exception.class, () -> p.sendOffsetsToTransaction(
                        Map.of(tp, new OffsetAndMetadata(1)),
                        new org.apache.kafka.clients.consumer.ConsumerGroupMetadata("g-tx")));
                assertInstanceOf(GroupAuthorizationException.class, e);
                p.abortTransaction();
            }
            Poll.untilTrue(DEADLINE, "alice's record and the abort marker (end offset 2)",
                    () -> endOffset(admin, tp) == 2L);
            Map<String, Object> committed = new HashMap<>(broker.login("admin"));
            committed.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(broker.sasl, null, committed)) {
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                Poll.untilTrue(DEADLINE, "the read_committed position past the abort marker", () -> {
                    assertTrue(consumer.poll(Duration.ofMillis(100)).isEmpty(), "an aborted record was read");
                    return consumer.position(tp) == 2L;
                });
            }
            assertTrue(Clients.get(admin.listConsumerGroupOffsets("g-tx").partitionsToOffsetAndMetadata())
                    .isEmpty(), "no offset committed for g-tx");
        }
    }

    // =================================================================== 5. AdminClient

    /**
     * bob's AdminClient: createTopics is refused (TopicAuthorizationException) and creates nothing unless he may
     * CREATE the topic (a PREFIXED ACL); describeAcls, createAcls and deleteAcls are refused with
     * ClusterAuthorizationException and change nothing; listTopics shows only what he may DESCRIBE. admin's
     * describeAcls(ANY) lists every ACL, a filter lists the matching ones, and alice with DESCRIBE on the cluster
     * may describe them too.
     */
    @Test
    void adminClientNeedsClusterAndTopicPermissions() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin");
             Admin bob = broker.admin("bob")) {
            Clients.createTopic(admin, ORDERS, 1);
            Clients.createTopic(admin, "invisible", 1);
            List<AclBinding> all = List.of(
                    allow("User:alice", topic(ORDERS), AclOperation.READ),
                    allow("User:alice", new ResourcePattern(ResourceType.CLUSTER, "kafka-cluster",
                            PatternType.LITERAL), AclOperation.DESCRIBE),
                    allow("User:bob", topic(ORDERS), AclOperation.DESCRIBE),
                    allow("User:bob", new ResourcePattern(ResourceType.TOPIC, "bob-", PatternType.PREFIXED),
                            AclOperation.CREATE),
                    new AclBinding(group("g1"), new AccessControlEntry("User:bob", "127.0.0.1", AclOperation.READ,
                            AclPermissionType.DENY)),
                    allow("User:alice", transactionalId("tx-alice"), AclOperation.WRITE));
            grant(admin, all.toArray(new AclBinding[0]));

            Throwable create = Clients.failure(bob.createTopics(List.of(new NewTopic("made-by-bob", 1, (short) 1)))
                    .all(), DEADLINE);
            assertInstanceOf(TopicAuthorizationException.class, create);
            assertFalse(Clients.get(admin.listTopics().names()).contains("made-by-bob"),
                    "the refused topic was not created");
            Clients.get(bob.createTopics(List.of(new NewTopic("bob-made", 1, (short) 1))).all());
            Poll.untilTrue(DEADLINE, "bob-made listed",
                    () -> Clients.get(admin.listTopics().names()).contains("bob-made"));

            assertEquals(Set.of(ORDERS), Clients.get(bob.listTopics().names()),
                    "bob lists the topics he may DESCRIBE (bob-made: CREATE does not imply DESCRIBE)");

            assertInstanceOf(ClusterAuthorizationException.class,
                    Clients.failure(bob.describeAcls(AclBindingFilter.ANY).values(), DEADLINE));
            assertInstanceOf(ClusterAuthorizationException.class, Clients.failure(bob.createAcls(List.of(
                    allow("User:bob", topic("*"), AclOperation.ALL))).all(), DEADLINE));
            assertInstanceOf(ClusterAuthorizationException.class,
                    Clients.failure(bob.deleteAcls(List.of(AclBindingFilter.ANY)).all(), DEADLINE));

            assertEquals(Set.copyOf(all), Set.copyOf(Clients.get(admin.describeAcls(AclBindingFilter.ANY).values())),
                    "every ACL, nothing added or deleted by bob");
            AclBindingFilter bobs = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter("User:bob", null, AclOperation.ANY, AclPermissionType.ANY));
            assertEquals(all.stream().filter(b -> b.entry().principal().equals("User:bob")).collect(Collectors.toSet()),
                    Set.copyOf(Clients.get(admin.describeAcls(bobs).values())));
            AclBindingFilter denies = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(null, null, AclOperation.ANY, AclPermissionType.DENY));
            assertEquals(Set.of(all.get(4)), Set.copyOf(Clients.get(admin.describeAcls(denies).values())));
            // MATCH: the ACLs that apply to the topic "orders" (LITERAL orders; not the PREFIXED bob-).
            AclBindingFilter ordersMatch = new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.TOPIC, ORDERS, PatternType.MATCH), AccessControlEntryFilter.ANY);
            assertEquals(Set.of(all.get(0), all.get(2)),
                    Set.copyOf(Clients.get(admin.describeAcls(ordersMatch).values())));

            try (Admin alice = broker.admin("alice")) {
                assertEquals(Set.copyOf(all), Set.copyOf(Clients.get(alice.describeAcls(AclBindingFilter.ANY).values())),
                        "alice may DESCRIBE the cluster");
                assertInstanceOf(ClusterAuthorizationException.class,
                        Clients.failure(alice.deleteAcls(List.of(AclBindingFilter.ANY)).all(), DEADLINE),
                        "DESCRIBE on the cluster does not allow ALTER");
            }

            // admin deletes bob's ACLs with a filter: the result names exactly those.
            Set<AclBinding> deleted = new HashSet<>(Clients.get(admin.deleteAcls(List.of(bobs)).all()));
            assertEquals(all.stream().filter(b -> b.entry().principal().equals("User:bob")).collect(Collectors.toSet()),
                    deleted);
            Poll.untilTrue(DEADLINE, "bob's ACLs gone", () -> Set.copyOf(Clients.get(admin.describeAcls(
                    AclBindingFilter.ANY).values())).equals(all.stream()
                    .filter(b -> !b.entry().principal().equals("User:bob")).collect(Collectors.toSet())));
        }
    }

    /** The PLAINTEXT listener's principal is User:ANONYMOUS: without ACLs it sees and may do nothing. */
    @Test
    void anonymousPrincipalOnThePlaintextListener() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin");
             Admin anonymous = Clients.admin(broker.plaintext)) {
            Clients.createTopic(admin, ORDERS, 1);
            assertEquals(Set.of(), Clients.get(anonymous.listTopics().names()));
            assertInstanceOf(TopicAuthorizationException.class, Clients.failure(anonymous.createTopics(
                    List.of(new NewTopic("anon", 1, (short) 1))).all(), DEADLINE));
            assertInstanceOf(ClusterAuthorizationException.class,
                    Clients.failure(anonymous.describeAcls(AclBindingFilter.ANY).values(), DEADLINE));
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.plaintext,
                    Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false))) {
                assertInstanceOf(TopicAuthorizationException.class, sendFailure(p, record(ORDERS, "anon")));
            }
            grant(admin, allow("User:ANONYMOUS", topic(ORDERS), AclOperation.WRITE));
            assertEquals(Set.of(ORDERS), Clients.get(anonymous.listTopics().names()));
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.plaintext, Map.of())) {
                assertEquals(0L, p.send(record(ORDERS, "anon")).get(30, TimeUnit.SECONDS).offset());
            }
        }
    }

    /**
     * Every admin API bob might call, with no ACL, then allowed to DESCRIBE the topic, the group and the
     * transactional id, then to READ the topic and the group: each answers what Apache Kafka answers (the
     * exception, or what he may see; the expected outcomes are Kafka's), and what he was refused changed nothing.
     * The super user's authorized operations (KIP-430) are Kafka's too.
     *
     * <p>An API the broker does not have (UnsupportedVersionException) where Kafka refuses bob counts as refused:
     * nobody can call it, so it is no hole (Karnak: the client quota APIs and DescribeQuorum, not ACL findings).
     */
    @Test
    void adminApisAsAnUnprivilegedPrincipal() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin");
             Admin bob = broker.admin("bob")) {
            Clients.createTopic(admin, ORDERS, 1);
            Clients.createTopic(admin, "tx-topic", 1);
            TopicPartition tp = new TopicPartition(ORDERS, 0);
            produceAsAdmin(broker, 3);
            Clients.get(admin.alterConsumerGroupOffsets("g1", Map.of(tp, new OffsetAndMetadata(1))).all());
            Map<String, Object> tx = new HashMap<>(broker.login("admin"));
            tx.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "tx-admin");
            KafkaProducer<byte[], byte[]> open = Clients.producer(broker.sasl, tx);
            List<String> differences = new ArrayList<>();
            try {
                open.initTransactions();
                open.beginTransaction();
                open.send(record("tx-topic", "open")).get(30, TimeUnit.SECONDS);

                Map<String, String> none = expectedWithoutAcls();
                compareProbe("no ACL", none, probeAdminApis(bob, tp), differences);
                grant(admin, allow("User:bob", topic(ORDERS), AclOperation.DESCRIBE),
                        allow("User:bob", group("g1"), AclOperation.DESCRIBE),
                        allow("User:bob", transactionalId("tx-admin"), AclOperation.DESCRIBE));
                Map<String, String> describe = new LinkedHashMap<>(none);
                describe.putAll(Map.of("listTopics", "ok [orders]",
                        "authorizedOperations topic", "ok [DESCRIBE]",
                        "authorizedOperations group", "ok [DESCRIBE]",
                        "describeTopics", "ok 1",
                        "listOffsets", "ok 3",
                        "listGroups", "ok [g1]",
                        "describeConsumerGroups", "ok Empty",
                        "listConsumerGroupOffsets", "ok [orders-0]",
                        "listTransactions", "ok [tx-admin]",
                        "describeTransactions", "ok Ongoing"));
                compareProbe("DESCRIBE", describe, probeAdminApis(bob, tp), differences);
                // Nothing bob was refused happened.
                assertEquals(1, Clients.get(admin.describeTopics(List.of(ORDERS)).allTopicNames()).get(ORDERS)
                        .partitions().size());
                assertEquals(3L, endOffset(admin, tp));
                assertEquals(1L, Clients.get(admin.listConsumerGroupOffsets("g1").partitionsToOffsetAndMetadata())
                        .get(tp).offset());
                grant(admin, allow("User:bob", topic(ORDERS), AclOperation.READ),
                        allow("User:bob", group("g1"), AclOperation.READ));
                Map<String, String> read = new LinkedHashMap<>(describe);
                read.putAll(Map.of("authorizedOperations topic", "ok [READ, DESCRIBE]",
                        "authorizedOperations group", "ok [READ, DESCRIBE]",
                        "describeProducers", "ok 1",
                        // OffsetCommit: READ on the group and on the topic.
                        "alterConsumerGroupOffsets", "ok null"));
                compareProbe("READ", read, probeAdminApis(bob, tp), differences);
                compareProbe("super user", Map.of(
                        "cluster", "ok [CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, "
                                + "IDEMPOTENT_WRITE]",
                        "topic", "ok [READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]",
                        "group", "ok [READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]"),
                        probeAuthorizedOperations(admin, tp), differences);
            } finally {
                open.close(Duration.ZERO);
            }
            assertEquals(0L, Clients.get(admin.listConsumerGroupOffsets("g1").partitionsToOffsetAndMetadata())
                    .get(tp).offset(), "bob's commit with READ on the topic and the group");
            assertEquals(List.of(), differences, "outcomes that differ from Apache Kafka's");
        }
    }

    /** What Apache Kafka 4.4 answers a principal without any ACL. */
    static Map<String, String> expectedWithoutAcls() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("listTopics", "ok []");
        m.put("authorizedOperations cluster", "ok []");
        m.put("authorizedOperations topic", "TopicAuthorizationException");
        m.put("authorizedOperations group", "GroupAuthorizationException");
        m.put("describeTopics", "TopicAuthorizationException");
        // The same answer whether the topic exists or not: nothing is told to who may not DESCRIBE it.
        m.put("describeTopics missing", "TopicAuthorizationException");
        m.put("listOffsets", "TopicAuthorizationException");
        m.put("describeConfigs topic", "TopicAuthorizationException");
        m.put("describeConfigs broker", "ClusterAuthorizationException");
        m.put("describeProducers", "TopicAuthorizationException");
        m.put("listGroups", "ok []");
        m.put("describeConsumerGroups", "GroupAuthorizationException");
        m.put("listConsumerGroupOffsets", "GroupAuthorizationException");
        m.put("listTransactions", "ok []");
        m.put("describeTransactions", "TransactionalIdAuthorizationException");
        m.put("describeLogDirs", "ClusterAuthorizationException");
        m.put("describeUserScramCredentials", "ClusterAuthorizationException");
        m.put("describeClientQuotas", "ClusterAuthorizationException");
        m.put("listPartitionReassignments", "ClusterAuthorizationException");
        m.put("describeMetadataQuorum", "ClusterAuthorizationException");
        m.put("createPartitions", "TopicAuthorizationException");
        m.put("incrementalAlterConfigs topic", "TopicAuthorizationException");
        m.put("incrementalAlterConfigs broker", "ClusterAuthorizationException");
        m.put("alterClientQuotas", "ClusterAuthorizationException");
        m.put("alterUserScramCredentials", "ClusterAuthorizationException");
        m.put("electLeaders", "ClusterAuthorizationException");
        m.put("alterPartitionReassignments", "ClusterAuthorizationException");
        m.put("deleteRecords", "TopicAuthorizationException");
        m.put("alterConsumerGroupOffsets", "GroupAuthorizationException");
        m.put("deleteConsumerGroupOffsets", "GroupAuthorizationException");
        m.put("deleteConsumerGroups", "GroupAuthorizationException");
        m.put("fenceProducers", "TransactionalIdAuthorizationException");
        m.put("deleteTopics", "TopicAuthorizationException");
        return m;
    }

    static void compareProbe(String round, Map<String, String> expected, Map<String, String> got,
                             List<String> differences) {
        assertEquals(expected.keySet(), got.keySet(), round);
        expected.forEach((api, want) -> {
            String actual = got.get(api);
            if (actual.equals("UnsupportedVersionException") && want.endsWith("AuthorizationException")) {
                System.out.println("[AclTest] " + round + ": " + api + " is not supported by the broker (Kafka: "
                        + want + ")");
                return;
            }
            if (!actual.equals(want)) {
                differences.add(round + ": " + api + ": Kafka " + want + ", got " + actual);
            }
        });
    }

    /** What a principal may do, as DescribeCluster, Metadata and DescribeGroups say (include_*_authorized_operations). */
    static Map<String, String> probeAuthorizedOperations(Admin a, TopicPartition tp) {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("cluster", outcome(() -> new TreeSet<>(Clients.get(a.describeCluster(
                new org.apache.kafka.clients.admin.DescribeClusterOptions().includeAuthorizedOperations(true))
                .authorizedOperations()))));
        m.put("topic", outcome(() -> new TreeSet<>(Clients.get(a.describeTopics(List.of(tp.topic()),
                new org.apache.kafka.clients.admin.DescribeTopicsOptions().includeAuthorizedOperations(true))
                .allTopicNames()).get(tp.topic()).authorizedOperations())));
        m.put("group", outcome(() -> new TreeSet<>(Clients.get(a.describeConsumerGroups(List.of("g1"),
                new org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions().includeAuthorizedOperations(true))
                .describedGroups().get("g1")).authorizedOperations())));
        return m;
    }

    /** Calls each admin API; its outcome is "ok ..." (what bob may see) or the exception's class. */
    static Map<String, String> probeAdminApis(Admin a, TopicPartition tp) {
        String t = tp.topic();
        org.apache.kafka.common.config.ConfigResource topicRes =
                new org.apache.kafka.common.config.ConfigResource(org.apache.kafka.common.config.ConfigResource.Type.TOPIC, t);
        org.apache.kafka.common.config.ConfigResource brokerRes =
                new org.apache.kafka.common.config.ConfigResource(org.apache.kafka.common.config.ConfigResource.Type.BROKER, "0");
        Map<String, String> m = new LinkedHashMap<>();
        m.put("listTopics", outcome(() -> new TreeSet<>(Clients.get(a.listTopics().names()))));
        probeAuthorizedOperations(a, tp).forEach((k, v) -> m.put("authorizedOperations " + k, v));
        m.put("describeTopics", outcome(() -> Clients.get(a.describeTopics(List.of(t)).allTopicNames()).get(t)
                .partitions().size()));
        m.put("describeTopics missing", outcome(() -> Clients.get(a.describeTopics(List.of("no-such-topic"))
                .allTopicNames()).keySet()));
        m.put("listOffsets", outcome(() -> Clients.get(a.listOffsets(Map.of(tp, OffsetSpec.latest()))
                .partitionResult(tp)).offset()));
        m.put("describeConfigs topic", outcome(() -> Clients.get(a.describeConfigs(List.of(topicRes)).all())
                .size()));
        m.put("describeConfigs broker", outcome(() -> Clients.get(a.describeConfigs(List.of(brokerRes)).all())
                .size()));
        m.put("describeProducers", outcome(() -> Clients.get(a.describeProducers(List.of(tp)).partitionResult(tp))
                .activeProducers().size()));
        m.put("listGroups", outcome(() -> new TreeSet<>(Clients.get(a.listGroups().all()).stream()
                .map(g -> g.groupId()).toList())));
        m.put("describeConsumerGroups", outcome(() -> Clients.get(a.describeConsumerGroups(List.of("g1"))
                .describedGroups().get("g1")).groupState()));
        m.put("listConsumerGroupOffsets", outcome(() -> Clients.get(a.listConsumerGroupOffsets("g1")
                .partitionsToOffsetAndMetadata()).keySet()));
        m.put("listTransactions", outcome(() -> new TreeSet<>(Clients.get(a.listTransactions().all()).stream()
                .map(l -> l.transactionalId()).toList())));
        m.put("describeTransactions", outcome(() -> Clients.get(a.describeTransactions(List.of("tx-admin"))
                .description("tx-admin")).state()));
        m.put("describeLogDirs", outcome(() -> Clients.get(a.describeLogDirs(List.of(0)).allDescriptions())
                .keySet()));
        m.put("describeUserScramCredentials", outcome(() -> Clients.get(a.describeUserScramCredentials().users())
                .size()));
        m.put("describeClientQuotas", outcome(() -> Clients.get(a.describeClientQuotas(
                org.apache.kafka.common.quota.ClientQuotaFilter.all()).entities()).size()));
        m.put("listPartitionReassignments", outcome(() -> Clients.get(a.listPartitionReassignments().reassignments())
                .size()));
        m.put("describeMetadataQuorum", outcome(() -> Clients.get(a.describeMetadataQuorum().quorumInfo())
                .leaderId()));
        // Changes: refused, each of them, in both rounds.
        m.put("createPartitions", outcome(() -> Clients.get(a.createPartitions(Map.of(t,
                org.apache.kafka.clients.admin.NewPartitions.increaseTo(2))).all())));
        m.put("incrementalAlterConfigs topic", outcome(() -> Clients.get(a.incrementalAlterConfigs(Map.of(topicRes,
                List.of(new org.apache.kafka.clients.admin.AlterConfigOp(new org.apache.kafka.clients.admin.ConfigEntry(
                        "retention.ms", "1000"), org.apache.kafka.clients.admin.AlterConfigOp.OpType.SET)))).all())));
        m.put("incrementalAlterConfigs broker", outcome(() -> Clients.get(a.incrementalAlterConfigs(Map.of(brokerRes,
                List.of(new org.apache.kafka.clients.admin.AlterConfigOp(new org.apache.kafka.clients.admin.ConfigEntry(
                        "log.cleaner.threads", "2"), org.apache.kafka.clients.admin.AlterConfigOp.OpType.SET)))).all())));
        m.put("alterClientQuotas", outcome(() -> Clients.get(a.alterClientQuotas(List.of(
                new org.apache.kafka.common.quota.ClientQuotaAlteration(new org.apache.kafka.common.quota.ClientQuotaEntity(
                        Map.of("user", "bob")), List.of(new org.apache.kafka.common.quota.ClientQuotaAlteration.Op(
                                "producer_byte_rate", 1024.0))))).all())));
        m.put("alterUserScramCredentials", outcome(() -> Clients.get(a.alterUserScramCredentials(List.of(
                new org.apache.kafka.clients.admin.UserScramCredentialUpsertion("bob",
                        new org.apache.kafka.clients.admin.ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                        "hijacked"))).all())));
        m.put("electLeaders", outcome(() -> Clients.get(a.electLeaders(org.apache.kafka.common.ElectionType.PREFERRED,
                Set.of(tp)).all())));
        m.put("alterPartitionReassignments", outcome(() -> Clients.get(a.alterPartitionReassignments(Map.of(tp,
                java.util.Optional.of(new org.apache.kafka.clients.admin.NewPartitionReassignment(List.of(0))))).all())));
        m.put("deleteRecords", outcome(() -> Clients.get(a.deleteRecords(Map.of(tp,
                org.apache.kafka.clients.admin.RecordsToDelete.beforeOffset(1))).all())));
        m.put("alterConsumerGroupOffsets", outcome(() -> Clients.get(a.alterConsumerGroupOffsets("g1",
                Map.of(tp, new OffsetAndMetadata(0))).all())));
        m.put("deleteConsumerGroupOffsets", outcome(() -> Clients.get(a.deleteConsumerGroupOffsets("g1",
                Set.of(tp)).all())));
        m.put("deleteConsumerGroups", outcome(() -> Clients.get(a.deleteConsumerGroups(List.of("g1")).all())));
        m.put("fenceProducers", outcome(() -> Clients.get(a.fenceProducers(List.of("tx-admin")).all())));
        m.put("deleteTopics", outcome(() -> Clients.get(a.deleteTopics(List.of(t)).all())));
        return m;
    }

    static String outcome(java.util.concurrent.Callable<?> call) {
        try {
            return "ok " + call.call();
        } catch (Exception e) {
            return e.getClass().getSimpleName();
        }
    }

    /**
     * CreateAcls validates as Kafka, DescribeAcls' filters (ANY, MATCH, PREFIXED, principal, host, operation)
     * select what Kafka's select, DeleteAcls answers each filter with all it matched (an ACL two filters match in
     * both answers), and the operations a set of ACLs authorizes (implied DESCRIBE and DESCRIBE_CONFIGS, ALL, DENY
     * winning) are Kafka's. The expected outcomes are Apache Kafka 4.4's.
     */
    @Test
    void aclApisValidateFilterAndImplyAsKafka() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin");
             Admin bob = broker.admin("bob")) {
            Clients.createTopic(admin, ORDERS, 1);
            Map<String, String> got = new LinkedHashMap<>();
            Map<String, String> expected = new LinkedHashMap<>();
            String invalid = "InvalidRequestException";
            AclBinding otherType = allow("Group:devs", topic("t2"), AclOperation.READ);
            AclBinding anyHost = new AclBinding(topic("t3"), new AccessControlEntry("User:bob", "not-an-address",
                    AclOperation.READ, AclPermissionType.ALLOW));
            AclBinding prefixedStar = allow("User:bob", new ResourcePattern(ResourceType.TOPIC, "*", PatternType.PREFIXED),
                    AclOperation.READ);
            AclBinding foreignOp = allow("User:bob", transactionalId("tx"), AclOperation.READ);
            AclBinding user = allow("User:bob", new ResourcePattern(ResourceType.USER, "User:carol", PatternType.LITERAL),
                    AclOperation.CREATE_TOKENS);
            AclBinding token = allow("User:bob", new ResourcePattern(ResourceType.DELEGATION_TOKEN, "token-1",
                    PatternType.LITERAL), AclOperation.DESCRIBE);
            Map<String, AclBinding> creations = new LinkedHashMap<>();
            creations.put("cluster named other", allow("User:bob",
                    new ResourcePattern(ResourceType.CLUSTER, "other", PatternType.LITERAL), AclOperation.ALTER));
            creations.put("empty topic name", allow("User:bob", topic(""), AclOperation.READ));
            creations.put("principal without type", allow("bob", topic("t1"), AclOperation.READ));
            creations.put("principal of another type", otherType);
            creations.put("any host string", anyHost);
            creations.put("prefixed star", prefixedStar);
            creations.put("operation foreign to the resource", foreignOp);
            creations.put("user resource", user);
            creations.put("delegation token resource", token);
            creations.forEach((name, binding) -> {
                got.put("create " + name, outcome(() -> Clients.get(admin.createAcls(List.of(binding)).all())));
                expected.put("create " + name, List.of("cluster named other", "empty topic name",
                        "principal without type").contains(name) ? invalid : "ok null");
            });
            // Kafka takes a PREFIXED "*" (topics whose name starts with a star); removed again, so that what
            // follows does not depend on it.
            Clients.get(admin.deleteAcls(List.of(prefixedStar.toFilter())).all());
            // The ACLs the filters below select from.
            AclBinding aliceReadsOrders = allow("User:alice", topic(ORDERS), AclOperation.READ);
            AclBinding aliceDescribesAll = allow("User:alice", topic("*"), AclOperation.DESCRIBE);
            AclBinding aliceWritesOrd = allow("User:alice", new ResourcePattern(ResourceType.TOPIC, "ord",
                    PatternType.PREFIXED), AclOperation.WRITE);
            AclBinding aliceDeletesOrdersPrefix = allow("User:alice", new ResourcePattern(ResourceType.TOPIC, ORDERS,
                    PatternType.PREFIXED), AclOperation.DELETE);
            AclBinding aliceDeniedG1 = new AclBinding(group("g1"), new AccessControlEntry("User:alice", "127.0.0.1",
                    AclOperation.READ, AclPermissionType.DENY));
            List<AclBinding> fixed = List.of(aliceReadsOrders, aliceDescribesAll, aliceWritesOrd,
                    aliceDeletesOrdersPrefix, aliceDeniedG1);
            grant(admin, fixed.toArray(new AclBinding[0]));

            Map<String, AclBindingFilter> filters = new LinkedHashMap<>();
            filters.put("topics", new AclBindingFilter(new ResourcePatternFilter(ResourceType.TOPIC, null,
                    PatternType.ANY), AccessControlEntryFilter.ANY));
            expected.put("describe topics", sortedBindings(aliceDescribesAll, aliceWritesOrd,
                    aliceReadsOrders, aliceDeletesOrdersPrefix, otherType, anyHost));
            filters.put("named orders, any pattern", new AclBindingFilter(new ResourcePatternFilter(ResourceType.TOPIC,
                    ORDERS, PatternType.ANY), AccessControlEntryFilter.ANY));
            expected.put("describe named orders, any pattern", sortedBindings(aliceReadsOrders,
                    aliceDeletesOrdersPrefix));
            filters.put("matching orders", new AclBindingFilter(new ResourcePatternFilter(ResourceType.TOPIC,
                    ORDERS, PatternType.MATCH), AccessControlEntryFilter.ANY));
            expected.put("describe matching orders", sortedBindings(aliceDescribesAll, aliceWritesOrd,
                    aliceReadsOrders, aliceDeletesOrdersPrefix));
            filters.put("matching order", new AclBindingFilter(new ResourcePatternFilter(ResourceType.TOPIC,
                    "order", PatternType.MATCH), AccessControlEntryFilter.ANY));
            expected.put("describe matching order", sortedBindings(aliceDescribesAll, aliceWritesOrd));
            filters.put("prefixed", new AclBindingFilter(new ResourcePatternFilter(ResourceType.ANY, null,
                    PatternType.PREFIXED), AccessControlEntryFilter.ANY));
            expected.put("describe prefixed", sortedBindings(aliceWritesOrd, aliceDeletesOrdersPrefix));
            filters.put("literal star", new AclBindingFilter(new ResourcePatternFilter(ResourceType.TOPIC, "*",
                    PatternType.LITERAL), AccessControlEntryFilter.ANY));
            expected.put("describe literal star", sortedBindings(aliceDescribesAll));
            filters.put("host 127.0.0.1", new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(null, "127.0.0.1", AclOperation.ANY, AclPermissionType.ANY)));
            expected.put("describe host 127.0.0.1", sortedBindings(aliceDeniedG1));
            AclBindingFilter reads = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(null, null, AclOperation.READ, AclPermissionType.ANY));
            filters.put("operation READ", reads);
            AclBinding[] readBindings = {aliceDeniedG1, aliceReadsOrders, otherType, anyHost, foreignOp};
            expected.put("describe operation READ", sortedBindings(readBindings));
            AclBindingFilter alices = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter("User:alice", null, AclOperation.ANY, AclPermissionType.ANY));
            filters.put("principal User:alice", alices);
            expected.put("describe principal User:alice", sortedBindings(fixed.toArray(new AclBinding[0])));
            filters.forEach((name, f) -> got.put("describe " + name, outcome(() -> describeAclsSorted(admin, f))));

            // What alice and bob may do on the topic (KIP-430's authorized operations, from the authorizer).
            try (Admin alice = broker.admin("alice")) {
                got.put("alice on orders", outcome(() -> topicOperations(alice)));
                expected.put("alice on orders", "ok [READ, WRITE, DELETE, DESCRIBE]");
            }
            grant(admin, allow("User:bob", topic(ORDERS), AclOperation.ALL),
                    new AclBinding(topic(ORDERS), new AccessControlEntry("User:bob", "*", AclOperation.WRITE,
                            AclPermissionType.DENY)));
            got.put("bob on orders", outcome(() -> topicOperations(bob)));
            expected.put("bob on orders", "ok [READ, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]");

            // DeleteAcls: two overlapping filters, each answered with all it matched.
            got.put("delete overlapping", outcome(() -> {
                var result = admin.deleteAcls(List.of(reads, alices)).values();
                List<String> out = new ArrayList<>();
                for (AclBindingFilter f : List.of(reads, alices)) {
                    out.add(Clients.get(result.get(f)).values().stream()
                            .map(v -> v.exception() != null ? v.exception().getClass().getSimpleName()
                                    : v.binding().toString()).sorted().toList().toString());
                }
                return out;
            }));
            expected.put("delete overlapping", "ok [" + sortedBindings(readBindings).substring(3) + ", "
                    + sortedBindings(fixed.toArray(new AclBinding[0])).substring(3) + "]");
            got.put("after delete", outcome(() -> describeAclsSorted(admin, AclBindingFilter.ANY)));
            expected.put("after delete", sortedBindings(token, allow("User:bob", topic(ORDERS), AclOperation.ALL),
                    new AclBinding(topic(ORDERS), new AccessControlEntry("User:bob", "*", AclOperation.WRITE,
                            AclPermissionType.DENY)), user));
            List<String> differences = new ArrayList<>();
            expected.forEach((k, v) -> {
                if (!v.equals(got.get(k))) {
                    differences.add(k + ":\n    Kafka: " + v + "\n    got:   " + got.get(k));
                }
            });
            assertEquals("", String.join("\n", differences), "outcomes that differ from Apache Kafka's");
        }
    }

    static String sortedBindings(AclBinding... bindings) {
        return "ok " + Arrays.stream(bindings).map(AclBinding::toString).sorted().toList();
    }

    static Set<AclOperation> topicOperations(Admin a) {
        return new TreeSet<>(Clients.get(a.describeTopics(List.of(ORDERS),
                new org.apache.kafka.clients.admin.DescribeTopicsOptions().includeAuthorizedOperations(true))
                .allTopicNames()).get(ORDERS).authorizedOperations());
    }

    static List<String> describeAclsSorted(Admin admin, AclBindingFilter f) {
        return Clients.get(admin.describeAcls(f).values()).stream().map(AclBinding::toString).sorted().toList();
    }

    // =================================================================== 6. kafka-configs (SCRAM users)

    /**
     * kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=x]' --entity-type users --entity-name carol:
     * refused for bob (AlterUserScramCredentials needs ALTER on the cluster), carol then cannot log in; done by
     * admin, carol logs in with that password.
     */
    @Test
    void kafkaConfigsScramUserNeedsClusterAlter() throws Exception {
        try (SecureBroker broker = SecureBroker.start(); Admin admin = broker.admin("admin")) {
            String[] carol = {"--alter", "--add-config", "SCRAM-SHA-256=[password=x]", "--entity-type", "users",
                    "--entity-name", "carol"};
            Cli.Result asBob = Cli.run(CONFIGS, concat(new String[] {"--bootstrap-server", broker.sasl,
                    "--command-config", broker.commandConfig("bob").toString()}, carol));
            assertNotEquals(0, asBob.exitCode(), asBob.toString());
            assertTrue((asBob.out() + asBob.err()).contains("ClusterAuthorizationException"), asBob.toString());
            assertFalse(Clients.get(admin.describeUserScramCredentials().users()).contains("carol"),
                    "bob's refused change made no credential");
            try (Admin c = carolAdmin(broker, "x")) {
                assertInstanceOf(SaslAuthenticationException.class,
                        Clients.failure(c.describeCluster().clusterId(), DEADLINE));
            }

            Cli.Result asAdmin = Cli.run(CONFIGS, concat(new String[] {"--bootstrap-server", broker.sasl,
                    "--command-config", broker.commandConfig("admin").toString()}, carol));
            assertEquals(0, asAdmin.exitCode(), asAdmin.toString());
            assertTrue(asAdmin.out().contains("Completed updating config for user carol."), asAdmin.toString());
            UserScramCredentialsDescription d = Clients.get(admin.describeUserScramCredentials(List.of("carol"))
                    .description("carol"));
            assertEquals(List.of(ScramMechanism.SCRAM_SHA_256),
                    d.credentialInfos().stream().map(i -> i.mechanism()).toList());
            // Kafka applies the credential from its metadata log: carol logs in once it arrived.
            String clusterId = Poll.until(DEADLINE, "carol to log in with her new password", () -> {
                try (Admin c = carolAdmin(broker, "x")) {
                    return c.describeCluster().clusterId().get(10, TimeUnit.SECONDS);
                }
            });
            assertEquals(Clients.get(admin.describeCluster().clusterId()), clusterId);
        }
    }

    static Admin carolAdmin(SecureBroker broker, String password) {
        Map<String, Object> c = new HashMap<>(broker.login("carol", password, "SASL_PLAINTEXT"));
        c.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 15000);
        c.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        return Clients.admin(broker.sasl, c);
    }

    // =================================================================== helpers

    static ProducerRecord<byte[], byte[]> record(String topic, String value) {
        return new ProducerRecord<>(topic, 0, null, value.getBytes(StandardCharsets.UTF_8));
    }

    static ResourcePattern topic(String name) {
        return new ResourcePattern(ResourceType.TOPIC, name, PatternType.LITERAL);
    }

    static ResourcePattern group(String name) {
        return new ResourcePattern(ResourceType.GROUP, name, PatternType.LITERAL);
    }

    static ResourcePattern transactionalId(String name) {
        return new ResourcePattern(ResourceType.TRANSACTIONAL_ID, name, PatternType.LITERAL);
    }

    static AclBinding allow(String principal, ResourcePattern pattern, AclOperation op) {
        return new AclBinding(pattern, new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW));
    }

    /**
     * Creates the ACLs and waits until DescribeAcls (answered from the broker's authorizer) lists them: Kafka's
     * controller commits them, its broker applies them from the metadata log a moment later.
     */
    static void grant(Admin admin, AclBinding... bindings) {
        Clients.get(admin.createAcls(List.of(bindings)).all());
        Set<AclBinding>[] last = new Set[1];
        try {
            Poll.untilTrue(DEADLINE, "the ACLs " + Arrays.toString(bindings) + " listed", () -> {
                last[0] = Set.copyOf(Clients.get(admin.describeAcls(AclBindingFilter.ANY).values()));
                return last[0].containsAll(List.of(bindings));
            });
        } catch (AssertionError e) {
            throw new AssertionError("created " + Arrays.toString(bindings) + ", describeAcls lists " + last[0], e);
        }
    }

    static long endOffset(Admin admin, TopicPartition tp) {
        return Clients.get(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp)).offset();
    }

    static void produceAsAdmin(SecureBroker broker, int n) throws Exception {
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(broker.sasl, broker.login("admin"))) {
            for (int i = 0; i < n; i++) {
                p.send(record(ORDERS, "admin-" + i)).get(30, TimeUnit.SECONDS);
            }
        }
    }

    /** The exception the send future completes with (fails if the send succeeds or hangs). */
    static Throwable sendFailure(KafkaProducer<byte[], byte[]> p, ProducerRecord<byte[], byte[]> r) {
        try {
            RecordMetadata md = p.send(r).get(60, TimeUnit.SECONDS);
            throw new AssertionError("the send succeeded: " + md);
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (java.util.concurrent.TimeoutException e) {
            throw new AssertionError("the send future did not complete within 60 s", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** Polls until poll() throws; that exception must be a {@code type} (and no record may arrive before). */
    static <T extends Exception> T pollUntilThrows(KafkaConsumer<byte[], byte[]> consumer, Class<T> type) {
        long deadline = System.nanoTime() + DEADLINE.toNanos();
        while (System.nanoTime() < deadline) {
            ConsumerRecords<byte[], byte[]> got;
            try {
                got = consumer.poll(Duration.ofMillis(200));
            } catch (Exception e) {
                if (type.isInstance(e)) {
                    return type.cast(e);
                }
                throw new AssertionError("poll threw " + e + ", expected a " + type.getSimpleName(), e);
            }
            if (!got.isEmpty()) {
                throw new AssertionError("consumed " + got.count() + " records, expected a " + type.getSimpleName());
            }
        }
        throw new AssertionError("poll did not throw a " + type.getSimpleName() + " within " + DEADLINE);
    }

    static String[] concat(String[] a, String... b) {
        String[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    // =================================================================== the broker

    /**
     * A broker with PLAINTEXT, SASL_PLAINTEXT and SASL_SSL listeners (SCRAM-SHA-256), the ACL authorizer and
     * User:admin a super user: Karnak, or Apache Kafka with -Dcompat.against=kafka.
     */
    static final class SecureBroker implements AutoCloseable {
        final Path dir;
        final Path certs;
        /** host:port of the SASL_PLAINTEXT listener. */
        final String sasl;
        /** host:port of the SASL_SSL listener. */
        final String saslSsl;
        /** host:port of the PLAINTEXT listener (User:ANONYMOUS). */
        final String plaintext;
        private final Karnak karnak;
        private final KafkaWithAcls kafka;

        private SecureBroker(Path dir, Path certs, String sasl, String saslSsl, String plaintext, Karnak karnak,
                             KafkaWithAcls kafka) {
            this.dir = dir;
            this.certs = certs;
            this.sasl = sasl;
            this.saslSsl = saslSsl;
            this.plaintext = plaintext;
            this.karnak = karnak;
            this.kafka = kafka;
        }

        static SecureBroker start() throws Exception {
            return start(false);
        }

        static SecureBroker start(boolean allowEveryoneIfNoAclFound) throws Exception {
            Path certs = TlsTest.certificates();
            int[] ports = Karnak.freePorts(3);
            String sasl = "127.0.0.1:" + ports[0];
            String saslSsl = "127.0.0.1:" + ports[1];
            if (Karnak.againstKafka()) {
                KafkaWithAcls k = new KafkaWithAcls(certs, ports[0], ports[1], ports[2], allowEveryoneIfNoAclFound);
                return new SecureBroker(certs, certs, sasl, saslSsl, "127.0.0.1:" + ports[2], null, k);
            }
            Path users = certs.resolve("users.txt");
            Files.writeString(users, PASSWORDS.entrySet().stream().map(e -> e.getKey() + ":" + e.getValue())
                    .sorted().collect(Collectors.joining("\n", "", "\n")));
            Karnak k = Karnak.start(
                    "--listeners", "PLAINTEXT://127.0.0.1:${kafka},SASL_PLAINTEXT://" + sasl + ",SASL_SSL://" + saslSsl,
                    "--ssl-certificate-file", certs.resolve("server.pem").toString(),
                    "--ssl-key-file", certs.resolve("server.key").toString(),
                    "--sasl-users-file", users.toString(),
                    "--sasl-enabled-mechanisms", MECHANISM,
                    "--authorizer", "acl",
                    "--super-users", "User:admin",
                    "--allow-everyone-if-no-acl-found", Boolean.toString(allowEveryoneIfNoAclFound));
            return new SecureBroker(certs, certs, sasl, saslSsl, k.bootstrap(), k, null);
        }

        String bootstrap(String protocol) {
            return protocol.equals("SASL_SSL") ? saslSsl : sasl;
        }

        Map<String, Object> login(String user) {
            return login(user, "SASL_PLAINTEXT");
        }

        Map<String, Object> login(String user, String protocol) {
            return login(user, PASSWORDS.get(user), protocol);
        }

        Map<String, Object> login(String user, String password, String protocol) {
            return Clients.scramLogin(MECHANISM, user, password, protocol, certs.resolve("ca.pem"));
        }

        Admin admin(String user) {
            return Clients.admin(sasl, login(user));
        }

        /** A client properties file logging {@code user} in over SASL_PLAINTEXT (the tools' --command-config). */
        Path commandConfig(String user) throws IOException {
            return Clients.propertiesFile(dir.resolve(user + ".properties"), login(user));
        }

        @Override
        public void close() {
            if (karnak != null) {
                karnak.close();
            }
            if (kafka != null) {
                kafka.close();
            }
        }
    }

    /**
     * Apache Kafka (combined broker and controller, its own JVM) set up as {@link SecureBroker#start()} sets up
     * Karnak: SCRAM users made by kafka-storage format --add-scram, StandardAuthorizer, super.users. The broker
     * talks to itself (transaction markers) over SASL_PLAINTEXT and registers with its controller over SASL PLAIN,
     * both as admin.
     */
    static final class KafkaWithAcls implements AutoCloseable {
        private final SaslKafka kafka;

        KafkaWithAcls(Path certs, int saslPort, int sslPort, int plainPort, boolean allowEveryoneIfNoAclFound)
                throws Exception {
            int controllerPort = Karnak.freePorts(1)[0];
            Path root = Paths.get(System.getProperty("karnak.test.dir", "target/karnak-test")).toAbsolutePath();
            Files.createDirectories(root);
            Path dir = Files.createTempDirectory(root, "apache-kafka-acl-");
            Path keystore = dir.resolve("server-keystore.pem");
            Files.writeString(keystore, Files.readString(certs.resolve("server.key"))
                    + Files.readString(certs.resolve("server.pem")));
            String scram = "org.apache.kafka.common.security.scram.ScramLoginModule required";
            Path props = dir.resolve("server.properties");
            Files.writeString(props, String.join("\n", List.of(
                    "process.roles=broker,controller",
                    "node.id=0",
                    "controller.quorum.voters=0@127.0.0.1:" + controllerPort,
                    "listeners=PLAINTEXT://127.0.0.1:" + plainPort + ",SASL_PLAINTEXT://127.0.0.1:" + saslPort
                            + ",SASL_SSL://127.0.0.1:" + sslPort + ",CONTROLLER://127.0.0.1:" + controllerPort,
                    "advertised.listeners=PLAINTEXT://127.0.0.1:" + plainPort + ",SASL_PLAINTEXT://127.0.0.1:"
                            + saslPort + ",SASL_SSL://127.0.0.1:" + sslPort,
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                            + "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
                    // The broker registers with its controller as User:admin (SASL PLAIN on that listener only).
                    "sasl.mechanism.controller.protocol=PLAIN",
                    "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                    "listener.name.controller.plain.sasl.jaas.config="
                            + "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" "
                            + "password=\"" + PASSWORDS.get("admin") + "\" user_admin=\"" + PASSWORDS.get("admin")
                            + "\";",
                    "inter.broker.listener.name=SASL_PLAINTEXT",
                    "sasl.enabled.mechanisms=" + MECHANISM,
                    "sasl.mechanism.inter.broker.protocol=" + MECHANISM,
                    "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=" + scram
                            + " username=\"admin\" password=\"" + PASSWORDS.get("admin") + "\";",
                    "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=" + scram + ";",
                    "ssl.keystore.type=PEM",
                    "ssl.keystore.location=" + keystore,
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "super.users=User:admin",
                    "allow.everyone.if.no.acl.found=" + allowEveryoneIfNoAclFound,
                    "log.dirs=" + dir.resolve("data"),
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "group.consumer.min.heartbeat.interval.ms=500",
                    "group.consumer.heartbeat.interval.ms=500",
                    "")), StandardCharsets.UTF_8);
            kafka = new SaslKafka(dir, props, MECHANISM, PASSWORDS, saslPort, "ACLs");
        }

        @Override
        public void close() {
            kafka.close();
        }
    }
}
