package dev.karnak.compat.harness;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;

/**
 * One karnak process on free ports with its own data dir (the Java twin of compat-tests/conftest.py's Broker).
 * Ports and data dir survive {@link #restart()}.
 */
public final class Karnak implements AutoCloseable {
    private static final Duration START_TIMEOUT =
            Duration.ofSeconds(Long.getLong("karnak.start.timeout.s", 60));
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);
    private static final AtomicInteger SEQ = new AtomicInteger();
    /** Every broker started in this JVM, for the failure report and the shutdown hook. */
    static final List<Karnak> ALL = new CopyOnWriteArrayList<>();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            for (Karnak k : ALL) {
                k.destroyForcibly();
            }
        }, "karnak-harness-shutdown"));
    }

    private final Path dir;
    private final Path dataDir;
    private final List<String> extraArgs;
    private final List<Path> logs = new ArrayList<>();
    private int kafkaPort;
    private int adminPort;
    private int sqlPort;
    private Process proc;
    private int starts;
    private boolean closed;
    /** Set when -Dcompat.against=kafka: this "broker" is the Apache Kafka oracle (a self-check of the tests). */
    private ApacheKafka external;

    private Karnak(List<String> extraArgs) {
        this.extraArgs = List.copyOf(extraArgs);
        try {
            Path root = Paths.get(System.getProperty("karnak.test.dir", "target/karnak-test")).toAbsolutePath();
            Files.createDirectories(root);
            this.dir = Files.createTempDirectory(root, "karnak-" + SEQ.incrementAndGet() + "-");
            this.dataDir = dir.resolve("data");
            Files.createDirectories(dataDir);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static Path binary() {
        String p = System.getProperty("karnak.bin");
        if (p == null || p.isBlank()) {
            p = System.getenv("KARNAK_BIN");
        }
        if (p == null || p.isBlank()) {
            p = "../../target/debug/karnak";
        }
        return Paths.get(p).toAbsolutePath().normalize();
    }

    /**
     * Flags every test broker gets unless a test overrides them: no SQL listener (the Java suite does not use
     * it) and no initial rebalance delay (as Kafka's sample server.properties for development).
     */
    public static List<String> defaultArgs() {
        return List.of("--sql-enabled", "false", "--group-initial-rebalance-delay-ms", "0");
    }

    /** Starts a broker with {@link #defaultArgs()} followed by {@code extraArgs} (later flags win). */
    public static Karnak start(String... extraArgs) {
        List<String> args = new ArrayList<>(defaultArgs());
        args.addAll(Arrays.asList(extraArgs));
        Karnak k = new Karnak(args);
        ALL.add(k);
        if (againstKafka()) {
            k.external = ApacheKafka.get();
            k.kafkaPort = k.external.port();
            return k;
        }
        k.startFirst();
        return k;
    }

    /**
     * -Dcompat.against=kafka runs the Karnak tests against the Apache Kafka oracle instead: a check that the
     * tests assert real Kafka behaviour (restart/kill tests cannot run that way).
     */
    public static boolean againstKafka() {
        return "kafka".equals(System.getProperty("compat.against", "karnak"));
    }

    public String bootstrap() {
        return "127.0.0.1:" + kafkaPort;
    }

    public int kafkaPort() {
        return kafkaPort;
    }

    public Path dataDir() {
        return dataDir;
    }

    public boolean alive() {
        if (external != null) {
            return !closed;
        }
        return proc != null && proc.isAlive();
    }

    public boolean isClosed() {
        return closed;
    }

    private List<String> command() {
        List<String> cmd = new ArrayList<>();
        cmd.add(binary().toString());
        cmd.addAll(List.of("--data-dir", dataDir.toString()));
        // A test naming its listeners puts PLAINTEXT on ${kafka}, the port chosen here.
        if (!extraArgs.contains("--listeners")) {
            cmd.addAll(List.of("--kafka-addr", bootstrap()));
        }
        cmd.addAll(List.of(
                "--admin-addr", "127.0.0.1:" + adminPort,
                "--sql-addr", "127.0.0.1:" + sqlPort,
                "--node-id", "0"));
        for (String a : extraArgs) {
            cmd.add(a.replace("${kafka}", Integer.toString(kafkaPort)));
        }
        return cmd;
    }

    private boolean sqlEnabled() {
        for (int i = extraArgs.size() - 2; i >= 0; i--) {
            if (extraArgs.get(i).equals("--sql-enabled")) {
                return !extraArgs.get(i + 1).equals("false");
            }
        }
        return true;
    }

    private void startFirst() {
        Path bin = binary();
        if (!Files.isExecutable(bin)) {
            throw new AssertionError("karnak binary not found or not executable at " + bin
                    + " (build it with `cargo build --bins`, or pass -Dkarnak.bin=... / KARNAK_BIN)");
        }
        // A port found free may be taken before karnak binds it: retry with new ports on "in use".
        AssertionError last = null;
        for (int attempt = 0; attempt < 3; attempt++) {
            int[] ports = freePorts(3);
            kafkaPort = ports[0];
            adminPort = ports[1];
            sqlPort = ports[2];
            try {
                spawnAndWait();
                return;
            } catch (AssertionError e) {
                last = e;
                if (!e.getMessage().toLowerCase().contains("in use")) {
                    break;
                }
            }
        }
        throw last;
    }

    private void spawnAndWait() {
        starts++;
        Path log = dir.resolve("karnak-" + kafkaPort + "-start" + starts + ".log");
        logs.add(log);
        ProcessBuilder pb = new ProcessBuilder(command())
                .redirectErrorStream(true)
                .redirectOutput(log.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(Paths.get("/dev/null").toFile()));
        pb.environment().putIfAbsent("NO_COLOR", "1");
        try {
            proc = pb.start();
        } catch (IOException e) {
            throw new AssertionError("cannot start " + command(), e);
        }
        List<String> ready = new ArrayList<>();
        ready.add("serving Kafka on 127.0.0.1:" + kafkaPort + " ");
        if (sqlEnabled()) {
            ready.add("(Postgres wire) on 127.0.0.1:" + sqlPort + ":");
        }
        long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        long pause = 5;
        while (System.nanoTime() < deadline) {
            if (!proc.isAlive()) {
                throw new AssertionError("karnak exited with code " + proc.exitValue()
                        + " before serving; args=" + command() + "\n--- log ---\n" + logTail(100));
            }
            String text = readQuietly(log);
            if (ready.stream().allMatch(text::contains)) {
                return;
            }
            Poll.sleepQuietly(pause);
            pause = Math.min(pause * 2, 50);
        }
        destroyForcibly();
        throw new AssertionError("karnak did not serve on " + bootstrap() + " within " + START_TIMEOUT
                + "\n--- log ---\n" + logTail(100));
    }

    /** SIGTERM and wait; returns the exit code (143 = killed by SIGTERM without handling it). */
    public int stop() {
        requireOwnProcess();
        if (proc == null) {
            throw new AssertionError("karnak not started");
        }
        if (proc.isAlive()) {
            proc.destroy(); // SIGTERM
            try {
                if (!proc.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
                    destroyForcibly();
                    throw new AssertionError("karnak did not exit within " + STOP_TIMEOUT
                            + " of SIGTERM; killed\n--- log ---\n" + logTail(100));
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        }
        return proc.exitValue();
    }

    /** kill -9; returns the exit code (137). */
    public int kill9() {
        requireOwnProcess();
        destroyForcibly();
        return proc == null ? 0 : proc.exitValue();
    }

    private void destroyForcibly() {
        if (proc != null && proc.isAlive()) {
            proc.destroyForcibly();
            try {
                proc.waitFor(30, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Clean stop (must exit 0) then start again on the same ports and data dir. */
    public Karnak restart() {
        requireOwnProcess();
        if (alive()) {
            int rc = stop();
            if (rc != 0) {
                throw new AssertionError("karnak exited with " + rc + " on SIGTERM\n" + logTail(100));
            }
        }
        spawnAndWait();
        return this;
    }

    /** Start again after {@link #kill9()} or {@link #stop()}. */
    public Karnak startAgain() {
        requireOwnProcess();
        if (alive()) {
            throw new AssertionError("karnak still running");
        }
        spawnAndWait();
        return this;
    }

    public String logText() {
        if (external != null) {
            return external.logTail(200);
        }
        StringBuilder sb = new StringBuilder();
        for (Path p : logs) {
            sb.append("===== ").append(p.getFileName()).append(" =====\n").append(readQuietly(p));
        }
        return sb.toString();
    }

    public String logTail(int lines) {
        String[] all = logText().split("\n", -1);
        int from = Math.max(0, all.length - lines);
        return String.join("\n", Arrays.asList(all).subList(from, all.length));
    }

    /** Kills the process and deletes its data (logs are kept under target/ for post-mortems). */
    private void requireOwnProcess() {
        if (external != null) {
            throw new org.opentest4j.TestAbortedException("-Dcompat.against=kafka: cannot stop the shared oracle");
        }
    }

    @Override
    public void close() {
        if (external != null) {
            closed = true;
            return;
        }
        destroyForcibly();
        closed = true;
        deleteTree(dataDir);
    }

    @Override
    public String toString() {
        return "Karnak[" + bootstrap() + " " + dir + "]";
    }

    static String readQuietly(Path p) {
        try {
            return Files.readString(p, StandardCharsets.UTF_8);
        } catch (IOException | java.io.UncheckedIOException e) {
            try {
                return new String(Files.readAllBytes(p), StandardCharsets.ISO_8859_1);
            } catch (IOException ex) {
                return "";
            }
        }
    }

    public static int[] freePorts(int n) {
        int[] ports = new int[n];
        List<ServerSocket> held = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
                held.add(s);
                ports[i] = s.getLocalPort();
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } finally {
            for (ServerSocket s : held) {
                try {
                    s.close();
                } catch (IOException ignored) {
                    // best effort
                }
            }
        }
        return ports;
    }

    static void deleteTree(Path root) {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(root)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort
                }
            });
        } catch (IOException | UncheckedIOException ignored) {
            // best effort
        }
    }
}
