package dev.karnak.compat.harness;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CopyOnWriteArrayList;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.common.utils.internals.Exit;
import org.apache.kafka.connect.cli.ConnectDistributed;
import org.apache.kafka.connect.runtime.Connect;

/**
 * A real Kafka Connect worker in distributed mode, in this JVM: {@link ConnectDistributed#startConnect} (what
 * connect-distributed.sh runs after parsing its properties file) builds the plugins, the Kafka-backed config, offset
 * and status stores, the DistributedHerder and the REST server. Talk to it over its REST API ({@link #get},
 * {@link #post}, {@link #put}).
 *
 * <p>Connect calls {@code Exit.exit} when it cannot start or its herder thread dies; {@link #guardExit()} turns that
 * into a recorded failure ({@link #exits}) instead of the end of the test JVM.
 */
public final class ConnectWorker implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    /** Every Exit.exit / Exit.halt Connect attempted while guarded. */
    public static final List<String> exits = new CopyOnWriteArrayList<>();

    private final Connect<?> connect;
    private final URI url;
    private final String workerId;
    private boolean stopped;

    private ConnectWorker(Connect<?> connect) {
        this.connect = connect;
        this.url = connect.rest().serverUrl();
        URI adv = connect.rest().advertisedUrl();
        this.workerId = adv.getHost() + ":" + adv.getPort();
    }

    public static void guardExit() {
        Exit.setExitProcedure((code, msg) -> {
            exits.add("Exit.exit(" + code + ", " + msg + ")");
            throw new IllegalStateException("Connect called Exit.exit(" + code + "): " + msg);
        });
        Exit.setHaltProcedure((code, msg) -> {
            exits.add("Exit.halt(" + code + ", " + msg + ")");
            throw new IllegalStateException("Connect called Exit.halt(" + code + "): " + msg);
        });
    }

    public static void unguardExit() {
        Exit.resetExitProcedure();
        Exit.resetHaltProcedure();
    }

    /** Fails if Connect tried to end the JVM (its herder thread died). */
    public static void checkNoExit() {
        if (!exits.isEmpty()) {
            throw new AssertionError("the Connect worker gave up (herder thread died): " + exits);
        }
    }

    /**
     * Worker properties for a distributed worker on {@code bootstrap}: its group and internal topics named after
     * {@code cluster}, REST on a free port, String converters, short offset-flush and rebalance delays.
     */
    public static Map<String, String> props(String bootstrap, String cluster) {
        Map<String, String> p = new HashMap<>();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", cluster);
        p.put("config.storage.topic", cluster + "-configs");
        p.put("offset.storage.topic", cluster + "-offsets");
        p.put("status.storage.topic", cluster + "-status");
        p.put("config.storage.replication.factor", "1");
        p.put("offset.storage.replication.factor", "1");
        p.put("status.storage.replication.factor", "1");
        p.put("offset.storage.partitions", "5");
        p.put("status.storage.partitions", "3");
        p.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        p.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        p.put("listeners", "http://127.0.0.1:0");
        p.put("plugin.discovery", "service_load");
        p.put("connect.protocol", "sessioned");
        p.put("offset.flush.interval.ms", "500");
        p.put("scheduled.rebalance.max.delay.ms", "3000");
        p.put("task.shutdown.graceful.timeout.ms", "10000");
        return p;
    }

    public static ConnectWorker start(Map<String, String> props) {
        checkNoExit();
        ConnectWorker w = new ConnectWorker(new ConnectDistributed().startConnect(props));
        checkNoExit();
        // Ready once the herder answers a request that goes through its tick thread. (That can be before its first
        // rebalance has read the config topic: callers wait for the connectors they expect.)
        Poll.until(Duration.ofSeconds(60), "Connect worker " + w.workerId + " to serve GET /connectors", () -> {
            checkNoExit();
            Response r = w.get("/connectors");
            return r.status() == 200 ? r : null;
        });
        return w;
    }

    public String workerId() {
        return workerId;
    }

    public URI url() {
        return url;
    }

    /** Clean stop: tasks stopped, offsets committed, the group left. */
    public void stop() {
        if (!stopped) {
            stopped = true;
            connect.stop();
        }
    }

    @Override
    public void close() {
        stop();
    }

    public record Response(int status, String body) {
        public JsonNode json() {
            try {
                return JSON.readTree(body);
            } catch (IOException e) {
                throw new AssertionError("not JSON (" + status + "): " + body, e);
            }
        }

        public boolean ok() {
            return status >= 200 && status < 300;
        }
    }

    public Response get(String path) throws IOException, InterruptedException {
        return send(HttpRequest.newBuilder(url.resolve(path)).GET());
    }

    public Response post(String path, Object body) throws IOException, InterruptedException {
        return send(HttpRequest.newBuilder(url.resolve(path))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body))));
    }

    public Response put(String path, Object body) throws IOException, InterruptedException {
        return send(HttpRequest.newBuilder(url.resolve(path))
                .header("Content-Type", "application/json")
                .PUT(HttpRequest.BodyPublishers.ofString(JSON.writeValueAsString(body))));
    }

    public Response delete(String path) throws IOException, InterruptedException {
        return send(HttpRequest.newBuilder(url.resolve(path)).DELETE());
    }

    private Response send(HttpRequest.Builder b) throws IOException, InterruptedException {
        HttpResponse<String> r = HTTP.send(b.timeout(Duration.ofSeconds(30)).build(),
                HttpResponse.BodyHandlers.ofString());
        return new Response(r.statusCode(), r.body());
    }

    /**
     * Creates (or updates) a connector with PUT /connectors/{name}/config, retrying while the cluster rebalances
     * (409) or the request cannot be forwarded to the leader yet.
     */
    public void putConnector(String name, Map<String, String> config) {
        Poll.until(Duration.ofSeconds(60), "PUT /connectors/" + name + "/config", () -> {
            checkNoExit();
            Response r = put("/connectors/" + name + "/config", config);
            if (r.ok()) {
                return r;
            }
            if (r.status() == 409 || r.status() >= 500) {
                throw new IllegalStateException(r.status() + " " + r.body());
            }
            throw new AssertionError("PUT /connectors/" + name + "/config: " + r.status() + " " + r.body());
        });
    }

    /** GET /connectors/{name}/status as JSON (fails on a non-200 answer). */
    public JsonNode status(String name) throws IOException, InterruptedException {
        Response r = get("/connectors/" + name + "/status");
        if (r.status() != 200) {
            throw new IllegalStateException("GET /connectors/" + name + "/status: " + r.status() + " " + r.body());
        }
        return r.json();
    }

    /** Waits until the connector and {@code tasks} tasks are RUNNING; returns the status. */
    public JsonNode awaitRunning(String name, int tasks) {
        return Poll.until(Duration.ofSeconds(60), "connector " + name + " and " + tasks + " tasks RUNNING on "
                + workerId, () -> {
                    checkNoExit();
                    JsonNode s = status(name);
                    for (JsonNode t : s.get("tasks")) {
                        if (t.get("state").asText().equals("FAILED")) {
                            throw new AssertionError("task of " + name + " FAILED: " + t.path("trace").asText());
                        }
                    }
                    if (s.get("connector").get("state").asText().equals("FAILED")) {
                        throw new AssertionError("connector " + name + " FAILED: " + s);
                    }
                    boolean running = s.get("connector").get("state").asText().equals("RUNNING")
                            && s.get("tasks").size() == tasks;
                    for (JsonNode t : s.get("tasks")) {
                        running &= t.get("state").asText().equals("RUNNING");
                    }
                    return running ? s : null;
                });
    }

    /** The worker ids the tasks of a connector status run on. */
    public static Set<String> taskWorkers(JsonNode status) {
        Set<String> out = new TreeSet<>();
        for (JsonNode t : status.get("tasks")) {
            out.add(t.get("worker_id").asText());
        }
        return out;
    }

    @Override
    public String toString() {
        return "ConnectWorker[" + workerId + "]";
    }
}
