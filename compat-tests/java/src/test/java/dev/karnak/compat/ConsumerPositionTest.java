package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.KarnakBroker;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.Timeout;

/** offsetsForTimes, seek, seekToBeginning/End, beginning/endOffsets, pause/resume. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ConsumerPositionTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker();
    static final long T0 = 1_700_000_000_000L;



    /** 10 records per partition with timestamps T0 + 1000*i. */
    static String topicWithRecords(int partitions) {
        String topic = Clients.unique("pos");
        try (Admin admin = Clients.admin(karnak.bootstrap());
             KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of())) {
            Clients.createTopic(admin, topic, partitions);
            for (int part = 0; part < partitions; part++) {
                for (int i = 0; i < 10; i++) {
                    p.send(new ProducerRecord<>(topic, part, T0 + 1000L * i, null,
                            ("p" + part + "-" + i).getBytes(StandardCharsets.UTF_8)));
                }
            }
            p.flush();
        }
        return topic;
    }

    @Test
    void offsetsForTimes() {
        String topic = topicWithRecords(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), null, Map.of())) {
            Map<TopicPartition, OffsetAndTimestamp> r = c.offsetsForTimes(Map.of(tp, T0 + 2500), Duration.ofSeconds(30));
            assertNotNull(r.get(tp), "a record at or after T0+2500");
            assertEquals(3, r.get(tp).offset(), "first offset with timestamp >= T0+2500");
            assertEquals(T0 + 3000, r.get(tp).timestamp());
            r = c.offsetsForTimes(Map.of(tp, T0), Duration.ofSeconds(30));
            assertEquals(0, r.get(tp).offset(), "exact timestamp of the first record");
            r = c.offsetsForTimes(Map.of(tp, T0 + 9000), Duration.ofSeconds(30));
            assertEquals(9, r.get(tp).offset(), "exact timestamp of the last record");
            r = c.offsetsForTimes(Map.of(tp, T0 + 9001), Duration.ofSeconds(30));
            assertTrue(r.containsKey(tp), "the partition is in the answer");
            assertNull(r.get(tp), "no record after the last timestamp");
        }
    }

    @Test
    void seekSeekToBeginningAndEnd() {
        String topic = topicWithRecords(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), null, Map.of())) {
            c.assign(List.of(tp));
            assertEquals(Map.of(tp, 0L), c.beginningOffsets(List.of(tp)));
            assertEquals(Map.of(tp, 10L), c.endOffsets(List.of(tp)));
            c.seek(tp, 5);
            List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(c, 5, Duration.ofSeconds(30));
            assertEquals(5, got.get(0).offset(), "first record after seek(5)");
            assertEquals("p0-5", new String(got.get(0).value(), StandardCharsets.UTF_8));
            assertEquals(10, c.position(tp));
            c.seekToBeginning(List.of(tp));
            assertEquals(0, c.position(tp), "position after seekToBeginning");
            got = Clients.consume(c, 10, Duration.ofSeconds(30));
            assertEquals(0, got.get(0).offset());
            assertEquals(9, got.get(9).offset());
            c.seekToEnd(List.of(tp));
            assertEquals(10, c.position(tp), "position after seekToEnd");
            assertEquals(0, c.poll(Duration.ofMillis(200)).count());
            c.seek(tp, 7);
            assertEquals(7, c.position(tp));
            got = Clients.consume(c, 3, Duration.ofSeconds(30));
            assertEquals(7, got.get(0).offset());
        }
    }

    @Test
    void seekPastTheEndResetsPerAutoOffsetReset() {
        String topic = topicWithRecords(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), null,
                Map.of("auto.offset.reset", "earliest"))) {
            c.assign(List.of(tp));
            c.seek(tp, 1000); // OFFSET_OUT_OF_RANGE -> reset to earliest
            List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(c, 10, Duration.ofSeconds(30));
            assertEquals(0, got.get(0).offset(), "reset to earliest after an out-of-range fetch");
        }
    }

    @Test
    void pauseAndResume() {
        String topic = topicWithRecords(2);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), null, Map.of())) {
            c.assign(List.of(p0, p1));
            c.seekToBeginning(List.of(p0, p1));
            c.pause(List.of(p0));
            assertEquals(Set.of(p0), c.paused());
            List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(c, 10, Duration.ofSeconds(30));
            for (ConsumerRecord<byte[], byte[]> r : got) {
                assertEquals(1, r.partition(), "a record from the paused partition arrived");
            }
            assertEquals(0, c.poll(Duration.ofMillis(300)).count(), "paused partition delivers nothing");
            c.resume(List.of(p0));
            assertTrue(c.paused().isEmpty());
            got = Clients.consume(c, 10, Duration.ofSeconds(30));
            List<Long> offsets = new ArrayList<>();
            for (ConsumerRecord<byte[], byte[]> r : got) {
                assertEquals(0, r.partition());
                offsets.add(r.offset());
            }
            assertEquals(List.of(0L, 1L, 2L, 3L, 4L, 5L, 6L, 7L, 8L, 9L), offsets);
        }
    }
}
