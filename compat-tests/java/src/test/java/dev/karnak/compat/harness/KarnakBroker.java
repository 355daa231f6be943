package dev.karnak.compat.harness;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * One karnak broker for a test class: {@code @RegisterExtension static final KarnakBroker karnak = new
 * KarnakBroker(args...)} starts it before the class's {@code @BeforeAll} methods and stops it after the last test.
 */
public final class KarnakBroker implements BeforeAllCallback, AfterAllCallback {
    private final String[] args;
    private Karnak karnak;

    public KarnakBroker(String... args) {
        this.args = args;
    }

    @Override
    public void beforeAll(ExtensionContext context) {
        karnak = Karnak.start(args);
    }

    @Override
    public void afterAll(ExtensionContext context) {
        if (karnak != null) {
            karnak.close();
            karnak = null;
        }
    }

    public Karnak get() {
        if (karnak == null) {
            throw new IllegalStateException("the class's karnak broker is not running");
        }
        return karnak;
    }

    public String bootstrap() {
        return get().bootstrap();
    }

    public int kafkaPort() {
        return get().kafkaPort();
    }
}
