package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.Cli;
import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.KarnakBroker;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.Timeout;

/** Smoke test of the in-process CLI runner; CliToolsTest runs the tools against Karnak and Apache Kafka. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class CliTest {
    @RegisterExtension
    static final KarnakBroker karnak = new KarnakBroker();

    @Test
    void kafkaTopicsCreateListDescribe() {
        String topic = Clients.unique("cli");
        Cli.Result r = Cli.run("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", karnak.bootstrap(),
                "--create", "--topic", topic, "--partitions", "3", "--replication-factor", "1");
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.out().contains("Created topic " + topic), r.toString());
        r = Cli.run("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", karnak.bootstrap(), "--list");
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.out().lines().anyMatch(topic::equals), r.toString());
        r = Cli.run("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", karnak.bootstrap(),
                "--describe", "--topic", topic);
        assertEquals(0, r.exitCode(), r.toString());
        assertTrue(r.out().contains("PartitionCount: 3"), r.toString());
    }

    @Test
    void badArgumentsGiveANonZeroExitCodeWithoutEndingTheJvm() {
        Cli.Result r = Cli.run("org.apache.kafka.tools.TopicCommand", "--no-such-option");
        assertTrue(r.exitCode() != 0, r.toString());
    }
}
