package io.diffusion4j.serve;

import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.LongSupplier;

/**
 * The server's metrics, written in the Prometheus text exposition format (version 0.0.4) by {@link #render}:
 * <pre>
 *   d4j_requests_total{outcome}          counter: sampling requests by outcome: ok, bad_request (400: a bad field
 *                                        or JSON, 405), not_found, bad_framing (400: a body shorter than its
 *                                        Content-Length, a bad chunk), body_too_large (413), request_timeout (408:
 *                                        the body was not complete within the read timeout), client_gone (the
 *                                        client closed its connection before its answer), rejected_queue_full,
 *                                        deadline_exceeded, cancelled_shutdown, unavailable, error (500)
 *   d4j_request_errors_total{by}         counter: the failed ones by whose fault: by="client" (bad_request,
 *                                        not_found, bad_framing, body_too_large, request_timeout, client_gone),
 *                                        by="server" (error); the load outcomes (429, 503, 504) are in neither
 *   d4j_images_total                     counter: images returned
 *   d4j_steps_total                      counter: batched denoising steps (one model call each)
 *   d4j_queue_depth                      gauge: accepted requests waiting for admission to a batch
 *   d4j_batch_rows{model}                gauge: images in flight in the model's batch
 *   d4j_batch_capacity                   gauge: rows of each model's batch (--max-batch)
 *   d4j_batch_occupancy                  histogram: rows in flight per step / capacity
 *   d4j_step_seconds                     histogram: wall time of one batched step (model call + updates)
 *   d4j_request_seconds{outcome="ok"}    histogram: end-to-end latency of successful requests (arrival to response)
 *   d4j_native_live_bytes, d4j_native_live_buffers
 *                                        gauges: the backend's live device bytes and buffers, as last published
 *                                        by the worker (handlers never call native code)
 * </pre>
 * Thread-safe.
 */
public final class Metrics {
    static final String[] OUTCOMES = {"ok", "bad_request", "not_found", "bad_framing", "body_too_large",
        "request_timeout", "client_gone", "rejected_queue_full", "deadline_exceeded", "cancelled_shutdown", "unavailable",
        "error"};
    /** The outcomes that are the client's fault, and the server's. */
    static final Set<String> CLIENT_ERRORS = Set.of("bad_request", "not_found", "bad_framing", "body_too_large",
            "request_timeout", "client_gone"), SERVER_ERRORS = Set.of("error");

    private final Map<String, LongAdder> requests = new ConcurrentHashMap<>();
    final LongAdder images = new LongAdder();
    final LongAdder steps = new LongAdder();
    final AtomicLong liveBytes = new AtomicLong(), liveBuffers = new AtomicLong();
    final Histogram occupancy = new Histogram(0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0);
    final Histogram stepSeconds = new Histogram(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5);
    final Histogram requestSeconds = new Histogram(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120);
    private volatile LongSupplier queueDepth = () -> 0;
    private volatile Map<String, Integer> batchRows = Map.of();
    private volatile int capacity;

    public Metrics() {
        for (String o : OUTCOMES) requests.put(o, new LongAdder());
    }

    /** Counts one request by its outcome. */
    void request(String outcome) {
        LongAdder a = requests.get(outcome);
        if (a == null) throw new IllegalArgumentException("unknown outcome " + outcome);
        a.increment();
    }

    /** Requests with that outcome so far. */
    public long requests(String outcome) {
        LongAdder a = requests.get(outcome);
        return a == null ? 0 : a.sum();
    }

    private long sum(Set<String> outcomes) {
        long n = 0;
        for (String o : outcomes) n += requests.get(o).sum();
        return n;
    }

    void queueDepth(LongSupplier s) {
        queueDepth = s;
    }

    void batch(Map<String, Integer> rows, int capacity) {
        this.batchRows = Map.copyOf(rows);
        this.capacity = capacity;
    }

    /** Batched steps run so far. */
    public long stepsObserved() {
        return steps.sum();
    }

