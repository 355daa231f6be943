package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Consumer groups: classic protocol with the client-side assignors, and the KIP-848 consumer protocol. */
class ConsumerGroupTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker("--group-consumer-heartbeat-interval-ms", "500");

    @BeforeAll
    static void start() {
        // KIP-848 members reconcile over heartbeats: a short interval keeps the test fast.
    }


    static void produce(String topic, int partitions, int perPartition, String tag) {
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of())) {
            for (int i = 0; i < perPartition; i++) {
                for (int part = 0; part < partitions; part++) {
                    p.send(new ProducerRecord<>(topic, part, null,
                            (tag + "-" + part + "-" + i).getBytes(StandardCharsets.UTF_8)));
                }
            }
            p.flush();
        }
    }

    /** Polls both consumers until their assignments are non-empty, disjoint and cover all partitions. */
    static void awaitSplit(KafkaConsumer<byte[], byte[]> c1, KafkaConsumer<byte[], byte[]> c2, int partitions,
                           Map<KafkaConsumer<byte[], byte[]>, List<ConsumerRecord<byte[], byte[]>>> sink) {
        Poll.untilTrue(Duration.ofSeconds(60), "two consumers to split " + partitions + " partitions", () -> {
            for (KafkaConsumer<byte[], byte[]> c : List.of(c1, c2)) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                    sink.computeIfAbsent(c, k -> new ArrayList<>()).add(r);
                }
            }
            Set<TopicPartition> a1 = c1.assignment();
            Set<TopicPartition> a2 = c2.assignment();
            Set<TopicPartition> union = new HashSet<>(a1);
            union.addAll(a2);
            return !a1.isEmpty() && !a2.isEmpty() && union.size() == a1.size() + a2.size()
                    && union.size() == partitions;
        });
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(classes = {RangeAssignor.class, CooperativeStickyAssignor.class})
    @Timeout(value = 150, unit = TimeUnit.SECONDS)
    void classicGroupSplitsConsumesOnceAndResumesFromCommits(Class<?> assignor) {
        String topic = Clients.unique("classic");
        String group = Clients.unique("g-classic");
        int partitions = 6;
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, partitions);
        }
        Map<String, Object> cfg = Map.of(
                ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor.getName(),
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        Map<KafkaConsumer<byte[], byte[]>, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
        try (KafkaConsumer<byte[], byte[]> c1 = Clients.consumer(karnak.bootstrap(), group, cfg);
             KafkaConsumer<byte[], byte[]> c2 = Clients.consumer(karnak.bootstrap(), group, cfg)) {
            c1.subscribe(List.of(topic));
            c2.subscribe(List.of(topic));
            awaitSplit(c1, c2, partitions, got);
            assertTrue(got.isEmpty(), "records before anything was produced: " + got);

            produce(topic, partitions, 100, "first");
            int total = partitions * 100;
            Poll.untilTrue(Duration.ofSeconds(60), "both consumers to receive " + total + " records", () -> {
                for (KafkaConsumer<byte[], byte[]> c : List.of(c1, c2)) {
                    for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                        got.computeIfAbsent(c, k -> new ArrayList<>()).add(r);
                    }
                }
                return got.values().stream().mapToInt(List::size).sum() >= total;
            });
            Set<String> values = new HashSet<>();
            for (var e : got.entrySet()) {
                Set<TopicPartition> assigned = e.getKey().assignment();
                for (ConsumerRecord<byte[], byte[]> r : e.getValue()) {
                    assertTrue(assigned.contains(new TopicPartition(r.topic(), r.partition())),
                            "record from partition " + r.partition() + " not assigned to its consumer " + assigned);
                    assertTrue(values.add(new String(r.value(), StandardCharsets.UTF_8)),
                            "consumed twice: " + new String(r.value(), StandardCharsets.UTF_8));
                }
            }
            assertEquals(total, values.size(), "records consumed exactly once");
            assertFalse(got.get(c1) == null || got.get(c2) == null, "both consumers got records");
            c1.commitSync(Duration.ofSeconds(30));
            c2.commitSync(Duration.ofSeconds(30));
        }

        // Both left: a new member of the group resumes from the committed offsets.
        produce(topic, partitions, 10, "second");
        try (KafkaConsumer<byte[], byte[]> c3 = Clients.consumer(karnak.bootstrap(), group, cfg)) {
            c3.subscribe(List.of(topic));
            List<ConsumerRecord<byte[], byte[]>> rest = Clients.consume(c3, partitions * 10, Duration.ofSeconds(60));
            for (ConsumerRecord<byte[], byte[]> r : rest) {
                String v = new String(r.value(), StandardCharsets.UTF_8);
                assertTrue(v.startsWith("second-"), "resumed consumer re-read " + v + " at offset " + r.offset());
                assertTrue(r.offset() >= 100, "offset " + r.offset() + " below the committed 100");
            }
            assertEquals(0, c3.poll(Duration.ofMillis(300)).count(), "nothing beyond the new records");
            Set<TopicPartition> tps = c3.assignment();
            assertEquals(partitions, tps.size());
            Map<TopicPartition, OffsetAndMetadata> committed = c3.committed(tps, Duration.ofSeconds(30));
            for (TopicPartition tp : tps) {
                assertNotNull(committed.get(tp), "committed offset of " + tp);
                assertEquals(100, committed.get(tp).offset(), "committed offset of " + tp);
            }
        }
    }

    @Test
    @Timeout(value = 150, unit = TimeUnit.SECONDS)
    void consumerProtocolKip848() {
        String topic = Clients.unique("kip848");
        String group = Clients.unique("g-848");
        int partitions = 4;
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, partitions);
            produce(topic, partitions, 25, "r");
            Map<String, Object> cfg = Map.of(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            Map<KafkaConsumer<byte[], byte[]>, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
            try (KafkaConsumer<byte[], byte[]> c1 = Clients.consumer(karnak.bootstrap(), group, cfg)) {
                c1.subscribe(List.of(topic));
                List<ConsumerRecord<byte[], byte[]>> first = Clients.consume(c1, 100, Duration.ofSeconds(60));
                assertEquals(partitions, c1.assignment().size(), "single member owns all partitions");
                assertEquals(100, first.size());
                c1.commitSync(Duration.ofSeconds(30));
                Map<TopicPartition, OffsetAndMetadata> committed =
                        Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
                assertEquals(partitions, committed.size(), "committed partitions: " + committed);
                committed.values().forEach(o -> assertEquals(25, o.offset()));

                ConsumerGroupDescription d = Clients.get(admin.describeConsumerGroups(List.of(group))
                        .describedGroups().get(group));
                assertEquals(GroupType.CONSUMER, d.type(), "group type");
                assertEquals(GroupState.STABLE, d.groupState(), "group state");
                assertEquals(1, d.members().size());

                // A second member: the server-side assignor splits the partitions.
                try (KafkaConsumer<byte[], byte[]> c2 = Clients.consumer(karnak.bootstrap(), group, cfg)) {
                    c2.subscribe(List.of(topic));
                    awaitSplit(c1, c2, partitions, got);
                    assertTrue(got.isEmpty(), "re-delivered committed records: " + got.size());
                    produce(topic, partitions, 5, "after");
                    Poll.untilTrue(Duration.ofSeconds(60), "20 new records over two members", () -> {
                        for (KafkaConsumer<byte[], byte[]> c : List.of(c1, c2)) {
                            for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                                got.computeIfAbsent(c, k -> new ArrayList<>()).add(r);
                            }
                        }
                        return got.values().stream().mapToInt(List::size).sum() >= 20;
                    });
                    assertEquals(2, got.size(), "both members consumed");
                    assertEquals(20, got.values().stream().mapToInt(List::size).sum(), "no duplicates");
                    c1.commitSync(Duration.ofSeconds(30));
                    c2.commitSync(Duration.ofSeconds(30));
                }
                // c2 left: its partitions go back to c1.
                Poll.untilTrue(Duration.ofSeconds(60), "c1 to own all partitions after c2 left", () -> {
                    c1.poll(Duration.ofMillis(100));
                    return c1.assignment().size() == partitions;
                });
            }
            Map<TopicPartition, OffsetAndMetadata> committed =
                    Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            committed.values().forEach(o -> assertEquals(30, o.offset(), "committed after the second round"));
        }
    }
}
