package dev.karnak.compat.harness;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * MirrorMaker 2's dedicated driver in its own JVM, as {@code connect-mirror-maker.sh mm2.properties} runs it:
 * {@code org.apache.kafka.connect.mirror.MirrorMaker} on the classpath of one Kafka release ({@code mm2/pom.xml},
 * resolved once with {@code mvn dependency:build-classpath}), its log in {@code target/test-logs/}.
 */
public final class MirrorMakerDriver implements AutoCloseable {
    private final Process proc;
    private final Path log;

    private MirrorMakerDriver(Process proc, Path log) {
        this.proc = proc;
        this.log = log;
    }

    /** The driver's classpath: resolved by Maven from mm2/pom.xml (cached in target/ per pom change). */
    static String classpath() throws IOException, InterruptedException {
        Path pom = Paths.get("mm2", "pom.xml").toAbsolutePath();
        Path out = Paths.get("target", "mm2-driver.classpath").toAbsolutePath();
        if (!Files.exists(out) || Files.getLastModifiedTime(out).compareTo(Files.getLastModifiedTime(pom)) < 0) {
            Path mlog = Paths.get("target", "test-logs", "mm2-classpath.log");
            Files.createDirectories(mlog.getParent());
            Process mvn = new ProcessBuilder("mvn", "-B", "-ntp", "-q", "-f", pom.toString(),
                    "dependency:build-classpath", "-Dmdep.outputFile=" + out)
                    .redirectErrorStream(true).redirectOutput(mlog.toFile()).start();
            if (!mvn.waitFor(300, TimeUnit.SECONDS) || mvn.exitValue() != 0) {
                mvn.destroyForcibly();
                throw new AssertionError("resolving the MM2 driver classpath failed:\n"
                        + Files.readString(mlog, StandardCharsets.UTF_8));
            }
        }
        return Files.readString(out, StandardCharsets.UTF_8).strip();
    }

    /** Starts the driver with {@code props} as its mm2.properties. */
    public static MirrorMakerDriver start(String name, Map<String, String> props) {
        try {
            Path dir = Files.createDirectories(Paths.get("target", "test-logs", "mm2-" + name).toAbsolutePath());
            Path file = dir.resolve("mm2.properties");
            List<String> lines = new ArrayList<>();
            props.forEach((k, v) -> lines.add(k + "=" + v));
            Files.write(file, lines, StandardCharsets.UTF_8);
            Path log4j = ApacheKafka.log4jToFile(dir, "mm2.log");
            Path log = dir.resolve("stdout.log");
            List<String> cmd = List.of(
                    Paths.get(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    "-Dlog4j2.configurationFile=" + log4j,
                    "-cp", classpath(),
                    "org.apache.kafka.connect.mirror.MirrorMaker", file.toString());
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
            return new MirrorMakerDriver(p, dir.resolve("mm2.log"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** Fails (with the log's tail) if the driver has exited. */
    public void checkAlive() {
        if (!proc.isAlive()) {
            throw new AssertionError("MirrorMaker exited with " + proc.exitValue() + "; log: " + log);
        }
    }

    @Override
    public void close() {
        proc.destroy(); // SIGTERM: the driver's shutdown hook stops its herders
        try {
            if (!proc.waitFor(30, TimeUnit.SECONDS)) {
                proc.destroyForcibly();
            }
        } catch (InterruptedException e) {
            proc.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
