package io.diffusion4j.cli;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.model.RunMemory;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.CheckpointFiles;
import io.diffusion4j.serve.BatchEngine;
import io.diffusion4j.serve.ConnectionLimits;
import io.diffusion4j.serve.SampleRequest;
import io.diffusion4j.serve.SampleServer;
import io.diffusion4j.serve.ServedModel;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The {@code serve} command: listens at once (/healthz 200, /readyz 503), loads the models, then serves
 * {@link SampleServer}'s HTTP API until SIGTERM or SIGINT (or any JVM shutdown), which drains the work in flight for
 * up to {@code --drain-ms} and exits 0. With {@code --management-port} the sampling port is bound only once the
 * models are loaded and stops accepting when the drain begins.
 */
@Command(name = "serve", mixinStandardHelpOptions = true, synopsisHeading = "usage: ",
        versionProvider = Main.Version.class,
        description = {"HTTP sampling server with continuous batching.", "",
            "Loopback by default: POST /v1/samples, GET /healthz /readyz /metrics (docs/server.md). /readyz answers "
            + "503 while the models load and while draining. SIGTERM or SIGINT drains the work in flight and exits 0."})
public final class ServeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "NAME=DIR",
            description = "a model to serve: a name ([A-Za-z0-9._-]+) and a checkpoint folder; repeat for more")
    List<String> modelArgs;

    @Option(names = "--host", paramLabel = "H", description = "address to bind (default: ${DEFAULT-VALUE}, loopback)")
    String host = "127.0.0.1";

    @Option(names = "--port", paramLabel = "P", description = "0: any free port, printed (default: ${DEFAULT-VALUE})")
    int port = 8080;

    @Option(names = "--management-port", paramLabel = "P", description = "serve /healthz /readyz /metrics on this "
            + "port from start-up, and POST /v1/samples alone on --port, bound once the models are loaded and closed "
            + "when draining (behind a proxy: docs/server.md); 0: any free port, printed (default: none, all on --port)")
    int managementPort = SampleServer.Config.NO_MANAGEMENT_PORT;

    @Option(names = "--max-batch", paramLabel = "N", description = "rows per model call (default: ${DEFAULT-VALUE})")
    int maxBatch = 16;

    @Option(names = "--max-n", paramLabel = "N", description = "images per request (default: min(8, --max-batch))")
    int maxN = -1;

    @Option(names = "--max-steps", paramLabel = "N", description = "inference steps per request (default: ${DEFAULT-VALUE})")
    int maxSteps = 1000;

    @Option(names = "--queue", paramLabel = "N", description = "requests waiting per model before 429 (default: ${DEFAULT-VALUE})")
    int queue = 64;

    @Option(names = "--deadline-ms", paramLabel = "MS", description = "a request's default deadline (default: ${DEFAULT-VALUE})")
    int deadlineMs = 60_000;

    @Option(names = "--max-deadline-ms", paramLabel = "MS", description = "the longest deadline a request may ask for "
            + "(default: ${DEFAULT-VALUE})")
    int maxDeadlineMs = 600_000;

    @Option(names = "--max-body", paramLabel = "BYTES", description = "largest request body, >= 64; init_image and "
            + "mask_image travel in it as base64 (default: ${DEFAULT-VALUE})")
    int maxBody = 1 << 20;
    static final int MAX_BODY_LIMIT = 1 << 30;

    @Option(names = "--drain-ms", paramLabel = "MS", description = "how long a shutdown waits for work in flight "
            + "(default: ${DEFAULT-VALUE})")
    int drainMs = 30_000;

    @Option(names = "--idle-release-ms", paramLabel = "MS", description = "free the batch buffers after this long idle "
            + "(default: ${DEFAULT-VALUE})")
    int idleReleaseMs = 2_000;

    @Option(names = "--read-timeout-ms", paramLabel = "MS", description = "a request's body must arrive within this "
            + "of its headers, else 408 and the connection closes; a connection that sends nothing, or stalls before the "
            + "end of its headers, is closed after it (rounded up to whole seconds, plus one) (default: ${DEFAULT-VALUE})")
    int readTimeoutMs = (int) ConnectionLimits.DEFAULTS.readTimeoutMillis();

    @Option(names = "--idle-timeout-ms", paramLabel = "MS", description = "close a keep-alive connection idle this long "
            + "between requests (rounded up to whole seconds) (default: ${DEFAULT-VALUE})")
    int idleTimeoutMs = (int) ConnectionLimits.DEFAULTS.idleTimeoutMillis();

    @Option(names = "--max-connections", paramLabel = "N", description = "open connections at most; those accepted past "
            + "it are closed at once (default: ${DEFAULT-VALUE})")
    int maxConnections = ConnectionLimits.DEFAULTS.maxConnections();

    @Option(names = "--no-ema", description = "the raw weights instead of ema/ (used by default when a checkpoint has it)")
    boolean noEma;

    @Mixin
    DeviceOptions device;

    @Mixin
    MemoryOptions memory;

    @Spec
    CommandSpec spec;

    private final PrintStream stdout, stderr;

    ServeCommand(Main.Io io) {
        this.stdout = io.out();
        this.stderr = io.err();
    }

    /** Parsed options. */
    record Options(Map<String, Path> models, String host, int port, int maxBatch, int maxN, int maxSteps, int queue,
                   long deadlineMs, long maxDeadlineMs, int maxBody, long drainMs, long idleReleaseMs,
                   ConnectionLimits connections, boolean noEma, String backend, int threads, Precision precision,
                   long maxMemory, int managementPort) {
        SampleServer.Config config() {
            return new SampleServer.Config(host, port, new SampleRequest.Limits(maxN, maxSteps, maxBody, deadlineMs,
                    maxDeadlineMs), new BatchEngine.Options(maxBatch, queue, idleReleaseMs), drainMs, connections,
                    managementPort);
        }

        boolean separateManagement() {
            return managementPort != SampleServer.Config.NO_MANAGEMENT_PORT;
        }
    }

    /** Loads one model ({@link ServedModel#load}'s signature). */
    @FunctionalInterface
    interface ModelLoader {
        ServedModel load(String name, Path dir, boolean noEma, Backend backend) throws IOException;
    }

    /**
     * How models are loaded: {@link ServedModel#load}. Test seam: a test's child JVM wraps it to hold a replica in
     * its loading state for as long as the test needs (loading a real model takes milliseconds to seconds, too
     * short and too variable to observe a load balancer around it).
     */
    static volatile ModelLoader loader = ServedModel::load;

    @Override
    public Integer call() {
        Options o = options();
        try {
            return serve(o, stdout, stderr, null);
        } catch (IOException e) {
            stderr.println("error: " + Main.describe(e));
            return Main.FAILED;
        }
    }

    private Options options() {
        Map<String, Path> models = new LinkedHashMap<>();
        for (String v : modelArgs) {
            int eq = v.indexOf('=');
            if (eq < 1 || eq == v.length() - 1) throw Main.bad(spec, "--model needs NAME=CHECKPOINT_DIR, got '" + v + "'");
            String name = v.substring(0, eq);
            if (!name.matches("[A-Za-z0-9._-]+")) throw Main.bad(spec, "model name '" + name + "' must match [A-Za-z0-9._-]+");
            if (models.put(name, Path.of(v.substring(eq + 1))) != null) throw Main.bad(spec, "model name '" + name + "' given twice");
        }
        Main.atLeast(spec, "--port", port, 0);
        if (port > 65535) throw Main.bad(spec, "--port must be <= 65535, got " + port);
        if (spec.commandLine().getParseResult().hasMatchedOption("--management-port")) {
            Main.atLeast(spec, "--management-port", managementPort, 0);
            if (managementPort > 65535) throw Main.bad(spec, "--management-port must be <= 65535, got " + managementPort);
            if (managementPort != 0 && managementPort == port) {
                throw Main.bad(spec, "--management-port must differ from --port, both are " + port);
            }
        }
        Main.atLeast(spec, "--max-batch", maxBatch, 1);
        var given = spec.commandLine().getParseResult();
        if (given.hasMatchedOption("--max-n")) Main.atLeast(spec, "--max-n", maxN, 1);
        Main.atLeast(spec, "--max-steps", maxSteps, 1);
        Main.atLeast(spec, "--queue", queue, 1);
        Main.atLeast(spec, "--deadline-ms", deadlineMs, 1);
        Main.atLeast(spec, "--max-deadline-ms", maxDeadlineMs, 1);
        Main.atLeast(spec, "--max-body", maxBody, 64);
        // the body is read into one array with a byte to spare (to tell "at the limit" from "past it")
        if (maxBody > MAX_BODY_LIMIT) throw Main.bad(spec, "--max-body must be <= " + MAX_BODY_LIMIT + ", got " + maxBody);
        Main.atLeast(spec, "--drain-ms", drainMs, 0);
        Main.atLeast(spec, "--idle-release-ms", idleReleaseMs, 0);
        Main.atLeast(spec, "--read-timeout-ms", readTimeoutMs, 1);
        Main.atLeast(spec, "--idle-timeout-ms", idleTimeoutMs, 1);
        Main.atLeast(spec, "--max-connections", maxConnections, 1);
        int n = maxN < 0 ? Math.min(8, maxBatch) : maxN;
        if (n > maxBatch) throw Main.bad(spec, "--max-n (" + n + ") must be <= --max-batch (" + maxBatch + ")");
        if (maxDeadlineMs < deadlineMs) {
            throw Main.bad(spec, "--max-deadline-ms (" + maxDeadlineMs + ") must be >= --deadline-ms (" + deadlineMs + ")");
        }
        return new Options(models, host, port, maxBatch, n, maxSteps, queue, deadlineMs, maxDeadlineMs, maxBody, drainMs,
                idleReleaseMs, new ConnectionLimits(readTimeoutMs, idleTimeoutMs, maxConnections), noEma, device.backend,
                device.threads(spec), device.precision(spec), memory.limitBytes(spec), managementPort);
    }

    /**
     * Listens, loads the models, serves until a stop is requested (signal, JVM shutdown, or {@code stop} counted
     * down by a caller), then shuts down gracefully. A stop requested while the models load ends the loading
     * before the next model. Returns 0 after a clean shutdown.
     */
    static int serve(Options o, PrintStream out, PrintStream err, CountDownLatch stop) throws IOException {
        CountDownLatch stopRequested = stop != null ? stop : new CountDownLatch(1);
        CountDownLatch stopped = new CountDownLatch(1);
        checkMemory(o);
        // the JDK's HttpServer reads its connection settings once, when its first server is made: set them first
        o.connections().applyToJdkHttpServer(o.maxDeadlineMs());
        SampleServer server;
        try {
            server = new SampleServer(o.config()); // listening before the models load: probes get 503, not nothing
        } catch (java.net.BindException e) {
            int p = o.separateManagement() ? o.managementPort() : o.port();
            throw new IOException("cannot listen on " + o.host() + ":" + p + ": " + e.getMessage(), e);
        }
        Thread hook = new Thread(() -> {
            stopRequested.countDown();
            try {
                stopped.await(); // the JVM may exit only once the drain is over
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
            }
        }, "d4j-serve-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        boolean signals = stop == null && handleSignals(stopRequested::countDown);
        try (server; Backend backend = Backend.open(o.backend())) {
            out.printf(Locale.ROOT, "serve: /healthz /readyz /metrics on http://%s:%d; /readyz answers 503 until the "
                    + "models are loaded%n", o.host(), server.healthPort());
            out.flush();
            if (o.threads() > 0) backend.setThreads(o.threads());
            Precision precision = DeviceOptions.apply(backend, o.precision());
            List<ServedModel> models = new ArrayList<>();
            try {
                for (Map.Entry<String, Path> e : o.models().entrySet()) {
                    if (stopRequested.getCount() == 0) break;
                    ServedModel m = loader.load(e.getKey(), e.getValue(), o.noEma(), backend);
                    models.add(m);
                    out.printf(Locale.ROOT, "serve: model %s from %s: %dx%dx%d, T %d, %.1f MB of weights%s%n", m.name(),
                            e.getValue(), m.channels(), m.height(), m.width(), m.schedule().numTrainTimesteps(),
                            m.model().parameters().byteSize() / 1e6, m.classes() == null ? ""
                                    : ", " + m.classes().names().size() + " classes" + (m.guidable()
                                    ? " and a null class (guidance)" : ", no null class"));
                }
                if (stopRequested.getCount() > 0) {
                    try {
                        server.start(backend, models);
                    } catch (java.net.BindException e) {
                        throw new IOException("cannot listen on " + o.host() + ":" + o.port() + ": " + e.getMessage(), e);
                    }
                    out.printf(Locale.ROOT, "serve: listening on http://%s:%d (backend %s, precision %s, max batch %d, queue %d, deadline %d ms)%s%s%n",
                            o.host(), server.port(), backend.kind().cliName(), precision.cliName(), o.maxBatch(), o.queue(), o.deadlineMs(),
                            o.separateManagement() ? "; management on port " + server.healthPort() : "",
                            signals ? "; SIGTERM or SIGINT drains and exits" : "");
                    out.flush();
                    try {
                        stopRequested.await();
                    } catch (InterruptedException ie) {
                        Thread.currentThread().interrupt();
                    }
                }
                out.println("serve: shutting down (drain limit " + o.drainMs() + " ms)");
                out.flush();
                boolean all = server.shutdown();
                out.println("serve: stopped" + (all ? "" : " (work still in flight at the drain limit was cancelled)"));
                out.flush();
            } finally {
                server.close(); // before the models: the worker must be done with them
                for (int i = models.size() - 1; i >= 0; i--) models.get(i).close();
            }
        } catch (UncheckedIOException e) {
            throw e.getCause();
        } finally {
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException alreadyShuttingDown) {
                // a shutdown hook started this stop: it waits for `stopped` below
            }
            stopped.countDown();
        }
        return 0;
    }

    /**
     * Refuses, before any weights are read, a set of models whose weights and batch workspaces (each model's
     * batches of up to --max-batch rows at its sample_size) would exceed --max-memory together.
     */
    private static void checkMemory(Options o) throws IOException {
        long total = 0;
        for (Map.Entry<String, Path> e : o.models().entrySet()) {
            CheckpointFiles loc = CheckpointFiles.locate(e.getValue(), o.noEma());
            UNet2DConfig c = Checkpoint.readConfig(loc.modelDir());
            if (c.sampleHeight() < 1) continue; // refused with its own message when loaded
            long need = RunMemory.serving(c, o.maxBatch(), c.sampleHeight(), c.sampleWidth());
            total = RunMemory.add(total, need);
        }
        MemoryOptions.check("serve: " + o.models().size() + " model(s) at --max-batch " + o.maxBatch(), total,
                o.maxMemory(), "lower --max-batch");
    }

    /**
     * Routes SIGTERM and SIGINT to {@code action} (through {@code sun.misc.Signal}, looked up reflectively: it is
     * in jdk.unsupported) so that a signal drains and the command returns 0 instead of the JVM's 143/130. Returns
     * false when unavailable (the shutdown hook still drains, but the exit status is then the signal's).
     */
    static boolean handleSignals(Runnable action) {
        try {
            Class<?> signal = Class.forName("sun.misc.Signal");
            Class<?> handler = Class.forName("sun.misc.SignalHandler");
            InvocationHandler ih = (proxy, method, margs) -> {
                if (method.getName().equals("handle")) action.run();
                else if (method.getName().equals("hashCode")) return System.identityHashCode(proxy);
                else if (method.getName().equals("equals")) return proxy == margs[0];
                else if (method.getName().equals("toString")) return "serve signal handler";
                return null;
            };
            Object h = Proxy.newProxyInstance(ServeCommand.class.getClassLoader(), new Class<?>[] {handler}, ih);
            for (String name : new String[] {"TERM", "INT"}) {
                Object sig = signal.getConstructor(String.class).newInstance(name);
                signal.getMethod("handle", signal, handler).invoke(null, sig, h);
            }
            return true;
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return false;
        }
    }
}