    /** The native live bytes the worker last published. */
    public long liveBytes() {
        return liveBytes.get();
    }

    /** The Prometheus text. */
    public String render() {
        StringBuilder b = new StringBuilder(4096);
        b.append("# HELP d4j_requests_total Sampling requests by outcome.\n# TYPE d4j_requests_total counter\n");
        for (String o : OUTCOMES) b.append("d4j_requests_total{outcome=\"").append(o).append("\"} ").append(requests.get(o).sum()).append('\n');
        b.append("# HELP d4j_request_errors_total Failed sampling requests by whose fault.\n# TYPE d4j_request_errors_total counter\n");
        b.append("d4j_request_errors_total{by=\"client\"} ").append(sum(CLIENT_ERRORS)).append('\n');
        b.append("d4j_request_errors_total{by=\"server\"} ").append(sum(SERVER_ERRORS)).append('\n');
        counter(b, "d4j_images_total", "Images returned.", images.sum());
        counter(b, "d4j_steps_total", "Batched denoising steps (one model call each).", steps.sum());
        gauge(b, "d4j_queue_depth", "Accepted requests waiting for admission to a batch.", queueDepth.getAsLong());
        b.append("# HELP d4j_batch_rows Images in flight in a model's batch.\n# TYPE d4j_batch_rows gauge\n");
        for (Map.Entry<String, Integer> e : new TreeMap<>(batchRows).entrySet()) {
            b.append("d4j_batch_rows{model=\"").append(escape(e.getKey())).append("\"} ").append(e.getValue()).append('\n');
        }
        gauge(b, "d4j_batch_capacity", "Rows of each model's batch.", capacity);
        occupancy.render(b, "d4j_batch_occupancy", "Rows in flight per step over the batch capacity.", "");
        stepSeconds.render(b, "d4j_step_seconds", "Wall time of one batched step.", "");
        requestSeconds.render(b, "d4j_request_seconds", "End-to-end latency of successful requests.", "outcome=\"ok\"");
        gauge(b, "d4j_native_live_bytes", "Live native device bytes of the backend.", liveBytes.get());
        gauge(b, "d4j_native_live_buffers", "Live native device buffers of the backend.", liveBuffers.get());
        return b.toString();
    }

    private static void counter(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" counter\n")
                .append(name).append(' ').append(v).append('\n');
    }

    private static void gauge(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" gauge\n")
                .append(name).append(' ').append(v).append('\n');
    }

    static String escape(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }

    /** A cumulative histogram with fixed upper bounds (plus +Inf). */
    static final class Histogram {
        private final double[] bounds;
        private final long[] counts;
        private long count;
        private double sum;

        Histogram(double... bounds) {
            this.bounds = bounds.clone();
            this.counts = new long[bounds.length + 1];
        }

        synchronized void observe(double v) {
            int i = 0;
            while (i < bounds.length && v > bounds[i]) i++;
            counts[i]++;
            count++;
            sum += v;
        }

        synchronized long count() {
            return count;
        }

        synchronized void render(StringBuilder b, String name, String help, String labels) {
            b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" histogram\n");
            String sep = labels.isEmpty() ? "" : labels + ",";
            long cum = 0;
            for (int i = 0; i < bounds.length; i++) {
                cum += counts[i];
                b.append(name).append("_bucket{").append(sep).append("le=\"").append(fmt(bounds[i])).append("\"} ")
                        .append(cum).append('\n');
            }
            cum += counts[bounds.length];
            b.append(name).append("_bucket{").append(sep).append("le=\"+Inf\"} ").append(cum).append('\n');
            String l = labels.isEmpty() ? "" : "{" + labels + "}";
            b.append(name).append("_sum").append(l).append(' ').append(fmt(sum)).append('\n');
            b.append(name).append("_count").append(l).append(' ').append(count).append('\n');
        }

        private static String fmt(double v) {
            return String.format(Locale.ROOT, "%s", v);
        }
    }
}
