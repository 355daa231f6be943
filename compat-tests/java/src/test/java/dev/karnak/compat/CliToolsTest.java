package dev.karnak.compat;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.Predicate;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.karnak.compat.harness.ApacheKafka;
import dev.karnak.compat.harness.Cli;
import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Kafka 4.4.0's command-line tools, run in-process from their own jars (harness/Cli, the main classes the
 * kafka-*.sh scripts run), against Karnak AND against the Apache Kafka oracle. A scenario runs the same commands
 * (same topic and group names, unique per test) on both brokers; every step's exit code, stdout and stderr are
 * normalized (ids, timestamps, hosts/ports, sizes, column padding, stack frames) and the two transcripts must be
 * equal. A failure lists every step that differs with both outputs; the raw outputs are kept under
 * target/test-logs/cli-tools/{test}/.
 *
 * <p>Where Karnak differs ON PURPOSE, the normalizer of that step says why (applied to both brokers, always).
 * Where Karnak is WRONG, the step's normalizer goes through {@link Transcript#gap}: the default test masks that
 * detail (so the rest of the step is still compared), and the {@code ...Gaps} twin tagged {@link Gap#KARNAK_GAP}
 * runs the same scenario unmasked and fails until Karnak is fixed. Each gap's javadoc is the finding.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class CliToolsTest {
    static final String TOPICS = "org.apache.kafka.tools.TopicCommand";
    static final String GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    static final String CONFIGS = "org.apache.kafka.tools.ConfigCommand";
    static final String CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer";
    static final String CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer";
    static final String GET_OFFSETS = "org.apache.kafka.tools.GetOffsetShell";
    static final String DELETE_RECORDS = "org.apache.kafka.tools.DeleteRecordsCommand";
    static final String LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand";
    // kafka-transactions' main, closing the AdminClient the tool leaves open (see TransactionsCommandMain).
    static final String TRANSACTIONS = "dev.karnak.compat.harness.TransactionsCommandMain";
    static final String PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance";
    static final String REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    static final String LEADER_ELECTION = "org.apache.kafka.tools.LeaderElectionCommand";
    static final String CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance";

    /** How long a step waits for Apache Kafka to apply a change asynchronously (deletes, dynamic configs). */
    static final Duration DEADLINE = Duration.ofSeconds(30);

    // Same group settings as the oracle (see ApacheKafka): KIP-848 heartbeat interval 500 ms.
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker("--group-consumer-heartbeat-interval-ms", "500");
    static ApacheKafka kafka;

    private String testName;

    @BeforeAll
    static void oracle() {
        // -Dcompat.against=kafka makes "karnak" the oracle itself: a scenario would run twice on one broker.
        org.junit.jupiter.api.Assumptions.assumeFalse(dev.karnak.compat.harness.Karnak.againstKafka(),
                "CliToolsTest compares Karnak with the oracle; nothing to compare with -Dcompat.against=kafka");
        kafka = ApacheKafka.get();
    }

    @BeforeEach
    void name(TestInfo info) {
        testName = info.getTestMethod().map(m -> m.getName()).orElse("test");
    }

    // =================================================================== the findings (karnak-gap)

    // =================================================================== kafka-topics

    @Test
    void kafkaTopics() {
        compare(topicsScenario(), false);
    }

    BiConsumer<Side, Transcript> topicsScenario() {
        String t = Clients.unique("cli-topics");
        return (side, x) -> {
            String b = side.bootstrap();
            UnaryOperator<String> topicConfigs = then(normalizer(), CliToolsTest::withoutClusterMinIsr);
            x.run("create with --config", TOPICS, "--bootstrap-server", b, "--create", "--topic", t,
                    "--partitions", "3", "--replication-factor", "1", "--config", "retention.ms=3600000",
                    "--config", "max.message.bytes=200000", "--config", "cleanup.policy=compact");
            x.awaitLeaders(t, 3);
            x.run("create again: exists", then(normalizer(), UnaryOperator.identity()),
                    TOPICS, "--bootstrap-server", b, "--create", "--topic", t, "--partitions", "3");
            x.run("create --if-not-exists", TOPICS, "--bootstrap-server", b, "--create", "--topic", t,
                    "--partitions", "3", "--if-not-exists");
            x.run("create with a bad config value", firstLine(), TOPICS, "--bootstrap-server", b, "--create",
                    "--topic", t + "-bad", "--partitions", "1", "--config", "retention.ms=soon");
            x.run("create with an unknown config", firstLine(), TOPICS, "--bootstrap-server", b, "--create",
                    "--topic", t + "-bad", "--partitions", "1", "--config", "no.such.config=1");
            x.run("create with --partitions 0", firstLine(), TOPICS, "--bootstrap-server", b, "--create",
                    "--topic", t + "-bad", "--partitions", "0");
            x.run("list --topic", TOPICS, "--bootstrap-server", b, "--list", "--topic", t + ".*");
            x.run("describe", topicConfigs, TOPICS, "--bootstrap-server", b, "--describe", "--topic", t);
            x.run("describe --topics-with-overrides", topicConfigs, TOPICS, "--bootstrap-server", b,
                    "--describe", "--topics-with-overrides", "--topic", t);
            x.run("alter --partitions 5", TOPICS, "--bootstrap-server", b, "--alter", "--topic", t,
                    "--partitions", "5");
            x.awaitLeaders(t, 5);
            x.run("describe after alter", topicConfigs, TOPICS, "--bootstrap-server", b, "--describe", "--topic", t);
            x.run("alter --partitions 2: fewer", then(firstLine(), UnaryOperator.identity()),
                    TOPICS, "--bootstrap-server", b, "--alter", "--topic", t, "--partitions", "2");
            x.run("alter a missing topic", firstLine(), TOPICS, "--bootstrap-server", b, "--alter", "--topic",
                    t + "-missing", "--partitions", "2");
            x.run("delete", TOPICS, "--bootstrap-server", b, "--delete", "--topic", t);
            // Apache Kafka deletes asynchronously (the metadata propagates to the broker): poll the listing.
            x.runUntil("list after delete", r -> r.exitCode() == 0 && r.out().isBlank(), normalizer(),
                    TOPICS, "--bootstrap-server", b, "--list", "--topic", t + ".*");
            x.runUntil("describe a deleted topic", r -> r.exitCode() != 0, firstLine(),
                    TOPICS, "--bootstrap-server", b, "--describe", "--topic", t);
            x.run("delete a missing topic", firstLine(), TOPICS, "--bootstrap-server", b, "--delete", "--topic", t);
        };
    }

    /**
     * ON PURPOSE: Kafka 4.4's storage format writes a cluster-level min.insync.replicas=1 (for ELR, KIP-966), so
     * every Kafka topic reports it as a non-default (DYNAMIC_DEFAULT_BROKER_CONFIG) config, which kafka-topics
     * lists under "Configs:" and kafka-configs under the cluster default and in synonyms. Karnak keeps ELR's
     * minimum as its controller's --min-insync-replicas in the metadata, with no cluster-level config until one is
     * set (see DifferentialTest).
     */
    static String withoutClusterMinIsr(String s) {
        return s.replace("Configs: min.insync.replicas=1,", "Configs: ")
                .replace("Configs: min.insync.replicas=1\n", "Configs: \n")
                .replaceAll("(?m)^\\s*min\\.insync\\.replicas=1 sensitive=false synonyms=\\{DYNAMIC_DEFAULT_BROKER_CONFIG:"
                        + "min\\.insync\\.replicas=1}\\R?", "")
                .replace("DYNAMIC_DEFAULT_BROKER_CONFIG:min.insync.replicas=1, ", "");
    }

    // =================================================================== console producer / consumer

    @Test
    void consoleProducerAndConsumerRoundTrip() {
        String t = Clients.unique("cli-console");
        String g = Clients.unique("cli-console-g");
        String g848 = Clients.unique("cli-console-g848");
        String[] readerProps = {
                "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
                "--reader-property", "parse.headers=true", "--reader-property", "headers.delimiter=|",
                "--reader-property", "headers.separator=,", "--reader-property", "headers.key.separator==",
                "--reader-property", "null.marker=<null>"};
        String input = String.join("\n",
                "h1=v1,h2=v2|k1:value-1",
                "h1=x|k2:value with spaces: and a colon",
                "h3=<null>|<null>:value-3 (null key, null header value)",
                "h4=,h4=again|k4:<null>",
                "h5=\u00fc|\u043a\u043b\u044e\u0447:val\u00fce-5",
                "h6=6|k6:") + "\n";
        String[] formatter = {
                "--formatter-property", "print.key=true", "--formatter-property", "print.headers=true",
                "--formatter-property", "print.partition=true", "--formatter-property", "print.offset=true",
                "--formatter-property", "print.timestamp=true", "--formatter-property", "key.separator= | ",
                "--formatter-property", "null.literal=<NULL>"};
        compare((side, x) -> {
            String b = side.bootstrap();
            x.run("create topic", TOPICS, "--bootstrap-server", b, "--create", "--topic", t, "--partitions", "1");
            x.awaitLeaders(t, 1);
            x.runWithStdin("produce 6 lines with keys and headers", input, normalizer(),
                    CONSOLE_PRODUCER, concat(new String[] {"--bootstrap-server", b, "--topic", t}, readerProps));
            x.run("consume --group --from-beginning --max-messages 6", normalizer(), CONSOLE_CONSUMER,
                    concat(new String[] {"--bootstrap-server", b, "--topic", t, "--group", g, "--from-beginning",
                            "--max-messages", "6", "--timeout-ms", "30000"}, formatter));
            x.run("group offsets after the consumer", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g);
            x.runWithStdin("produce 2 more (--sync)", "h7=7|k7:value-7\nh8=8|k8:value-8\n", normalizer(),
                    CONSOLE_PRODUCER, concat(new String[] {"--bootstrap-server", b, "--topic", t, "--sync"},
                            readerProps));
            x.run("consume the group again: only the 2 new", normalizer(), CONSOLE_CONSUMER,
                    concat(new String[] {"--bootstrap-server", b, "--topic", t, "--group", g, "--from-beginning",
                            "--max-messages", "2", "--timeout-ms", "30000"}, formatter));
            x.run("consume --partition 0 --offset 2 --max-messages 3 (no group)", normalizer(), CONSOLE_CONSUMER,
                    concat(new String[] {"--bootstrap-server", b, "--topic", t, "--partition", "0", "--offset", "2",
                            "--max-messages", "3", "--timeout-ms", "30000"}, formatter));
            x.run("consume --group with group.protocol=consumer (KIP-848)", normalizer(), CONSOLE_CONSUMER,
                    concat(new String[] {"--bootstrap-server", b, "--topic", t, "--group", g848, "--from-beginning",
                            "--max-messages", "8", "--timeout-ms", "30000",
                            "--command-property", "group.protocol=consumer"}, formatter));
            x.run("KIP-848 group offsets", table(), GROUPS, "--bootstrap-server", b, "--describe", "--group", g848);
            x.run("consume values only, --include regex", normalizer(), CONSOLE_CONSUMER,
                    "--bootstrap-server", b, "--include", t + "|no-such-topic", "--from-beginning",
                    "--max-messages", "8", "--timeout-ms", "30000");
            x.runWithStdin("produce a line without the key separator", "h=1|no separator here\n", firstLine(),
                    CONSOLE_PRODUCER, concat(new String[] {"--bootstrap-server", b, "--topic", t}, readerProps));
        }, false);
    }

    // =================================================================== kafka-consumer-groups

    @Test
    void consumerGroupsListDescribeResetDelete() {
        compare(groupsScenario(), false);
    }

    BiConsumer<Side, Transcript> groupsScenario() {
        String t = Clients.unique("cli-groups");
        String g = Clients.unique("cli-groups-g");
        String missing = Clients.unique("cli-groups-missing");
        long base = Instant.now().minus(1, ChronoUnit.HOURS).truncatedTo(ChronoUnit.SECONDS).toEpochMilli();
        DateTimeFormatter iso = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSSXXX").withZone(ZoneOffset.UTC);
        String at3s = iso.format(Instant.ofEpochMilli(base + 3_000));
        String at11s = iso.format(Instant.ofEpochMilli(base + 11_000));
        return (side, x) -> {
            String b = side.bootstrap();
            try (Admin admin = Clients.admin(b)) {
                Clients.createTopic(admin, t, 2);
                // p0: 5 records at base+0..4 s; p1: 3 records at base+10..12 s.
                produce(b, t, 0, base, base + 1000, base + 2000, base + 3000, base + 4000);
                produce(b, t, 1, base + 10_000, base + 11_000, base + 12_000);
                // Committed offsets without members (a simple group): p0 at 4 (lag 1), p1 at 1 (lag 2).
                Clients.get(admin.alterConsumerGroupOffsets(g, Map.of(
                        new TopicPartition(t, 0), new OffsetAndMetadata(4),
                        new TopicPartition(t, 1), new OffsetAndMetadata(1))).all());
            }
            Table resets = table().sortRows();
            x.run("list", keepLines(l -> l.contains(g)), GROUPS, "--bootstrap-server", b, "--list");
            x.run("list --state", table().keep(l -> l.startsWith("GROUP") || l.contains(g)), GROUPS,
                    "--bootstrap-server", b, "--list", "--state");
            x.run("list --type", table().keep(l -> l.startsWith("GROUP") || l.contains(g)), GROUPS,
                    "--bootstrap-server", b, "--list", "--type");
            x.run("list --state Empty", table().keep(l -> l.startsWith("GROUP") || l.contains(g)), GROUPS,
                    "--bootstrap-server", b, "--list", "--state", "Empty");
            x.run("describe (lag)", table(), GROUPS, "--bootstrap-server", b, "--describe", "--group", g);
            x.run("describe --offsets --verbose", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g, "--offsets", "--verbose");
            x.run("describe --state --verbose", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g, "--state", "--verbose");
            x.run("describe --members --verbose", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g, "--members", "--verbose");
            x.run("describe a missing group", then(firstLine(), UnaryOperator.identity()), GROUPS,
                    "--bootstrap-server", b, "--describe", "--group", missing);
            x.run("reset --to-earliest (dry run)", resets, GROUPS, "--bootstrap-server", b, "--reset-offsets",
                    "--group", g, "--topic", t, "--to-earliest");
            x.run("describe after the dry run", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g);
            x.run("reset --to-earliest --execute", resets, GROUPS, "--bootstrap-server", b, "--reset-offsets",
                    "--group", g, "--topic", t, "--to-earliest", "--execute");
            x.run("describe after --to-earliest", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g);
            x.run("reset --to-datetime base+3s --execute", resets, GROUPS, "--bootstrap-server", b,
                    "--reset-offsets", "--group", g, "--topic", t, "--to-datetime", at3s, "--execute");
            x.run("reset --to-datetime base+11s --execute", resets, GROUPS, "--bootstrap-server", b,
                    "--reset-offsets", "--group", g, "--topic", t, "--to-datetime", at11s, "--execute");
            x.run("reset --shift-by -2 --execute", resets, GROUPS, "--bootstrap-server", b, "--reset-offsets",
                    "--group", g, "--topic", t, "--shift-by", "-2", "--execute");
            x.run("reset --shift-by 10 --execute (clamped to the end)", resets, GROUPS, "--bootstrap-server", b,
                    "--reset-offsets", "--group", g, "--topic", t, "--shift-by", "10", "--execute");
            x.run("reset --to-offset 1 on t:1 --execute", resets, GROUPS, "--bootstrap-server", b,
                    "--reset-offsets", "--group", g, "--topic", t + ":1", "--to-offset", "1", "--execute");
            x.run("reset --by-duration PT0S --all-topics --execute", resets, GROUPS, "--bootstrap-server", b,
                    "--reset-offsets", "--group", g, "--all-topics", "--by-duration", "PT0S", "--execute");
            x.run("reset --to-latest --export (CSV)", then(normalizer(), sortLines()), GROUPS,
                    "--bootstrap-server", b, "--reset-offsets", "--group", g, "--topic", t, "--to-latest", "--export");
            x.run("describe after the resets", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g);
            x.run("delete-offsets t:1", table(), GROUPS, "--bootstrap-server", b, "--delete-offsets",
                    "--group", g, "--topic", t + ":1");
            x.run("describe after delete-offsets", table(), GROUPS, "--bootstrap-server", b, "--describe",
                    "--group", g);
            x.run("delete-offsets of a missing group", table().sortRows(), GROUPS, "--bootstrap-server", b,
                    "--delete-offsets", "--group", missing, "--topic", t);
            x.run("delete", normalizer(), GROUPS, "--bootstrap-server", b, "--delete", "--group", g);
            x.run("delete a missing group", normalizer(), GROUPS, "--bootstrap-server", b, "--delete",
                    "--group", missing);
            x.run("list after delete", keepLines(l -> l.contains(g)), GROUPS, "--bootstrap-server", b, "--list");
        };
    }

    @Test
    void consumerGroupsWithActiveMembers() {
        compare(activeGroupsScenario(), false);
    }

    BiConsumer<Side, Transcript> activeGroupsScenario() {
        String t = Clients.unique("cli-active");
        String classic = Clients.unique("cli-active-classic");
        String modern = Clients.unique("cli-active-848");
        return (side, x) -> {
            String b = side.bootstrap();
            try (Admin admin = Clients.admin(b)) {
                Clients.createTopic(admin, t, 2);
            }
            produce(b, t, 0, -1, -1, -1);
            produce(b, t, 1, -1);
            try (KafkaConsumer<byte[], byte[]> c1 = joined(b, classic, t, "classic");
                 KafkaConsumer<byte[], byte[]> c2 = joined(b, modern, t, "consumer")) {
                c1.commitSync(Map.of(new TopicPartition(t, 0), new OffsetAndMetadata(2)));
                c2.commitSync(Map.of(new TopicPartition(t, 1), new OffsetAndMetadata(1)));
                // Member ids are random (UUID-based for classic, Uuid for KIP-848).
                UnaryOperator<String> members = table("CONSUMER-ID");
                x.run("classic: describe", members, GROUPS, "--bootstrap-server", b, "--describe", "--group",
                        classic);
                x.run("classic: describe --members --verbose", members, GROUPS, "--bootstrap-server", b,
                        "--describe", "--group", classic, "--members", "--verbose");
                x.run("classic: describe --state --verbose", table(), GROUPS, "--bootstrap-server", b,
                        "--describe", "--group", classic, "--state", "--verbose");
                x.run("KIP-848: describe", members, GROUPS, "--bootstrap-server", b, "--describe", "--group",
                        modern);
                x.run("KIP-848: describe --members --verbose", members, GROUPS,
                        "--bootstrap-server", b, "--describe", "--group", modern, "--members", "--verbose");
                x.run("KIP-848: describe --state --verbose", table(), GROUPS, "--bootstrap-server", b,
                        "--describe", "--group", modern, "--state", "--verbose");
                x.run("list --state --type", table().keep(l -> l.startsWith("GROUP") || l.contains(classic)
                                || l.contains(modern)).sortRows(), GROUPS, "--bootstrap-server", b,
                        "--list", "--state", "--type");
                x.run("classic: reset refused while active", normalizer(), GROUPS, "--bootstrap-server", b,
                        "--reset-offsets", "--group", classic, "--topic", t, "--to-earliest", "--execute");
                x.run("KIP-848: reset refused while active", normalizer(), GROUPS, "--bootstrap-server", b,
                        "--reset-offsets", "--group", modern, "--topic", t, "--to-earliest", "--execute");
                x.run("classic: delete refused while active", normalizer(), GROUPS, "--bootstrap-server", b,
                        "--delete", "--group", classic);
                x.run("KIP-848: delete refused while active", normalizer(), GROUPS, "--bootstrap-server", b,
                        "--delete", "--group", modern);
                x.run("classic: delete-offsets of a subscribed topic", table().sortRows(), GROUPS,
                        "--bootstrap-server", b, "--delete-offsets", "--group", classic, "--topic", t);
                x.run("KIP-848: delete-offsets of a subscribed topic", table().sortRows(), GROUPS,
                        "--bootstrap-server", b, "--delete-offsets", "--group", modern, "--topic", t);
            }
            // The members left (close sends LeaveGroup / the leave heartbeat).
            x.runUntil("classic: describe --state after close", r -> r.out().contains("Empty"), table(), GROUPS,
                    "--bootstrap-server", b, "--describe", "--group", classic, "--state");
            x.runUntil("KIP-848: describe --state after close", r -> r.out().contains("Empty"), table(), GROUPS,
                    "--bootstrap-server", b, "--describe", "--group", modern, "--state");
            x.run("delete both", normalizer(), GROUPS, "--bootstrap-server", b, "--delete", "--group", classic,
                    "--group", modern);
        };
    }

    // =================================================================== kafka-configs

    @Test
    void configsTopic() {
        compare(topicConfigsScenario(), false);
    }

    BiConsumer<Side, Transcript> topicConfigsScenario() {
        String t = Clients.unique("cli-configs");
        return (side, x) -> {
            String b = side.bootstrap();
            UnaryOperator<String> configs = configsNormalizer(x);
            x.run("create with retention.ms", TOPICS, "--bootstrap-server", b, "--create", "--topic", t,
                    "--partitions", "1", "--config", "retention.ms=86400000");
            x.awaitLeaders(t, 1);
            String[] topic = {"--bootstrap-server", b, "--entity-type", "topics", "--entity-name", t};
            x.run("describe", configs, CONFIGS, concat(topic, "--describe"));
            x.run("alter --add-config", CONFIGS, concat(topic, "--alter", "--add-config",
                    "max.message.bytes=300000,cleanup.policy=[compact,delete],segment.ms=600000"));
            x.runUntil("describe after --add-config", r -> r.out().contains("segment.ms"), configs, CONFIGS,
                    concat(topic, "--describe"));
            x.run("alter --delete-config", CONFIGS, concat(topic, "--alter", "--delete-config",
                    "retention.ms,segment.ms"));
            x.runUntil("describe after --delete-config", r -> !r.out().contains("segment.ms"), configs,
                    CONFIGS, concat(topic, "--describe"));
            // ON PURPOSE: karnak.* are Karnak's own topic configs (the SQL gateway's view of the topic).
            x.run("describe --all", then(configs, keepLines(l -> !l.strip().startsWith("karnak."))), CONFIGS,
                    concat(topic, "--describe", "--all"));
            x.run("alter: unknown config", configError(), CONFIGS, concat(topic, "--alter", "--add-config",
                    "no.such.config=1"));
            x.run("alter: bad value", then(configError(), UnaryOperator.identity()), CONFIGS, concat(topic, "--alter", "--add-config", "retention.ms=soon"));
            x.run("alter: delete a config that is not set", configError(), CONFIGS, concat(topic, "--alter",
                    "--delete-config", "retention.bytes"));
            x.run("describe a missing topic", configError(), CONFIGS, "--bootstrap-server", b, "--entity-type",
                    "topics", "--entity-name", t + "-missing", "--describe");
        };
    }

    /** kafka-configs --describe output: the cluster-level min.insync.replicas on purpose. */
    static UnaryOperator<String> configsNormalizer(Transcript x) {
        return then(normalizer(), CliToolsTest::withoutClusterMinIsr);
    }

    @Test
    void configsBroker() {
        compare(brokerConfigsScenario(), false);
    }

    BiConsumer<Side, Transcript> brokerConfigsScenario() {
        String t = Clients.unique("cli-broker-configs");
        return (side, x) -> {
            String b = side.bootstrap();
            UnaryOperator<String> configs = configsNormalizer(x);
            String[] broker0 = {"--bootstrap-server", b, "--entity-type", "brokers", "--entity-name", "0"};
            String[] cluster = {"--bootstrap-server", b, "--entity-type", "brokers", "--entity-default"};
            x.run("create a topic", TOPICS, "--bootstrap-server", b, "--create", "--topic", t, "--partitions", "1");
            x.awaitLeaders(t, 1);
            try {
                x.run("broker 0: describe", configs, CONFIGS, concat(broker0, "--describe"));
                x.run("cluster default: describe", configs, CONFIGS, concat(cluster, "--describe"));
                x.run("broker 0: --add-config log.retention.ms", CONFIGS, concat(broker0, "--alter",
                        "--add-config", "log.retention.ms=7200000"));
                x.run("cluster default: --add-config log.retention.ms, log.segment.bytes", CONFIGS,
                        concat(cluster, "--alter", "--add-config",
                                "log.retention.ms=10800000,log.segment.bytes=104857600"));
                // Kafka applies dynamic broker configs when the metadata reaches the broker: poll (the cluster
                // default's log.segment.bytes was the last change).
                x.runUntil("cluster default: describe after", r -> r.out().contains("log.segment.bytes"),
                        then(configs, UnaryOperator.identity()),
                        CONFIGS, concat(cluster, "--describe"));
                x.runUntil("broker 0: describe after", r -> r.out().contains("log.retention.ms=7200000"), configs,
                        CONFIGS, concat(broker0, "--describe"));
                UnaryOperator<String> retentionAndSegment = then(configs, keepLines(
                        l -> l.contains("retention.ms=") || l.contains("segment.bytes=")));
                // (The value's own line: Kafka's synonyms name the other levels' values too.)
                x.runUntil("topic inherits them (--describe --all)", r -> hasLine(r, "retention.ms=7200000 "),
                        retentionAndSegment, CONFIGS, "--bootstrap-server", b, "--entity-type", "topics",
                        "--entity-name", t, "--describe", "--all");
                x.run("broker 0: --delete-config log.retention.ms", CONFIGS, concat(broker0, "--alter",
                        "--delete-config", "log.retention.ms"));
                x.runUntil("topic falls back to the cluster default", r -> hasLine(r, "retention.ms=10800000 "),
                        retentionAndSegment, CONFIGS, "--bootstrap-server", b, "--entity-type", "topics",
                        "--entity-name", t, "--describe", "--all");
                x.run("cluster default: describe with only the cluster value", configs, CONFIGS,
                        concat(cluster, "--describe"));
                x.run("broker 0: --add-config of a read-only setting", then(configError(),
                                UnaryOperator.identity()), CONFIGS,
                        concat(broker0, "--alter", "--add-config", "log.dirs=/tmp/elsewhere"));
                x.run("broker 0: --add-config of a bad value", then(configError(),
                                UnaryOperator.identity()),
                        CONFIGS, concat(broker0, "--alter", "--add-config", "log.retention.ms=soon"));
                x.run("cluster default: --delete-config", CONFIGS, concat(cluster, "--alter", "--delete-config",
                        "log.retention.ms,log.segment.bytes"));
                x.runUntil("cluster default: describe at the end", r -> !r.out().contains("log.segment.bytes"),
                        configs, CONFIGS, concat(cluster, "--describe"));
                x.runUntil("broker 0: describe at the end", r -> !r.out().contains("log.retention.ms"),
                        configs, CONFIGS, concat(broker0, "--describe"));
            } finally {
                // The oracle is shared by every test class: leave no dynamic broker config behind.
                Cli.run(CONFIGS, concat(broker0, "--alter", "--delete-config", "log.retention.ms"));
                Cli.run(CONFIGS, concat(cluster, "--alter", "--delete-config", "log.retention.ms,log.segment.bytes"));
            }
        };
    }

    // =================================================================== get-offsets, delete-records, log-dirs

    @Test
    void getOffsetsDeleteRecordsLogDirs() {
        String t = Clients.unique("cli-offsets");
        String t2 = Clients.unique("cli-offsets-other");
        long base = Instant.now().minus(1, ChronoUnit.HOURS).truncatedTo(ChronoUnit.SECONDS).toEpochMilli();
        compare((side, x) -> {
            String b = side.bootstrap();
            try (Admin admin = Clients.admin(b)) {
                Clients.createTopic(admin, t, 2);
                Clients.createTopic(admin, t2, 1);
            }
            // p0: 5 records, the max timestamp (base+5 s) at offset 2; p1 stays empty.
            produce(b, t, 0, base, base + 1000, base + 5000, base + 2000, base + 3000);
            produce(b, t2, 0, base);
            UnaryOperator<String> ours = then(keepLines(l -> l.startsWith(t)), sortLines());
            x.run("latest (default)", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t);
            x.run("--time -1 (latest)", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t, "--time", "-1");
            x.run("--time -2 (earliest)", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t, "--time", "-2");
            x.run("--time -3 (max timestamp)", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t,
                    "--time", "-3");
            x.run("--time base+1500 ms", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t, "--time",
                    String.valueOf(base + 1500));
            x.run("--time after the last record", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t,
                    "--time", String.valueOf(base + 60_000));
            x.run("--topic-partitions", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic-partitions",
                    t + ":1," + t2);
            x.run("--topic regex --partitions 0", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic",
                    t + ".*", "--partitions", "0");
            x.run("all topics --exclude-internal-topics", ours, GET_OFFSETS, "--bootstrap-server", b,
                    "--exclude-internal-topics");

            Path json = x.file("delete-records.json", "{\"partitions\":[{\"topic\":\"" + t
                    + "\",\"partition\":0,\"offset\":2}],\"version\":1}");
            x.run("delete-records to offset 2", DELETE_RECORDS, "--bootstrap-server", b, "--offset-json-file",
                    json.toString());
            x.run("earliest after delete-records", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t,
                    "--time", "-2");
            x.run("consume from the new start", normalizer(), CONSOLE_CONSUMER, "--bootstrap-server", b,
                    "--topic", t, "--partition", "0", "--offset", "earliest", "--max-messages", "3",
                    "--timeout-ms", "30000", "--formatter-property", "print.offset=true");
            Path past = x.file("past-hw.json", "{\"partitions\":[{\"topic\":\"" + t
                    + "\",\"partition\":0,\"offset\":99}],\"version\":1}");
            x.run("delete-records past the high watermark", firstLines(3), DELETE_RECORDS, "--bootstrap-server", b,
                    "--offset-json-file", past.toString());
            Path all = x.file("to-hw.json", "{\"partitions\":[{\"topic\":\"" + t
                    + "\",\"partition\":0,\"offset\":-1},{\"topic\":\"" + t
                    + "\",\"partition\":1,\"offset\":0}],\"version\":1}");
            x.run("delete-records offset -1 (the high watermark) and an empty partition",
                    then(normalizer(), sortLines()), DELETE_RECORDS, "--bootstrap-server", b,
                    "--offset-json-file", all.toString());
            x.run("earliest after deleting everything", ours, GET_OFFSETS, "--bootstrap-server", b, "--topic", t,
                    "--time", "-2");
            // (delete-records of a missing topic is left out: the AdminClient retries its metadata until the
            // 60 s timeout on both brokers alike.)

            x.run("log-dirs --topic-list", CliToolsTest::logDirs, LOG_DIRS, "--bootstrap-server", b, "--describe",
                    "--topic-list", t + "," + t2);
            x.run("log-dirs --broker-list 0", CliToolsTest::logDirs, LOG_DIRS, "--bootstrap-server", b,
                    "--describe", "--broker-list", "0", "--topic-list", t2);
            x.run("log-dirs of a missing topic", CliToolsTest::logDirs, LOG_DIRS, "--bootstrap-server", b, "--describe",
                    "--topic-list", t + "-missing");
        }, false);
    }

    // =================================================================== reassign-partitions, leader-election

    /**
     * kafka-reassign-partitions and kafka-leader-election on one broker (node 0 on both): what can be said
     * there (a reassignment to the same broker completes at once, one to a broker that is not there is refused
     * by the tool, --list, --cancel with nothing to cancel, --generate) must read as Kafka's. The moves between
     * brokers are in the cluster tests (broker/tests/cluster/reassign.rs).
     */
    @Test
    void reassignPartitionsAndLeaderElection() {
        compare(reassignScenario(true), false);
    }

    /**
     * kafka-reassign-partitions --verify and --cancel clear the replication throttles
     * (leader/follower.replication.throttled.rate on the brokers, *.replication.throttled.replicas on the
     * topic) unless given --preserve-throttles. Karnak does not throttle replication yet: it refuses setting
     * the rates (--throttle) but takes their removal, a no-op, so both steps read as Kafka's.
     */
    @Test
    void reassignPartitionsClearingThrottles() {
        compare(reassignScenario(false), false);
    }

    BiConsumer<Side, Transcript> reassignScenario(boolean preserveThrottles) {
        String t = Clients.unique("cli-reassign");
        String[] throttles = preserveThrottles ? new String[] {"--preserve-throttles"} : new String[0];
        return (side, x) -> {
            String b = side.bootstrap();
            try (Admin admin = Clients.admin(b)) {
                Clients.createTopic(admin, t, 2);
            }
            produce(b, t, 0, -1, -1);
            Path plan = x.file("reassign.json", "{\"version\":1,\"partitions\":[{\"topic\":\"" + t
                    + "\",\"partition\":0,\"replicas\":[0]},{\"topic\":\"" + t
                    + "\",\"partition\":1,\"replicas\":[0]}]}");
            String[] broker0 = {"--bootstrap-server", b, "--entity-type", "brokers", "--entity-name", "0"};
            String rate = "leader.replication.throttled.rate=50000000";
            x.run("--list with none", normalizer(), REASSIGN, "--bootstrap-server", b, "--list");
            try {
                x.run("--execute --throttle onto the same broker", normalizer(), REASSIGN, "--bootstrap-server",
                        b, "--execute", "--throttle", "50000000", "--reassignment-json-file", plan.toString());
                x.runUntil("broker 0 is throttled", r -> r.out().contains(rate), configsNormalizer(x), CONFIGS,
                        concat(broker0, "--describe"));
                x.runUntil("--verify", r -> r.out().contains("is completed"), normalizer(), REASSIGN,
                        with(throttles, "--bootstrap-server", b, "--verify", "--reassignment-json-file",
                                plan.toString()));
                x.runUntil(preserveThrottles ? "the throttle is kept" : "the throttle is removed",
                        r -> r.out().contains(rate) == preserveThrottles, configsNormalizer(x), CONFIGS,
                        concat(broker0, "--describe"));
            } finally {
                // The oracle is shared by every test class: leave no throttle behind.
                Cli.run(CONFIGS, concat(broker0, "--alter", "--delete-config",
                        "leader.replication.throttled.rate,follower.replication.throttled.rate"));
            }
            x.run("--list after", normalizer(), REASSIGN, "--bootstrap-server", b, "--list");
            x.run("--cancel with nothing under way", normalizer(), REASSIGN, with(throttles,
                    "--bootstrap-server", b, "--cancel", "--reassignment-json-file", plan.toString()));
            Path nowhere = x.file("nowhere.json", "{\"version\":1,\"partitions\":[{\"topic\":\"" + t
                    + "\",\"partition\":0,\"replicas\":[7]}]}");
            x.run("--execute onto a broker that is not there", firstLine(), REASSIGN, "--bootstrap-server", b,
                    "--execute", "--reassignment-json-file", nowhere.toString());
            Path move = x.file("topics.json", "{\"version\":1,\"topics\":[{\"topic\":\"" + t + "\"}]}");
            x.run("--generate", normalizer(), REASSIGN, "--bootstrap-server", b, "--generate",
                    "--topics-to-move-json-file", move.toString(), "--broker-list", "0");
            x.run("consume after the reassignment", normalizer(), CONSOLE_CONSUMER, "--bootstrap-server", b,
                    "--topic", t, "--partition", "0", "--offset", "earliest", "--max-messages", "2",
                    "--timeout-ms", "30000", "--formatter-property", "print.offset=true");
            x.run("leader-election --election-type preferred", normalizer(), LEADER_ELECTION,
                    "--bootstrap-server", b, "--election-type", "preferred", "--topic", t, "--partition", "0");
            x.run("leader-election --election-type unclean --all-topic-partitions", normalizer(),
                    LEADER_ELECTION, "--bootstrap-server", b, "--election-type", "unclean",
                    "--all-topic-partitions");
        };
    }

    static String[] with(String[] extra, String... args) {
        String[] all = Arrays.copyOf(args, args.length + extra.length);
        System.arraycopy(extra, 0, all, args.length, extra.length);
        return all;
    }

    // =================================================================== kafka-transactions

    @Test
    void transactions() {
        compare(transactionsScenario(), false);
    }

    BiConsumer<Side, Transcript> transactionsScenario() {
        String t = Clients.unique("cli-txn");
        String done = Clients.unique("cli-txn-done");
        String open = Clients.unique("cli-txn-open");
        return (side, x) -> {
            String b = side.bootstrap();
            // Tools whose admin calls may retry until their timeout get a short one.
            Path adminConfig = x.file("admin.properties", "default.api.timeout.ms=10000\nrequest.timeout.ms=5000\n");
            try (Admin admin = Clients.admin(b)) {
                Clients.createTopic(admin, t, 2);
            }
            // Partition 0: an idempotent record (offset 0), then a transaction left open (offsets 1, 2).
            // Partition 1: a committed transaction of another transactional id.
            // (The committed producer stays off partition 0 ON PURPOSE: Kafka 4.4 finalizes transaction.version 2,
            // KIP-890, whose EndTxn bumps the producer epoch and resets the sequence; Karnak finalizes
            // transaction.version 0, so the client runs the KIP-98 protocol and the epoch stays. That is the
            // README's documented difference, not a tool finding.)
            try (KafkaProducer<byte[], byte[]> plain = Clients.producer(b, Map.of(ProducerConfig.ACKS_CONFIG, "all"));
                 KafkaProducer<byte[], byte[]> committed = txnProducer(b, done);
                 KafkaProducer<byte[], byte[]> hanging = txnProducer(b, open)) {
                send(plain, t, 0, "plain-1");
                committed.initTransactions();
                committed.beginTransaction();
                send(committed, t, 1, "committed-1");
                committed.commitTransaction();
                hanging.initTransactions();
                hanging.beginTransaction();
                send(hanging, t, 0, "open-1");
                send(hanging, t, 0, "open-2");

                UnaryOperator<String> ours = table("ProducerId")
                        .keep(l -> l.startsWith("TransactionalId") || l.contains(done) || l.contains(open))
                        .sortRows();
                x.run("list", ours, TRANSACTIONS, "--bootstrap-server", b, "list");
                Table describe = table("ProducerId", "CurrentTransactionStartTimeMs", "TransactionDurationMs");
                x.run("describe the ongoing one", describe, TRANSACTIONS, "--bootstrap-server", b, "describe",
                        "--transactional-id", open);
                // ON PURPOSE: ProducerEpoch after a commit (transaction.version 2 on Kafka, see above).
                x.run("describe the committed one", then(table("ProducerId", "ProducerEpoch",
                                "CurrentTransactionStartTimeMs", "TransactionDurationMs"), UnaryOperator.identity()),
                        TRANSACTIONS, "--bootstrap-server", b, "describe", "--transactional-id", done);
                x.run("describe a missing id", firstLine(), TRANSACTIONS, "--bootstrap-server", b, "describe",
                        "--transactional-id", open + "-missing");
                UnaryOperator<String> producers = table("ProducerId", "LastTimestamp").sortRows();
                x.run("describe-producers", producers, TRANSACTIONS, "--bootstrap-server", b,
                        "describe-producers", "--topic", t, "--partition", "0");
                x.run("find-hanging --topic", table(), TRANSACTIONS, "--bootstrap-server", b,
                        "--command-config", adminConfig.toString(), "find-hanging", "--topic", t);
                x.run("find-hanging --broker-id 0", table(), TRANSACTIONS, "--bootstrap-server", b,
                        "--command-config", adminConfig.toString(), "find-hanging", "--broker-id", "0");
                x.run("abort --start-offset 1", normalizer(), TRANSACTIONS, "--bootstrap-server", b,
                        "abort", "--topic", t, "--partition", "0", "--start-offset", "1");
                x.run("describe-producers after abort", producers, TRANSACTIONS, "--bootstrap-server", b,
                        "describe-producers", "--topic", t, "--partition", "0");
                send(plain, t, 0, "plain-2");
                x.run("read_committed consumer skips the aborted records", normalizer(), CONSOLE_CONSUMER,
                        "--bootstrap-server", b, "--topic", t, "--partition", "0", "--offset", "earliest",
                        "--isolation-level", "read_committed", "--max-messages", "2", "--timeout-ms", "30000",
                        "--formatter-property", "print.offset=true");
                x.run("latest offsets", then(keepLines(l -> l.startsWith(t)), sortLines()), GET_OFFSETS,
                        "--bootstrap-server", b, "--topic", t);
                hanging.close(Duration.ZERO);
            }
        };
    }

    // =================================================================== perf tests

    @Test
    void producerAndConsumerPerfTests() {
        String t = Clients.unique("cli-perf");
        String tx = Clients.unique("cli-perf-txn");
        String g = Clients.unique("cli-perf-g");
        compare((side, x) -> {
            String b = side.bootstrap();
            try (Admin admin = Clients.admin(b)) {
                Clients.createTopic(admin, t, 2);
                Clients.createTopic(admin, tx, 1);
            }
            x.run("producer-perf-test 2000 records", CliToolsTest::producerPerf, PRODUCER_PERF,
                    "--bootstrap-server", b, "--topic", t, "--num-records", "2000", "--record-size", "100",
                    "--throughput", "-1", "--command-property", "acks=all", "linger.ms=5");
            // The sticky partitioner splits the records between the partitions by timing: compare the total.
            x.run("offsets after (total)", CliToolsTest::totalOffset, GET_OFFSETS, "--bootstrap-server", b,
                    "--topic", t);
            x.run("consumer-perf-test 2000 records", CliToolsTest::consumerPerf, CONSUMER_PERF,
                    "--bootstrap-server", b, "--topic", t, "--num-records", "2000", "--group", g,
                    "--timeout", "30000");
            x.run("group offsets after (total)", table("CURRENT-OFFSET", "LOG-END-OFFSET"), GROUPS,
                    "--bootstrap-server", b, "--describe", "--group", g);
            x.run("producer-perf-test transactional", CliToolsTest::producerPerf, PRODUCER_PERF,
                    "--bootstrap-server", b, "--topic", tx, "--num-records", "500", "--record-size", "50",
                    "--throughput", "-1", "--transactional-id", tx, "--transaction-duration-ms", "100");
            x.run("consumer-perf-test read_committed", CliToolsTest::consumerPerf, CONSUMER_PERF,
                    "--bootstrap-server", b, "--topic", tx, "--num-records", "500", "--group", g + "-txn",
                    "--timeout", "30000", "--command-property", "isolation.level=read_committed");
        }, false);
    }

    // =================================================================== the comparison machinery

    /** One broker of a comparison. */
    record Side(String name, String bootstrap) {}

    /** The steps of a scenario on one broker: step name -> normalized exit code, stdout and stderr. */
    final class Transcript {
        final Side side;
        /** Gap test: the known-gap masks are off. */
        final boolean strict;
        final Map<String, String> steps = new LinkedHashMap<>();
        final Set<String> gapsMasked = new LinkedHashSet<>();
        final Path dumps;
        int seq;

        Transcript(Side side, boolean strict) {
            this.side = side;
            this.strict = strict;
            this.dumps = Paths.get(System.getProperty("karnak.log.dir", "target/test-logs"), "cli-tools",
                    testName).toAbsolutePath();
            try {
                Files.createDirectories(dumps);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        /**
         * The mask of a known Karnak gap: applied (to both brokers' output) in the default test, not in the
         * karnak-gap twin.
         */
        UnaryOperator<String> gap(String finding, UnaryOperator<String> mask) {
            if (strict) {
                return s -> s;
            }
            return s -> {
                String m = mask.apply(s);
                if (!m.equals(s)) {
                    gapsMasked.add(finding);
                }
                return m;
            };
        }

        /** A step the default test leaves out because of a known gap (it runs in the gap twin). */
        void skipped(String finding) {
            gapsMasked.add(finding);
        }

        Cli.Result run(String step, String mainClass, String... args) {
            return run(step, normalizer(), mainClass, args);
        }

        Cli.Result run(String step, UnaryOperator<String> norm, String mainClass, String... args) {
            return runWithStdin(step, "", norm, mainClass, args);
        }

        Cli.Result runWithStdin(String step, String stdin, UnaryOperator<String> norm, String mainClass,
                                String... args) {
            Cli.Result r = Cli.runWithStdin(stdin, mainClass, args);
            record(step, r, norm, mainClass, args);
            return r;
        }

        /** Runs the tool until {@code done} holds (Apache Kafka applies some changes asynchronously). */
        Cli.Result runUntil(String step, Predicate<Cli.Result> done, UnaryOperator<String> norm, String mainClass,
                            String... args) {
            Cli.Result[] last = new Cli.Result[1];
            try {
                Poll.untilTrue(DEADLINE, step, () -> {
                    last[0] = Cli.run(mainClass, args);
                    return done.test(last[0]);
                });
            } catch (AssertionError e) {
                // Recorded as is: the comparison shows what it printed last.
            }
            record(step, last[0], norm, mainClass, args);
            return last[0];
        }

        /** Writes a file (a tool's JSON input, a config file) for this side. */
        Path file(String name, String content) {
            Path p = dumps.resolve(side.name() + "-" + name);
            try {
                Files.writeString(p, content, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return p;
        }

        void awaitLeaders(String topic, int partitions) {
            try (Admin admin = Clients.admin(side.bootstrap())) {
                Clients.awaitLeaders(admin, topic, partitions);
            }
        }

        void fact(String step, String value) {
            steps.put(String.format("%02d %s", ++seq, step), value);
        }

        private void record(String step, Cli.Result r, UnaryOperator<String> norm, String mainClass,
                            String... args) {
            String key = String.format("%02d %s", ++seq, step);
            String text = "exit " + r.exitCode() + "\n" + norm.apply(r.out()).strip()
                    + (r.err().isBlank() ? "" : "\n[stderr]\n" + norm.apply(r.err()).strip());
            steps.put(key, text.strip());
            String raw = "$ " + mainClass + " " + String.join(" ", args) + "\n" + r + "\n";
            try {
                Files.writeString(dumps.resolve(key.replaceAll("[^A-Za-z0-9_.-]+", "_") + "." + side.name()
                        + ".txt"), raw, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    /**
     * Runs the scenario against the Apache Kafka oracle, then against Karnak, and fails with every step whose
     * normalized output differs. {@code strict}: the known-gap masks are off (the karnak-gap twins).
     */
    void compare(BiConsumer<Side, Transcript> scenario, boolean strict) {
        long t0 = System.nanoTime();
        deleteDumps();
        Transcript expected = new Transcript(new Side("kafka", kafka.bootstrap()), strict);
        scenario.accept(expected.side, expected); // a failure here is a bug of the test, not of Karnak
        long t1 = System.nanoTime();
        Transcript actual = new Transcript(new Side("karnak", karnak.bootstrap()), strict);
        Throwable aborted = null;
        try {
            scenario.accept(actual.side, actual);
        } catch (RuntimeException | AssertionError e) {
            aborted = e;
            actual.fact("scenario aborted", e.toString());
        }
        long t2 = System.nanoTime();
        Set<String> keys = new TreeSet<>(expected.steps.keySet());
        keys.addAll(actual.steps.keySet());
        List<String> diffs = new ArrayList<>();
        for (String k : keys) {
            String e = expected.steps.get(k);
            String a = actual.steps.get(k);
            if (e == null ? a != null : !e.equals(a)) {
                diffs.add("---- step " + k + "\n[Kafka]\n" + indent(e) + "\n[Karnak]\n" + indent(a));
            }
        }
        Set<String> gaps = new LinkedHashSet<>(expected.gapsMasked);
        gaps.addAll(actual.gapsMasked);
        System.out.println("[cli] " + testName + ": " + (diffs.isEmpty() ? "same (" + keys.size() + " steps)"
                : diffs.size() + " of " + keys.size() + " steps differ")
                + String.format(" [Kafka %.1f s, Karnak %.1f s]", (t1 - t0) / 1e9, (t2 - t1) / 1e9)
                + (gaps.isEmpty() ? "" : "; known karnak gaps masked: " + gaps)
                + "; raw outputs in " + expected.dumps);
        if (!diffs.isEmpty()) {
            AssertionError err = new AssertionError(testName + ": Karnak's tool output differs from Apache Kafka "
                    + org.apache.kafka.common.utils.internals.AppInfoParser.getVersion() + "'s in " + diffs.size()
                    + " step(s):\n" + String.join("\n", diffs));
            if (aborted != null) {
                err.addSuppressed(aborted);
            }
            throw err;
        }
    }

    /** The raw outputs of an earlier run of this test. */
    private void deleteDumps() {
        Path dir = Paths.get(System.getProperty("karnak.log.dir", "target/test-logs"), "cli-tools", testName);
        if (!Files.isDirectory(dir)) {
            return;
        }
        try (var files = Files.list(dir)) {
            for (Path p : files.toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static String indent(String s) {
        return s == null ? "    <no such step>" : "    " + s.replace("\n", "\n    ");
    }

    // =================================================================== normalizers

    static final Pattern UUID = Pattern.compile(
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");

    /** Run-specific values every tool prints the same way, and stack frames (they name the test harness). */
    static String normalize(String s) {
        s = s.replace("\r", "");
        s = s.replaceAll("(?m)^\\s+(at |\\.\\.\\. \\d+ more).*\\R?", "");
        s = s.replaceAll("(127\\.0\\.0\\.1|localhost):\\d+", "<host:port>");
        s = s.replaceAll("/127\\.0\\.0\\.1\\b", "/<host>");
        s = s.replaceAll("TopicId: [A-Za-z0-9_-]{22}", "TopicId: <id>");
        s = UUID.matcher(s).replaceAll("<uuid>");
        s = s.replaceAll("CreateTime:\\d+", "CreateTime:<ts>");
        // Each broker's own data dir (a temp dir) in kafka-reassign-partitions' plans.
        s = s.replaceAll("\"log_dirs\":\\[\"/[^\"]*\"\\]", "\"log_dirs\":[\"<data dir>\"]");
        s = s.replaceAll("(?m)[ \t]+$", "");
        return s;
    }

    static UnaryOperator<String> normalizer() {
        return CliToolsTest::normalize;
    }

    static UnaryOperator<String> then(UnaryOperator<String> first, UnaryOperator<String> second) {
        return s -> second.apply(first.apply(s));
    }

    /**
     * kafka-configs' error: the "Error while executing config command with args ..." line and the exception it
     * caught (class and message; its "Caused by" repeats it).
     */
    static UnaryOperator<String> configError() {
        return s -> String.join("\n", normalize(s).strip().lines().filter(l -> !l.startsWith("Caused by:"))
                .limit(2).toList());
    }

    /** An exception's message (after "SomeException: "), for a known gap in the message text only. */
    static UnaryOperator<String> maskExceptionMessage() {
        return s -> s.replaceAll("(?m)(Exception: ).*$", "$1<message>");
    }

    /** Only the first line of the output (error messages followed by usage text or stack traces). */
    static UnaryOperator<String> firstLine() {
        return firstLines(1);
    }

    static UnaryOperator<String> firstLines(int n) {
        return s -> String.join("\n", normalize(s).strip().lines().limit(n).toList());
    }

    static UnaryOperator<String> keepLines(Predicate<String> keep) {
        return s -> String.join("\n", normalize(s).lines().filter(keep).toList());
    }

    static UnaryOperator<String> sortLines() {
        return s -> String.join("\n", s.lines().sorted().toList());
    }

    static Table table(String... masked) {
        return new Table(masked);
    }

    /** First words of the header lines of the tools' tables (data rows start with names or numbers). */
    static final Set<String> HEADER_STARTS = Set.of("GROUP", "TOPIC", "Topic", "TransactionalId", "ProducerId",
            "CoordinatorId");

    /**
     * A tool's table: column padding collapsed (widths follow the longest value, and ids differ in length), the
     * named columns masked (producer/member ids, times; not None or -) in the rows under a header naming them, optionally only
     * some lines kept and each run of rows sorted (the tools print some from hash maps).
     */
    static final class Table implements UnaryOperator<String> {
        private final List<String> masked;
        private Predicate<String> keep = l -> true;
        private boolean sort;

        Table(String... masked) {
            this.masked = List.of(masked);
        }

        Table keep(Predicate<String> p) {
            this.keep = p;
            return this;
        }

        Table sortRows() {
            this.sort = true;
            return this;
        }

        @Override
        public String apply(String s) {
            List<String> out = new ArrayList<>();
            List<String> rows = new ArrayList<>();
            int[] idx = null;
            int width = -1;
            for (String line : normalize(s).split("\n", -1)) {
                String l = line.strip();
                if (l.isEmpty()) {
                    flush(out, rows);
                    out.add("");
                    idx = null;
                    continue;
                }
                if (!keep.test(l)) {
                    continue;
                }
                String[] cols = l.split("\\s+");
                if (HEADER_STARTS.contains(cols[0])) {
                    flush(out, rows);
                    out.add(String.join(" ", cols));
                    List<String> names = Arrays.asList(cols);
                    idx = names.containsAll(masked) ? masked.stream().mapToInt(names::indexOf).toArray() : null;
                    width = cols.length;
                    continue;
                }
                if (idx != null && cols.length <= width) {
                    for (int j = 0; j < idx.length; j++) {
                        // An absent value (None, -) stays: absent vs present is a real difference.
                        if (idx[j] < cols.length && !cols[idx[j]].equals("None") && !cols[idx[j]].equals("-")) {
                            cols[idx[j]] = "<" + masked.get(j) + ">";
                        }
                    }
                }
                rows.add(String.join(" ", cols));
            }
            flush(out, rows);
            return String.join("\n", out).replaceAll("\n{3,}", "\n\n").strip();
        }

        private void flush(List<String> out, List<String> rows) {
            if (sort) {
                rows.sort(null);
            }
            out.addAll(rows);
            rows.clear();
        }
    }

    /** kafka-log-dirs prints two lines and a JSON document: the JSON with the dir path and sizes abstracted. */
    static String logDirs(String s) {
        StringBuilder sb = new StringBuilder();
        for (String line : normalize(s).split("\n")) {
            if (!line.startsWith("{")) {
                sb.append(line).append('\n');
                continue;
            }
            try {
                JsonNode root = new ObjectMapper().readTree(line);
                sb.append("version=").append(root.path("version")).append('\n');
                for (JsonNode broker : root.path("brokers")) {
                    sb.append("broker ").append(broker.path("broker")).append('\n');
                    for (JsonNode dir : broker.path("logDirs")) {
                        List<String> names = new ArrayList<>();
                        dir.fieldNames().forEachRemaining(names::add);
                        sb.append("  logDir fields=").append(new TreeSet<>(names)).append(" error=")
                                .append(dir.path("error")).append('\n');
                        List<String> parts = new ArrayList<>();
                        for (JsonNode p : dir.path("partitions")) {
                            List<String> f = new ArrayList<>();
                            for (Iterator<Map.Entry<String, JsonNode>> it = p.fields(); it.hasNext(); ) {
                                Map.Entry<String, JsonNode> e = it.next();
                                // Sizes depend on batch timestamps and producer ids: only zero / non-zero.
                                f.add(e.getKey() + "=" + (e.getKey().equals("size")
                                        ? (e.getValue().asLong() > 0 ? ">0" : e.getValue().toString())
                                        : e.getValue().toString()));
                            }
                            parts.add("    " + String.join(" ", f));
                        }
                        parts.sort(null);
                        parts.forEach(p -> sb.append(p).append('\n'));
                    }
                }
            } catch (IOException e) {
                sb.append("unparsable JSON: ").append(line).append('\n');
            }
        }
        return sb.toString();
    }

    static final Pattern PERF_SUMMARY = Pattern.compile("^(\\d+) records sent, .*99\\.9th\\.$");

    /** The producer perf test's summary line with every rate and latency abstracted (the count is kept). */
    static String producerPerf(String s) {
        List<String> out = new ArrayList<>();
        for (String l : normalize(s).split("\n")) {
            Matcher m = PERF_SUMMARY.matcher(l);
            if (m.matches()) {
                out.add(l.replaceAll("(?<=[ (])\\d+(\\.\\d+)?(?= (records/sec|MB/sec|ms))", "<n>"));
            } else if (!l.isBlank() && !l.contains("records sent")) {
                out.add(l); // anything else it printed (warnings, errors), but not the 5 s progress lines
            }
        }
        return String.join("\n", out);
    }

    /** The consumer perf test's header and, of its row, the MB and record counts (not times and rates). */
    static String consumerPerf(String s) {
        List<String> out = new ArrayList<>();
        for (String l : normalize(s).split("\n")) {
            String[] cols = l.split(",\\s*");
            if (cols.length == 10 && !l.startsWith("start.time")) {
                out.add("<start>, <end>, " + cols[2] + ", <MB/s>, " + cols[4] + ", <n/s>, <ms>, <ms>, <MB/s>, <n/s>");
            } else if (!l.isBlank()) {
                out.add(l);
            }
        }
        return String.join("\n", out);
    }

    /** GetOffsetShell's lines (topic:partition:offset) reduced to each topic's total. */
    static String totalOffset(String s) {
        Map<String, Long> total = new LinkedHashMap<>();
        List<String> other = new ArrayList<>();
        for (String l : normalize(s).split("\n")) {
            String[] f = l.split(":");
            if (f.length == 3 && f[2].matches("\\d+")) {
                total.merge(f[0], Long.parseLong(f[2]), Long::sum);
            } else if (!l.isBlank()) {
                other.add(l);
            }
        }
        total.forEach((k, v) -> other.add(k + " total " + v));
        return String.join("\n", other);
    }

    // =================================================================== helpers

    /** Whether a line of the tool's stdout starts (after indentation) with {@code prefix}. */
    static boolean hasLine(Cli.Result r, String prefix) {
        return r.out().lines().anyMatch(l -> l.strip().startsWith(prefix));
    }

    static String[] concat(String[] a, String... b) {
        String[] r = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }

    /** Produces one record per timestamp (-1: the producer's clock) to a partition, each acknowledged alone. */
    static void produce(String bootstrap, String topic, int partition, long... timestamps) {
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, Map.of(ProducerConfig.ACKS_CONFIG, "all"))) {
            int i = 0;
            for (long ts : timestamps) {
                byte[] v = ("r" + partition + "-" + i++).getBytes(StandardCharsets.UTF_8);
                p.send(new ProducerRecord<>(topic, partition, ts < 0 ? null : ts, null, v)).get(30, TimeUnit.SECONDS);
            }
        } catch (Exception e) {
            throw new AssertionError("producing to " + topic + "-" + partition + " on " + bootstrap, e);
        }
    }

    static KafkaProducer<byte[], byte[]> txnProducer(String bootstrap, String transactionalId) {
        return Clients.producer(bootstrap, Map.of(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId,
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true));
    }

    static void send(KafkaProducer<byte[], byte[]> p, String topic, int partition, String value) {
        try {
            p.send(new ProducerRecord<>(topic, partition, null, value.getBytes(StandardCharsets.UTF_8)))
                    .get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new AssertionError("send to " + topic + "-" + partition, e);
        }
    }

    /** A consumer of {@code group} subscribed to {@code topic}, polled until it owns both partitions. */
    static KafkaConsumer<byte[], byte[]> joined(String bootstrap, String group, String topic, String protocol) {
        KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, group, Map.of(
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol,
                ConsumerConfig.CLIENT_ID_CONFIG, "cli-tools-" + protocol));
        c.subscribe(List.of(topic));
        try {
            Poll.untilTrue(DEADLINE, group + " to get its assignment", () -> {
                c.poll(Duration.ofMillis(100));
                return c.assignment().size() == 2;
            });
        } catch (AssertionError e) {
            c.close(Duration.ZERO);
            throw e;
        }
        return c;
    }
}
