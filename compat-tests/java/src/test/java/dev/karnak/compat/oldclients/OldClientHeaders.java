package dev.karnak.compat.oldclients;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;

/** Record headers (kafka-clients 0.11+); only loaded when a test asks for headers. */
final class OldClientHeaders {
    private OldClientHeaders() {}

    static ProducerRecord<byte[], byte[]> record(String topic, long ts, byte[] key, byte[] value, int i) {
        List<Header> headers = new ArrayList<>();
        headers.add(new RecordHeader("h", String.valueOf(i).getBytes(StandardCharsets.UTF_8)));
        headers.add(new RecordHeader("n", null));
        return new ProducerRecord<>(topic, 0, ts, key, value, headers);
    }

    static String text(ConsumerRecord<byte[], byte[]> r) {
        StringBuilder sb = new StringBuilder();
        for (Header h : r.headers()) {
            if (sb.length() > 0) {
                sb.append(',');
            }
            sb.append(h.key()).append('=').append(h.value() == null ? "null" : new String(h.value(),
                    StandardCharsets.UTF_8));
        }
        return sb.toString();
    }
}
