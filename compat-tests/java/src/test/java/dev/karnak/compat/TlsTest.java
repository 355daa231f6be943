package dev.karnak.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import dev.karnak.compat.harness.Clients;
import dev.karnak.compat.harness.Karnak;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The Java client over an SSL listener beside a PLAINTEXT one (issue 19): the broker's certificate is trusted
 * from a PEM file (KIP-651), Metadata names the SSL listener's address, a consumer group commits, and what SSL
 * wrote is read over PLAINTEXT. Certificates are made with the openssl command.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class TlsTest {

    static void openssl(Path dir, String... args) throws Exception {
        List<String> cmd = new java.util.ArrayList<>();
        cmd.add("openssl");
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), "openssl " + cmd + ": " + out);
    }

    /**
     * ca.pem, server.pem and server.key (127.0.0.1 and localhost) in a new directory under the harness's test
     * directory (inside Maven's target/, as the brokers' own), not the system's temp dir, which it would litter.
     */
    static Path certificates() throws Exception {
        Path root = Paths.get(System.getProperty("karnak.test.dir", "target/karnak-test")).toAbsolutePath();
        Files.createDirectories(root);
        Path d = Files.createTempDirectory(root, "tls-");
        openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=karnak-test-ca");
        Files.writeString(d.resolve("server.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                + "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
        openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=karnak-test");
        openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.pem", "-days", "2", "-extfile", "server.ext");
        return d;
    }

    @Test
    void javaClientsProduceConsumeAndCommitOverSsl() throws Exception {
        Path certs = certificates();
        int ssl = Karnak.freePorts(1)[0];
        try (Karnak karnak = Karnak.start("--listeners", "PLAINTEXT://127.0.0.1:${kafka},SSL://127.0.0.1:" + ssl,
                "--ssl-certificate-file", certs.resolve("server.pem").toString(),
                "--ssl-key-file", certs.resolve("server.key").toString())) {
            String bootstrap = "127.0.0.1:" + ssl;
            Map<String, Object> tls = Map.of(
                    "security.protocol", "SSL",
                    "ssl.truststore.type", "PEM",
                    "ssl.truststore.location", certs.resolve("ca.pem").toString());
            String topic = Clients.unique("tls");
            String group = Clients.unique("g-tls");
            TopicPartition tp = new TopicPartition(topic, 0);
            try (Admin admin = Clients.admin(bootstrap, tls)) {
                List<Integer> ports = admin.describeCluster(new DescribeClusterOptions()).nodes()
                        .get(30, TimeUnit.SECONDS).stream().map(Node::port).collect(Collectors.toList());
                assertEquals(List.of(ssl), ports, "the SSL listener's address");
                Clients.createTopic(admin, topic, 1);
            }
            try (KafkaProducer<byte[], byte[]> p = Clients.producer(bootstrap, new HashMap<>(tls))) {
                for (int i = 0; i < 200; i++) {
                    p.send(new ProducerRecord<>(topic, 0, null, ("v" + i).repeat(100).getBytes(StandardCharsets.UTF_8)))
                            .get(30, TimeUnit.SECONDS);
                }
            }
            try (KafkaConsumer<byte[], byte[]> c = Clients.consumer(bootstrap, group, new HashMap<>(tls))) {
                c.subscribe(List.of(topic));
                List<ConsumerRecord<byte[], byte[]>> got = Clients.consume(c, 200, Duration.ofSeconds(60));
                assertEquals("v199".repeat(100), new String(got.get(199).value(), StandardCharsets.UTF_8));
                c.commitSync(Map.of(tp, new OffsetAndMetadata(200)), Duration.ofSeconds(30));
            }
            try (KafkaConsumer<byte[], byte[]> plain = Clients.consumer(karnak.bootstrap(), group, Map.of())) {
                assertEquals(200L, plain.committed(java.util.Set.of(tp), Duration.ofSeconds(30)).get(tp).offset());
            }
            // A client that does not trust the certificate is refused.
            Map<String, Object> untrusted = Map.of("security.protocol", "SSL",
                    "request.timeout.ms", 5000, "default.api.timeout.ms", 8000);
            try (Admin admin = Clients.admin(bootstrap, untrusted)) {
                assertThrows(Exception.class,
                        () -> admin.describeCluster().nodes().get(15, TimeUnit.SECONDS));
            }
        }
    }
}
