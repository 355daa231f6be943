package dev.karnak.compat.harness;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/** Client factories and small helpers shared by the tests. */
public final class Clients {
    private Clients() {}

    public static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().replace("-", "").substring(0, 10);
    }

    /**
     * Client settings logging {@code user} in with SCRAM ({@code mechanism}) over {@code protocol}
     * (SASL_PLAINTEXT or SASL_SSL; the latter trusting the PEM CA {@code caPem}).
     */
    public static Map<String, Object> scramLogin(String mechanism, String user, String password, String protocol,
            java.nio.file.Path caPem) {
        Map<String, Object> c = new java.util.LinkedHashMap<>();
        c.put("security.protocol", protocol);
        c.put("sasl.mechanism", mechanism);
        c.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + user + "\" password=\"" + password + "\";");
        if (protocol.equals("SASL_SSL")) {
            c.put("ssl.truststore.type", "PEM");
            c.put("ssl.truststore.location", caPem.toString());
        }
        return c;
    }

    /** {@code props} written as a client properties file (the tools' --command-config). */
    public static java.nio.file.Path propertiesFile(java.nio.file.Path file, Map<String, Object> props)
            throws java.io.IOException {
        StringBuilder sb = new StringBuilder();
        props.forEach((k, v) -> sb.append(k).append('=').append(v).append('\n'));
        java.nio.file.Files.writeString(file, sb.toString());
        return file;
    }

    public static Admin admin(String bootstrap) {
        return admin(bootstrap, Map.of());
    }

    public static Admin admin(String bootstrap, Map<String, Object> overrides) {
        Map<String, Object> c = new HashMap<>();
        c.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        c.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        c.put(AdminClientConfig.CLIENT_ID_CONFIG, "karnak-compat-admin");
        c.putAll(overrides);
        return Admin.create(c);
    }

    public static KafkaProducer<byte[], byte[]> producer(String bootstrap, Map<String, Object> overrides) {
        Map<String, Object> c = new HashMap<>();
        c.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        c.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        c.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60000);
        c.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
        c.putAll(overrides);
        return new KafkaProducer<>(c);
    }

    public static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String group, Map<String, Object> overrides) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        c.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        if (group != null) {
            c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        c.putAll(overrides);
        return new KafkaConsumer<>(c);
    }

    /**
     * Creates the topic and waits until every partition answers ListOffsets (has a serving leader): Apache
     * Kafka answers CreateTopics before the broker leads the new partitions, and an idempotent producer whose
     * first batch gets NOT_LEADER_OR_FOLLOWER can get stuck in OUT_OF_ORDER_SEQUENCE_NUMBER retries.
     */
    public static void createTopic(Admin admin, String topic, int partitions) {
        get(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all());
        awaitLeaders(admin, topic, partitions);
    }

    public static void awaitLeaders(Admin admin, String topic, int partitions) {
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (int p = 0; p < partitions; p++) {
            req.put(new TopicPartition(topic, p), OffsetSpec.latest());
        }
        Poll.until(Duration.ofSeconds(30), "leaders of the " + partitions + " partitions of " + topic,
                () -> admin.listOffsets(req).all().get(10, TimeUnit.SECONDS));
    }

    /** Polls until {@code count} records arrived (or fails at the deadline), returns them in arrival order. */
    public static List<ConsumerRecord<byte[], byte[]>> consume(KafkaConsumer<byte[], byte[]> consumer, int count,
                                                               Duration timeout) {
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>(count);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (out.size() < count) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("consumed " + out.size() + " of " + count + " records within " + timeout);
            }
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                out.add(r);
            }
        }
        return out;
    }

    /** future.get with a deadline; unwraps ExecutionException so tests can assert on the Kafka exception. */
    public static <T> T get(KafkaFuture<T> f) {
        return get(f, Duration.ofSeconds(30));
    }

    public static <T> T get(KafkaFuture<T> f, Duration timeout) {
        try {
            return f.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof RuntimeException re) {
                throw re;
            }
            throw new RuntimeException(c);
        } catch (TimeoutException e) {
            throw new AssertionError("no answer within " + timeout + " (the call hangs)", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** The exception a future completes with (fails if it succeeds or does not complete in time). */
    public static Throwable failure(KafkaFuture<?> f, Duration timeout) {
        try {
            Object v = f.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            throw new AssertionError("expected a failure, got success: " + v);
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (TimeoutException e) {
            throw new AssertionError("no answer within " + timeout + " (the call hangs)", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }
}
