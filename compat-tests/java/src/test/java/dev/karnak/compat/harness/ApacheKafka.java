package dev.karnak.compat.harness;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.common.Uuid;

/**
 * The ORACLE: a real Apache Kafka (the kafka_2.13 artifact on the test classpath, so the same version as the
 * clients) single-node KRaft broker in combined broker+controller mode, in its own JVM, data in a temp dir,
 * its own free ports. Started lazily ONCE per test run and stopped by a JVM shutdown hook.
 */
public final class ApacheKafka {
    private static final Duration START_TIMEOUT =
            Duration.ofSeconds(Long.getLong("oracle.start.timeout.s", 120));
    private static ApacheKafka instance;
    private static AssertionError startFailure;

    private final Path dir;
    private final Path log;
    private final int port;
    private final Process proc;
    private final long startMillis;

    /** The shared oracle, started on first use (about 5-10 s on 2 cores). */
    public static synchronized ApacheKafka get() {
        if (startFailure != null) {
            throw startFailure;
        }
        if (instance == null) {
            try {
                instance = new ApacheKafka();
            } catch (AssertionError e) {
                startFailure = e;
                throw e;
            }
        }
        return instance;
    }

    public String bootstrap() {
        return "127.0.0.1:" + port;
    }

    public int port() {
        return port;
    }

    public long startMillis() {
        return startMillis;
    }

    public String logTail(int lines) {
        String[] all = (Karnak.readQuietly(log) + Karnak.readQuietly(dir.resolve("server.log"))).split("\n", -1);
        return String.join("\n", Arrays.asList(all).subList(Math.max(0, all.length - lines), all.length));
    }

    /** A log4j2 config (written into {@code dir}) sending a Kafka JVM's INFO log to {@code dir/file}. */
    public static Path log4jToFile(Path dir, String file) throws IOException {
        Path log4j = dir.resolve("log4j2.properties");
        Files.writeString(log4j, String.join("\n", List.of(
                "rootLogger.level=INFO",
                "rootLogger.appenderRef.f.ref=F",
                "appender.f.type=File",
                "appender.f.name=F",
                "appender.f.fileName=" + dir.resolve(file),
                "appender.f.layout.type=PatternLayout",
                "appender.f.layout.pattern=[%d] %p %m (%c)%n",
                "")), StandardCharsets.UTF_8);
        return log4j;
    }

    private ApacheKafka() {
        long t0 = System.nanoTime();
        int[] ports = Karnak.freePorts(2);
        port = ports[0];
        int controllerPort = ports[1];
        try {
            Path root = Paths.get(System.getProperty("karnak.test.dir", "target/karnak-test")).toAbsolutePath();
            Files.createDirectories(root);
            dir = Files.createTempDirectory(root, "apache-kafka-");
            Path data = dir.resolve("data");
            log = dir.resolve("kafka.log");
            Path props = dir.resolve("server.properties");
            Files.writeString(props, String.join("\n", List.of(
                    "process.roles=broker,controller",
                    "node.id=0",
                    "controller.quorum.voters=0@127.0.0.1:" + controllerPort,
                    "listeners=PLAINTEXT://127.0.0.1:" + port + ",CONTROLLER://127.0.0.1:" + controllerPort,
                    "advertised.listeners=PLAINTEXT://127.0.0.1:" + port,
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    "log.dirs=" + data,
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    // Same as the karnak test brokers (Karnak.defaultArgs()).
                    "group.initial.rebalance.delay.ms=0",
                    "group.consumer.min.heartbeat.interval.ms=500",
                    "group.consumer.heartbeat.interval.ms=500",
                    "")), StandardCharsets.UTF_8);
            Path log4j = log4jToFile(dir, "server.log");

            // kafka-storage format, in-process (kafka.tools.StorageTool is what kafka-storage.sh runs).
            String clusterId = Uuid.randomUuid().toString();
            Cli.Result fmt = Cli.run("kafka.tools.StorageTool",
                    "format", "-t", clusterId, "-c", props.toString());
            if (fmt.exitCode() != 0) {
                throw new AssertionError("kafka-storage format failed: " + fmt);
            }

            List<String> cmd = new ArrayList<>(List.of(
                    Paths.get(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    "-Dlog4j2.configurationFile=" + log4j,
                    "-Dkafka.logs.dir=" + dir,
                    "-cp", System.getProperty("java.class.path"),
                    "kafka.Kafka", props.toString()));
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile());
            proc = pb.start();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(this::shutdown, "apache-kafka-oracle-shutdown"));
        waitReady(t0);
        startMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        System.out.println("[oracle] Apache Kafka ready on " + bootstrap() + " in " + startMillis + " ms (" + dir + ")");
    }

    private void waitReady(long t0) {
        try {
            waitListening();
        } catch (AssertionError e) {
            shutdown();
            throw e;
        }
        waitDescribeCluster();
    }

    private void waitListening() {
        // First the listener (a bare connect, no client warnings while the JVM starts), then a real answer.
        Poll.untilTrue(START_TIMEOUT, "Apache Kafka oracle to listen on " + bootstrap(), () -> {
            if (!proc.isAlive()) {
                throw new AssertionError("Apache Kafka exited with " + proc.exitValue() + "\n" + logTail(60));
            }
            try (java.net.Socket s = new java.net.Socket()) {
                s.connect(new java.net.InetSocketAddress("127.0.0.1", port), 1000);
                return true;
            } catch (IOException e) {
                return false;
            }
        });
    }

    private void waitDescribeCluster() {
        try (Admin admin = Admin.create(Map.of(
                AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap(),
                AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 3000,
                AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 5000,
                AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 200))) {
            Poll.until(START_TIMEOUT, "Apache Kafka oracle to serve describeCluster on " + bootstrap(), () -> {
                if (!proc.isAlive()) {
                    throw new AssertionError("Apache Kafka exited with " + proc.exitValue() + "\n" + logTail(60)
                            + "\n--- server.log ---\n" + Karnak.readQuietly(dir.resolve("server.log")));
                }
                var nodes = admin.describeCluster(new DescribeClusterOptions().timeoutMs(3000)).nodes()
                        .get(4, TimeUnit.SECONDS);
                return nodes.isEmpty() ? null : nodes;
            });
        } catch (AssertionError e) {
            shutdown();
            throw e;
        }
    }

    /** Ends a broker's JVM: SIGTERM, 20 s to go, then SIGKILL. */
    static void stop(Process proc) {
        if (proc.isAlive()) {
            proc.destroy();
            try {
                if (!proc.waitFor(20, TimeUnit.SECONDS)) {
                    proc.destroyForcibly();
                    proc.waitFor(10, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void shutdown() {
        stop(proc);
        Karnak.deleteTree(dir.resolve("data"));
    }
}
