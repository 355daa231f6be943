package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.ConnectWorker;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.source.ExactlyOnceSupport;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Kafka Connect 4.4.0 in distributed mode (in-process workers, {@link ConnectWorker}) with its config, offset and
 * status topics on Karnak. The file connectors are connect-file 4.3.1 (4.4.0 is not on Maven Central, see pom.xml);
 * the exactly-once test uses a small multi-task source connector defined here ({@link SeqSourceConnector}), because a
 * zombie-fencing round (Admin.fenceProducers) only happens for connectors with more than one task.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class ConnectTest {
    /** The cleaner looks for compactable logs every 200 ms (not 15 s), for the compaction test. */
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker("--log-cleaner-backoff-ms", "200");

    @BeforeAll
    static void guardExit() {
        ConnectWorker.guardExit();
    }

    @AfterAll
    static void unguardExit() {
        ConnectWorker.unguardExit();
    }

    static Path tempDir(String name) {
        try {
            Path root = Paths.get(System.getProperty("karnak.test.dir", "target/karnak-test")).toAbsolutePath();
            Files.createDirectories(root);
            return Files.createTempDirectory(root, "connect-" + name + "-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static List<String> lines(String prefix, int from, int to) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add(String.format("%s-%04d", prefix, i));
        }
        return out;
    }

    static void append(Path file, List<String> lines) throws IOException {
        Files.write(file, lines, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /** The complete lines of a file (a line the sink task is still writing is left out). */
    static List<String> readLines(Path file) throws IOException {
        if (!Files.exists(file)) {
            return List.of();
        }
        String text = Files.readString(file, StandardCharsets.UTF_8);
        int end = text.lastIndexOf('\n');
        return end < 0 ? List.of() : List.of(text.substring(0, end).split("\n", -1));
    }

    /** Waits until the sink file holds exactly {@code expected} (fails at once if it holds more, or other lines). */
    static void awaitFile(Path file, List<String> expected) {
        Poll.untilTrue(Duration.ofSeconds(60), file.getFileName() + " to hold " + expected.size() + " lines", () -> {
            ConnectWorker.checkNoExit();
            List<String> got = readLines(file);
            if (got.size() > expected.size() || !expected.subList(0, got.size()).equals(got)) {
                throw new AssertionError("sink file is not a prefix of the source lines (duplicates or loss): "
                        + "expected " + expected.size() + " lines, got " + got.size() + ": " + got);
            }
            return got.size() == expected.size();
        });
    }

    /** Every record value of a topic up to its end offsets, partition by partition. */
    static List<String> readTopic(String topic, String isolation) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(karnak.bootstrap(), null, c)) {
            List<TopicPartition> tps = new ArrayList<>();
            consumer.partitionsFor(topic, Duration.ofSeconds(30))
                    .forEach(pi -> tps.add(new TopicPartition(topic, pi.partition())));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            List<String> out = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (tps.stream().anyMatch(tp -> consumer.position(tp) < end.get(tp))) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    out.add(r.value() == null ? null : new String(r.value(), StandardCharsets.UTF_8));
                }
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("could not read " + topic + " to its end offsets " + end);
                }
            }
            return out;
        }
    }

    /** Keys of the records of a (Connect config) topic, read_committed. */
    static List<String> readKeys(String topic) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(karnak.bootstrap(), null, c)) {
            List<TopicPartition> tps = List.of(new TopicPartition(topic, 0));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long end = consumer.endOffsets(tps).get(tps.get(0));
            List<String> out = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (consumer.position(tps.get(0)) < end) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    out.add(new String(r.key(), StandardCharsets.UTF_8));
                }
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("could not read " + topic + " to " + end);
                }
            }
            return out;
        }
    }

    static Map<String, String> fileSource(Path file, String topic) {
        return Map.of(
                "connector.class", "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "tasks.max", "1",
                "file", file.toString(),
                "topic", topic);
    }

    static Map<String, String> fileSink(Path file, String topic) {
        return Map.of(
                "connector.class", "org.apache.kafka.connect.file.FileStreamSinkConnector",
                "tasks.max", "1",
                "file", file.toString(),
                "topics", topic);
    }

    /**
     * A file source and a file sink connector (lines -> topic -> lines) on one worker; the worker is stopped, more
     * lines are appended, a new worker in the same group resumes from the stored source offsets and the sink
     * group's committed offsets (no line twice, none lost); a second worker joins and the tasks are rebalanced
     * over both (incremental cooperative, sessioned protocol); lines still flow exactly once.
     */
    @Test
    void fileSourceAndSinkSurviveRestartAndRebalanceOverTwoWorkers() throws Exception {
        String cluster = Clients.unique("connect");
        String topic = Clients.unique("connect-lines");
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 1);
        }
        Path dir = tempDir("file");
        Path in = dir.resolve("in.txt");
        Path out = dir.resolve("out.txt");
        List<String> expected = new ArrayList<>(lines("line", 0, 100));
        append(in, expected);
        Map<String, String> props = ConnectWorker.props(karnak.bootstrap(), cluster);

        try (ConnectWorker w1 = ConnectWorker.start(props)) {
            w1.putConnector("src", fileSource(in, topic));
            w1.putConnector("sink", fileSink(out, topic));
            w1.awaitRunning("src", 1);
            w1.awaitRunning("sink", 1);
            awaitFile(out, expected);
            assertInternalTopics(cluster);
        }

        // Worker 1 stopped cleanly (offsets committed). Lines written meanwhile are picked up by the next worker.
        List<String> more = lines("line", 100, 200);
        append(in, more);
        expected.addAll(more);
        try (ConnectWorker w2 = ConnectWorker.start(props)) {
            w2.awaitRunning("src", 1);
            w2.awaitRunning("sink", 1);
            awaitFile(out, expected);
            assertEquals(expected, readTopic(topic, "read_uncommitted"),
                    "the topic holds each line once (source offsets were restored)");

            try (ConnectWorker w3 = ConnectWorker.start(props)) {
                Set<String> both = new TreeSet<>(Set.of(w2.workerId(), w3.workerId()));
                Poll.untilTrue(Duration.ofSeconds(60), "the 2 tasks spread over workers " + both, () -> {
                    ConnectWorker.checkNoExit();
                    Set<String> used = new TreeSet<>();
                    used.addAll(ConnectWorker.taskWorkers(w3.status("src")));
                    used.addAll(ConnectWorker.taskWorkers(w3.status("sink")));
                    return used.equals(both);
                });
                w3.awaitRunning("src", 1);
                w3.awaitRunning("sink", 1);
                List<String> last = lines("line", 200, 300);
                append(in, last);
                expected.addAll(last);
                awaitFile(out, expected);
                assertEquals(expected, readTopic(topic, "read_uncommitted"));
            }
        }
        assertTrue(readKeys(cluster + "-configs").contains("session-key"),
                "the sessioned protocol's session key is in the config topic");
    }

    /** Connect created its three internal topics compacted, with the partition counts it was given. */
    static void assertInternalTopics(String cluster) {
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Map<String, Integer> partitions = Map.of(
                    cluster + "-configs", 1, cluster + "-offsets", 5, cluster + "-status", 3);
            var desc = Clients.get(admin.describeTopics(partitions.keySet()).allTopicNames());
            List<ConfigResource> res = new ArrayList<>();
            partitions.forEach((t, n) -> {
                assertEquals(n, desc.get(t).partitions().size(), t);
                res.add(new ConfigResource(ConfigResource.Type.TOPIC, t));
            });
            Map<ConfigResource, Config> cfg = Clients.get(admin.describeConfigs(res).all());
            cfg.forEach((r, c) -> assertEquals("compact", c.get("cleanup.policy").value(), r.name()));
        }
    }

    /**
     * exactly.once.source.support=enabled: the leader writes the config topic transactionally
     * ({@code connect-cluster-<group>}), each source task writes its records and its offsets in transactions
     * ({@code <group>-<connector>-<task>}). Reconfiguring a 2-task source connector makes the leader fence the old
     * generation's task producers (Admin.fenceProducers) and record the new task count before the new tasks start;
     * they resume from the offsets committed in those transactions: every record exactly once.
     */
    @Test
    void exactlyOnceSourceWithZombieFencing() throws Exception {
        String cluster = Clients.unique("connect-eos");
        String topic = Clients.unique("connect-seq");
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 2);
        }
        Map<String, String> props = ConnectWorker.props(karnak.bootstrap(), cluster);
        props.put("exactly.once.source.support", "enabled");
        Map<String, String> conn = new HashMap<>(Map.of(
                "connector.class", SeqSourceConnector.class.getName(),
                "tasks.max", "2",
                "topic", topic,
                "count", "50",
                "exactly.once.support", "required",
                "transaction.boundary", "poll"));

        try (ConnectWorker w = ConnectWorker.start(props); Admin admin = Clients.admin(karnak.bootstrap())) {
            w.putConnector("seq", conn);
            w.awaitRunning("seq", 2);
            Poll.untilTrue(Duration.ofSeconds(60), "100 committed records in " + topic,
                    () -> readTopic(topic, "read_committed").size() >= 100);
            assertEquals(expectedSeq(50), new TreeSet<>(readTopic(topic, "read_committed")));
            assertEquals(100, readTopic(topic, "read_committed").size());

            String t0 = cluster + "-seq-0";
            Set<String> txIds = new TreeSet<>();
            for (TransactionListing l : Clients.get(admin.listTransactions().all())) {
                txIds.add(l.transactionalId());
            }
            assertTrue(txIds.containsAll(Set.of("connect-cluster-" + cluster, t0, cluster + "-seq-1")),
                    "transactional ids of the leader and of both tasks: " + txIds);
            int epochBefore = describe(admin, t0).producerEpoch();
            long countRecordsBefore = readKeys(cluster + "-configs").stream()
                    .filter(k -> k.equals("tasks-fencing-seq")).count();
            assertTrue(countRecordsBefore >= 1, "the leader recorded the task count");

            // New task configs (a new generation): the leader must fence the old tasks' producers first.
            conn.put("count", "100");
            w.putConnector("seq", conn);
            Poll.untilTrue(Duration.ofSeconds(60), "200 committed records in " + topic,
                    () -> readTopic(topic, "read_committed").size() >= 200);
            w.awaitRunning("seq", 2);
            List<String> all = readTopic(topic, "read_committed");
            assertEquals(200, all.size(), "each record once: " + all);
            assertEquals(expectedSeq(100), new TreeSet<>(all));

            long countRecordsAfter = readKeys(cluster + "-configs").stream()
                    .filter(k -> k.equals("tasks-fencing-seq")).count();
            assertTrue(countRecordsAfter > countRecordsBefore, "a fencing round recorded the new task count");
            int epochAfter = describe(admin, t0).producerEpoch();
            assertTrue(epochAfter >= epochBefore + 2,
                    "task 0's producer epoch went from " + epochBefore + " to " + epochAfter
                            + ": expected a fencing bump and the new producer's bump");
            // Transactions leave markers: the log holds more offsets than records.
            long end = Clients.get(admin.listOffsets(Map.of(
                    new TopicPartition(topic, 0), org.apache.kafka.clients.admin.OffsetSpec.latest(),
                    new TopicPartition(topic, 1), org.apache.kafka.clients.admin.OffsetSpec.latest())).all())
                    .values().stream().mapToLong(i -> i.offset()).sum();
            assertTrue(end > 200, "records were written in transactions (commit markers), end offsets sum " + end);
        }
    }

    /**
     * Exactly-once source across a broker crash: while the 2 tasks stream records (a transaction per poll), Karnak is
     * killed with SIGKILL and restarted. The worker and its tasks recover on their own and go on; once the connector is
     * stopped, each task's committed records are exactly t<i>-0 .. t<i>-(n-1): no gap (nothing committed was lost)
     * and no duplicate (nothing was re-sent outside the transaction that carried its offset).
     */
    @Test
    void exactlyOnceSourceSurvivesBrokerKill9() throws Exception {
        String cluster = Clients.unique("connect-crash");
        String topic = Clients.unique("connect-stream");
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 2);
        }
        Map<String, String> props = ConnectWorker.props(karnak.bootstrap(), cluster);
        props.put("exactly.once.source.support", "enabled");
        Map<String, String> conn = Map.of(
                "connector.class", SeqSourceConnector.class.getName(),
                "tasks.max", "2",
                "topic", topic,
                "count", "100000000",
                "poll.sleep.ms", "20",
                "exactly.once.support", "required",
                "transaction.boundary", "poll");
        try (ConnectWorker w = ConnectWorker.start(props)) {
            w.putConnector("stream", conn);
            w.awaitRunning("stream", 2);
            Poll.untilTrue(Duration.ofSeconds(60), "200 committed records",
                    () -> readTopic(topic, "read_committed").size() >= 200);

            assertEquals(137, karnak.get().kill9());
            karnak.get().startAgain();

            long atRestart = readTopic(topic, "read_committed").size();
            Poll.untilTrue(Duration.ofSeconds(90), "the tasks to go on after the broker restart", () -> {
                ConnectWorker.checkNoExit();
                return readTopic(topic, "read_committed").size() >= atRestart + 400;
            });
            ConnectWorker.Response stop = w.put("/connectors/stream/stop", Map.of());
            assertTrue(stop.ok(), "PUT /connectors/stream/stop: " + stop);
            Poll.untilTrue(Duration.ofSeconds(60), "the connector to stop",
                    () -> w.status("stream").get("connector").get("state").asText().equals("STOPPED"));

            List<String> all = readTopic(topic, "read_committed");
            Map<String, Integer> perTask = new HashMap<>();
            Set<String> seen = new TreeSet<>();
            for (String v : all) {
                assertTrue(seen.add(v), "duplicate record " + v + " after the broker restart");
                perTask.merge(v.substring(0, v.indexOf('-')), 1, Integer::sum);
            }
            for (Map.Entry<String, Integer> e : perTask.entrySet()) {
                for (int i = 0; i < e.getValue(); i++) {
                    assertTrue(seen.contains(e.getKey() + "-" + i),
                            "task " + e.getKey() + " committed " + e.getValue() + " records but not "
                                    + e.getKey() + "-" + i + " (a gap: committed records lost)");
                }
            }
            assertEquals(Set.of("t0", "t1"), perTask.keySet());
        }
    }

    /**
     * The internal topics compacted under a live cluster: they are created beforehand (compact, a segment per
     * append after 100 ms, any dirty ratio) and the exactly-once cluster rewrites its config topic (transactional
     * writes by the leader) and its offsets many times: six generations of a 2-task connector, another connector
     * created and deleted. Once Karnak's cleaner has dropped superseded records from both topics, a new worker
     * starts from them: the deleted connector stays deleted, the live one resumes with its latest config from its
     * latest offsets, and every record is in the topic exactly once.
     */
    @Test
    void workerRestartsFromCompactedInternalTopics() throws Exception {
        String cluster = Clients.unique("connect-compact");
        String topic = Clients.unique("connect-compacted");
        Map<String, String> compactFast = Map.of(
                "cleanup.policy", "compact",
                "segment.ms", "100",
                "min.cleanable.dirty.ratio", "0.01",
                "min.compaction.lag.ms", "0");
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 2);
            Clients.createTopic(admin, topic + "-tmp", 1);
            Clients.get(admin.createTopics(List.of(
                    new NewTopic(cluster + "-configs", 1, (short) 1).configs(compactFast),
                    new NewTopic(cluster + "-offsets", 5, (short) 1).configs(compactFast),
                    new NewTopic(cluster + "-status", 3, (short) 1).configs(compactFast))).all());
        }
        Map<String, String> props = ConnectWorker.props(karnak.bootstrap(), cluster);
        props.put("exactly.once.source.support", "enabled");
        Map<String, String> conn = new HashMap<>(Map.of(
                "connector.class", SeqSourceConnector.class.getName(),
                "tasks.max", "2",
                "topic", topic,
                "count", "20",
                "exactly.once.support", "required",
                "transaction.boundary", "poll"));

        try (ConnectWorker w = ConnectWorker.start(props)) {
            for (int count = 20; count <= 70; count += 10) {
                conn.put("count", Integer.toString(count));
                w.putConnector("seq", conn);
                int want = 2 * count;
                Poll.untilTrue(Duration.ofSeconds(60), want + " committed records",
                        () -> readTopic(topic, "read_committed").size() >= want);
            }
            Map<String, String> tmp = new HashMap<>(conn);
            tmp.put("topic", topic + "-tmp");
            tmp.put("tasks.max", "1");
            tmp.put("count", "5");
            w.putConnector("tmp", tmp);
            w.awaitRunning("tmp", 1);
            ConnectWorker.Response del = w.delete("/connectors/tmp");
            assertTrue(del.ok(), "DELETE /connectors/tmp: " + del);
            Poll.untilTrue(Duration.ofSeconds(30), "tmp deleted",
                    () -> w.get("/connectors/tmp").status() == 404);

            // Superseded records go. Every write to these topics is transactional here (exactly-once): at least one
            // record and one commit marker per transaction, so an uncompacted log holds at least half as many records
            // as offsets; fewer means the cleaner removed records.
            for (String internal : List.of(cluster + "-configs", cluster + "-offsets")) {
                long[] seen = new long[2];
                Poll.untilTrue(Duration.ofSeconds(60), internal + " to be compacted", () -> {
                    seen[0] = readTopic(internal, "read_uncommitted").size();
                    seen[1] = endOffsetsSum(internal);
                    return seen[0] * 2 < seen[1];
                });
                System.out.println("[connect] " + internal + ": " + seen[0] + " records left in " + seen[1]
                        + " offsets");
            }
        }

        try (ConnectWorker w = ConnectWorker.start(props)) {
            // (A worker can answer GET /connectors before its first rebalance has read the config topic: "[]".)
            String connectors = Poll.until(Duration.ofSeconds(60), "the connectors read from the config topic",
                    () -> {
                        ConnectWorker.Response r = w.get("/connectors");
                        return r.ok() && !r.body().equals("[]") ? r.body() : null;
                    });
            assertEquals("[\"seq\"]", connectors, "connectors after the restart (tmp was deleted)");
            w.awaitRunning("seq", 2);
            assertEquals("70", w.get("/connectors/seq/config").json().get("count").asText());
            conn.put("count", "80");
            w.putConnector("seq", conn);
            Poll.untilTrue(Duration.ofSeconds(60), "160 committed records",
                    () -> readTopic(topic, "read_committed").size() >= 160);
            w.awaitRunning("seq", 2);
            List<String> all = readTopic(topic, "read_committed");
            assertEquals(160, all.size(), "each record once: " + all);
            assertEquals(expectedSeq(80), new TreeSet<>(all));
        }
    }

    static long endOffsetsSum(String topic) {
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            var desc = Clients.get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
            Map<TopicPartition, org.apache.kafka.clients.admin.OffsetSpec> req = new HashMap<>();
            desc.partitions().forEach(p -> req.put(new TopicPartition(topic, p.partition()),
                    org.apache.kafka.clients.admin.OffsetSpec.latest()));
            return Clients.get(admin.listOffsets(req).all()).values().stream().mapToLong(i -> i.offset()).sum();
        }
    }

    static TransactionDescription describe(Admin admin, String txId) {
        return Clients.get(admin.describeTransactions(List.of(txId)).all()).get(txId);
    }

    static Set<String> expectedSeq(int count) {
        Set<String> s = new TreeSet<>();
        for (int t = 0; t < 2; t++) {
            for (int i = 0; i < count; i++) {
                s.add("t" + t + "-" + i);
            }
        }
        return s;
    }

    // ---------------------------------------------------------------------------------------------------------
    // A source connector with N tasks; task i emits "t<i>-<seq>" for seq < count, its offset the next seq.

    public static final class SeqSourceConnector extends SourceConnector {
        private Map<String, String> props;

        @Override
        public void start(Map<String, String> props) {
            this.props = props;
        }

        @Override
        public Class<? extends Task> taskClass() {
            return SeqSourceTask.class;
        }

        @Override
        public List<Map<String, String>> taskConfigs(int maxTasks) {
            List<Map<String, String>> out = new ArrayList<>();
            for (int i = 0; i < maxTasks; i++) {
                Map<String, String> c = new HashMap<>(props);
                c.put("task.index", Integer.toString(i));
                out.add(c);
            }
            return out;
        }

        @Override
        public void stop() {}

        @Override
        public ConfigDef config() {
            return new ConfigDef()
                    .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "target topic")
                    .define("count", ConfigDef.Type.INT, ConfigDef.Importance.HIGH, "records per task")
                    .define("poll.sleep.ms", ConfigDef.Type.LONG, 0L, ConfigDef.Importance.LOW, "pause per poll");
        }

        @Override
        public ExactlyOnceSupport exactlyOnceSupport(Map<String, String> props) {
            return ExactlyOnceSupport.SUPPORTED;
        }

        @Override
        public String version() {
            return "1";
        }
    }

    public static final class SeqSourceTask extends SourceTask {
        private String topic;
        private int index;
        private int count;
        private long pollSleepMs;
        private long next;

        @Override
        public void start(Map<String, String> props) {
            topic = props.get("topic");
            index = Integer.parseInt(props.get("task.index"));
            count = Integer.parseInt(props.get("count"));
            pollSleepMs = Long.parseLong(props.getOrDefault("poll.sleep.ms", "0"));
            Map<String, Object> offset = context.offsetStorageReader().offset(partition());
            next = offset == null ? 0 : ((Number) offset.get("next")).longValue();
        }

        private Map<String, Object> partition() {
            return Map.of("task", index);
        }

        @Override
        public List<SourceRecord> poll() throws InterruptedException {
            if (next >= count) {
                Thread.sleep(100); // nothing more to emit; do not spin
                return null;
            }
            if (pollSleepMs > 0) {
                Thread.sleep(pollSleepMs); // a steady stream rather than a burst
            }
            List<SourceRecord> out = new ArrayList<>();
            for (int i = 0; i < 10 && next < count; i++, next++) {
                out.add(new SourceRecord(partition(), Map.of("next", next + 1), topic, index,
                        Schema.STRING_SCHEMA, "t" + index, Schema.STRING_SCHEMA, "t" + index + "-" + next));
            }
            return out;
        }

        @Override
        public void stop() {}

        @Override
        public String version() {
            return "1";
        }
    }
}
