package io.diffusion4j.serve;

import io.diffusion4j.backend.Backend;
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
import java.util.concurrent.CountDownLatch;

/**
 * The {@code serve} command: loads the models once, then serves {@link SampleServer}'s HTTP API until SIGTERM or
 * SIGINT (or any JVM shutdown), which drains the work in flight for up to {@code --drain-ms} and exits 0.
 */
public final class ServeCommand {
    private ServeCommand() {}

    static final String USAGE = "usage: serve --model NAME=CHECKPOINT_DIR [--model NAME=DIR ...] [--port P] [--host H]\n"
            + "             [--max-batch N] [--max-n N] [--max-steps N] [--queue N] [--deadline-ms MS]\n"
            + "             [--max-deadline-ms MS] [--max-body BYTES] [--drain-ms MS] [--idle-release-ms MS]\n"
            + "             [--no-ema] [--backend cpu|cuda|cuda-sim] [--threads N]";

    /** Parsed options. */
    record Options(Map<String, Path> models, String host, int port, int maxBatch, int maxN, int maxSteps, int queue,
                   long deadlineMs, long maxDeadlineMs, int maxBody, long drainMs, long idleReleaseMs, boolean noEma,
                   String backend, int threads) {
        SampleServer.Config config() {
            return new SampleServer.Config(host, port, new SampleRequest.Limits(maxN, maxSteps, maxBody, deadlineMs,
                    maxDeadlineMs), new BatchEngine.Options(maxBatch, queue, idleReleaseMs), drainMs);
        }
    }

