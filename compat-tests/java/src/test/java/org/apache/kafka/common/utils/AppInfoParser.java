package org.apache.kafka.common.utils;

/**
 * Test-only bridge for the Connect plugins taken at 4.3.1 (connect-file, connect-mirror; 4.4.0 is not on Maven
 * Central, see pom.xml): their {@code version()} calls {@code org.apache.kafka.common.utils.AppInfoParser.getVersion()},
 * a class kafka-clients 4.4.0 moved to {@code org.apache.kafka.common.utils.internals}. Without this class the 4.4.0
 * worker fails with NoClassDefFoundError when it scans the plugins or validates a connector config (REST 500).
 * It reports the kafka-clients version. Nothing else of those jars refers to a class 4.4.0 lacks (checked with
 * {@code jdeps --multi-release 17}), apart from {@code org.apache.kafka.common.utils.Exit} in MirrorMaker's dedicated
 * driver, which the tests do not run.
 */
public final class AppInfoParser {
    private AppInfoParser() {}

    public static String getVersion() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getVersion();
    }

    public static String getCommitId() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getCommitId();
    }
}
