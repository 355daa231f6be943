package dev.karnak.compat.harness;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.common.message.ApiVersionsResponseData.ApiVersion;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.requests.AbstractRequest;
import org.apache.kafka.common.requests.AbstractResponse;
import org.apache.kafka.common.requests.ApiVersionsRequest;
import org.apache.kafka.common.requests.ApiVersionsResponse;
import org.apache.kafka.common.requests.RequestHeader;

/**
 * One Kafka request over a fresh socket, built and parsed with kafka-clients' own request classes: for APIs
 * the 4.4 Java Admin no longer sends (AlterConfigs) and for looking at exact answers.
 */
public final class RawRequest {
    private static final AtomicInteger CORRELATION = new AtomicInteger(1);

    private RawRequest() {}

    public static AbstractResponse send(String bootstrap, AbstractRequest.Builder<?> builder, short version) {
        AbstractRequest req = builder.build(version);
        RequestHeader h = new RequestHeader(req.apiKey(), version, "karnak-compat-raw", CORRELATION.getAndIncrement());
        ByteBuffer buf = req.serializeWithHeader(h);
        String[] hp = bootstrap.split(":");
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), 10_000);
            s.setSoTimeout(15_000);
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            out.writeInt(buf.remaining());
            out.write(buf.array(), buf.arrayOffset() + buf.position(), buf.remaining());
            out.flush();
            DataInputStream in = new DataInputStream(s.getInputStream());
            byte[] b = new byte[in.readInt()];
            in.readFully(b);
            return AbstractResponse.parseResponse(ByteBuffer.wrap(b), h);
        } catch (IOException e) {
            throw new UncheckedIOException(req.apiKey() + " v" + version + " to " + bootstrap + ": " + e, e);
        }
    }

    public static ApiVersionsResponse apiVersions(String bootstrap) {
        return (ApiVersionsResponse) send(bootstrap, new ApiVersionsRequest.Builder(), (short) 3);
    }

    /** The highest version of {@code key} both the broker and these clients speak (fails if not advertised). */
    public static short usableVersion(String bootstrap, ApiKeys key) {
        ApiVersion v = apiVersions(bootstrap).apiVersion(key.id);
        if (v == null) {
            throw new AssertionError(key + " (" + key.id + ") is not advertised in ApiVersions by " + bootstrap);
        }
        return (short) Math.min(v.maxVersion(), key.latestVersion());
    }
}
