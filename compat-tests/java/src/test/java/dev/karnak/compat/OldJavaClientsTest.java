package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.KarnakBroker;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Older Java clients against Karnak: kafka-clients 2.8.2, 0.11.0.3 and 0.10.2.2 from Maven Central, each in an
 * isolated class loader holding only its own jars (copied by maven-dependency-plugin into
 * {@code target/old-kafka-clients/<version>/}; parent = the platform class loader, so no 4.4 class leaks in). The
 * driver {@code oldclients.OldClientDriver} is compiled with the suite and defined inside each loader.
 *
 * <p>0.10.2.2 knows Produce up to v2 and Fetch up to v3: after ApiVersions it sends those, message format v1, which
 * Kafka 4.0 removed (KIP-896); those cases are tagged {@code legacy-protocol} (not excluded by default; they fail
 * with {@code -Dcompat.against=kafka}, as Apache Kafka 4.4 refuses those versions). 0.11.0.3 (Produce v3, Fetch
 * v5) and 2.8.2 use v2 batches.
 */
class OldJavaClientsTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker();

    private static final String DRIVER = "dev.karnak.compat.oldclients.OldClientDriver";
    private static final int N = 1000;
    private static final long TS0 = 1_700_000_000_000L;
    private static final Map<String, IsolatedLoader> LOADERS = new ConcurrentHashMap<>();

    /** Defines the driver classes itself (from the test class path's bytes); everything else from the old jars. */
    static final class IsolatedLoader extends URLClassLoader {
        private final ClassLoader source;

        IsolatedLoader(URL[] jars, ClassLoader source) {
            super(jars, ClassLoader.getPlatformClassLoader());
            this.source = source;
        }

        @Override
        protected Class<?> findClass(String name) throws ClassNotFoundException {
            if (name.startsWith("dev.karnak.compat.oldclients.")) {
                try (InputStream in = source.getResourceAsStream(name.replace('.', '/') + ".class")) {
                    if (in == null) {
                        throw new ClassNotFoundException(name);
                    }
                    byte[] b = in.readAllBytes();
                    return defineClass(name, b, 0, b.length);
                } catch (IOException e) {
                    throw new ClassNotFoundException(name, e);
                }
            }
            return super.findClass(name);
        }
    }

    static IsolatedLoader loader(String version) {
        return LOADERS.computeIfAbsent(version, v -> {
            Path dir = Paths.get(System.getProperty("old.kafka.clients.dir", "target/old-kafka-clients")).resolve(v);
            List<URL> jars = new ArrayList<>();
            try (Stream<Path> files = Files.list(dir)) {
                for (Path p : (Iterable<Path>) files.filter(f -> f.toString().endsWith(".jar")).sorted()::iterator) {
                    jars.add(p.toUri().toURL());
                }
            } catch (MalformedURLException e) {
                throw new IllegalStateException(e);
            } catch (IOException e) {
                throw new UncheckedIOException("no jars for kafka-clients " + v + " in " + dir
                        + " (maven-dependency-plugin copies them in generate-test-resources)", e);
            }
            assertFalse(jars.isEmpty(), "no jars in " + dir);
            IsolatedLoader l = new IsolatedLoader(jars.toArray(new URL[0]), OldJavaClientsTest.class.getClassLoader());
            // the Kafka classes really are the old ones
            try {
                Class<?> producer = l.loadClass("org.apache.kafka.clients.producer.KafkaProducer");
                assertSame(l, producer.getClassLoader(), "KafkaProducer must come from the isolated loader");
                Properties props = new Properties();
                try (InputStream in = l.getResourceAsStream("kafka/kafka-version.properties")) {
                    assertNotNull(in, "kafka-version.properties in kafka-clients " + v);
                    props.load(in);
                }
                assertEquals(v, props.getProperty("version"), "kafka-clients version in the isolated loader");
            } catch (ClassNotFoundException | IOException e) {
                throw new AssertionError(e);
            }
            return l;
        });
    }

    @AfterAll
    static void closeLoaders() throws IOException {
        for (IsolatedLoader l : LOADERS.values()) {
            l.close();
        }
        LOADERS.clear();
    }

    /** Calls a static driver method inside the version's loader (thread context loader set to it). */
    @SuppressWarnings("unchecked")
    static Map<String, Object> call(String version, String method, Object... args) throws Exception {
        IsolatedLoader l = loader(version);
        Class<?> driver = l.loadClass(DRIVER);
        assertSame(l, driver.getClassLoader());
        Method m = null;
        for (Method candidate : driver.getMethods()) {
            if (candidate.getName().equals(method)) {
                m = candidate;
            }
        }
        assertNotNull(m, "driver method " + method);
        Thread t = Thread.currentThread();
        ClassLoader before = t.getContextClassLoader();
        t.setContextClassLoader(l);
        try {
            return (Map<String, Object>) m.invoke(null, args);
        } catch (InvocationTargetException e) {
            Throwable cause = e.getCause();
            throw new AssertionError("kafka-clients " + version + " " + method + ": " + cause, cause);
        } finally {
            t.setContextClassLoader(before);
        }
    }

    static String value(int i) {
        return "v" + i + "-" + "x".repeat(i % 50);
    }

    static boolean hasHeaders(String version) {
        return !version.startsWith("0.10.");
    }

    @SuppressWarnings("unchecked")
    private void roundTrip(String version, String codec) throws Exception {
        String topic = Clients.unique("old-java-" + version + "-" + codec);
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 1);
        }
        boolean headers = hasHeaders(version);
        Map<String, Object> produced = call(version, "produce", karnak.bootstrap(), topic, codec, N, TS0, headers);
        List<Long> offsets = (List<Long>) produced.get("offsets");
        List<Long> timestamps = (List<Long>) produced.get("timestamps");
        for (int i = 0; i < N; i++) {
            assertEquals(i, offsets.get(i), "offset of record " + i);
            assertEquals(TS0 + i, timestamps.get(i), "RecordMetadata.timestamp of record " + i);
        }

        Map<String, Object> consumed = call(version, "consume", karnak.bootstrap(), topic, N, 60_000L, headers);
        List<String> rows = (List<String>) consumed.get("rows");
        assertEquals(N, rows.size(), "records read by kafka-clients " + version);
        for (int i = 0; i < N; i++) {
            String want = "0|" + i + "|k" + i + "|" + value(i) + "|" + (TS0 + i) + "|CreateTime|"
                    + (headers ? "h=" + i + ",n=null" : "-");
            assertEquals(want, rows.get(i), "record " + i + " (" + version + ", " + codec + ")");
        }
        assertEquals(0L, consumed.get("beginning"));
        assertEquals((long) N, consumed.get("end"));

        // A 4.4 consumer reads what the old producer wrote: the same records (and headers) in v2 batches.
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), null, Map.of())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(c, N, Duration.ofSeconds(60));
            assertEquals(N, got.size());
            for (int i = 0; i < N; i++) {
                ConsumerRecord<byte[], byte[]> r = got.get(i);
                assertEquals(i, r.offset());
                assertEquals("k" + i, new String(r.key(), StandardCharsets.UTF_8));
                assertEquals(value(i), new String(r.value(), StandardCharsets.UTF_8));
                assertEquals(TS0 + i, r.timestamp());
                Header[] hs = r.headers().toArray();
                assertEquals(headers ? 2 : 0, hs.length, "headers of record " + i);
            }
        }
    }

    @ParameterizedTest(name = "kafka-clients 0.10.2.2, compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "lz4"})
    @Tag("legacy-protocol")
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void kafkaClients0102RoundTrip(String codec) throws Exception {
        roundTrip("0.10.2.2", codec);
    }

    @ParameterizedTest(name = "kafka-clients {0}, compression.type={1}")
    @CsvSource({"0.11.0.3, gzip", "0.11.0.3, lz4", "2.8.2, gzip", "2.8.2, lz4"})
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void newerOldClientsRoundTrip(String version, String codec) throws Exception {
        roundTrip(version, codec);
    }

    @SuppressWarnings("unchecked")
    private void groupCommit(String version) throws Exception {
        String topic = Clients.unique("old-java-group-" + version);
        String group = Clients.unique("old-java-group");
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 1);
        }
        call(version, "produce", karnak.bootstrap(), topic, "gzip", N, TS0, false);
        Map<String, Object> out = call(version, "groupCommit", karnak.bootstrap(), topic, group, N, 60_000L);
        List<String> rows = (List<String>) out.get("rows");
        assertEquals(N, rows.size(), "records the group member read");
        for (int i = 0; i < N; i++) {
            // partition|offset|key|value|timestamp|type|headers
            assertEquals(List.of("0", String.valueOf(i), "k" + i, value(i), String.valueOf(TS0 + i), "CreateTime"),
                    List.of(rows.get(i).split("\\|")).subList(0, 6), "record " + i);
        }
        assertEquals("[" + topic + "-0]", out.get("assignment"));
        assertEquals((long) N, out.get("committed"));
        assertEquals("old-java-" + N, out.get("metadata"));
        // and the 4.4 AdminClient sees the old client's commit
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Map<TopicPartition, OffsetAndMetadata> offsets =
                    Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            OffsetAndMetadata om = offsets.get(new TopicPartition(topic, 0));
            assertNotNull(om, "committed offset of " + group + ": " + offsets);
            assertEquals(N, om.offset());
            assertEquals("old-java-" + N, om.metadata());
        }
    }

    @ParameterizedTest(name = "kafka-clients {0}")
    @ValueSource(strings = {"0.10.2.2"})
    @Tag("legacy-protocol")
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void legacyConsumerGroupCommit(String version) throws Exception {
        groupCommit(version);
    }

    @ParameterizedTest(name = "kafka-clients {0}")
    @ValueSource(strings = {"0.11.0.3", "2.8.2"})
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void consumerGroupCommit(String version) throws Exception {
        groupCommit(version);
    }
}
