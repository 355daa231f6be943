package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Timeout;

/**
 * The Java client logs in over SASL_SSL (issue 19) with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, its JAAS
 * login modules configured as a Kafka user would, produces and consumes in a group; a wrong password gets
 * SaslAuthenticationException.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class SaslTest {

    static Map<String, Object> login(Path certs, String mechanism, String user, String password) {
        String module = mechanism.equals("PLAIN")
                ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                : "org.apache.kafka.common.security.scram.ScramLoginModule";
        Map<String, Object> c = new HashMap<>();
        c.put("security.protocol", "SASL_SSL");
        c.put("ssl.truststore.type", "PEM");
        c.put("ssl.truststore.location", certs.resolve("ca.pem").toString());
        c.put("sasl.mechanism", mechanism);
        c.put("sasl.jaas.config", module + " required username=\"" + user + "\" password=\"" + password + "\";");
        return c;
    }

    @ParameterizedTest
    @ValueSource(strings = {"SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"})
    void javaClientsLogInProduceAndConsume(String mechanism) throws Exception {
        Path certs = TlsTest.certificates();
        Path users = certs.resolve("users.txt");
        Files.writeString(users, "alice:wonder land\nbob:builder\n");
        int sasl = Karnak.freePorts(1)[0];
        try (Karnak karnak = Karnak.start("--listeners", "PLAINTEXT://127.0.0.1:${kafka},SASL_SSL://127.0.0.1:" + sasl,
                "--ssl-certificate-file", certs.resolve("server.pem").toString(),
                "--ssl-key-file", certs.resolve("server.key").toString(),
                "--sasl-users-file", users.toString(),
                "--sasl-enabled-mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN")) {
            String bootstrap = "127.0.0.1:" + sasl;
            String topic = Clients.unique("sasl");
            try (Admin admin = Clients.admin(bootstrap, login(certs, mechanism, "alice", "wonder land"))) {
                Clients.createTopic(admin, topic, 1);
            }
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap,
                    login(certs, mechanism, "alice", "wonder land"))) {
                for (int i = 0; i < 50; i++) {
                    p.send(new ProducerRecord<>(topic, 0, null, ("v" + i).getBytes(StandardCharsets.UTF_8)))
                            .get(30, TimeUnit.SECONDS);
                }
            }
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, Clients.unique("g-sasl"),
                    login(certs, mechanism, "bob", "builder"))) {
                c.subscribe(List.of(topic));
                List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(c, 50, Duration.ofSeconds(60));
                assertEquals("v49", new String(got.get(49).value(), StandardCharsets.UTF_8));
            }
            Map<String, Object> wrong = new HashMap<>(login(certs, mechanism, "alice", "wonderland"));
            wrong.put("default.api.timeout.ms", 15000);
            try (Admin admin = Clients.admin(bootstrap, wrong)) {
                ExecutionException e = assertThrows(ExecutionException.class,
                        () -> admin.describeCluster().nodes().get(20, TimeUnit.SECONDS));
                assertTrue(e.getCause() instanceof SaslAuthenticationException, e.toString());
            }
        }
    }
}
