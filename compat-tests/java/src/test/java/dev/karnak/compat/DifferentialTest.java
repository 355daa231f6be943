package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

import dev.karnak.compat.harness.ApacheKafka;
import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.Timeout;

/**
 * Differential tests: the same scenario against the Apache Kafka oracle and against Karnak; what a client
 * observes is reduced to an ordered map of facts and the two maps must be equal. A failure lists every fact
 * that differs (key: Kafka=... Karnak=...).
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class DifferentialTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker("--group-consumer-heartbeat-interval-ms", "500");
    static ApacheKafka kafka;

    @BeforeAll
    static void start() {
        kafka = ApacheKafka.get();
        // Same group settings as the oracle (see ApacheKafka): KIP-848 heartbeat interval 500 ms.
    }


    /** Runs the scenario on both brokers and compares the observations. */
    static void compare(String scenario, Function<String, Map<String, String>> run) {
        Map<String, String> expected = run.apply(kafka.bootstrap());
        Map<String, String> actual = run.apply(karnak.bootstrap());
        Set<String> keys = new TreeSet<>(expected.keySet());
        keys.addAll(actual.keySet());
        List<String> diffs = new ArrayList<>();
        for (String k : keys) {
            String e = expected.get(k);
            String a = actual.get(k);
            if (e == null ? a != null : !e.equals(a)) {
                diffs.add("  " + k + ": Kafka=" + e + " | Karnak=" + a);
            }
        }
        StringBuilder sb = new StringBuilder("[diff] " + scenario + ": ");
        sb.append(diffs.isEmpty() ? "same (" + expected.size() + " facts)" : diffs.size() + " difference(s)");
        System.out.println(sb);
        diffs.forEach(System.out::println);
        if (!diffs.isEmpty()) {
            fail(scenario + ": Karnak differs from Apache Kafka " + kafkaVersion() + " in " + diffs.size()
                    + " fact(s):\n" + String.join("\n", diffs));
        }
    }

    static String kafkaVersion() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getVersion();
    }

    /** "ok" or the exception's simple class name, plus whether it carries a message. */
    static String outcome(KafkaFuture<?> f) {
        try {
            f.get(30, TimeUnit.SECONDS);
            return "ok";
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            String msg = c.getMessage();
            return c.getClass().getSimpleName() + (msg == null || msg.isBlank() ? " (no message)" : " (message)");
        } catch (Exception e) {
            return "client-side " + e.getClass().getSimpleName();
        }
    }

    static String message(KafkaFuture<?> f) {
        try {
            f.get(30, TimeUnit.SECONDS);
            return "";
        } catch (Exception e) {
            return String.valueOf(e.getCause() != null ? e.getCause().getMessage() : e.getMessage());
        }
    }

    // ---------------------------------------------------------------- scenarios

    @Test
    void createTopicsErrors() {
        compare("createTopics errors", bootstrap -> {
            Map<String, String> o = new LinkedHashMap<>();
            try (Admin admin = Clients.admin(bootstrap)) {
                String t = Clients.unique("diff-ct");
                o.put("create", outcome(admin.createTopics(List.of(new NewTopic(t, 1, (short) 1))).all()));
                Map<String, NewTopic> cases = new LinkedHashMap<>();
                cases.put("existing topic", new NewTopic(t, 1, (short) 1));
                cases.put("0 partitions", new NewTopic(Clients.unique("diff-ct"), 0, (short) 1));
                cases.put("-5 partitions", new NewTopic(Clients.unique("diff-ct"), -5, (short) 1));
                cases.put("replication factor 3", new NewTopic(Clients.unique("diff-ct"), 1, (short) 3));
                cases.put("replication factor 0", new NewTopic(Clients.unique("diff-ct"), 1, (short) 0));
                cases.put("unknown config", new NewTopic(Clients.unique("diff-ct"), 1, (short) 1)
                        .configs(Map.of("no.such.config", "1")));
                cases.put("bad config value", new NewTopic(Clients.unique("diff-ct"), 1, (short) 1)
                        .configs(Map.of("retention.ms", "abc")));
                cases.put("bad cleanup.policy", new NewTopic(Clients.unique("diff-ct"), 1, (short) 1)
                        .configs(Map.of("cleanup.policy", "shred")));
                cases.put("invalid name", new NewTopic("bad name!", 1, (short) 1));
                cases.put("name of 250 chars", new NewTopic("n".repeat(250), 1, (short) 1));
                cases.put("name '..'", new NewTopic("..", 1, (short) 1));
                for (var c : cases.entrySet()) {
                    var f = admin.createTopics(List.of(c.getValue())).all();
                    o.put(c.getKey(), outcome(f));
                    System.out.println("[diff] " + bootstrap + " createTopics " + c.getKey() + ": " + message(f));
                }
                o.put("validateOnly existing", outcome(admin.createTopics(List.of(new NewTopic(t, 1, (short) 1)),
                        new CreateTopicsOptions().validateOnly(true)).all()));
                o.put("validateOnly 0 partitions", outcome(admin.createTopics(
                        List.of(new NewTopic(Clients.unique("diff-ct"), 0, (short) 1)),
                        new CreateTopicsOptions().validateOnly(true)).all()));
            }
            return o;
        });
    }

    static final long T0 = 1_700_000_000_000L;

    /** Part of what ListOffsets answers: "offset", "timestamp" or "leaderEpoch". */
    enum Part { OFFSET_AND_TIMESTAMP, LEADER_EPOCH }

    static void listOffsetsScenario(String name, Part part, boolean maxTimestamp) {
        compare("listOffsets after producing 10 records: " + name, bootstrap -> {
            Map<String, String> o = new LinkedHashMap<>();
            String topic = Clients.unique("diff-lo");
            TopicPartition tp = new TopicPartition(topic, 0);
            try (Admin admin = Clients.admin(bootstrap)) {
                Clients.createTopic(admin, topic, 1);
                Map<String, OffsetSpec> specs = new LinkedHashMap<>();
                if (maxTimestamp) {
                    specs.put("maxTimestamp", OffsetSpec.maxTimestamp());
                } else {
                    specs.put("earliest", OffsetSpec.earliest());
                    specs.put("latest", OffsetSpec.latest());
                    specs.put("forTimestamp(T0-1)", OffsetSpec.forTimestamp(T0 - 1));
                    specs.put("forTimestamp(T0+3500)", OffsetSpec.forTimestamp(T0 + 3500));
                    specs.put("forTimestamp(T0+200000)", OffsetSpec.forTimestamp(T0 + 200_000));
                }
                for (var s : specs.entrySet()) {
                    o.put("empty " + s.getKey(), describe(admin, tp, s.getValue(), part));
                }
                try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, Map.of())) {
                    for (int i = 0; i < 10; i++) {
                        long ts = i == 6 ? T0 + 100_000 : T0 + 1000L * i;
                        p.send(new ProducerRecord<>(topic, 0, ts, null, ("v" + i).getBytes(StandardCharsets.UTF_8)));
                    }
                    p.flush();
                }
                for (var s : specs.entrySet()) {
                    o.put("10 records " + s.getKey(), describe(admin, tp, s.getValue(), part));
                }
            }
            return o;
        });
    }

    @Test
    void listOffsetsAfterProducing() {
        listOffsetsScenario("earliest, latest, forTimestamp", Part.OFFSET_AND_TIMESTAMP, false);
    }

    /** The offset of the record with the max timestamp, not its batch's last offset (KAFKA-16310). */
    @Test
    void listOffsetsMaxTimestamp() {
        listOffsetsScenario("maxTimestamp", Part.OFFSET_AND_TIMESTAMP, true);
    }

    /** The leader epoch of the found offset (0 on a new single-node topic). */
    @Test
    void listOffsetsLeaderEpoch() {
        listOffsetsScenario("leader epochs", Part.LEADER_EPOCH, false);
    }

    static String describe(Admin admin, TopicPartition tp, OffsetSpec spec, Part part) {
        try {
            ListOffsetsResultInfo i = admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get(30, TimeUnit.SECONDS);
            if (part == Part.LEADER_EPOCH) {
                return "leaderEpoch=" + i.leaderEpoch().map(String::valueOf).orElse("none");
            }
            return "offset=" + i.offset() + " ts=" + (i.timestamp() >= T0 ? "T0+" + (i.timestamp() - T0) : i.timestamp());
        } catch (Exception e) {
            return "error " + (e.getCause() != null ? e.getCause() : e).getClass().getSimpleName();
        }
    }

    static final List<String> COMMON_TOPIC_CONFIGS = List.of(
            "cleanup.policy", "compression.type", "delete.retention.ms", "file.delete.delay.ms", "flush.messages",
            "flush.ms", "index.interval.bytes", "max.compaction.lag.ms", "max.message.bytes",
            "message.timestamp.after.max.ms", "message.timestamp.before.max.ms", "message.timestamp.type",
            "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas", "preallocate",
            "retention.bytes", "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms",
            "segment.ms", "unclean.leader.election.enable");

    static Map<String, ConfigEntry> topicConfigs(Admin admin, String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config c = admin.describeConfigs(List.of(r)).all().get(30, TimeUnit.SECONDS).get(r);
        Map<String, ConfigEntry> m = new LinkedHashMap<>();
        c.entries().forEach(e -> m.put(e.name(), e));
        return m;
    }

    static void describeConfigsScenario(String name, Function<ConfigEntry, String> fact, List<String> configs) {
        compare("describeConfigs of a new topic: " + name, bootstrap -> {
            Map<String, String> o = new LinkedHashMap<>();
            String topic = Clients.unique("diff-dc");
            try (Admin admin = Clients.admin(bootstrap)) {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1)
                        .configs(Map.of("retention.ms", "3600000", "cleanup.policy", "compact"))))
                        .all().get(30, TimeUnit.SECONDS);
                // Kafka answers CreateTopics once its controller committed the topic; the broker that serves
                // DescribeConfigs may not have it yet (UNKNOWN_TOPIC_OR_PARTITION): wait for it on both sides.
                Clients.awaitLeaders(admin, topic, 1);
                Map<String, ConfigEntry> m = topicConfigs(admin, topic);
                for (String c : configs) {
                    ConfigEntry e = m.get(c);
                    o.put(c, e == null ? "absent" : fact.apply(e));
                }
            } catch (Exception e) {
                o.put("error", e.toString());
            }
            return o;
        });
    }

    /**
     * Values, sources and flags of the common topic configs, except min.insync.replicas's source: Kafka 4.4
     * (ELR enabled at format) keeps a cluster-level min.insync.replicas, so it shows
     * DYNAMIC_DEFAULT_BROKER_CONFIG; that is compared in describeConfigsOfNewTopicTypes.
     */
    @Test
    void describeConfigsOfNewTopicCommonConfigs() {
        describeConfigsScenario("values and sources", e -> e.name().equals("min.insync.replicas")
                ? "value=" + e.value() : "value=" + e.value() + " source=" + e.source() + " default=" + e.isDefault()
                + " readOnly=" + e.isReadOnly() + " sensitive=" + e.isSensitive(), COMMON_TOPIC_CONFIGS);
    }

    /**
     * Config types (DescribeConfigs v3+). min.insync.replicas's source differs on purpose: Kafka 4.4's storage
     * format writes a cluster-level min.insync.replicas (for ELR), so Kafka reports DYNAMIC_DEFAULT_BROKER_CONFIG;
     * a Karnak broker has no cluster-level value until one is set, so it reports DEFAULT_CONFIG.
     */
    @Test
    void describeConfigsOfNewTopicTypes() {
        describeConfigsScenario("types", e -> "type=" + e.type(), COMMON_TOPIC_CONFIGS);
    }

    @Test
    void describeConfigsOfNewTopicConfigNames() {
        compare("describeConfigs of a new topic (set of config names)", bootstrap -> {
            Map<String, String> o = new LinkedHashMap<>();
            String topic = Clients.unique("diff-dcn");
            try (Admin admin = Clients.admin(bootstrap)) {
                Clients.createTopic(admin, topic, 1);
                for (String name : topicConfigs(admin, topic).keySet()) {
                    if (!name.startsWith("karnak.")) { // Karnak's own topic configs (SQL over topics)
                        o.put(name, "listed");
                    }
                }
            } catch (Exception e) {
                o.put("error", e.toString());
            }
            return o;
        });
    }

    static String groupState(Admin admin, String group) {
        try {
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)
                    .get(30, TimeUnit.SECONDS);
            String listed = "not listed";
            for (GroupListing l : admin.listGroups().all().get(30, TimeUnit.SECONDS)) {
                if (l.groupId().equals(group)) {
                    listed = "listed as " + l.type().map(Object::toString).orElse("?") + "/"
                            + l.groupState().map(Object::toString).orElse("?") + "/protocol=" + l.protocol();
                }
            }
            return "state=" + d.groupState() + " type=" + d.type() + " members=" + d.members().size()
                    + " assignor=" + d.partitionAssignor() + " simple=" + d.isSimpleConsumerGroup() + " " + listed;
        } catch (ExecutionException e) {
            return "error " + e.getCause().getClass().getSimpleName();
        } catch (Exception e) {
            return "error " + e;
        }
    }

    static void groupLifecycle(String protocol) {
        compare("consumer group state transitions (group.protocol=" + protocol + ")", bootstrap -> {
            Map<String, String> o = new LinkedHashMap<>();
            String topic = Clients.unique("diff-g");
            String group = Clients.unique("diff-g");
            try (Admin admin = Clients.admin(bootstrap)) {
                Clients.createTopic(admin, topic, 2);
                o.put("1 before any member", groupState(admin, group));
                try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, group,
                        Map.of(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol))) {
                    c.subscribe(List.of(topic));
                    Poll.untilTrue(Duration.ofSeconds(60), "assignment of 2 partitions", () -> {
                        c.poll(Duration.ofMillis(100));
                        return c.assignment().size() == 2;
                    });
                    o.put("2 one member assigned", groupState(admin, group));
                    c.commitSync(Map.of(new TopicPartition(topic, 0),
                            new org.apache.kafka.clients.consumer.OffsetAndMetadata(0)), Duration.ofSeconds(30));
                    o.put("3 after commit", groupState(admin, group));
                }
                o.put("4 after close", groupState(admin, group));
                o.put("5 delete", outcome(admin.deleteConsumerGroups(List.of(group)).all()));
                o.put("6 after delete", groupState(admin, group));
                o.put("7 delete again", outcome(admin.deleteConsumerGroups(List.of(group)).all()));
            }
            return o;
        });
    }

    @Test
    void groupStateTransitionsClassic() {
        groupLifecycle("classic");
    }

    @Test
    void groupStateTransitionsConsumerProtocol() {
        groupLifecycle("consumer");
    }

    @Test
    void consumerErrors() {
        compare("consumer errors", bootstrap -> {
            Map<String, String> o = new LinkedHashMap<>();
            String topic = Clients.unique("diff-ce");
            TopicPartition tp = new TopicPartition(topic, 0);
            try (Admin admin = Clients.admin(bootstrap)) {
                Clients.createTopic(admin, topic, 1);
            }
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, Map.of())) {
                p.send(new ProducerRecord<>(topic, 0, null, "x".getBytes(StandardCharsets.UTF_8)));
                p.flush();
            }
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, null,
                    Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none"))) {
                c.assign(List.of(tp));
                c.seek(tp, 100);
                String what = "no error";
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                while (System.nanoTime() < deadline) {
                    try {
                        c.poll(Duration.ofMillis(200));
                    } catch (RuntimeException e) {
                        what = e.getClass().getSimpleName();
                        break;
                    }
                }
                o.put("fetch beyond the end, auto.offset.reset=none", what);
            }
            // Kafka creates the topic asynchronously (partitionsFor may first answer no partitions); compare
            // whether it exists once created.
            String auto = Clients.unique("diff-auto");
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, null, Map.of());
                 Admin admin = Clients.admin(bootstrap)) {
                c.partitionsFor(auto, Duration.ofSeconds(10));
                String exists;
                try {
                    exists = Poll.until(Duration.ofSeconds(10), "auto-created topic", () ->
                            admin.listTopics().names().get(10, TimeUnit.SECONDS).contains(auto) ? "created" : null);
                    exists += ", " + Poll.until(Duration.ofSeconds(10), "its partitions", () -> {
                        var ps = c.partitionsFor(auto, Duration.ofSeconds(10));
                        return ps == null || ps.isEmpty() ? null : ps.size() + " partition(s)";
                    });
                } catch (AssertionError e) {
                    exists = "not created";
                }
                o.put("consumer partitionsFor unknown topic (allow.auto.create.topics=true)", exists);
            }
            return o;
        });
    }

    /**
     * Features Kafka 4.4 finalizes and Karnak leaves at level 0 on purpose: transaction.version (at 2 the Java
     * producer switches to KIP-890's implicit AddPartitionsToTxn, which Karnak does not serve), share.version (no
     * share groups), streams.version (no KIP-1071 streams groups).
     */
    static final Set<String> NOT_FINALIZED_BY_KARNAK = Set.of(
            "transaction.version", "share.version", "streams.version");

    @Test
    void describeFeaturesFinalized() {
        compare("describeFeatures (finalized feature names)", bootstrap -> {
            Map<String, String> o = new LinkedHashMap<>();
            try (Admin admin = Clients.admin(bootstrap)) {
                var f = admin.describeFeatures().featureMetadata().get(30, TimeUnit.SECONDS);
                f.finalizedFeatures().keySet().stream().filter(k -> !NOT_FINALIZED_BY_KARNAK.contains(k))
                        .forEach(k -> o.put("finalized " + k, "present"));
                o.put("epoch present", String.valueOf(f.finalizedFeaturesEpoch().isPresent()));
            } catch (Exception e) {
                o.put("error", e.toString());
            }
            return o;
        });
    }
}
