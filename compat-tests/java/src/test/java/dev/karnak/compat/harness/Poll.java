package dev.karnak.compat.harness;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Callable;

/** Polling with a deadline: the only way the suite waits for anything (no fixed sleeps as synchronisation). */
public final class Poll {
    private Poll() {}

    /**
     * Calls {@code probe} until it returns a non-null, non-FALSE value, and returns it; fails with the
     * last value / exception seen when {@code timeout} passes.
     */
    public static <T> T until(Duration timeout, String what, Callable<T> probe) {
        long deadline = System.nanoTime() + timeout.toNanos();
        Object last = null;
        Throwable lastError = null;
        long pause = 10;
        while (true) {
            try {
                T v = probe.call();
                if (v != null && !Boolean.FALSE.equals(v)) {
                    return v;
                }
                last = v;
                lastError = null;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted waiting for " + what, e);
            } catch (Exception e) {
                lastError = e;
            }
            if (System.nanoTime() > deadline) {
                AssertionError err = new AssertionError(
                        "timed out after " + timeout.toMillis() + " ms waiting for " + what + " (last=" + last
                                + (lastError != null ? ", last error=" + lastError : "") + ")");
                if (lastError != null) {
                    err.initCause(lastError);
                }
                throw err;
            }
            sleepQuietly(pause);
            pause = Math.min(pause * 2, 200);
        }
    }

    public static void untilTrue(Duration timeout, String what, Callable<Boolean> probe) {
        until(timeout, what, () -> Objects.equals(probe.call(), Boolean.TRUE) ? Boolean.TRUE : null);
    }

    static void sleepQuietly(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }
}
