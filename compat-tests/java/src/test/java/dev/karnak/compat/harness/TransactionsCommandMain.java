package dev.karnak.compat.harness;

import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.tools.TransactionsCommand;

/**
 * kafka-transactions for in-process runs: exactly what {@code TransactionsCommand.main} does,
 * {@code execute(args, TransactionsCommand::buildAdminClient, System.out, Time.SYSTEM)}, and then closes the
 * AdminClient. The tool never closes it (the script's JVM exits); in-process it would outlive its broker and
 * retry its metadata against the dead port for the rest of the test run. (Both members are private /
 * package-private: called by reflection, which the unnamed module allows.)
 */
public final class TransactionsCommandMain {
    private TransactionsCommandMain() {}

    public static void main(String[] args) throws Exception {
        Method build = TransactionsCommand.class.getDeclaredMethod("buildAdminClient",
                net.sourceforge.argparse4j.inf.Namespace.class);
        build.setAccessible(true);
        Method execute = TransactionsCommand.class.getDeclaredMethod("execute", String[].class, Function.class,
                PrintStream.class, Time.class);
        execute.setAccessible(true);
        List<Admin> admins = new ArrayList<>();
        Function<net.sourceforge.argparse4j.inf.Namespace, Admin> supplier = ns -> {
            try {
                Admin admin = (Admin) build.invoke(null, ns);
                admins.add(admin);
                return admin;
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException("TransactionsCommand.buildAdminClient", e);
            }
        };
        try {
            execute.invoke(null, args, supplier, System.out, Time.SYSTEM);
        } catch (InvocationTargetException e) {
            Throwable c = e.getCause();
            if (c instanceof Exception ex) {
                throw ex;
            }
            throw (Error) c;
        } finally {
            for (Admin admin : admins) {
                admin.close(Duration.ofSeconds(5));
            }
        }
    }
}
