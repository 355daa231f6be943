package dev.karnak.compat.harness;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.apache.kafka.common.utils.internals.Exit;

/**
 * Runs a Kafka command-line tool IN-PROCESS through its main class (the kafka-*.sh scripts are thin wrappers
 * around these), with {@code Exit} overridden so the tool cannot end the JVM, System.out / System.err captured
 * and System.in fed from a string ({@link #runWithStdin}; empty otherwise). The shutdown hooks a tool registers
 * through {@code Exit.addShutdownHook} run when its main returns or exits, as at the end of a real tool's JVM
 * (kafka-console-producer only closes, so flushes, its producer in its hook). Calls are serialized: Exit
 * procedures and System.in/out/err are global.
 *
 * <p>Main classes in 4.4.0: org.apache.kafka.tools.TopicCommand (kafka-topics),
 * org.apache.kafka.tools.consumer.group.ConsumerGroupCommand (kafka-consumer-groups),
 * org.apache.kafka.tools.ConfigCommand (kafka-configs), org.apache.kafka.tools.TransactionsCommand
 * (kafka-transactions; in-process run it through {@link TransactionsCommandMain}, which closes the AdminClient
 * the tool leaves open), org.apache.kafka.tools.DeleteRecordsCommand, org.apache.kafka.tools.LogDirsCommand,
 * org.apache.kafka.tools.GetOffsetShell, org.apache.kafka.tools.ConsoleProducer,
 * org.apache.kafka.tools.consumer.ConsoleConsumer, org.apache.kafka.tools.BrokerApiVersionsCommand,
 * org.apache.kafka.tools.FeatureCommand, org.apache.kafka.tools.ProducerPerformance (kafka-producer-perf-test),
 * org.apache.kafka.tools.ConsumerPerformance (kafka-consumer-perf-test), kafka.tools.StorageTool (kafka-storage,
 * in kafka_2.13).
 */
public final class Cli {
    static {
        // Initialize logging before any System.out swap: log4j's console appender binds to the System.out of
        // the moment it starts, and must not bind to a capture stream of one tool run.
        org.slf4j.LoggerFactory.getLogger(Cli.class).debug("CLI runner ready");
    }

    private Cli() {}

    public record Result(int exitCode, String out, String err) {
        @Override
        public String toString() {
            return "exit=" + exitCode + "\n--- stdout ---\n" + out + "\n--- stderr ---\n" + err;
        }
    }

    /** Thrown by the overridden exit/halt procedures to unwind the tool's main. */
    private static final class ExitCalled extends RuntimeException {
        final int code;

        ExitCalled(int code, String msg) {
            super("Exit.exit(" + code + ")" + (msg != null ? ": " + msg : ""), null, false, false);
            this.code = code;
        }
    }

    /** How long the shutdown hooks of one tool run may take (each). */
    private static final long HOOK_TIMEOUT_MS = 30_000;

    public static Result run(String mainClass, String... args) {
        return runWithStdin("", mainClass, args);
    }

    /** Runs the tool with {@code stdin} (UTF-8) as System.in, e.g. the lines kafka-console-producer sends. */
    public static synchronized Result runWithStdin(String stdin, String mainClass, String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        InputStream oldIn = System.in;
        List<Thread> hooks = new ArrayList<>();
        Set<Thread> clientThreadsBefore = clientThreads();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code;
        // The FIRST exit call is the tool's verdict: some tools catch the unwinding exception and exit again.
        Integer[] firstExit = new Integer[1];
        Exit.Procedure proc = (status, message) -> {
            if (firstExit[0] == null) {
                firstExit[0] = status;
            }
            throw new ExitCalled(status, message);
        };
        Exit.setExitProcedure(proc);
        Exit.setHaltProcedure(proc);
        Exit.setShutdownHookAdder((name, runnable) -> hooks.add(new Thread(runnable, name)));
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            System.setOut(o);
            System.setErr(e);
            System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
            try {
                Method main = Class.forName(mainClass).getMethod("main", String[].class);
                main.invoke(null, (Object) args);
                code = 0;
            } catch (InvocationTargetException ite) {
                Throwable cause = ite.getCause();
                ExitCalled exit = findExit(cause);
                if (exit != null) {
                    code = exit.code;
                } else {
                    cause.printStackTrace(e);
                    code = -1; // the tool threw instead of exiting
                }
            } catch (ReflectiveOperationException roe) {
                throw new AssertionError("cannot run " + mainClass + " " + Arrays.toString(args), roe);
            }
            if (firstExit[0] != null) {
                code = firstExit[0];
            }
            runHooks(hooks, e);
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
            System.setIn(oldIn);
            Exit.resetExitProcedure();
            Exit.resetHaltProcedure();
            Exit.resetShutdownHookAdder();
        }
        warnAboutLeftClients(clientThreadsBefore, mainClass, oldErr);
        return new Result(code, out.toString(StandardCharsets.UTF_8),
                withoutExitNoise(err.toString(StandardCharsets.UTF_8)));
    }

    /** Thread names of Kafka clients (admin, producer, consumer) that a tool should close before it returns. */
    private static final List<String> CLIENT_THREAD_PREFIXES = List.of("kafka-admin-client-thread",
            "kafka-producer-network-thread", "consumer_background_thread", "kafka-coordinator-heartbeat-thread");

    private static Set<Thread> clientThreads() {
        Set<Thread> out = new HashSet<>();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.isAlive() && CLIENT_THREAD_PREFIXES.stream().anyMatch(t.getName()::startsWith)) {
                out.add(t);
            }
        }
        return out;
    }

    /**
     * A tool that leaves a client open relies on its JVM's exit (kafka-transactions does: see
     * TransactionsCommandMain); in-process the client outlives the test's broker and retries against its port
     * for the rest of the run. Says so on the console, so the next tool test knows to wrap it.
     */
    private static void warnAboutLeftClients(Set<Thread> before, String mainClass, PrintStream console) {
        long deadline = System.nanoTime() + 2_000_000_000L;
        Set<Thread> left;
        do {
            left = clientThreads();
            left.removeAll(before);
            if (left.isEmpty()) {
                return;
            }
            Poll.sleepQuietly(20);
        } while (System.nanoTime() < deadline);
        console.println("[cli harness] WARNING: " + mainClass + " returned with Kafka client threads still running: "
                + left.stream().map(Thread::getName).sorted().toList());
    }

    /**
     * Some tools call Exit inside a {@code catch (Throwable)} (TopicCommand's execute exits, its mainNoExit prints
     * what it caught): the unwinding exception's message and name are harness noise a real JVM never prints.
     */
    private static String withoutExitNoise(String err) {
        return err.replaceAll("(?m)^(Exit\\.(exit|halt)\\(-?\\d+\\)(: .*)?|.*Cli\\$ExitCalled.*)\\R?", "");
    }

    /** The tool's shutdown hooks, as the JVM would run them at exit (but one after the other, bounded). */
    private static void runHooks(List<Thread> hooks, PrintStream err) {
        for (Thread t : hooks) {
            t.setDaemon(true);
            t.setUncaughtExceptionHandler((th, ex) -> ex.printStackTrace(err));
            t.start();
            try {
                t.join(HOOK_TIMEOUT_MS);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted running the shutdown hook " + t.getName(), ie);
            }
            if (t.isAlive()) {
                err.println("[cli harness] shutdown hook " + t.getName() + " still running after " + HOOK_TIMEOUT_MS
                        + " ms; left behind");
            }
        }
    }

    private static ExitCalled findExit(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof ExitCalled ec) {
                return ec;
            }
            if (c.getCause() == c) {
                break;
            }
        }
        return null;
    }
}
