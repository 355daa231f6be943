package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import dev.karnak.compat.harness.KarnakBroker;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The Java producer with its default config (idempotent, acks=all) against Karnak, every codec. */
class ProducerRoundTripTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker();



    private record Sent(int partition, long timestamp, byte[] key, byte[] value, List<Header> headers) {}

    @ParameterizedTest(name = "compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void keysValuesHeadersAndTimestampsRoundTrip(String codec) throws Exception {
        String topic = Clients.unique("codec-" + codec);
        int partitions = 3;
        int n = 3000;
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, partitions);
        }
        long t0 = System.currentTimeMillis() - 60_000;
        List<Sent> sent = new ArrayList<>(n);
        List<Future<RecordMetadata>> acks = new ArrayList<>(n);
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(karnak.bootstrap(), Map.of(
                ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 5))) {
            for (int i = 0; i < n; i++) {
                int p = i % partitions;
                // null keys, empty keys, binary keys; empty/null values; 0..3 headers incl. null values and repeats
                byte[] key = switch (i % 7) {
                    case 0 -> null;
                    case 1 -> new byte[0];
                    case 2 -> new byte[] {0, (byte) 0xff, (byte) i, (byte) (i >> 8)};
                    default -> ("key-" + i).getBytes(StandardCharsets.UTF_8);
                };
                byte[] value = switch (i % 11) {
                    case 0 -> null;
                    case 1 -> new byte[0];
                    default -> ("value-" + i + "-" + "x".repeat(i % 200)).getBytes(StandardCharsets.UTF_8);
                };
                List<Header> headers = new ArrayList<>();
                for (int h = 0; h < i % 4; h++) {
                    headers.add(new RecordHeader(h == 2 ? "h0" : "h" + h,
                            h == 1 ? null : ("hv-" + i + "-" + h).getBytes(StandardCharsets.UTF_8)));
                }
                long ts = t0 + i;
                sent.add(new Sent(p, ts, key, value, headers));
                acks.add(producer.send(new ProducerRecord<>(topic, p, ts, key, value, headers)));
            }
            producer.flush();
            for (Future<RecordMetadata> f : acks) {
                f.get(60, TimeUnit.SECONDS);
            }
        }

        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(karnak.bootstrap(), null, Map.of())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(consumer, n, Duration.ofSeconds(60));
            assertEquals(n, got.size(), "record count");
            // Per partition, records come back in send order with contiguous offsets.
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> byPartition = new HashMap<>();
            for (ConsumerRecord<byte[], byte[]> r : got) {
                byPartition.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r);
            }
            Map<Integer, Integer> nextIndex = new HashMap<>();
            for (int i = 0; i < n; i++) {
                Sent s = sent.get(i);
                int idx = nextIndex.merge(s.partition(), 1, Integer::sum) - 1;
                ConsumerRecord<byte[], byte[]> r = byPartition.get(s.partition()).get(idx);
                String where = "record " + i + " (" + codec + ", p" + s.partition() + " offset " + r.offset() + ")";
                assertEquals(idx, r.offset(), where + ": offset");
                assertEquals(s.timestamp(), r.timestamp(), where + ": timestamp");
                assertEquals(TimestampType.CREATE_TIME, r.timestampType(), where + ": timestamp type");
                assertNullableArrayEquals(s.key(), r.key(), where + ": key");
                assertNullableArrayEquals(s.value(), r.value(), where + ": value");
                Header[] gotHeaders = r.headers().toArray();
                assertEquals(s.headers().size(), gotHeaders.length, where + ": header count");
                for (int h = 0; h < gotHeaders.length; h++) {
                    assertEquals(s.headers().get(h).key(), gotHeaders[h].key(), where + ": header key " + h);
                    assertNullableArrayEquals(s.headers().get(h).value(), gotHeaders[h].value(),
                            where + ": header value " + h);
                }
            }
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            assertEquals(n, end.values().stream().mapToLong(Long::longValue).sum(), "sum of end offsets");
            ConsumerRecords<byte[], byte[]> extra = consumer.poll(Duration.ofMillis(300));
            assertEquals(0, extra.count(), "no records beyond what was produced");
        }
    }

    private static void assertNullableArrayEquals(byte[] want, byte[] got, String msg) {
        if (want == null) {
            assertNull(got, msg);
        } else {
            assertArrayEquals(want, got, msg);
        }
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void millionRecordRoundTrip() throws Exception {
        String topic = Clients.unique("million");
        int partitions = 4;
        int n = 1_000_000;
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, partitions);
        }
        long tProduce = System.nanoTime();
        // Keyless: the sticky partitioner spreads batches; per-partition send order must be kept.
        try (KafkaProducer<byte[], byte[]> producer = Clients.producer(karnak.bootstrap(), Map.of(
                ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4",
                ProducerConfig.LINGER_MS_CONFIG, 10,
                ProducerConfig.BATCH_SIZE_CONFIG, 256 * 1024,
                ProducerConfig.BUFFER_MEMORY_CONFIG, 64L * 1024 * 1024))) {
            Future<RecordMetadata> last = null;
            final Exception[] firstError = new Exception[1];
            for (int i = 0; i < n; i++) {
                byte[] v = ByteBuffer.allocate(12).putLong(i).putInt(i * 31).array();
                last = producer.send(new ProducerRecord<>(topic, null, v), (md, e) -> {
                    if (e != null && firstError[0] == null) {
                        firstError[0] = e;
                    }
                });
            }
            producer.flush();
            last.get(60, TimeUnit.SECONDS);
            if (firstError[0] != null) {
                throw new AssertionError("a send failed", firstError[0]);
            }
        }
        long produceMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - tProduce);

        long tConsume = System.nanoTime();
        BitSet seen = new BitSet(n);
        long[] lastSeqPerPartition = new long[partitions];
        long[] nextOffset = new long[partitions];
        java.util.Arrays.fill(lastSeqPerPartition, -1);
        int count = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = Clients.consumer(karnak.bootstrap(), null, Map.of(
                ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 10_000,
                ConsumerConfig.FETCH_MAX_BYTES_CONFIG, 16 * 1024 * 1024,
                ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 4 * 1024 * 1024))) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(150);
            while (count < n) {
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("consumed only " + count + " of " + n);
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    int p = r.partition();
                    long seq = ByteBuffer.wrap(r.value()).getLong();
                    if (r.offset() != nextOffset[p]) {
                        throw new AssertionError("p" + p + ": offset " + r.offset() + " where " + nextOffset[p]
                                + " was expected");
                    }
                    nextOffset[p]++;
                    if (seq <= lastSeqPerPartition[p]) {
                        throw new AssertionError("p" + p + " offset " + r.offset() + ": sequence " + seq
                                + " after " + lastSeqPerPartition[p] + " (order broken)");
                    }
                    lastSeqPerPartition[p] = seq;
                    if (seen.get((int) seq)) {
                        throw new AssertionError("duplicate record " + seq + " at p" + p + " offset " + r.offset());
                    }
                    seen.set((int) seq);
                    count++;
                }
            }
            assertEquals(0, consumer.poll(Duration.ofMillis(300)).count(), "records beyond " + n);
            long endSum = consumer.endOffsets(tps).values().stream().mapToLong(Long::longValue).sum();
            assertEquals(n, endSum, "sum of end offsets");
        }
        assertEquals(n, seen.cardinality(), "distinct records");
        for (int p = 0; p < partitions; p++) {
            assertTrue(nextOffset[p] > 0, "partition " + p + " got no records (sticky partitioner spreads them)");
        }
        long consumeMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - tConsume);
        System.out.printf("[million] produced %d records in %d ms, consumed in %d ms%n", n, produceMs, consumeMs);
    }
}
