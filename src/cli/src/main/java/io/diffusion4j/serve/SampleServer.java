package io.diffusion4j.serve;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.Json;
import io.diffusion4j.sample.Images;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The HTTP face of the sampling server (JDK {@code com.sun.net.httpserver}, handlers on virtual threads):
 * <pre>
 *   POST /v1/samples   a {@link SampleRequest} JSON body; 200 image/png (output png) or application/json
 *                      {"model", "sampler", "steps", "eta", "seed", "n", "timestep_spacing", ["class_labels",
 *                      "guidance_scale" for a class-conditional model,] "width", "height", "images": [base64 PNG,
 *                      ...]}; errors as JSON {"error", "field"} with 400 (bad field or body, or broken framing:
 *                      a body shorter than its Content-Length, a bad chunk), 404 (unknown model), 405, 408 (body
 *                      not complete within the read timeout), 413 (body over the size limit), 429 + Retry-After
 *                      (queue full), 503 + Retry-After (models still loading, shutting down), 504 (deadline
 *                      passed), 500
 *   GET  /healthz      200 while the models load and while the sampling worker is alive
 *   GET  /readyz       200 while requests are accepted; 503 while the models load and once shutdown began
 *   GET  /metrics      Prometheus text ({@link Metrics})
 * </pre>
 * The server listens from its construction on, before any model is loaded ({@link #SampleServer(Config)}), so that a
 * load balancer's or orchestrator's probes get an answer while the models load; {@link #start} hands it the models.
 * With a management port ({@link Config#managementPort}) the three GET endpoints are served there from the start,
 * and the sampling port is bound only by {@link #start} and closed as soon as a shutdown begins: a replica that
 * is loading or draining refuses sampling connections, which a proxy such as nginx passes on to another replica
 * even for a POST (nothing was sent), while a 503 answer would reach the client (docs/server.md, "Serving at
 * scale").
 * Handlers validate, queue and wait; only the {@link BatchEngine}'s worker touches native code. PNG encoding
 * happens on the handler's thread.
 *
 * <p><b>Clients that misbehave.</b> A body is read on a thread of its own against a deadline, the read timeout of
 * {@link ConnectionLimits} after the headers ({@link RequestBody}); a body refused for its framing, size or
 * slowness is answered (400, 413, 408, with {@code Connection: close}) and its connection dropped without reading
 * the rest. These count as client errors in the metrics, never as the server's. While a request waits for its
 * images, a {@link ClientWatch} looks at its connection: a client that closes it has its request cancelled, so
 * that its rows leave the batch at the worker's next step (as past a deadline), and is counted as client_gone.
 * Connections that send nothing, stall in their headers, idle too long between requests, or come past the bound on
 * open connections are the JDK HttpServer's to close, with the process-wide settings that
 * {@link ConnectionLimits#applyToJdkHttpServer} gives it before the first server starts (the {@code serve}
 * command does; a server made without it runs with the JDK's defaults: no request timeout, 30 s idle, no bound).
 */
public final class SampleServer implements AutoCloseable {
    /** Server settings. */
    public record Config(String host, int port, SampleRequest.Limits limits, BatchEngine.Options engine, long drainMillis,
                         ConnectionLimits connections, int managementPort) {
        /** No management port: everything on one port. */
        public static final int NO_MANAGEMENT_PORT = -1;

        /** With the default {@link ConnectionLimits}, everything on one port. */
        public Config(String host, int port, SampleRequest.Limits limits, BatchEngine.Options engine, long drainMillis) {
            this(host, port, limits, engine, drainMillis, ConnectionLimits.DEFAULTS);
        }

        /** Everything on one port. */
        public Config(String host, int port, SampleRequest.Limits limits, BatchEngine.Options engine, long drainMillis,
                      ConnectionLimits connections) {
            this(host, port, limits, engine, drainMillis, connections, NO_MANAGEMENT_PORT);
        }

        public Config {
            java.util.Objects.requireNonNull(connections, "connections");
            if (port < 0 || port > 65535) throw new IllegalArgumentException("port must be in [0, 65535], got " + port);
            if (managementPort != NO_MANAGEMENT_PORT && (managementPort < 0 || managementPort > 65535)) {
                throw new IllegalArgumentException("management port must be in [0, 65535], got " + managementPort);
            }
            if (managementPort > 0 && managementPort == port) {
                throw new IllegalArgumentException("the management port must differ from the port, both are " + port);
            }
            if (drainMillis < 0) throw new IllegalArgumentException("drain must be >= 0 ms, got " + drainMillis);
            if (limits.maxN() > engine.maxBatch()) {
                throw new IllegalArgumentException("max n (" + limits.maxN() + ") must be <= max batch (" + engine.maxBatch() + ")");
            }
        }
    }

    private final Config config;
    private final Metrics metrics = new Metrics();
    private final ExecutorService executor;
    private final ClientWatch watch;
    /** /healthz, /readyz and /metrics from construction on; without a management port also /v1/samples. */
    private final HttpServer health;
    /** The sampling listener when there is a management port: bound by {@link #start}, null before. */
    private volatile HttpServer sampling;
    /** Null while the models load; set after models, so that a handler that sees it sees them. */
    private volatile BatchEngine engine;
    private volatile Map<String, ServedModel> models = Map.of();
    private volatile boolean draining;
    private boolean closed; // guarded by this

    /**
     * Listens at once, before any model is loaded: /healthz answers 200 and /readyz 503 ("loading"), and without a
     * management port POST /v1/samples answers 503 with Retry-After, until {@link #start}.
     */
    public SampleServer(Config config) throws IOException {
        this.config = config;
        int port = separateSampling() ? config.managementPort() : config.port();
        this.health = HttpServer.create(new InetSocketAddress(config.host(), port), 128);
        this.watch = new ClientWatch();
        this.executor = Executors.newVirtualThreadPerTaskExecutor();
        health.setExecutor(executor);
        health.createContext("/healthz", this::healthz);
        health.createContext("/readyz", this::readyz);
        health.createContext("/metrics", ex -> {
            if (!ex.getRequestMethod().equals("GET")) {
                simple(ex, 405, "GET only\n");
                return;
            }
            byte[] b = metrics.render().getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
            send(ex, 200, b);
        });
        if (!separateSampling()) health.createContext("/v1/samples", this::samples);
        health.start();
    }

    /** Listens and starts serving {@code models} at once. The models (and the backend) stay the caller's to close. */
    public SampleServer(Backend backend, List<ServedModel> models, Config config) throws IOException {
        this(config);
        try {
            start(backend, models);
        } catch (IOException | RuntimeException e) {
            close();
            throw e;
        }
    }

    /**
     * Starts the worker over the loaded models and, with a management port, binds the sampling port; /readyz
     * answers 200 from then on. The models (and the backend) stay the caller's to close, after this.
     *
     * @throws IllegalStateException when started before or already shut down
     */
    public synchronized void start(Backend backend, List<ServedModel> models) throws IOException {
        if (closed) throw new IllegalStateException("the server was shut down");
        if (engine != null) throw new IllegalStateException("the server was started already");
        Map<String, ServedModel> byName = new LinkedHashMap<>();
        for (ServedModel m : models) byName.put(m.name(), m);
        BatchEngine e = new BatchEngine(backend, models, config.engine(), metrics);
        if (separateSampling()) {
            HttpServer s;
            try {
                s = HttpServer.create(new InetSocketAddress(config.host(), config.port()), 128);
            } catch (IOException | RuntimeException x) {
                e.close();
                throw x;
            }
            s.setExecutor(executor);
            s.createContext("/v1/samples", this::samples);
            this.models = Collections.unmodifiableMap(byName);
            this.engine = e;
            s.start();
            sampling = s;
        } else {
            this.models = Collections.unmodifiableMap(byName);
            this.engine = e;
        }
    }

    private boolean separateSampling() {
        return config.managementPort() != Config.NO_MANAGEMENT_PORT;
    }

    /**
     * The sampling port (the real one when 0 was asked for).
     *
     * @throws IllegalStateException with a management port, before {@link #start}
     */
    public int port() {
        if (!separateSampling()) return health.getAddress().getPort();
        HttpServer s = sampling;
        if (s == null) throw new IllegalStateException("the sampling port is bound only once the models are loaded");
        return s.getAddress().getPort();
    }

    /** The port of /healthz, /readyz and /metrics: the management port if there is one, else {@link #port}. */
    public int healthPort() {
        return health.getAddress().getPort();
    }

    public Metrics metrics() {
        return metrics;
    }

    /** The batching engine (tests pause its worker through it); null before {@link #start}. */
    public BatchEngine engine() {
        return engine;
    }

    public Map<String, ServedModel> models() {
        return models;
    }

    /**
     * Graceful shutdown: readyz turns 503 and new requests get 503 (with a management port: the sampling port
     * stops accepting connections at once), queued and in-flight requests finish for up to the drain limit (then
     * get 503), the worker frees every device buffer, the listeners close. Returns whether everything finished
     * without cancellation. Idempotent.
     */
    @Override
    public synchronized void close() {
        shutdown();
    }

    private static int stopWaitSeconds(long drainMillis) {
        return (int) Math.min(Integer.MAX_VALUE - 1, Math.ceilDiv(drainMillis, 1000)) + 1;
    }

    /**
     * The longest a shutdown can take with this drain limit: the sampling listener's wait (the drain plus a second)
     * and the request executor's 5 s. An orchestrator's grace period must exceed it (plus any pre-stop delay).
     */
    public static long shutdownBoundMillis(long drainMillis) {
        return stopWaitSeconds(drainMillis) * 1000L + 5000L;
    }

    /** Waits (up to {@code millis}) until connecting to {@code address} is refused: the listener has closed. */
    private static void awaitRefused(InetSocketAddress address, long millis) {
        InetSocketAddress target = address.getAddress().isAnyLocalAddress()
                ? new InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), address.getPort()) : address;
        long deadline = System.nanoTime() + millis * 1_000_000L;
        while (System.nanoTime() - deadline < 0) {
            try (java.net.Socket probe = new java.net.Socket()) {
                probe.connect(target, 50);
            } catch (java.net.ConnectException refused) {
                return;
            } catch (IOException other) {
                return; // unreachable for another reason: nothing to wait for
            }
            try {
                Thread.sleep(2);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** {@link #close} that reports whether all accepted work finished (true) or some was cancelled (false). */
    public synchronized boolean shutdown() {
        if (closed) return true;
        closed = true;
        draining = true;
        BatchEngine e = engine;
        HttpServer s = sampling;
        boolean all = true;
        if (s != null) {
            // HttpServer.stop closes the listening socket at once, then waits for the exchanges in flight, which
            // the drain below answers; the wait outlasts the drain by a second so that none is cut off
            int wait = stopWaitSeconds(config.drainMillis());
            Thread stopper = Thread.ofPlatform().name("d4j-serve-stop").start(() -> s.stop(wait));
            // the engine keeps accepting until the listener is gone: a request let in before then is drained like
            // any other instead of meeting a 503 that a proxy would hand to its client
            awaitRefused(s.getAddress(), 1000);
            all = e.shutdown(config.drainMillis());
            joinUninterruptibly(stopper);
            health.stop(0);
        } else {
            if (e != null) all = e.shutdown(config.drainMillis());
            health.stop(1); // handlers have their answers now; give them a moment to write them
        }
        executor.shutdown();
        try {
            executor.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
        }
        watch.close();
        return all;
    }

    private static void joinUninterruptibly(Thread t) {
        boolean interrupted = false;
        while (t.isAlive()) {
            try {
                t.join();
            } catch (InterruptedException ie) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    // ---------------------------------------------------------------------------------------------

    private void healthz(HttpExchange ex) throws IOException {
        BatchEngine e = engine;
        if (e == null) simple(ex, 200, "ok (loading)\n");
        else simple(ex, e.workerAlive() ? 200 : 500, e.workerAlive() ? "ok\n" : "worker failed\n");
    }

    private void readyz(HttpExchange ex) throws IOException {
        BatchEngine e = engine;
        String state = draining ? "draining" : e == null ? "loading" : e.accepting() ? "ready" : "not ready";
        simple(ex, state.equals("ready") ? 200 : 503, state + "\n");
    }

    private void samples(HttpExchange ex) throws IOException {
        long t0 = System.nanoTime();
        boolean counted = false, dropped = false;
        try {
            if (!ex.getRequestMethod().equals("POST")) {
                ex.getResponseHeaders().set("Allow", "POST");
                error(ex, new RequestException(405, null, "POST only"), "bad_request");
                return;
            }
            BatchEngine engine = this.engine;
            if (engine == null) { // only on the one port (a separate sampling port is bound once loaded)
                error(ex, new RequestException(503, null, "the models are still loading"), "unavailable");
                return;
            }
            byte[] body;
            try {
                body = RequestBody.read(ex, config.limits().maxBodyBytes(),
                        t0 + TimeUnit.MILLISECONDS.toNanos(config.connections().readTimeoutMillis()));
            } catch (RequestException e) {
                refuseAndDrop(ex, e, switch (e.status()) {
                    case 408 -> "request_timeout";
                    case 413 -> "body_too_large";
                    default -> "bad_framing";
                });
                return; // not reached: refuseAndDrop throws
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                refuseAndDrop(ex, new RequestException(503, null, "interrupted"), "error");
                return;
            }
            SampleRequest r;
            BatchEngine.Job job;
            try {
                r = SampleRequest.parse(body, models, config.limits());
                job = engine.submit(r);
            } catch (RequestException e) {
                error(ex, e, switch (e.status()) {
                    case 400 -> "bad_request";
                    case 404 -> "not_found";
                    case 429 -> "rejected_queue_full";
                    case 503 -> "unavailable";
                    default -> "error";
                });
                return;
            }
            float[] samples;
            ClientWatch.Watch client = watch.watch(ex.getLocalAddress(), ex.getRemoteAddress(), job::cancel);
            try {
                long wait = job.deadlineNanos() - System.nanoTime();
                samples = job.result().get(Math.max(0, wait), TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                job.cancel(); // its rows leave the batch at the next step
                error(ex, new RequestException(504, "deadline_ms", "the deadline of " + r.deadlineMillis()
                        + " ms passed before the request finished"), "deadline_exceeded");
                return;
            } catch (ExecutionException e) {
                if (client.gone()) {
                    metrics.request("client_gone"); // nobody to answer: its sampling stopped at the next step
                    counted = true;
                    throw new ConnectionDropped("the client closed the connection while its request waited");
                }
                if (e.getCause() instanceof RequestException re) {
                    error(ex, re, switch (re.status()) {
                        case 504 -> "deadline_exceeded";
                        case 503 -> "cancelled_shutdown";
                        default -> "error";
                    });
                } else {
                    error(ex, new RequestException(500, null, "internal error: " + e.getCause()), "error");
                }
                return;
            } catch (InterruptedException e) {
                job.cancel();
                Thread.currentThread().interrupt();
                error(ex, new RequestException(503, null, "interrupted"), "error");
                return;
            } finally {
                client.close();
            }
            ServedModel m = r.model();
            int c = m.channels(), h = m.height(), w = m.width();
            List<byte[]> pngs = new ArrayList<>(r.n());
            for (int i = 0; i < r.n(); i++) pngs.add(Images.png(Images.image(samples, i, c, h, w)));
            ex.getResponseHeaders().set("X-Seed", Long.toString(r.seed()));
            byte[] response;
            if (!r.json()) {
                ex.getResponseHeaders().set("Content-Type", "image/png");
                response = pngs.get(0);
            } else {
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("model", m.name());
                out.put("sampler", r.sampler());
                out.put("steps", (long) r.steps());
                out.put("eta", (double) r.eta());
                out.put("seed", r.seed());
                out.put("n", (long) r.n());
                out.put("timestep_spacing", r.spacing());
                int[] labels = r.conditioning().rowLabels();
                if (labels != null) { // a class-conditional model: the class of every image (the null class if none was given)
                    List<Object> l = new ArrayList<>();
                    for (int v : labels) l.add((long) v);
                    out.put("class_labels", l);
                    out.put("guidance_scale", (double) r.inputs().guidanceScale());
                }
                out.put("width", (long) w);
                out.put("height", (long) h);
                List<Object> imgs = new ArrayList<>();
                for (byte[] p : pngs) imgs.add(Base64.getEncoder().encodeToString(p));
                out.put("images", imgs);
                ex.getResponseHeaders().set("Content-Type", "application/json");
                response = Json.writeCompact(out).getBytes(StandardCharsets.UTF_8);
            }
            // counted before the answer leaves, so that a client reading /metrics after its response sees it
            metrics.request("ok");
            metrics.images.add(r.n());
            metrics.requestSeconds.observe((System.nanoTime() - t0) / 1e9);
            counted = true;
            send(ex, 200, response);
        } catch (ConnectionDropped e) {
            dropped = true;
            throw e; // the JDK closes the connection without reading the rest of the request
        } catch (IOException e) {
            // writing the answer failed: the client left (a handler reads nothing from the connection past the body)
            if (!counted) metrics.request("client_gone");
            throw e; // the JDK closes the connection
        } catch (RuntimeException e) {
            if (counted) throw e;
            metrics.request("error");
            try {
                byte[] b = ("{\"error\":" + Json.writeCompact("internal error: " + e) + "}").getBytes(StandardCharsets.UTF_8);
                ex.getResponseHeaders().set("Content-Type", "application/json");
                send(ex, 500, b);
            } catch (IOException | RuntimeException ignored) {
                // the response was already started or the client left
            }
        } finally {
            if (!dropped) ex.close(); // closing reads what is left of the body first
        }
    }

    /**
     * An exchange given up on: its connection is closed without reading what is left of the request (the JDK
     * closes the connection of a handler that throws; a normal close would first read up to 64 KiB of the rest of
     * the body, and wait for it).
     */
    static final class ConnectionDropped extends IOException {
        private static final long serialVersionUID = 1L;

        ConnectionDropped(String message) {
            super(message);
        }
    }

    /**
     * Counts the outcome, answers {@code {"error", "field"}} with {@code Connection: close}, then drops the
     * connection: what is left of the request is not read (a stalled body would never end).
     */
    private void refuseAndDrop(HttpExchange ex, RequestException e, String outcome) throws ConnectionDropped {
        metrics.request(outcome);
        try {
            ex.getResponseHeaders().set("Connection", "close");
            byte[] b = errorBody(ex, e);
            ex.sendResponseHeaders(e.status(), b.length);
            OutputStream o = ex.getResponseBody();
            o.write(b);
            o.flush(); // not closed: closing would read the rest of the body first
        } catch (IOException clientLeft) {
            // nothing more to do: the outcome is counted
        }
        throw new ConnectionDropped(e.getMessage());
    }

    /** Counts the outcome, then answers {@code {"error", "field"}} with the exception's status. */
    private void error(HttpExchange ex, RequestException e, String outcome) {
        metrics.request(outcome);
        try {
            // 429 (queue full) and 503 (loading, draining) are momentary: another try, here or at another replica
            if (e.status() == 429 || e.status() == 503) ex.getResponseHeaders().set("Retry-After", "1");
            send(ex, e.status(), errorBody(ex, e));
        } catch (IOException clientLeft) {
            // nothing more to do: the outcome is counted
        }
    }

    /** The JSON error body; sets its Content-Type. */
    private static byte[] errorBody(HttpExchange ex, RequestException e) {
        ex.getResponseHeaders().set("Content-Type", "application/json");
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("error", e.getMessage());
        body.put("field", e.field());
        return Json.writeCompact(body).getBytes(StandardCharsets.UTF_8);
    }

    private static void simple(HttpExchange ex, int status, String text) throws IOException {
        try {
            ex.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
            send(ex, status, text.getBytes(StandardCharsets.UTF_8));
        } finally {
            ex.close();
        }
    }

    private static void send(HttpExchange ex, int status, byte[] body) throws IOException {
        ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        try (OutputStream o = ex.getResponseBody()) {
            o.write(body);
        }
    }
}
