package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.Timeout;

/** Transactional producer, isolation levels, consume-transform-produce, fencing. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class TransactionsTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker();



    static KafkaProducer<byte[], byte[]> txProducer(String txId) {
        KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, txId,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 60000));
        p.initTransactions();
        return p;
    }

    static Set<String> readAll(String topic, int partitions, String isolation, int expect) {
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), null,
                Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation))) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Set<String> out = new TreeSet<>();
            for (ConsumerRecord<byte[], byte[]> r : Clients.consume(c, expect, Duration.ofSeconds(30))) {
                assertTrue(out.add(new String(r.value(), StandardCharsets.UTF_8)), "duplicate " + r);
            }
            // Nothing more: wait until the consumer's position reached the end (markers included).
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
                    out.add(new String(r.value(), StandardCharsets.UTF_8));
                }
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("position did not reach the end offsets " + end);
                }
            }
            return out;
        }
    }

    static Set<String> values(String prefix, int n) {
        Set<String> s = new TreeSet<>();
        for (int i = 0; i < n; i++) {
            s.add(prefix + i);
        }
        return s;
    }

    @Test
    void commitAndAbortWithIsolationLevels() {
        String topic = Clients.unique("txn");
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 2);
        }
        try (KafkaProducer<byte[], byte[]> p = txProducer(Clients.unique("tx"))) {
            for (String[] round : new String[][] {{"c1-", "commit"}, {"a1-", "abort"}, {"c2-", "commit"}}) {
                p.beginTransaction();
                for (int i = 0; i < 10; i++) {
                    p.send(new ProducerRecord<>(topic, i % 2, null, (round[0] + i).getBytes(StandardCharsets.UTF_8)));
                }
                if (round[1].equals("commit")) {
                    p.commitTransaction();
                } else {
                    p.flush();
                    p.abortTransaction();
                }
            }
        }
        Set<String> committed = new TreeSet<>(values("c1-", 10));
        committed.addAll(values("c2-", 10));
        assertEquals(committed, readAll(topic, 2, "read_committed", 20), "read_committed sees only committed");
        Set<String> all = new TreeSet<>(committed);
        all.addAll(values("a1-", 10));
        assertEquals(all, readAll(topic, 2, "read_uncommitted", 30), "read_uncommitted sees aborted too");
    }

    @Test
    void openTransactionHoldsBackReadCommitted() {
        String topic = Clients.unique("txn-open");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 1);
        }
        try (KafkaProducer<byte[], byte[]> p = txProducer(Clients.unique("tx-open"))) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "open".getBytes(StandardCharsets.UTF_8)));
            p.flush();
            try (KafkaConsumer<byte[], byte[]> rc = Clients.consumer(karnak.bootstrap(), null,
                    Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"));
                 KafkaConsumer<byte[], byte[]> ru = Clients.consumer(karnak.bootstrap(), null, Map.of())) {
                assertEquals(0L, rc.endOffsets(List.of(tp)).get(tp), "read_committed end offset = LSO");
                assertEquals(1L, ru.endOffsets(List.of(tp)).get(tp), "read_uncommitted end offset = HW");
                rc.assign(List.of(tp));
                rc.seekToBeginning(List.of(tp));
                assertEquals(0, rc.poll(Duration.ofMillis(500)).count(), "open transaction is not visible");
                p.commitTransaction();
                List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(rc, 1, Duration.ofSeconds(30));
                assertEquals("open", new String(got.get(0).value(), StandardCharsets.UTF_8));
                Poll.untilTrue(Duration.ofSeconds(30), "read_committed end offset 2 (record + marker)",
                        () -> rc.endOffsets(List.of(tp)).get(tp) == 2L);
            }
        }
    }

    @Test
    void consumeTransformProduceCommitsOffsetsAtomically() {
        String in = Clients.unique("ctp-in");
        String out = Clients.unique("ctp-out");
        String group = Clients.unique("g-ctp");
        TopicPartition inTp = new TopicPartition(in, 0);
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, in, 1);
            Clients.createTopic(admin, out, 1);
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of())) {
                for (int i = 0; i < 60; i++) {
                    p.send(new ProducerRecord<>(in, 0, null, ("in-" + i).getBytes(StandardCharsets.UTF_8)));
                }
                p.flush();
            }
            String txId = Clients.unique("tx-ctp");
            try (KafkaProducer<byte[], byte[]> p = txProducer(txId);
                 KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), group, Map.of(
                         ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
                         ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50))) {
                c.subscribe(List.of(in));
                // Round 1: first 50 records, committed.
                List<ConsumerRecord<byte[], byte[]>> batch = Clients.consume(c, 50, Duration.ofSeconds(30));
                transform(p, c, out, batch.subList(0, 50), true);
                // Kafka writes the markers (and so the group offsets) after answering EndTxn: poll.
                Poll.untilTrue(Duration.ofSeconds(30), "group offset 50 committed with the transaction", () -> {
                    OffsetAndMetadata o = Clients.get(admin.listConsumerGroupOffsets(group)
                            .partitionsToOffsetAndMetadata()).get(inTp);
                    return o != null && o.offset() == 50;
                });
                // Round 2: the next 10, aborted: the group offset must stay at 50.
                List<ConsumerRecord<byte[], byte[]>> rest = Clients.consume(c, 10, Duration.ofSeconds(30));
                transform(p, c, out, rest, false);
                Poll.untilTrue(Duration.ofSeconds(30), "the abort to complete", () -> Clients.get(
                        admin.describeTransactions(List.of(txId)).description(txId)).state()
                        == TransactionState.COMPLETE_ABORT);
                Map<TopicPartition, OffsetAndMetadata> offs =
                        Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
                assertEquals(50, offs.get(inTp).offset(), "offset of an aborted transaction not committed");
            }
        }
        Set<String> expected = new TreeSet<>();
        for (int i = 0; i < 50; i++) {
            expected.add("out-in-" + i);
        }
        assertEquals(expected, readAll(out, 1, "read_committed", 50), "committed output");
        assertEquals(60, readAll(out, 1, "read_uncommitted", 60).size(), "output incl. aborted");
    }

    private static void transform(KafkaProducer<byte[], byte[]> p, KafkaConsumer<byte[], byte[]> c, String out,
                                  List<ConsumerRecord<byte[], byte[]>> records, boolean commit) {
        p.beginTransaction();
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : records) {
            p.send(new ProducerRecord<>(out, 0, null, ("out-" + new String(r.value(), StandardCharsets.UTF_8))
                    .getBytes(StandardCharsets.UTF_8)));
            offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
        }
        p.sendOffsetsToTransaction(offsets, c.groupMetadata());
        if (commit) {
            p.commitTransaction();
        } else {
            p.flush();
            p.abortTransaction();
        }
    }

    @Test
    void secondProducerWithSameTransactionalIdFencesTheFirst() {
        String topic = Clients.unique("txn-fence");
        String txId = Clients.unique("tx-fence");
        try (Admin admin = Clients.admin(karnak.bootstrap())) {
            Clients.createTopic(admin, topic, 1);
        }
        try (KafkaProducer<byte[], byte[]> p1 = txProducer(txId)) {
            p1.beginTransaction();
            p1.send(new ProducerRecord<>(topic, 0, null, "zombie".getBytes(StandardCharsets.UTF_8)));
            p1.flush();
            try (KafkaProducer<byte[], byte[]> p2 = txProducer(txId)) { // aborts p1's transaction
                KafkaException e = assertThrows(KafkaException.class, p1::commitTransaction);
                assertTrue(e instanceof ProducerFencedException || e instanceof InvalidProducerEpochException
                                || e.getCause() instanceof ProducerFencedException,
                        "expected fencing, got " + e);
                p2.beginTransaction();
                p2.send(new ProducerRecord<>(topic, 0, null, "live".getBytes(StandardCharsets.UTF_8)));
                p2.commitTransaction();
            }
        }
        assertEquals(Set.of("live"), readAll(topic, 1, "read_committed", 1));
    }
}
