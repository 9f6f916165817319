import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Closed-loop load generator for {@code diffusion4j serve} (loopback only; run by benchmarks/serve-load.sh as a
 * single-file program: {@code java ServeLoad.java ...}).
 *
 * <pre>
 *   --port P               the server's port on 127.0.0.1
 *   --levels 1,8,32        concurrency levels, run in order: C clients each sending one request after another
 *   --seconds S            per level: clients stop starting requests after S seconds (default 12)
 *   --max-requests N       per level: at most N requests (default 5000)
 *   --body JSON            the request (default {"sampler":"ddim","steps":20,"output":"png"})
 *   --warmup N             requests at concurrency 1 before the first level (default 4), not measured
 *   --label TEXT           first column of the result lines
 *   --leak N               after the levels: N requests (mixed samplers, 1-2 steps, n 1-4 where the server allows)
 *                          at concurrency 32, then wait until the server is idle and compare the native live bytes
 *                          of /metrics with those before any request (the weights)
 * </pre>
 * Prints one line per level: "RESULT label concurrency requests seconds req_per_s p50_ms p99_ms errors", and for the
 * leak check "LEAK requests before_bytes after_bytes before_buffers after_buffers ok|LEAK".
 */
public class ServeLoad {
    static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    public static void main(String[] args) throws Exception {
        int port = -1, maxRequests = 5000, warmup = 4, leak = 0, maxN = 1;
        double seconds = 12;
        String body = "{\"sampler\":\"ddim\",\"steps\":20,\"output\":\"png\"}", label = "batched";
        int[] levels = {1, 8, 32};
        for (int i = 0; i < args.length; i += 2) {
            String v = args[i + 1];
            switch (args[i]) {
                case "--port" -> port = Integer.parseInt(v);
                case "--levels" -> levels = Arrays.stream(v.split(",")).mapToInt(Integer::parseInt).toArray();
                case "--seconds" -> seconds = Double.parseDouble(v);
                case "--max-requests" -> maxRequests = Integer.parseInt(v);
                case "--body" -> body = v;
                case "--warmup" -> warmup = Integer.parseInt(v);
                case "--label" -> label = v;
                case "--leak" -> leak = Integer.parseInt(v);
                case "--leak-max-n" -> maxN = Integer.parseInt(v);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        if (port < 1) throw new IllegalArgumentException("--port is required");
        String base = "http://127.0.0.1:" + port;
        long[] before = live(base);
        for (int i = 0; i < warmup; i++) check(post(base, body));
        for (int c : levels) level(base, label, c, seconds, maxRequests, body);
        if (leak > 0) leakCheck(base, leak, maxN, before);
    }

    static void level(String base, String label, int c, double seconds, int maxRequests, String body) throws Exception {
        ConcurrentLinkedQueue<Long> latencies = new ConcurrentLinkedQueue<>();
        AtomicInteger started = new AtomicInteger(), errors = new AtomicInteger();
        long t0 = System.nanoTime(), stopAt = t0 + (long) (seconds * 1e9);
        onThreads(c, () -> {
            while (System.nanoTime() < stopAt && started.incrementAndGet() <= maxRequests) {
                long s = System.nanoTime();
                try {
                    HttpResponse<byte[]> r = post(base, body);
                    if (r.statusCode() == 200) latencies.add(System.nanoTime() - s);
                    else errors.incrementAndGet();
                } catch (Exception e) {
                    errors.incrementAndGet();
                }
            }
        });
        double elapsed = (System.nanoTime() - t0) / 1e9;
        long[] l = latencies.stream().mapToLong(Long::longValue).sorted().toArray();
        System.out.printf(Locale.ROOT, "RESULT %s %d %d %.2f %.2f %.0f %.0f %d%n", label, c, l.length, elapsed,
                l.length / elapsed, pct(l, 0.50) / 1e6, pct(l, 0.99) / 1e6, errors.get());
    }

    /** Runs {@code body} on {@code c} platform threads at once and waits until every one has returned. */
    static void onThreads(int c, Runnable body) throws InterruptedException {
        CountDownLatch done = new CountDownLatch(c);
        for (int k = 0; k < c; k++) {
            Thread.ofPlatform().start(() -> {
                try {
                    body.run();
                } finally {
                    done.countDown();
                }
            });
        }
        done.await();
    }

    static void leakCheck(String base, int n, int maxN, long[] before) throws Exception {
        String[] samplers = {"ddim", "ddpm", "dpmsolver++"};
        AtomicInteger next = new AtomicInteger(), errors = new AtomicInteger();
        AtomicLong images = new AtomicLong();
        int c = 32;
        long t0 = System.nanoTime();
        onThreads(c, () -> {
            for (int i; (i = next.getAndIncrement()) < n; ) {
                int imgs = 1 + i % maxN;
                String b = "{\"sampler\":\"" + samplers[i % 3] + "\",\"steps\":" + (1 + (i / 3) % 2) + ",\"n\":" + imgs
                        + ",\"seed\":" + i + ",\"output\":\"json\"}";
                try {
                    if (post(base, b).statusCode() == 200) images.addAndGet(imgs);
                    else errors.incrementAndGet();
                } catch (Exception e) {
                    errors.incrementAndGet();
                }
            }
        });
        double s = (System.nanoTime() - t0) / 1e9;
        // the server frees its batch buffers and workspaces after --idle-release-ms without work
        long[] after = live(base);
        long until = System.nanoTime() + 30_000_000_000L;
        while ((after[0] != before[0] || after[1] != before[1]) && System.nanoTime() < until) {
            Thread.sleep(100);
            after = live(base);
        }
        boolean ok = after[0] == before[0] && after[1] == before[1] && errors.get() == 0;
        System.out.printf(Locale.ROOT, "LEAK %d %d %d %d %d %s %.1f %d %d%n", n, before[0], after[0], before[1], after[1],
                ok ? "ok" : "LEAK", s, images.get(), errors.get());
        if (!ok) System.exit(1);
    }

    static long[] live(String base) throws Exception {
        HttpResponse<String> r = CLIENT.send(HttpRequest.newBuilder(URI.create(base + "/metrics")).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        return new long[] {metric(r.body(), "d4j_native_live_bytes"), metric(r.body(), "d4j_native_live_buffers")};
    }

    static long metric(String text, String name) {
        Matcher m = Pattern.compile("^" + Pattern.quote(name) + " (\\S+)$", Pattern.MULTILINE).matcher(text);
        if (!m.find()) throw new IllegalStateException("no " + name + " in /metrics");
        return (long) Double.parseDouble(m.group(1));
    }

    static HttpResponse<byte[]> post(String base, String body) throws Exception {
        HttpRequest r = HttpRequest.newBuilder(URI.create(base + "/v1/samples")).timeout(Duration.ofSeconds(300))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build();
        return CLIENT.send(r, HttpResponse.BodyHandlers.ofByteArray());
    }

    static void check(HttpResponse<byte[]> r) {
        if (r.statusCode() != 200) throw new IllegalStateException("HTTP " + r.statusCode() + ": " + new String(r.body()));
    }

    static double pct(long[] sorted, double p) {
        if (sorted.length == 0) return Double.NaN;
        int i = (int) Math.ceil(p * sorted.length) - 1;
        return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
    }
}
