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
        String[] hp = bootstrap.split(":");
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), 10_000);
            s.setSoTimeout(15_000);
            return exchange(s, builder, version, "karnak-compat-raw");
        } catch (IOException e) {
            throw new UncheckedIOException(builder.apiKey() + " v" + version + " to " + bootstrap + ": " + e, e);
        }
    }

    /** One request and its answer on an open socket (its timeout as set by the caller). */
    public static AbstractResponse exchange(Socket s, AbstractRequest.Builder<?> builder, short version,
            String clientId) throws IOException {
        AbstractRequest req = builder.build(version);
        RequestHeader h = new RequestHeader(req.apiKey(), version, clientId, CORRELATION.getAndIncrement());
        ByteBuffer buf = req.serializeWithHeader(h);
        DataOutputStream out = new DataOutputStream(s.getOutputStream());
        out.writeInt(buf.remaining());
        out.write(buf.array(), buf.arrayOffset() + buf.position(), buf.remaining());
        out.flush();
        DataInputStream in = new DataInputStream(s.getInputStream());
        byte[] b = new byte[in.readInt()];
        in.readFully(b);
        return AbstractResponse.parseResponse(ByteBuffer.wrap(b), h);
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
