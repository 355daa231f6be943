package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Java clients across a clean restart and a kill -9 (exercises the Karnak harness lifecycle). */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class RestartTest {

    @Test
    void acknowledgedRecordsAndCommitsSurviveRestartAndKill9() {
        try (Karnak karnak = Karnak.start()) {
            String topic = Clients.unique("restart");
            String group = Clients.unique("g-restart");
            TopicPartition tp = new TopicPartition(topic, 0);
            try (Admin admin = Clients.admin(karnak.bootstrap())) {
                Clients.createTopic(admin, topic, 1);
            }
            produce(karnak, topic, "a", 100);
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), group, Map.of())) {
                c.subscribe(List.of(topic));
                Clients.consume(c, 100, Duration.ofSeconds(30));
                c.commitSync(Map.of(tp, new OffsetAndMetadata(60)), Duration.ofSeconds(30));
            }

            karnak.restart(); // SIGTERM, must exit 0, same ports and data
            produce(karnak, topic, "b", 100);
            assertEquals(137, karnak.kill9());
            karnak.startAgain();

            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), group, Map.of())) {
                c.subscribe(List.of(topic));
                List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(c, 140, Duration.ofSeconds(30));
                assertEquals(60, got.get(0).offset(), "resumed at the committed offset");
                assertEquals("a-60", new String(got.get(0).value(), StandardCharsets.UTF_8));
                assertEquals("b-99", new String(got.get(139).value(), StandardCharsets.UTF_8));
                assertEquals(Map.of(tp, 200L), c.endOffsets(List.of(tp)));
            }
        }
    }

    static void produce(Karnak karnak, String topic, String tag, int n) {
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of())) {
            for (int i = 0; i < n; i++) {
                p.send(new ProducerRecord<>(topic, 0, null, (tag + "-" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
        }
    }
}
