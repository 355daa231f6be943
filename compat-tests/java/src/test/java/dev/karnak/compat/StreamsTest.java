package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;

import dev.karnak.compat.harness.ApacheKafka;
import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Kafka Streams 4.4.0 (exactly_once_v2) word count: lines -> flatMap words -> groupBy word (a repartition topic)
 * -> count (a changelog-backed state store) -> output topic. Record caching is off, so every count update is
 * emitted and, with exactly-once, the read_committed output of a word is exactly 1, 2, ..., n.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class StreamsTest {
    /** Timed-out transactions (of the app instance killed below) are aborted within a second, not ten. */
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker(
            "--transaction-abort-timed-out-transaction-cleanup-interval-ms", "1000");

    static final int PARTITIONS = 3;
    static final String STORE = "word-counts";
    static final String GROUPING = "by-word";
    static final List<String> VOCABULARY = List.of(
            "nile", "karnak", "luxor", "thebes", "amun", "ra", "obelisk", "pylon", "sphinx", "papyrus",
            "scarab", "ankh", "pharaoh", "temple", "hypostyle", "column", "granite", "sandstone", "river", "delta",
            "sun", "moon", "star", "barque", "priest", "scribe", "stele", "relief", "cartouche", "dynasty");

    // ---------------------------------------------------------------------------------------------------------
    // The app

    static Topology topology(String input, String output) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.split(" ")))
                .filter((k, word) -> !word.isEmpty())
                .groupBy((k, word) -> word, Grouped.with(GROUPING, Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(STORE)
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        return b.build();
    }

    static Properties streamsProps(String bootstrap, String appId, Path stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 500);
        p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_GLOBAL_ENABLED_CONFIG, true);
        // A dead instance leaves the group (6 s, the broker minimum) and its open transaction is aborted (5 s)
        // soon enough for a test.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), 5000);
        return p;
    }

    /** One in-process KafkaStreams instance; fails the test early if a stream thread dies. */
    static final class App implements AutoCloseable {
        final KafkaStreams streams;
        final AtomicReference<Throwable> died = new AtomicReference<>();
        final AtomicLong restored = new AtomicLong();

        App(String bootstrap, String appId, String input, String output, Path stateDir) {
            streams = new KafkaStreams(topology(input, output), streamsProps(bootstrap, appId, stateDir));
            streams.setUncaughtExceptionHandler(e -> {
                died.compareAndSet(null, e);
                return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            streams.setGlobalStateRestoreListener(new StateRestoreListener() {
                @Override
                public void onRestoreStart(TopicPartition tp, String store, long start, long end) {}

                @Override
                public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {}

                @Override
                public void onRestoreEnd(TopicPartition tp, String store, long total) {
                    restored.addAndGet(total);
                }
            });
            streams.start();
        }

        void check() {
            Throwable t = died.get();
            if (t != null) {
                throw new AssertionError("the Streams app died (state " + streams.state() + ")", t);
            }
        }

        @Override
        public void close() {
            streams.close(Duration.ofSeconds(30));
        }
    }

    /**
     * The same app as a separate JVM (so that it can be killed with SIGKILL mid-transaction). Arguments:
     * bootstrap appId input output stateDir.
     */
    public static final class WordCountMain {
        public static void main(String[] args) throws InterruptedException {
            KafkaStreams s = new KafkaStreams(topology(args[2], args[3]),
                    streamsProps(args[0], args[1], Paths.get(args[4])));
            s.setStateListener((now, before) -> System.out.println("STATE " + before + " -> " + now));
            s.setUncaughtExceptionHandler(e -> {
                e.printStackTrace(System.out);
                return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
            });
            s.start();
            Thread.currentThread().join(); // until killed
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Input, expected output, and reading the output

    /** Deterministic lines of 1-8 words from the vocabulary. */
    static List<String> lines(long seed, int n) {
        Random r = new Random(seed);
        List<String> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            int words = 1 + r.nextInt(8);
            StringBuilder sb = new StringBuilder();
            for (int w = 0; w < words; w++) {
                if (w > 0) {
                    sb.append(' ');
                }
                sb.append(VOCABULARY.get(r.nextInt(VOCABULARY.size())));
            }
            out.add(sb.toString());
        }
        return out;
    }

    static void addCounts(Map<String, Long> counts, List<String> lines) {
        for (String line : lines) {
            for (String w : line.split(" ")) {
                counts.merge(w, 1L, Long::sum);
            }
        }
    }

    static void produceLines(String bootstrap, String topic, String keyPrefix, List<String> lines) {
        Map<String, Object> c = new HashMap<>();
        c.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        c.put(ProducerConfig.ACKS_CONFIG, "all");
        c.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        try (KafkaProducer<String, String> p = new KafkaProducer<>(c)) {
            for (int i = 0; i < lines.size(); i++) {
                p.send(new ProducerRecord<>(topic, keyPrefix + i, lines.get(i)));
            }
            p.flush();
        }
    }

    /** Reads the output topic read_committed from the beginning, keeping every value per word in order. */
    static final class CountsReader implements AutoCloseable {
        final KafkaConsumer<String, Long> consumer;
        final Map<String, List<Long>> values = new TreeMap<>();

        CountsReader(String bootstrap, String topic) {
            Map<String, Object> c = new HashMap<>();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class);
            c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            consumer = new KafkaConsumer<>(c);
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < PARTITIONS; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
        }

        void poll() {
            for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(100))) {
                values.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
            }
        }

        Map<String, Long> last() {
            Map<String, Long> m = new TreeMap<>();
            values.forEach((k, v) -> m.put(k, v.get(v.size() - 1)));
            return m;
        }

        long total() {
            return last().values().stream().mapToLong(Long::longValue).sum();
        }

        /** Exactly-once with no record cache: each word's committed counts are 1, 2, ..., n in order. */
        void assertExactlyOnceSequences() {
            values.forEach((word, seq) -> {
                for (int i = 0; i < seq.size(); i++) {
                    if (seq.get(i) != i + 1) {
                        fail("committed counts of '" + word + "' are not 1..n (a count lost or doubled): " + seq);
                    }
                }
            });
        }

        @Override
        public void close() {
            consumer.close(Duration.ofSeconds(5));
        }
    }

    /** Polls the output until the last count of every word equals {@code expected}; checks the app is alive. */
    static void awaitCounts(CountsReader reader, Map<String, Long> expected, Duration timeout, App app) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!reader.last().equals(expected)) {
            if (app != null) {
                app.check();
            }
            if (System.nanoTime() > deadline) {
                assertEquals(expected, reader.last(), "final counts not reached within " + timeout
                        + (app != null ? " (app state " + app.streams.state() + ")" : ""));
            }
            reader.poll();
            reader.last().forEach((word, n) -> {
                if (n > expected.getOrDefault(word, 0L)) {
                    fail("'" + word + "' counted " + n + " times, more than the " + expected.get(word)
                            + " occurrences produced (counted twice): " + reader.values.get(word));
                }
            });
        }
    }

    static void createTopics(String bootstrap, String... topics) {
        try (Admin admin = Clients.admin(bootstrap)) {
            for (String t : topics) {
                Clients.createTopic(admin, t, PARTITIONS);
            }
        }
    }

    static Path stateDir(String name) {
        try {
            Path root = Paths.get(System.getProperty("karnak.test.dir", "target/karnak-test")).toAbsolutePath();
            Files.createDirectories(root);
            return Files.createTempDirectory(root, "streams-" + name + "-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Runs the app once over {@code input} lines and returns the final committed counts. */
    static Map<String, Long> runOnce(String bootstrap, List<String> input, Map<String, Long> expected) {
        String in = Clients.unique("wc-in");
        String out = Clients.unique("wc-out");
        String appId = Clients.unique("wc-app");
        createTopics(bootstrap, in, out);
        produceLines(bootstrap, in, "line-", input);
        try (App app = new App(bootstrap, appId, in, out, stateDir("diff"));
             CountsReader reader = new CountsReader(bootstrap, out)) {
            awaitCounts(reader, expected, Duration.ofSeconds(60), app);
            reader.assertExactlyOnceSequences();
            assertInternalTopics(bootstrap, appId);
            return reader.last();
        }
    }

    /** Streams created its repartition (delete) and changelog (compact) topics with PARTITIONS partitions. */
    static void assertInternalTopics(String bootstrap, String appId) {
        String repartition = appId + "-" + GROUPING + "-repartition";
        String changelog = appId + "-" + STORE + "-changelog";
        try (Admin admin = Clients.admin(bootstrap)) {
            var desc = Clients.get(admin.describeTopics(List.of(repartition, changelog)).allTopicNames());
            assertEquals(PARTITIONS, desc.get(repartition).partitions().size());
            assertEquals(PARTITIONS, desc.get(changelog).partitions().size());
            ConfigResource rr = new ConfigResource(ConfigResource.Type.TOPIC, repartition);
            ConfigResource cr = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
            Map<ConfigResource, Config> cfg = Clients.get(admin.describeConfigs(List.of(rr, cr)).all());
            assertEquals("delete", cfg.get(rr).get("cleanup.policy").value());
            assertEquals("-1", cfg.get(rr).get("retention.ms").value());
            assertEquals("compact", cfg.get(cr).get("cleanup.policy").value());
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Tests

    /**
     * The same input through the same app on Karnak and on the Apache Kafka oracle: identical final counts (and
     * both equal to the counts computed here). Also: Streams purges the repartition topic it consumed
     * (DeleteRecords after commit).
     */
    @Test
    void wordCountSameOnKarnakAndOracle() {
        List<String> input = lines(42, 400);
        Map<String, Long> expected = new TreeMap<>();
        addCounts(expected, input);

        Map<String, Long> onKarnak = runOnce(karnak.bootstrap(), input, expected);
        Map<String, Long> onKafka = runOnce(ApacheKafka.get().bootstrap(), input, expected);
        assertEquals(onKafka, onKarnak, "Karnak and Apache Kafka disagree");
        assertEquals(expected, onKarnak);
    }

    /**
     * The repartition topic is purged by the app (Streams' DeleteRecords up to the committed offsets): its log
     * start offset moves past 0 on Karnak.
     */
    @Test
    void repartitionTopicIsPurged() {
        String bootstrap = karnak.bootstrap();
        String in = Clients.unique("wc-in");
        String out = Clients.unique("wc-out");
        String appId = Clients.unique("wc-purge");
        createTopics(bootstrap, in, out);
        List<String> input = lines(7, 200);
        Map<String, Long> expected = new TreeMap<>();
        addCounts(expected, input);
        produceLines(bootstrap, in, "line-", input);
        try (App app = new App(bootstrap, appId, in, out, stateDir("purge"));
             CountsReader reader = new CountsReader(bootstrap, out);
             Admin admin = Clients.admin(bootstrap)) {
            awaitCounts(reader, expected, Duration.ofSeconds(60), app);
            String repartition = appId + "-" + GROUPING + "-repartition";
            Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                earliest.put(new TopicPartition(repartition, p), OffsetSpec.earliest());
            }
            Poll.untilTrue(Duration.ofSeconds(30), "the app to purge " + repartition, () -> {
                app.check();
                return Clients.get(admin.listOffsets(earliest).all()).values().stream()
                        .anyMatch(i -> i.offset() > 0);
            });
        }
    }

    /**
     * Crash and recovery on Karnak. Instance 1 (its own JVM) counts batch 1, then is killed with SIGKILL while it
     * works through batch 2 (a transaction open); the broker is killed with SIGKILL and restarted too. Instance 2
     * (in-process, an EMPTY state dir) restores the store from the changelog, finishes batch 2 and counts batch 3;
     * then it is closed cleanly and instance 3 (same state dir) counts batch 4. The final counts equal those
     * computed here, and each word's committed counts are 1..n: nothing lost, nothing counted twice.
     */
    @Test
    void crashMidStreamThenRestoreFromChangelogWithoutDoubleCounting() throws Exception {
        Karnak broker = karnak.get();
        String in = Clients.unique("wc-in");
        String out = Clients.unique("wc-out");
        String appId = Clients.unique("wc-crash");
        createTopics(broker.bootstrap(), in, out);

        List<String> batch1 = lines(1, 300);
        List<String> batch2 = lines(2, 3000);
        List<String> batch3 = lines(3, 300);
        List<String> batch4 = lines(4, 300);
        Map<String, Long> expected = new TreeMap<>();

        Path childDir = stateDir("child");
        Process child = startChild(broker.bootstrap(), appId, in, out, childDir);
        try {
            addCounts(expected, batch1);
            produceLines(broker.bootstrap(), in, "b1-", batch1);
            try (CountsReader reader = new CountsReader(broker.bootstrap(), out)) {
                awaitCounts(reader, expected, Duration.ofSeconds(60), null);
                long batch1Total = reader.total();

                addCounts(expected, batch2);
                long batch2Total = expected.values().stream().mapToLong(Long::longValue).sum();
                produceLines(broker.bootstrap(), in, "b2-", batch2);
                // Kill as soon as some of batch 2 is committed, but not all of it.
                Poll.untilTrue(Duration.ofSeconds(60), "instance 1 to commit part of batch 2", () -> {
                    if (!child.isAlive()) {
                        throw new AssertionError("instance 1 exited: " + childLog(childDir));
                    }
                    reader.poll();
                    return reader.total() > batch1Total;
                });
                child.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
                reader.poll();
                long open;
                try (Admin admin = Clients.admin(broker.bootstrap())) {
                    open = Clients.get(admin.listTransactions().all()).stream()
                            .filter(t -> t.transactionalId().startsWith(appId))
                            .filter(t -> t.state() == TransactionState.ONGOING)
                            .count();
                }
                System.out.println("[streams] instance 1 killed with " + reader.total() + " of " + batch2Total
                        + " words counted (batch 1: " + batch1Total + "), " + open + " transaction(s) open");
                assertTrue(reader.total() < batch2Total,
                        "the app was not killed mid-stream (it had already counted batch 2): " + reader.total());
                reader.assertExactlyOnceSequences();
            }
        } finally {
            child.destroyForcibly();
        }

        assertEquals(137, broker.kill9());
        broker.startAgain();

        Path state = stateDir("restore");
        try (App app = new App(broker.bootstrap(), appId, in, out, state);
             CountsReader reader = new CountsReader(broker.bootstrap(), out)) {
            addCounts(expected, batch3);
            produceLines(broker.bootstrap(), in, "b3-", batch3);
            awaitCounts(reader, expected, Duration.ofSeconds(90), app);
            System.out.println("[streams] instance 2 restored " + app.restored.get() + " changelog records");
            assertTrue(app.restored.get() > 0, "instance 2 restored nothing from the changelog");
            reader.assertExactlyOnceSequences();
        }

        try (App app = new App(broker.bootstrap(), appId, in, out, state);
             CountsReader reader = new CountsReader(broker.bootstrap(), out)) {
            addCounts(expected, batch4);
            produceLines(broker.bootstrap(), in, "b4-", batch4);
            awaitCounts(reader, expected, Duration.ofSeconds(60), app);
            reader.assertExactlyOnceSequences();
        }
    }

    static Process startChild(String bootstrap, String appId, String in, String out, Path stateDir)
            throws IOException {
        List<String> cmd = new ArrayList<>(List.of(
                Paths.get(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                // Its own client log (the test JVM's log4j2 file appender would be truncated otherwise).
                "-Dkarnak.log.dir=" + stateDir.resolve("logs"),
                "-cp", System.getProperty("java.class.path"),
                WordCountMain.class.getName(), bootstrap, appId, in, out, stateDir.resolve("state").toString()));
        return new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(stateDir.resolve("stdout.log").toFile()).start();
    }

    static String childLog(Path stateDir) {
        try {
            List<String> all = Files.readAllLines(stateDir.resolve("stdout.log"));
            return all.subList(Math.max(0, all.size() - 60), all.size()).stream()
                    .collect(Collectors.joining("\n"));
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }
}