    public static int run(String[] args, PrintStream out, PrintStream err) {
        Options o = parse(args, out);
        if (o == null) return 0;
        try {
            return serve(o, out, err, null);
        } catch (IOException e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
    }

    static Options parse(String[] args, PrintStream out) {
        Map<String, Path> models = new LinkedHashMap<>();
        String host = "127.0.0.1", backend = null;
        int port = 8080, maxBatch = 16, maxN = -1, maxSteps = 1000, queue = 64, maxBody = 16384, threads = 0;
        long deadline = 60_000, maxDeadline = 600_000, drain = 30_000, idle = 2_000;
        boolean noEma = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--help", "-h" -> {
                    out.println(USAGE);
                    out.println("defaults: --host 127.0.0.1 (loopback) --port 8080 (0: any free port, printed)"
                            + " --max-batch 16 --max-n min(8, max-batch) --max-steps 1000 --queue 64 --deadline-ms 60000"
                            + " --max-deadline-ms 600000 --max-body 16384 --drain-ms 30000 --idle-release-ms 2000;"
                            + " EMA weights when a checkpoint has ema/. API: POST /v1/samples, GET /healthz /readyz"
                            + " /metrics (README, \"Sampling server\")");
                    return null;
                }
                case "--no-ema" -> noEma = true;
                default -> {
                    if (i + 1 >= args.length) throw new IllegalArgumentException("serve: " + a + " needs a value\n" + USAGE);
                    String v = args[++i];
                    switch (a) {
                        case "--model" -> {
                            int eq = v.indexOf('=');
                            if (eq < 1 || eq == v.length() - 1) {
                                throw new IllegalArgumentException("serve: --model needs NAME=CHECKPOINT_DIR, got '" + v + "'");
                            }
                            String name = v.substring(0, eq);
                            if (!name.matches("[A-Za-z0-9._-]+")) {
                                throw new IllegalArgumentException("serve: model name '" + name + "' must match [A-Za-z0-9._-]+");
                            }
                            if (models.put(name, Path.of(v.substring(eq + 1))) != null) {
                                throw new IllegalArgumentException("serve: model name '" + name + "' given twice");
                            }
                        }
                        case "--host" -> host = v;
                        case "--port" -> {
                            port = parseInt(a, v, 0);
                            if (port > 65535) throw new IllegalArgumentException("serve: --port must be <= 65535, got " + v);
                        }
                        case "--max-batch" -> maxBatch = parseInt(a, v, 1);
                        case "--max-n" -> maxN = parseInt(a, v, 1);
                        case "--max-steps" -> maxSteps = parseInt(a, v, 1);
                        case "--queue" -> queue = parseInt(a, v, 1);
                        case "--deadline-ms" -> deadline = parseInt(a, v, 1);
                        case "--max-deadline-ms" -> maxDeadline = parseInt(a, v, 1);
                        case "--max-body" -> maxBody = parseInt(a, v, 64);
                        case "--drain-ms" -> drain = parseInt(a, v, 0);
                        case "--idle-release-ms" -> idle = parseInt(a, v, 0);
                        case "--backend" -> backend = v;
                        case "--threads" -> threads = parseInt(a, v, 1);
                        default -> throw new IllegalArgumentException("serve: unknown option '" + a + "'\n" + USAGE);
                    }
                }
            }
        }
        if (models.isEmpty()) throw new IllegalArgumentException("serve: at least one --model NAME=CHECKPOINT_DIR is required\n" + USAGE);
        if (maxN < 0) maxN = Math.min(8, maxBatch);
        if (maxN > maxBatch) throw new IllegalArgumentException("serve: --max-n (" + maxN + ") must be <= --max-batch (" + maxBatch + ")");
        if (maxDeadline < deadline) {
            throw new IllegalArgumentException("serve: --max-deadline-ms (" + maxDeadline + ") must be >= --deadline-ms (" + deadline + ")");
        }
        return new Options(models, host, port, maxBatch, maxN, maxSteps, queue, deadline, maxDeadline, maxBody, drain, idle,
                noEma, backend, threads);
    }

    private static int parseInt(String opt, String v, int min) {
        try {
            int x = Integer.parseInt(v);
            if (x < min) throw new IllegalArgumentException("serve: " + opt + " must be >= " + min + ", got " + v);
            return x;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("serve: " + opt + " needs an integer, got '" + v + "'");
        }
    }

    /**
     * Loads the models, serves until a stop is requested (signal, JVM shutdown, or {@code stop} counted down by a
     * caller), then shuts down gracefully. Returns 0 after a clean shutdown.
     */
    static int serve(Options o, PrintStream out, PrintStream err, CountDownLatch stop) throws IOException {
        CountDownLatch stopRequested = stop != null ? stop : new CountDownLatch(1);
        CountDownLatch stopped = new CountDownLatch(1);
        try (Backend backend = Backend.open(o.backend())) {
            if (o.threads() > 0) backend.setThreads(o.threads());
            List<ServedModel> models = new ArrayList<>();
            try {
                for (Map.Entry<String, Path> e : o.models().entrySet()) {
                    ServedModel m = ServedModel.load(e.getKey(), e.getValue(), o.noEma(), backend);
                    models.add(m);
                    out.printf(Locale.ROOT, "serve: model %s from %s: %dx%dx%d, T %d, %.1f MB of weights%n", m.name(),
                            e.getValue(), m.channels(), m.height(), m.width(), m.schedule().numTrainTimesteps(),
                            m.model().parameters().byteSize() / 1e6);
                }
                SampleServer server = new SampleServer(backend, models, o.config());
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
                out.printf(Locale.ROOT, "serve: listening on http://%s:%d (backend %s, max batch %d, queue %d, deadline %d ms)%s%n",
                        o.host(), server.port(), backend.kind().cliName(), o.maxBatch(), o.queue(), o.deadlineMs(),
                        signals ? "; SIGTERM or SIGINT drains and exits" : "");
                out.flush();
                try {
                    stopRequested.await();
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                }
                out.println("serve: shutting down (drain limit " + o.drainMs() + " ms)");
                out.flush();
                boolean all = server.shutdown();
                out.println("serve: stopped" + (all ? "" : " (work still in flight at the drain limit was cancelled)"));
                out.flush();
                try {
                    Runtime.getRuntime().removeShutdownHook(hook);
                } catch (IllegalStateException alreadyShuttingDown) {
                    // a shutdown hook started this stop: it waits for `stopped` below
                }
            } finally {
                for (int i = models.size() - 1; i >= 0; i--) models.get(i).close();
            }
        } catch (UncheckedIOException e) {
            throw e.getCause();
        } finally {
            stopped.countDown();
        }
        return 0;
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
