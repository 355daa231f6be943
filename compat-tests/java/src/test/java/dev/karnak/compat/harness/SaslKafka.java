package dev.karnak.compat.harness;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Uuid;

/**
 * A real Apache Kafka (the kafka_2.13 artifact on the test classpath) with SCRAM users, started from a
 * server.properties the caller wrote: the reference the ACL and quota tests run their expectations against
 * with {@code -Dcompat.against=kafka}. Storage is formatted with the users' SCRAM credentials; the broker is
 * ready once the super user {@code admin} gets an answer to describeCluster on the SASL_PLAINTEXT port.
 */
public final class SaslKafka implements AutoCloseable {
    private final Path dir;
    private final Process proc;

    public SaslKafka(Path dir, Path props, String mechanism, Map<String, String> passwords, int saslPort,
            String what) throws Exception {
        this.dir = dir;
        Path log4j = ApacheKafka.log4jToFile(dir, "server.log");
        List<String> format = new ArrayList<>(List.of("format", "-t", Uuid.randomUuid().toString(),
                "-c", props.toString()));
        passwords.forEach((user, password) -> format.addAll(List.of("--add-scram",
                mechanism + "=[name=" + user + ",password=" + password + "]")));
        Cli.Result fmt = Cli.run("kafka.tools.StorageTool", format.toArray(new String[0]));
        if (fmt.exitCode() != 0) {
            throw new AssertionError("kafka-storage format failed: " + fmt);
        }
        List<String> cmd = List.of(Paths.get(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dlog4j2.configurationFile=" + log4j, "-Dkafka.logs.dir=" + dir,
                "-cp", System.getProperty("java.class.path"), "kafka.Kafka", props.toString());
        proc = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("kafka.log").toFile())
                .start();
        try {
            Poll.untilTrue(Duration.ofSeconds(120), "Apache Kafka (" + what + ") to listen on " + saslPort, () -> {
                if (!proc.isAlive()) {
                    throw new AssertionError("Apache Kafka exited with " + proc.exitValue() + "; see " + dir);
                }
                try (Socket s = new Socket()) {
                    s.connect(new InetSocketAddress("127.0.0.1", saslPort), 1000);
                    return true;
                } catch (IOException e) {
                    return false;
                }
            });
            Map<String, Object> c = new HashMap<>();
            c.put("security.protocol", "SASL_PLAINTEXT");
            c.put("sasl.mechanism", mechanism);
            c.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required"
                    + " username=\"admin\" password=\"" + passwords.get("admin") + "\";");
            c.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 5000);
            c.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 3000);
            try (Admin admin = Clients.admin("127.0.0.1:" + saslPort, c)) {
                Poll.until(Duration.ofSeconds(120), "Apache Kafka (" + what + ") to answer describeCluster as admin",
                        () -> admin.describeCluster().nodes().get(5, TimeUnit.SECONDS));
            }
        } catch (AssertionError e) {
            close();
            throw new AssertionError(e.getMessage() + "\n--- server.log ---\n" + tail(), e);
        }
    }

    private String tail() {
        try {
            List<String> lines = Files.readAllLines(dir.resolve("server.log"));
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 60), lines.size()));
        } catch (IOException | UncheckedIOException e) {
            return "(no server.log: " + e + ")";
        }
    }

    @Override
    public void close() {
        ApacheKafka.stop(proc);
        // The data goes, the logs stay under target/ for post-mortems (as the harness' brokers).
        try (java.util.stream.Stream<Path> walk = Files.walk(dir.resolve("data"))) {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (IOException | UncheckedIOException ignored) {
            // best effort
        }
    }
}
