package dev.karnak.compat.harness;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import org.apache.kafka.common.utils.internals.Exit;

/**
 * Runs a Kafka command-line tool IN-PROCESS through its main class (the kafka-*.sh scripts are thin wrappers
 * around these), with {@code Exit} overridden so the tool cannot end the JVM, and System.out / System.err
 * captured. Calls are serialized: Exit procedures and System.out are global.
 *
 * <p>Main classes in 4.4.0: org.apache.kafka.tools.TopicCommand (kafka-topics),
 * org.apache.kafka.tools.consumer.group.ConsumerGroupCommand (kafka-consumer-groups),
 * org.apache.kafka.tools.ConfigCommand (kafka-configs), org.apache.kafka.tools.TransactionsCommand
 * (kafka-transactions), org.apache.kafka.tools.DeleteRecordsCommand, org.apache.kafka.tools.LogDirsCommand,
 * org.apache.kafka.tools.GetOffsetShell, org.apache.kafka.tools.ConsoleProducer,
 * org.apache.kafka.tools.consumer.ConsoleConsumer, org.apache.kafka.tools.BrokerApiVersionsCommand,
 * org.apache.kafka.tools.FeatureCommand, kafka.tools.StorageTool (kafka-storage, in kafka_2.13).
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

    public static synchronized Result run(String mainClass, String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
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
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            System.setOut(o);
            System.setErr(e);
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
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
            Exit.resetExitProcedure();
            Exit.resetHaltProcedure();
        }
        return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
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
