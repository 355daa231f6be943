package dev.karnak.compat.harness;

import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;

/**
 * Registered for every test (META-INF/services + autodetection): a failing test gets the tail of the log of
 * every karnak broker that is alive or was started during it, attached as a suppressed exception, so the
 * Surefire report shows what the broker said.
 */
public final class KarnakLogOnFailure
        implements BeforeEachCallback, TestExecutionExceptionHandler, LifecycleMethodExecutionExceptionHandler {
    private static volatile int startedBefore;

    /** Carries a broker log tail into the failure report. */
    public static final class KarnakLog extends RuntimeException {
        KarnakLog(String msg) {
            super(msg, null, false, false);
        }
    }

    @Override
    public void beforeEach(ExtensionContext context) {
        startedBefore = Karnak.ALL.size();
    }

    @Override
    public void handleTestExecutionException(ExtensionContext context, Throwable throwable) throws Throwable {
        attach(throwable);
        throw throwable;
    }

    @Override
    public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable throwable)
            throws Throwable {
        attach(throwable);
        throw throwable;
    }

    @Override
    public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable throwable)
            throws Throwable {
        attach(throwable);
        throw throwable;
    }

    static void attach(Throwable t) {
        int i = 0;
        for (Karnak k : Karnak.ALL) {
            if (i >= startedBefore || k.alive()) {
                t.addSuppressed(new KarnakLog("karnak log " + k + " (last 80 lines):\n" + k.logTail(80)));
            }
            i++;
        }
    }
}
