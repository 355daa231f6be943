package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.ApacheKafka;
import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.ConnectWorker;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.MirrorMakerDriver;
import dev.karnak.compat.harness.Poll;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.errors.SecurityDisabledException;
import org.apache.kafka.connect.mirror.RemoteClusterUtils;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * MirrorMaker 2 (connect-mirror 4.3.1, the newest on Maven Central; see pom.xml) run as connectors on a distributed
 * Connect 4.4.0 worker: MirrorSourceConnector copies a topic from one Karnak ("src") to another ("dst", as
 * {@code src.<topic>}), MirrorCheckpointConnector translates a consumer group's committed offsets through the
 * offset syncs and writes them to the same group on dst. The source topic's log start is moved first, so
 * source and target offsets differ and the translation is not the identity.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class MirrorMakerTest {
    @RegisterExtension
    static final KarnakBroker src = new KarnakBroker();
    @RegisterExtension
    static final KarnakBroker dst = new KarnakBroker();

    @BeforeAll
    static void guardExit() {
        ConnectWorker.guardExit();
    }

    @AfterAll
    static void unguardExit() {
        ConnectWorker.unguardExit();
    }

    static Map<String, String> mirrorConfig(String connectorClass) {
        Map<String, String> c = new HashMap<>();
        c.put("connector.class", connectorClass);
        c.put("tasks.max", "1");
        c.put("source.cluster.alias", "src");
        c.put("target.cluster.alias", "dst");
        c.put("source.cluster.bootstrap.servers", src.bootstrap());
        c.put("target.cluster.bootstrap.servers", dst.bootstrap());
        c.put("key.converter", "org.apache.kafka.connect.converters.ByteArrayConverter");
        c.put("value.converter", "org.apache.kafka.connect.converters.ByteArrayConverter");
        c.put("replication.factor", "1");
        c.put("offset-syncs.topic.replication.factor", "1");
        c.put("checkpoints.topic.replication.factor", "1");
        c.put("heartbeats.topic.replication.factor", "1");
        return c;
    }

    static List<String> read(String bootstrap, TopicPartition tp, long from, int expect) {
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, null, Map.of())) {
            c.assign(List.of(tp));
            c.seek(tp, from);
            List<String> out = new ArrayList<>();
            for (ConsumerRecord<byte[], byte[]> r : Clients.consume(c, expect, Duration.ofSeconds(30))) {
                out.add(new String(r.value(), StandardCharsets.UTF_8));
            }
            return out;
        }
    }

    static List<String> values(String prefix, int from, int to) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add(prefix + "-" + i);
        }
        return out;
    }

    @Test
    void mirrorTopicAndTranslateGroupOffsets() throws Exception {
        String topic = Clients.unique("mm2");
        String remote = "src." + topic;
        String group = Clients.unique("mm2-group");
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        TopicPartition r0 = new TopicPartition(remote, 0);
        TopicPartition r1 = new TopicPartition(remote, 1);

        try (Admin admin = Clients.admin(src.bootstrap());
             KafkaProducer<byte[], byte[]> p = Clients.producer(src.bootstrap(), Map.of())) {
            Clients.createTopic(admin, topic, 2);
            for (int i = 0; i < 100; i++) {
                p.send(new ProducerRecord<>(topic, 0, null, ("p0-" + i).getBytes(StandardCharsets.UTF_8)));
                p.send(new ProducerRecord<>(topic, 1, null, ("p1-" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
            // Partition 0 starts at 40 on src; its copy will start at 0 on dst.
            Clients.get(admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(40))).all());
        }
        // The group consumed everything on src.
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(src.bootstrap(), group, Map.of())) {
            c.assign(List.of(p0, p1));
            c.commitSync(Map.of(p0, new OffsetAndMetadata(100), p1, new OffsetAndMetadata(100)),
                    Duration.ofSeconds(30));
        }

        Map<String, String> props = ConnectWorker.props(dst.bootstrap(), Clients.unique("connect-mm2"));
        try (ConnectWorker w = ConnectWorker.start(props)) {
            Map<String, String> source = mirrorConfig("org.apache.kafka.connect.mirror.MirrorSourceConnector");
            source.put("topics", topic);
            source.put("offset.lag.max", "0");
            source.put("refresh.topics.interval.seconds", "1");
            w.putConnector("mm2-source", source);

            Map<String, String> checkpoint =
                    mirrorConfig("org.apache.kafka.connect.mirror.MirrorCheckpointConnector");
            checkpoint.put("groups", group);
            checkpoint.put("emit.checkpoints.interval.seconds", "1");
            checkpoint.put("sync.group.offsets.enabled", "true");
            checkpoint.put("sync.group.offsets.interval.seconds", "1");
            checkpoint.put("refresh.groups.interval.seconds", "1");
            w.putConnector("mm2-checkpoint", checkpoint);

            w.awaitRunning("mm2-source", 1);
            // The copy: the same records, partition by partition, from the source's log start.
            assertEquals(values("p0", 40, 100), read(dst.bootstrap(), r0, 0, 60));
            assertEquals(values("p1", 0, 100), read(dst.bootstrap(), r1, 0, 100));

            // The group's src offsets translated to dst offsets: 100 -> 60 on partition 0, 100 -> 100 on 1.
            Map<String, Object> dstClient = Map.of("bootstrap.servers", dst.bootstrap());
            Map<TopicPartition, Long> expected = Map.of(r0, 60L, r1, 100L);
            Poll.untilTrue(Duration.ofSeconds(60), "checkpoints translating " + group + "'s offsets to "
                    + expected, () -> {
                        ConnectWorker.checkNoExit();
                        Map<TopicPartition, Long> got = new HashMap<>();
                        RemoteClusterUtils.translateOffsets(dstClient, "src", group, Duration.ofSeconds(10))
                                .forEach((tp, om) -> got.put(tp, om.offset()));
                        return got.equals(expected);
                    });
            // ... and written to the group on dst (sync.group.offsets.enabled).
            try (Admin admin = Clients.admin(dst.bootstrap())) {
                Poll.untilTrue(Duration.ofSeconds(60), group + "'s offsets on dst", () -> {
                    Map<TopicPartition, Long> got = new HashMap<>();
                    // (Only the copy's partitions: with -Dcompat.against=kafka, src and dst are one cluster.)
                    Clients.get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata())
                            .forEach((tp, om) -> {
                                if (tp.topic().equals(remote)) {
                                    got.put(tp, om.offset());
                                }
                            });
                    return got.equals(expected);
                });
            }

            // Fail over: a consumer of the copy starting at the translated offsets sees only what came after.
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(src.bootstrap(), Map.of())) {
                for (int i = 0; i < 10; i++) {
                    p.send(new ProducerRecord<>(topic, 0, null, ("late-" + i).getBytes(StandardCharsets.UTF_8)));
                }
                p.flush();
            }
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(dst.bootstrap(), group, Map.of())) {
                c.subscribe(List.of(remote));
                List<String> got = new ArrayList<>();
                for (ConsumerRecord<byte[], byte[]> r : Clients.consume(c, 10, Duration.ofSeconds(60))) {
                    got.add(new String(r.value(), StandardCharsets.UTF_8));
                }
                assertEquals(values("late", 0, 10), got);
                assertTrue(c.poll(Duration.ofMillis(500)).isEmpty(), "nothing but the new records");
            }
        }
    }

    /**
     * The dedicated driver ({@code connect-mirror-maker.sh mm2.properties}, class
     * {@code org.apache.kafka.connect.mirror.MirrorMaker}) in its own JVM on Kafka 4.3.1's classpath (see
     * mm2/pom.xml): its own Connect herders with their internal topics ({@code mm2-configs.src.internal}, ...)
     * and MM2's own topics on Karnak; a topic copied and a group's offsets translated and synced.
     */
    @Test
    void dedicatedMirrorMakerDriver() throws Exception {
        String topic = Clients.unique("mm2d");
        String remote = "src." + topic;
        String group = Clients.unique("mm2d-group");
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition r0 = new TopicPartition(remote, 0);
        try (Admin admin = Clients.admin(src.bootstrap());
             KafkaProducer<byte[], byte[]> p = Clients.producer(src.bootstrap(), Map.of())) {
            Clients.createTopic(admin, topic, 1);
            for (int i = 0; i < 50; i++) {
                p.send(new ProducerRecord<>(topic, 0, null, ("d-" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
            Clients.get(admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(20))).all());
        }
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(src.bootstrap(), group, Map.of())) {
            c.assign(List.of(p0));
            c.commitSync(Map.of(p0, new OffsetAndMetadata(50)), Duration.ofSeconds(30));
        }

        Map<String, String> props = new HashMap<>();
        props.put("clusters", "src, dst");
        props.put("src.bootstrap.servers", src.bootstrap());
        props.put("dst.bootstrap.servers", dst.bootstrap());
        props.put("src->dst.enabled", "true");
        props.put("dst->src.enabled", "false");
        props.put("src->dst.topics", topic);
        props.put("src->dst.groups", group);
        props.put("replication.factor", "1");
        for (String internal : List.of("offset-syncs", "checkpoints", "heartbeats", "config.storage",
                "offset.storage", "status.storage")) {
            props.put(internal + (internal.contains("storage") ? "" : ".topic") + ".replication.factor", "1");
        }
        // Per-flow settings, as mm2.properties writes them (<source>-><target>.<setting>).
        for (String[] kv : new String[][] {{"offset.lag.max", "0"}, {"refresh.topics.interval.seconds", "1"},
                {"refresh.groups.interval.seconds", "1"}, {"emit.checkpoints.interval.seconds", "1"},
                {"sync.group.offsets.enabled", "true"}, {"sync.group.offsets.interval.seconds", "1"}}) {
            props.put("src->dst." + kv[0], kv[1]);
        }
        props.put("key.converter", "org.apache.kafka.connect.converters.ByteArrayConverter");
        props.put("value.converter", "org.apache.kafka.connect.converters.ByteArrayConverter");

        try (MirrorMakerDriver mm = MirrorMakerDriver.start(group, props)) {
            Poll.untilTrue(Duration.ofSeconds(90), remote + " on dst", () -> {
                mm.checkAlive();
                try (Admin admin = Clients.admin(dst.bootstrap())) {
                    return Clients.get(admin.listTopics().names()).contains(remote);
                }
            });
            assertEquals(values("d", 20, 50), read(dst.bootstrap(), r0, 0, 30));
            // 50 (the end) on src is 30 on dst: the copy starts at the source's log start, 20. (MM2 translates
            // exactly only at an offset sync; below the last one it rounds down, so the group is at the end.)
            try (Admin admin = Clients.admin(dst.bootstrap())) {
                Poll.untilTrue(Duration.ofSeconds(90), group + "'s offsets synced to dst", () -> {
                    mm.checkAlive();
                    OffsetAndMetadata om = Clients.get(admin.listConsumerGroupOffsets(group)
                            .partitionsToOffsetAndMetadata()).get(r0);
                    return om != null && om.offset() == 30L;
                });
                // The driver's herders keep their state in compacted topics on the target cluster.
                var names = Clients.get(admin.listTopics().names());
                assertTrue(names.contains("mm2-configs.src.internal"), names.toString());
            }
        }
    }

    /**
     * MirrorSourceConnector syncs topic ACLs by default ({@code sync.topic.acls.enabled=true}) with
     * Admin.describeAcls on the source cluster. Apache Kafka without an authorizer answers DescribeAcls with
     * SECURITY_DISABLED, which MM2 takes as "nothing to sync" (one INFO line); Karnak answers the same until it
     * has ACLs (before, it did not serve DescribeAcls and MM2 logged an ERROR at each ACL sync).
     */
    @Test
    void describeAclsWithoutAuthorizerAnswersSecurityDisabledAsKafkaDoes() {
        for (String bootstrap : List.of(ApacheKafka.get().bootstrap(), src.bootstrap())) {
            try (Admin admin = Clients.admin(bootstrap)) {
                Throwable t = Clients.failure(admin.describeAcls(AclBindingFilter.ANY).values(),
                        Duration.ofSeconds(30));
                assertInstanceOf(SecurityDisabledException.class, t,
                        (bootstrap.equals(src.bootstrap()) ? "Karnak" : "Apache Kafka") + ": " + t);
            }
        }
    }
}
