package dev.karnak.compat.oldclients;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Runs an old Java client (kafka-clients 0.10.2 .. 2.8) from inside an isolated class loader: OldJavaClientsTest
 * defines this class in a loader that holds only the old kafka-clients jar and its dependencies, so every Kafka
 * class it touches is the old one. Compiled against the 4.4 API, it calls only methods whose signatures the old
 * versions have too; {@code poll(long)} and {@code committed(TopicPartition)}, which 4.x removed, are called
 * reflectively. Headers (0.11+) live in {@link OldClientHeaders}, loaded only when asked for, so 0.10.2 never links
 * them. In and out only java.* types: the caller is on the other side of the class loader boundary.
 *
 * <p>Records: partition 0, key {@code k<i>}, value {@code v<i>-<padding>}, timestamp {@code ts0 + i}, and with
 * headers {@code h=<i>} and {@code n=null}.
 */
public final class OldClientDriver {
    private OldClientDriver() {}

    public static byte[] key(int i) {
        return ("k" + i).getBytes(StandardCharsets.UTF_8);
    }

    public static byte[] value(int i) {
        return ("v" + i + "-" + "x".repeat(i % 50)).getBytes(StandardCharsets.UTF_8);
    }

    /** Produces n records; returns {"offsets": List<Long>, "timestamps": List<Long>}. */
    public static Map<String, Object> produce(String bootstrap, String topic, String codec, int n, long ts0,
            boolean headers) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("compression.type", codec);
        p.put("acks", "all");
        p.put("linger.ms", "5");
        p.put("batch.size", "16384");
        p.put("retries", "0");
        p.put("client.id", "old-java-producer");
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < n; i++) {
                ProducerRecord<byte[], byte[]> r = headers
                        ? OldClientHeaders.record(topic, ts0 + i, key(i), value(i), i)
                        : new ProducerRecord<>(topic, 0, ts0 + i, key(i), value(i));
                acks.add(producer.send(r));
            }
            producer.flush();
            List<Long> offsets = new ArrayList<>();
            List<Long> timestamps = new ArrayList<>();
            for (Future<RecordMetadata> f : acks) {
                RecordMetadata md = f.get(60, TimeUnit.SECONDS);
                offsets.add(md.offset());
                timestamps.add(md.timestamp());
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("offsets", offsets);
            out.put("timestamps", timestamps);
            return out;
        }
    }

    private static Properties consumerProps(String bootstrap, String group) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("client.id", "old-java-consumer");
        if (group != null) {
            p.put("group.id", group);
            p.put("session.timeout.ms", "10000");
            p.put("heartbeat.interval.ms", "1000");
        }
        return p;
    }

    private static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String group) {
        return new KafkaConsumer<>(consumerProps(bootstrap, group), new ByteArrayDeserializer(),
                new ByteArrayDeserializer());
    }

    @SuppressWarnings("unchecked")
    private static ConsumerRecords<byte[], byte[]> poll(KafkaConsumer<byte[], byte[]> c, long ms) throws Exception {
        Method m = c.getClass().getMethod("poll", long.class); // removed in 4.0; in every old version
        try {
            return (ConsumerRecords<byte[], byte[]>) m.invoke(c, ms);
        } catch (InvocationTargetException e) {
            throw rethrow(e);
        }
    }

    private static Exception rethrow(InvocationTargetException e) {
        Throwable t = e.getCause();
        if (t instanceof RuntimeException re) {
            throw re;
        }
        if (t instanceof Error err) {
            throw err;
        }
        return (Exception) t;
    }

    /** One record as text: offset, key, value, timestamp, timestamp type, headers ("-" when not asked). */
    private static String row(ConsumerRecord<byte[], byte[]> r, boolean headers) {
        return r.partition() + "|" + r.offset() + "|" + new String(r.key(), StandardCharsets.UTF_8) + "|"
                + new String(r.value(), StandardCharsets.UTF_8) + "|" + r.timestamp() + "|" + r.timestampType()
                + "|" + (headers ? OldClientHeaders.text(r) : "-");
    }

    private static List<String> drain(KafkaConsumer<byte[], byte[]> c, int n, long timeoutMs, boolean headers)
            throws Exception {
        List<String> rows = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (rows.size() < n && System.nanoTime() < deadline) {
            for (ConsumerRecord<byte[], byte[]> r : poll(c, 200)) {
                rows.add(row(r, headers));
            }
        }
        return rows;
    }

    /**
     * assign(partition 0) + seekToBeginning, reads until n records or the timeout; returns {"rows": List<String>,
     * "beginning": Long, "end": Long} (endOffsets / position after seekToBeginning).
     */
    public static Map<String, Object> consume(String bootstrap, String topic, int n, long timeoutMs, boolean headers)
            throws Exception {
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, null)) {
            c.assign(Collections.singletonList(tp));
            c.seekToBeginning(Collections.singletonList(tp));
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("beginning", c.position(tp));
            out.put("rows", drain(c, n, timeoutMs, headers));
            out.put("end", c.endOffsets(Collections.singletonList(tp)).get(tp));
            return out;
        }
    }

    /**
     * A group member (subscribe) reads n records, commits them (commitSync with metadata) and leaves; a second
     * member of the group reads the committed offset back. Returns {"rows", "committed": Long, "metadata": String}.
     */
    public static Map<String, Object> groupCommit(String bootstrap, String topic, String group, int n, long timeoutMs)
            throws Exception {
        TopicPartition tp = new TopicPartition(topic, 0);
        Map<String, Object> out = new LinkedHashMap<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, group)) {
            c.subscribe(Collections.singletonList(topic));
            List<String> rows = drain(c, n, timeoutMs, false);
            out.put("rows", rows);
            out.put("assignment", String.valueOf(c.assignment()));
            c.commitSync(Collections.singletonMap(tp, new OffsetAndMetadata(rows.size(), "old-java-" + rows.size())));
        }
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, group)) {
            Method committed = c.getClass().getMethod("committed", TopicPartition.class); // removed in 4.0
            OffsetAndMetadata om;
            try {
                om = (OffsetAndMetadata) committed.invoke(c, tp);
            } catch (InvocationTargetException e) {
                throw rethrow(e);
            }
            out.put("committed", om == null ? null : om.offset());
            out.put("metadata", om == null ? null : om.metadata());
        }
        return out;
    }
}
