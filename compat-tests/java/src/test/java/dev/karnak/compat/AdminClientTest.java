package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import dev.karnak.compat.harness.KarnakBroker;
import dev.karnak.compat.harness.Poll;
import dev.karnak.compat.harness.RawRequest;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.requests.AlterConfigsRequest;
import org.apache.kafka.common.requests.AlterConfigsResponse;
import org.apache.kafka.clients.admin.AbortTransactionSpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberToRemove;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionReplica;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.SecurityDisabledException;
import org.apache.kafka.common.errors.UnsupportedByAuthenticationException;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.UnknownTopicIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.Timeout;

/** The AdminClient against Karnak, method by method. */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class AdminClientTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker();
    static Admin admin;
    static final long T0 = 1_700_000_000_000L;

    @BeforeAll
    static void start() {
        admin = Clients.admin(karnak.bootstrap());
    }

    @AfterAll
    static void stop() {
        if (admin != null) {
            admin.close(Duration.ofSeconds(5));
        }
    }

    static <T> T get(KafkaFuture<T> f) {
        return Clients.get(f, Duration.ofSeconds(30));
    }

    static String newTopic(int partitions) {
        String t = Clients.unique("adm");
        Clients.createTopic(admin, t, partitions);
        return t;
    }

    /** 10 records into partition 0, timestamps T0 + 1000*i except record 6, which has the max (T0 + 100000). */
    static void produceTen(String topic) {
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of())) {
            for (int i = 0; i < 10; i++) {
                long ts = i == 6 ? T0 + 100_000 : T0 + 1000L * i;
                p.send(new ProducerRecord<>(topic, 0, ts, null, ("v" + i).getBytes(StandardCharsets.UTF_8)));
            }
            p.flush();
        }
    }

    static ConfigEntry topicConfig(String topic, String name) {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config c = get(admin.describeConfigs(List.of(r)).all()).get(r);
        return c.get(name);
    }

    // ---------------------------------------------------------------- topics

    @Test
    void createTopicsWithConfigs() {
        String topic = Clients.unique("adm-cfg");
        NewTopic nt = new NewTopic(topic, 3, (short) 1)
                .configs(Map.of("retention.ms", "3600000", "max.message.bytes", "200000"));
        CreateTopicsResult r = admin.createTopics(List.of(nt));
        get(r.all());
        assertEquals(3, get(r.numPartitions(topic)));
        assertEquals(1, get(r.replicationFactor(topic)));
        Uuid id = get(r.topicId(topic));
        assertFalse(Uuid.ZERO_UUID.equals(id), "topic id");
        Config created = get(r.config(topic));
        assertEquals("3600000", created.get("retention.ms").value(), "retention.ms in the CreateTopics answer");
        ConfigEntry e = topicConfig(topic, "retention.ms");
        assertEquals("3600000", e.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, e.source());
        assertEquals("200000", topicConfig(topic, "max.message.bytes").value());
        TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertEquals(id, d.topicId(), "describeTopics topic id = createTopics topic id");
    }

    @Test
    void createTopicsValidateOnlyCreatesNothing() {
        String topic = Clients.unique("adm-vo");
        CreateTopicsResult r = admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)),
                new CreateTopicsOptions().validateOnly(true));
        get(r.all());
        assertEquals(2, get(r.numPartitions(topic)));
        assertFalse(get(admin.listTopics().names()).contains(topic), "validateOnly created the topic");
        Throwable t = Clients.failure(admin.describeTopics(List.of(topic)).allTopicNames(), Duration.ofSeconds(30));
        assertInstanceOf(UnknownTopicOrPartitionException.class, t);
    }

    @Test
    void listTopics() {
        String topic = newTopic(1);
        Set<String> names = get(admin.listTopics().names());
        assertTrue(names.contains(topic));
        assertTrue(names.stream().noneMatch(n -> n.startsWith("__")), "internal topics listed by default: " + names);
        Set<String> withInternal = get(admin.listTopics(new ListTopicsOptions().listInternal(true)).names());
        assertTrue(withInternal.containsAll(names));
    }

    @Test
    void describeTopicsByName() {
        String topic = newTopic(3);
        TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
        assertEquals(topic, d.name());
        assertFalse(d.isInternal());
        assertFalse(Uuid.ZERO_UUID.equals(d.topicId()));
        assertEquals(3, d.partitions().size());
        d.partitions().forEach(p -> {
            assertNotNull(p.leader(), "leader of " + p);
            assertEquals(0, p.leader().id());
            assertEquals(karnak.kafkaPort(), p.leader().port());
            assertEquals(1, p.replicas().size());
            assertEquals(1, p.isr().size());
        });
        Throwable t = Clients.failure(admin.describeTopics(List.of(Clients.unique("no-such")))
                .allTopicNames(), Duration.ofSeconds(30));
        assertInstanceOf(UnknownTopicOrPartitionException.class, t);
    }

    /**
     * The 4.4 admin asks Metadata v12 by topic id with name "" (not null): the broker must go by the id
     * (answering for a topic named "" makes the admin throw IllegalStateException "Use errors() when
     * managing topic using topic name").
     */
    @Test
    void describeTopicsById() {
        String topic = newTopic(3);
        Uuid id = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).topicId();
        TopicDescription byId = get(admin.describeTopics(TopicCollection.ofTopicIds(List.of(id)))
                .allTopicIds()).get(id);
        assertEquals(topic, byId.name());
        assertEquals(3, byId.partitions().size());
        Throwable t = Clients.failure(admin.describeTopics(TopicCollection.ofTopicIds(List.of(Uuid.randomUuid())))
                .allTopicIds(), Duration.ofSeconds(30));
        assertInstanceOf(UnknownTopicIdException.class, t);
    }

    @Test
    void deleteTopicsByNameAndById() {
        String byName = newTopic(1);
        String byId = newTopic(1);
        Uuid id = get(admin.describeTopics(List.of(byId)).allTopicNames()).get(byId).topicId();
        get(admin.deleteTopics(List.of(byName)).all());
        get(admin.deleteTopics(TopicCollection.ofTopicIds(List.of(id))).all());
        Poll.untilTrue(Duration.ofSeconds(30), "deleted topics to leave listTopics", () -> {
            Set<String> names = get(admin.listTopics().names());
            return !names.contains(byName) && !names.contains(byId);
        });
        Throwable t = Clients.failure(admin.deleteTopics(List.of(byName)).all(), Duration.ofSeconds(30));
        assertInstanceOf(UnknownTopicOrPartitionException.class, t, "deleting a deleted topic");
    }

    @Test
    void createPartitions() {
        String topic = newTopic(1);
        get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all());
        Poll.untilTrue(Duration.ofSeconds(30), "3 partitions", () ->
                get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size() == 3);
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of())) {
            p.send(new ProducerRecord<>(topic, 2, null, "x".getBytes(StandardCharsets.UTF_8))).get(30, TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new AssertionError("produce to the new partition", e);
        }
    }

    // ---------------------------------------------------------------- configs

    @Test
    void describeConfigsTopicAndBroker() {
        String topic = Clients.unique("adm-dc");
        get(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1)
                .configs(Map.of("retention.ms", "86400000")))).all());
        ConfigEntry override = topicConfig(topic, "retention.ms");
        assertEquals("86400000", override.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, override.source());
        assertFalse(override.isDefault());
        ConfigEntry dflt = topicConfig(topic, "cleanup.policy");
        assertNotNull(dflt, "cleanup.policy listed");
        assertEquals("delete", dflt.value());
        assertTrue(dflt.isDefault() || dflt.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG, dflt.toString());
        ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, "0");
        Config bc = get(admin.describeConfigs(List.of(broker)).all()).get(broker);
        assertNotNull(bc.get("log.segment.bytes"), "broker config log.segment.bytes");
    }

    @Test
    void incrementalAlterConfigs() {
        String topic = newTopic(1);
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        get(admin.incrementalAlterConfigs(Map.of(r, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "120000"), AlterConfigOp.OpType.SET)))).all());
        ConfigEntry e = topicConfig(topic, "retention.ms");
        assertEquals("120000", e.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, e.source());
        get(admin.incrementalAlterConfigs(Map.of(r, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all());
        e = topicConfig(topic, "retention.ms");
        assertEquals("604800000", e.value(), "back to the default");
        assertTrue(e.isDefault() || e.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, e.toString());
    }

    /**
     * AlterConfigs (API 33, the legacy whole-config replace): Admin.alterConfigs was removed from the Java
     * Admin in Kafka 4.0, so the request is sent raw with kafka-clients' AlterConfigsRequest. Kafka 4.4 still
     * serves v0-2: the resource's overrides become exactly the ones given.
     */
    @Test
    void alterConfigsReplacesTheOverrides() {
        String topic = Clients.unique("adm-ac");
        get(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1)
                .configs(Map.of("retention.ms", "3600000", "max.message.bytes", "200000")))).all());
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        short v = RawRequest.usableVersion(karnak.bootstrap(), ApiKeys.ALTER_CONFIGS);
        AlterConfigsResponse resp = (AlterConfigsResponse) RawRequest.send(karnak.bootstrap(),
                new AlterConfigsRequest.Builder(Map.of(r, new AlterConfigsRequest.Config(List.of(
                        new AlterConfigsRequest.ConfigEntry("retention.ms", "120000")))), false), v);
        assertEquals(Errors.NONE, resp.errors().get(r).error(), "AlterConfigs v" + v + ": " + resp.errors());
        ConfigEntry ret = topicConfig(topic, "retention.ms");
        assertEquals("120000", ret.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, ret.source());
        ConfigEntry mmb = topicConfig(topic, "max.message.bytes");
        assertEquals("1048588", mmb.value(), "an override left out of AlterConfigs is removed");
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, mmb.source());
        // validate_only changes nothing
        resp = (AlterConfigsResponse) RawRequest.send(karnak.bootstrap(),
                new AlterConfigsRequest.Builder(Map.of(r, new AlterConfigsRequest.Config(List.of(
                        new AlterConfigsRequest.ConfigEntry("retention.ms", "5000")))), true), v);
        assertEquals(Errors.NONE, resp.errors().get(r).error());
        assertEquals("120000", topicConfig(topic, "retention.ms").value(), "validateOnly changed the config");
    }

    // ---------------------------------------------------------------- records and offsets

    @Test
    void deleteRecords() {
        String topic = newTopic(1);
        produceTen(topic);
        TopicPartition tp = new TopicPartition(topic, 0);
        var lw = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(5))).lowWatermarks().get(tp));
        assertEquals(5, lw.lowWatermark());
        ListOffsetsResultInfo earliest = get(admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp));
        assertEquals(5, earliest.offset(), "earliest offset after deleteRecords");
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), null, Map.of())) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            assertEquals(5, Clients.consume(c, 1, Duration.ofSeconds(30)).get(0).offset());
        }
    }

    @Test
    void listOffsetsEarliestLatestTimestampMaxTimestamp() {
        String topic = newTopic(1);
        produceTen(topic);
        TopicPartition tp = new TopicPartition(topic, 0);
        ListOffsetsResultInfo earliest = get(admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp));
        ListOffsetsResultInfo latest = get(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp));
        ListOffsetsResultInfo at = get(admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(T0 + 3500)))
                .partitionResult(tp));
        ListOffsetsResultInfo none = get(admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(T0 + 200_000)))
                .partitionResult(tp));
        assertEquals(0, earliest.offset());
        assertEquals(10, latest.offset());
        assertEquals(4, at.offset(), "first offset with timestamp >= T0+3500");
        assertEquals(T0 + 4000, at.timestamp());
        assertEquals(-1, none.offset(), "no record at or after the timestamp: offset -1");
    }

    /**
     * KIP-734 / KAFKA-16310: MAX_TIMESTAMP is the offset of the record with the largest timestamp, not the
     * last offset of the batch holding it (the 10 records go in one batch here).
     */
    @Test
    void listOffsetsMaxTimestampIsTheRecordsOffset() {
        String topic = newTopic(1);
        produceTen(topic);
        TopicPartition tp = new TopicPartition(topic, 0);
        ListOffsetsResultInfo max = get(admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp));
        assertEquals(T0 + 100_000, max.timestamp());
        assertEquals(6, max.offset(), "offset of the record with the max timestamp");
    }

    @Test
    void describeLogDirs() {
        String topic = newTopic(1);
        produceTen(topic);
        Map<String, LogDirDescription> dirs = get(admin.describeLogDirs(List.of(0)).allDescriptions()).get(0);
        assertFalse(dirs.isEmpty(), "log dirs of broker 0");
        TopicPartition tp = new TopicPartition(topic, 0);
        long size = dirs.values().stream().filter(d -> d.replicaInfos().containsKey(tp))
                .mapToLong(d -> d.replicaInfos().get(tp).size()).sum();
        assertTrue(size > 0, "size of " + tp + " in " + dirs);
    }

    // ---------------------------------------------------------------- cluster

    @Test
    void describeCluster() {
        DescribeClusterResult r = admin.describeCluster();
        var nodes = get(r.nodes());
        assertEquals(1, nodes.size());
        var n = nodes.iterator().next();
        assertEquals(0, n.id());
        assertEquals("127.0.0.1", n.host());
        assertEquals(karnak.kafkaPort(), n.port());
        assertNotNull(get(r.clusterId()));
        assertFalse(get(r.clusterId()).isEmpty());
        assertNotNull(get(r.controller()));
    }

    @Test
    void describeFeatures() {
        FeatureMetadata f = get(admin.describeFeatures().featureMetadata());
        assertNotNull(f);
        System.out.println("[karnak] describeFeatures: " + f);
    }

    // ---------------------------------------------------------------- groups

    /** A consumer of {@code group} that consumed and committed the first {@code commit} records of p0. */
    static void groupWithCommit(String group, String topic, long commit) {
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), group, Map.of())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.subscribe(List.of(topic));
            Clients.consume(c, 10, Duration.ofSeconds(30));
            c.commitSync(Map.of(tp, new OffsetAndMetadata(commit, "meta-" + commit)), Duration.ofSeconds(30));
        }
    }

    @Test
    void listGroupsAndListConsumerGroups() {
        String topic = newTopic(1);
        produceTen(topic);
        String group = Clients.unique("g-list");
        groupWithCommit(group, topic, 10);
        Collection<GroupListing> all = get(admin.listGroups().all());
        GroupListing g = all.stream().filter(l -> l.groupId().equals(group)).findFirst()
                .orElseThrow(() -> new AssertionError(group + " not in listGroups " + all));
        assertEquals(Optional.of(GroupType.CLASSIC), g.type());
        assertEquals("consumer", g.protocol());
        assertEquals(Optional.of(GroupState.EMPTY), g.groupState());
        @SuppressWarnings("deprecation")
        Collection<ConsumerGroupListing> cgs = get(admin.listConsumerGroups().all());
        assertTrue(cgs.stream().anyMatch(l -> l.groupId().equals(group)), "listConsumerGroups: " + cgs);
        Collection<GroupListing> stable = get(admin.listGroups(
                new org.apache.kafka.clients.admin.ListGroupsOptions().inGroupStates(Set.of(GroupState.STABLE))).all());
        assertTrue(stable.stream().noneMatch(l -> l.groupId().equals(group)), "state filter: " + stable);
    }

    @Test
    void describeConsumerGroupsWhileActive() {
        String topic = newTopic(2);
        String group = Clients.unique("g-desc");
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), group, Map.of(
                ConsumerConfig.CLIENT_ID_CONFIG, "desc-client"))) {
            c.subscribe(List.of(topic));
            Poll.untilTrue(Duration.ofSeconds(30), "assignment", () -> {
                c.poll(Duration.ofMillis(100));
                return c.assignment().size() == 2;
            });
            ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            assertEquals(GroupState.STABLE, d.groupState());
            assertEquals(GroupType.CLASSIC, d.type());
            assertEquals("range", d.partitionAssignor());
            assertFalse(d.isSimpleConsumerGroup());
            assertEquals(0, d.coordinator().id());
            assertEquals(1, d.members().size());
            var m = d.members().iterator().next();
            assertEquals("desc-client", m.clientId());
            assertEquals(Set.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1)),
                    m.assignment().topicPartitions());
        }
        ConsumerGroupDescription after = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
        assertEquals(GroupState.EMPTY, after.groupState(), "after the member left");
        assertTrue(after.members().isEmpty());
    }

    @Test
    void consumerGroupOffsetsListAlterDelete() {
        String topic = newTopic(1);
        produceTen(topic);
        String group = Clients.unique("g-offs");
        TopicPartition tp = new TopicPartition(topic, 0);
        groupWithCommit(group, topic, 7);
        Map<TopicPartition, OffsetAndMetadata> o =
                get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(7, o.get(tp).offset());
        assertEquals("meta-7", o.get(tp).metadata());

        get(admin.alterConsumerGroupOffsets(group, Map.of(tp, new OffsetAndMetadata(3))).all());
        o = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(3, o.get(tp).offset(), "after alterConsumerGroupOffsets");

        get(admin.deleteConsumerGroupOffsets(group, Set.of(tp)).all());
        o = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertTrue(o.get(tp) == null, "after deleteConsumerGroupOffsets: " + o);
    }

    @Test
    void deleteConsumerGroups() {
        String topic = newTopic(1);
        produceTen(topic);
        String group = Clients.unique("g-del");
        groupWithCommit(group, topic, 10);
        get(admin.deleteConsumerGroups(List.of(group)).all());
        Collection<GroupListing> all = get(admin.listGroups().all());
        assertTrue(all.stream().noneMatch(l -> l.groupId().equals(group)), "deleted group listed: " + all);
        Throwable t = Clients.failure(admin.deleteConsumerGroups(List.of(group)).all(), Duration.ofSeconds(30));
        assertInstanceOf(GroupIdNotFoundException.class, t, "deleting a deleted group");
        t = Clients.failure(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group),
                Duration.ofSeconds(30));
        assertInstanceOf(GroupIdNotFoundException.class, t, "describe of a deleted group (Kafka 4.x)");
    }

    @Test
    void removeMembersFromConsumerGroup() {
        String topic = newTopic(1);
        String group = Clients.unique("g-rm");
        try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(karnak.bootstrap(), group, Map.of(
                ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "inst-1",
                ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 60000))) {
            c.subscribe(List.of(topic));
            Poll.untilTrue(Duration.ofSeconds(30), "assignment", () -> {
                c.poll(Duration.ofMillis(100));
                return !c.assignment().isEmpty();
            });
        } // a static member does not leave on close
        ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
        assertEquals(1, d.members().size(), "static member still in the group after close");
        assertEquals(Optional.of("inst-1"), d.members().iterator().next().groupInstanceId());
        get(admin.removeMembersFromConsumerGroup(group,
                new RemoveMembersFromConsumerGroupOptions(List.of(new MemberToRemove("inst-1")))).all());
        d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
        assertTrue(d.members().isEmpty(), "members after removal: " + d.members());
        assertEquals(GroupState.EMPTY, d.groupState());
    }

    // ---------------------------------------------------------------- producers and transactions

    @Test
    void describeProducers() {
        String topic = newTopic(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of())) {
            for (int i = 0; i < 5; i++) {
                p.send(new ProducerRecord<>(topic, 0, null, new byte[] {(byte) i}));
                p.flush();
            }
        }
        List<ProducerState> ps = get(admin.describeProducers(List.of(tp)).partitionResult(tp)).activeProducers();
        assertEquals(1, ps.size(), "one idempotent producer: " + ps);
        ProducerState s = ps.get(0);
        assertTrue(s.producerId() >= 0);
        assertEquals(0, s.producerEpoch());
        assertEquals(4, s.lastSequence(), "last sequence after 5 single-record batches");
        assertTrue(s.currentTransactionStartOffset().isEmpty());
    }

    static KafkaProducer<byte[], byte[]> txProducer(String txId) {
        KafkaProducer<byte[], byte[]> p = Clients.producer(karnak.bootstrap(), Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, txId));
        p.initTransactions();
        return p;
    }

    @Test
    void describeAndListTransactions() {
        String topic = newTopic(1);
        String txId = Clients.unique("tx-desc");
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<byte[], byte[]> p = txProducer(txId)) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "x".getBytes(StandardCharsets.UTF_8)));
            p.flush();
            TransactionDescription d = get(admin.describeTransactions(List.of(txId)).description(txId));
            assertEquals(TransactionState.ONGOING, d.state());
            assertEquals(Set.of(tp), d.topicPartitions());
            assertEquals(0, d.coordinatorId());
            assertTrue(d.transactionStartTimeMs().isPresent());
            Collection<TransactionListing> ls = get(admin.listTransactions().all());
            TransactionListing l = ls.stream().filter(x -> x.transactionalId().equals(txId)).findFirst()
                    .orElseThrow(() -> new AssertionError(txId + " not in listTransactions " + ls));
            assertEquals(TransactionState.ONGOING, l.state());
            assertEquals(d.producerId(), l.producerId());
            var ongoing = get(admin.listTransactions(new org.apache.kafka.clients.admin.ListTransactionsOptions()
                    .filterStates(List.of(TransactionState.COMPLETE_COMMIT))).all());
            assertTrue(ongoing.stream().noneMatch(x -> x.transactionalId().equals(txId)), "state filter");
            p.commitTransaction();
            // Kafka answers EndTxn at PrepareCommit and completes after writing the markers: poll.
            TransactionDescription done = Poll.until(Duration.ofSeconds(30), "CompleteCommit", () -> {
                TransactionDescription x = get(admin.describeTransactions(List.of(txId)).description(txId));
                return x.state() == TransactionState.COMPLETE_COMMIT ? x : null;
            });
            assertTrue(done.topicPartitions().isEmpty());
        }
    }

    @Test
    void abortTransactionWritesAbortMarker() {
        String topic = newTopic(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        KafkaProducer<byte[], byte[]> p = txProducer(Clients.unique("tx-hanging"));
        try {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "hanging".getBytes(StandardCharsets.UTF_8)));
            p.flush();
            ProducerState s = get(admin.describeProducers(List.of(tp)).partitionResult(tp)).activeProducers().get(0);
            assertEquals(0L, s.currentTransactionStartOffset().orElse(-1), "open transaction at offset 0");
            get(admin.abortTransaction(new AbortTransactionSpec(tp, s.producerId(), (short) s.producerEpoch(),
                    s.coordinatorEpoch().orElse(0))).all());
            try (KafkaConsumer<byte[], byte[]> rc = Clients.consumer(karnak.bootstrap(), null,
                    Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
                Poll.untilTrue(Duration.ofSeconds(30), "LSO past the abort marker",
                        () -> rc.endOffsets(List.of(tp)).get(tp) == 2L);
                rc.assign(List.of(tp));
                rc.seekToBeginning(List.of(tp));
                assertEquals(0, rc.poll(Duration.ofMillis(500)).count(), "aborted record visible");
            }
            ProducerState after = get(admin.describeProducers(List.of(tp)).partitionResult(tp)).activeProducers().get(0);
            assertTrue(after.currentTransactionStartOffset().isEmpty(), "no open transaction after abort: " + after);
        } finally {
            p.close(Duration.ofSeconds(5));
        }
    }

    @Test
    void fenceProducers() {
        String topic = newTopic(1);
        String txId = Clients.unique("tx-fenced");
        try (KafkaProducer<byte[], byte[]> p = txProducer(txId)) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, null, "x".getBytes(StandardCharsets.UTF_8)));
            p.flush();
            get(admin.fenceProducers(List.of(txId)).all());
            KafkaException e = org.junit.jupiter.api.Assertions.assertThrows(KafkaException.class, p::commitTransaction);
            assertTrue(e instanceof ProducerFencedException || e instanceof InvalidProducerEpochException,
                    "expected fencing, got " + e);
        }
        // Kafka 4.4 (transaction.version 2) shows the fenced id as Empty with a bumped epoch.
        TransactionDescription d = get(admin.describeTransactions(List.of(txId)).description(txId));
        assertTrue(d.state() != TransactionState.ONGOING && d.topicPartitions().isEmpty(),
                "fenced transaction is no longer open: " + d);
    }

    // ---------------------------------------------------------------- unserved APIs fail fast

    /**
     * Every admin call here must complete within 10 s: either succeed, or fail with UnsupportedVersionException
     * (Karnak does not list the API in ApiVersions). A hang or any other error fails.
     */
    @TestFactory
    Stream<DynamicTest> unservedCallsFailFastWithUnsupportedVersion() {
        String topic = newTopic(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        ConfigResource tr = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Admin slow = Clients.admin(karnak.bootstrap(), Map.of(
                AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 120000,
                AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 60000));
        // What Apache Kafka answers on a plain single-node cluster, and so is an acceptable answer too.
        Map<String, Class<? extends Throwable>> kafkaAnswer = Map.of(
                "electLeaders", ElectionNotNeededException.class,
                "describeAcls", SecurityDisabledException.class,
                "describeDelegationToken", UnsupportedByAuthenticationException.class,
                "describeShareGroups", GroupIdNotFoundException.class,
                "describeStreamsGroups", GroupIdNotFoundException.class);
        List<Map.Entry<String, Supplier<KafkaFuture<?>>>> calls = new ArrayList<>(List.of(
                Map.entry("createPartitions", () -> slow.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all()),
                Map.entry("incrementalAlterConfigs", () -> slow.incrementalAlterConfigs(Map.of(tr, List.of(
                        new AlterConfigOp(new ConfigEntry("retention.ms", "100000"), AlterConfigOp.OpType.SET)))).all()),
                Map.entry("deleteRecords", () -> slow.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(0))).all()),
                Map.entry("describeLogDirs", () -> slow.describeLogDirs(List.of(0)).allDescriptions()),
                Map.entry("describeReplicaLogDirs", () -> slow.describeReplicaLogDirs(
                        List.of(new TopicPartitionReplica(topic, 0, 0))).all()),
                Map.entry("electLeaders", () -> slow.electLeaders(ElectionType.PREFERRED, Set.of(tp)).all()),
                Map.entry("describeAcls", () -> slow.describeAcls(AclBindingFilter.ANY).values()),
                Map.entry("describeClientQuotas", () -> slow.describeClientQuotas(ClientQuotaFilter.all()).entities()),
                Map.entry("describeUserScramCredentials", () -> slow.describeUserScramCredentials().all()),
                Map.entry("alterPartitionReassignments", () -> slow.alterPartitionReassignments(
                        Map.of(tp, Optional.of(new NewPartitionReassignment(List.of(0))))).all()),
                Map.entry("listPartitionReassignments", () -> slow.listPartitionReassignments().reassignments()),
                Map.entry("describeMetadataQuorum", () -> slow.describeMetadataQuorum().quorumInfo()),
                Map.entry("describeDelegationToken", () -> slow.describeDelegationToken().delegationTokens()),
                Map.entry("listConfigResources", () -> slow.listConfigResources().all()),
                Map.entry("describeShareGroups", () -> slow.describeShareGroups(List.of("no-such-share-group")).all()),
                Map.entry("describeStreamsGroups", () -> slow.describeStreamsGroups(List.of("no-such-streams-group")).all()),
                Map.entry("describeTopics", () -> slow.describeTopics(List.of(topic)).allTopicNames()),
                Map.entry("describeFeatures", () -> slow.describeFeatures().featureMetadata())));
        return Stream.concat(calls.stream().map(c -> DynamicTest.dynamicTest(c.getKey(), () -> {
            long t0 = System.nanoTime();
            KafkaFuture<?> f = c.getValue().get();
            try {
                f.get(10, TimeUnit.SECONDS);
                System.out.printf("[karnak] %s: served (%d ms)%n", c.getKey(),
                        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
            } catch (ExecutionException e) {
                Class<? extends Throwable> alsoOk = kafkaAnswer.get(c.getKey());
                if (alsoOk != null && alsoOk.isInstance(e.getCause())) {
                    System.out.printf("[karnak] %s: served, answered %s%n", c.getKey(), e.getCause());
                    return;
                }
                if (!(e.getCause() instanceof UnsupportedVersionException)) {
                    fail(c.getKey() + " failed with " + e.getCause() + " (expected success or UnsupportedVersionException)",
                            e.getCause());
                }
                System.out.printf("[karnak] %s: UnsupportedVersionException in %d ms: %s%n", c.getKey(),
                        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), e.getCause().getMessage());
            } catch (TimeoutException e) {
                fail(c.getKey() + " did not complete within 10 s: it hangs instead of failing fast");
            }
        })), Stream.of(DynamicTest.dynamicTest("close admin", () -> slow.close(Duration.ofSeconds(5)))));
    }

    static String names(Collection<?> c) {
        return c.stream().map(Object::toString).collect(Collectors.joining(", "));
    }
}
