package io.diffusion4j.serve;

import static io.diffusion4j.serve.ServeTestSupport.C;
import static io.diffusion4j.serve.ServeTestSupport.H;
import static io.diffusion4j.serve.ServeTestSupport.W;
import static io.diffusion4j.serve.ServeTestSupport.get;
import static io.diffusion4j.serve.ServeTestSupport.post;
import static io.diffusion4j.serve.ServeTestSupport.text;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.Json;
import io.diffusion4j.sample.Images;

import io.diffusion4j.sample.Sampler;
import io.diffusion4j.sample.SamplerScheduler;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The sampling server over real HTTP on an ephemeral loopback port, with two tiny 8x8 models on the CPU
 * ("plain": epsilon, clip, leading; "thr": v-prediction, dynamic thresholding, trailing): validation (400 naming
 * the field, 413 past the body limit, 404), 429 on a full queue, 504 past the deadline with the rows leaving the
 * batch, concurrent mixed requests equal bit for bit to {@link Sampler} runs, metrics, graceful shutdown and native
 * memory returning to the weights after 300 requests.
 */
class SampleServerTest {
    static Backend cpu;
    static ServedModel plain, thr;
    static long weightsBytes, weightsBuffers;
    SampleServer server;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        TestRandom rnd = TestRandom.fresh();
        plain = ServeTestSupport.model(cpu, "plain", rnd.nextLong(), ServeTestSupport.plainConfig());
        thr = ServeTestSupport.model(cpu, "thr", rnd.nextLong(), ServeTestSupport.thresholdedConfig());
        weightsBytes = cpu.liveBytes();
        weightsBuffers = cpu.liveBuffers();
    }

    @AfterAll
    static void closeAll() {
        thr.close();
        plain.close();
        cpu.close();
    }

    @AfterEach
    void stop() {
        if (server != null) server.close();
        server = null;
    }

    SampleServer start(int maxBatch, int queue, long deadlineMs, long drainMs, long idleMs) throws Exception {
        SampleServer.Config cfg = new SampleServer.Config("127.0.0.1", 0,
                new SampleRequest.Limits(Math.min(4, maxBatch), 200, 2048, deadlineMs, 120_000),
                new BatchEngine.Options(maxBatch, queue, idleMs), drainMs);
        server = new SampleServer(cpu, List.of(plain, thr), cfg);
        return server;
    }

    /** What {@code sample} computes: a Sampler of batch n over the model, scheduler built as SampleCommand does. */
    static float[] reference(ServedModel m, String sampler, int steps, float eta, long seed, int n, String spacing) {
        Map<String, Object> cfg = new LinkedHashMap<>(m.schedulerConfig());
        if (spacing != null) cfg.put("timestep_spacing", spacing);
        SamplerScheduler s = SamplerScheduler.fromConfig(sampler, eta, cfg);
        try (Sampler sm = new Sampler(m.model(), m.schedule(), s, steps, n, H, W)) {
            return sm.run(seed, 0, n, null, null);
        }
    }

    /** A worker gate: while closed the worker blocks at the start of its next iteration. */
    static final class Gate implements Runnable {
        private volatile CountDownLatch open = new CountDownLatch(1);
        final AtomicInteger waits = new AtomicInteger();

        @Override
        public void run() {
            try {
                CountDownLatch l = open;
                if (l.getCount() > 0) waits.incrementAndGet();
                l.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        void release() {
            open.countDown();
        }

        /** Waits until the worker is blocked in the gate (it passes the hook at least every 500 ms when idle). */
        void awaitBlocked() throws InterruptedException {
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (waits.get() == 0 && System.nanoTime() < until) Thread.sleep(2);
            assertTrue(waits.get() > 0, "the worker never reached the gate");
        }
    }

    // ---------------------------------------------------------------------------------------------

    @Test
    void badFieldsGet400NamingTheFieldAndUnknownModel404() throws Exception {
        int port = start(4, 8, 30_000, 1000, 1000).port();
        String[][] cases = {
            {"{\"model\":\"plain\",\"sampler\":\"euler\"}", "sampler"},
            {"{\"model\":\"plain\",\"sampler\":3}", "sampler"},
            {"{\"model\":\"plain\",\"steps\":\"5\"}", "steps"},
            {"{\"model\":\"plain\",\"steps\":0}", "steps"},
            {"{\"model\":\"plain\",\"steps\":2.5}", "steps"},
            {"{\"model\":\"plain\",\"steps\":201}", "steps"}, // above the server's limit of 200
            {"{\"model\":\"plain\",\"sampler\":\"ddpm\"}", "steps"}, // ddpm's default (T = 1000) is above it
            {"{\"model\":\"plain\",\"n\":5}", "n"},
            {"{\"model\":\"plain\",\"n\":0}", "n"},
            {"{\"model\":\"plain\",\"n\":true}", "n"},
            {"{\"model\":\"plain\",\"eta\":-0.5}", "eta"},
            {"{\"model\":\"plain\",\"eta\":1.5}", "eta"},
            {"{\"model\":\"plain\",\"eta\":\"1\"}", "eta"},
            {"{\"model\":\"plain\",\"sampler\":\"dpmsolver++\",\"eta\":0.5}", "eta"},
            {"{\"model\":\"plain\",\"seed\":1.5}", "seed"},
            {"{\"model\":\"plain\",\"seed\":null}", "seed"},
            {"{\"model\":\"plain\",\"output\":\"gif\"}", "output"},
            {"{\"model\":\"plain\",\"output\":\"png\",\"n\":2}", "output"},
            {"{\"model\":\"plain\",\"timestep_spacing\":\"karras\"}", "timestep_spacing"},
            {"{\"model\":\"plain\",\"deadline_ms\":0}", "deadline_ms"},
            {"{\"model\":\"plain\",\"deadline_ms\":120001}", "deadline_ms"},
            {"{\"model\":\"plain\",\"stepz\":3}", "stepz"},
            {"{\"model\":7}", "model"},
            {"{}", "model"}, // two models served: model is required
            {"[1, 2]", "body"},
            {"{\"model\":\"plain\",", "body"},
        };
        for (String[] c : cases) {
            HttpResponse<byte[]> r = post(port, c[0]);
            String what = "body " + (c[0].length() > 80 ? c[0].substring(0, 80) + "..." : c[0]) + " -> " + text(r);
            assertEquals(400, r.statusCode(), what);
            Map<String, Object> err = Json.parseObject(text(r));
            assertEquals(c[1], err.get("field"), what);
            assertTrue(((String) err.get("error")).startsWith(c[1] + ": "), what);
        }
        HttpResponse<byte[]> big = post(port, "{\"model\":\"plain\",\"n\":1}" + " ".repeat(2048)); // above the 2048-byte limit
        assertEquals(413, big.statusCode(), text(big));
        assertEquals("body", Json.parseObject(text(big)).get("field"), text(big));
        assertTrue(((String) Json.parseObject(text(big)).get("error")).startsWith("body: "), text(big));
        HttpResponse<byte[]> nf = post(port, "{\"model\":\"nope\",\"steps\":2}");
        assertEquals(404, nf.statusCode(), text(nf));
        assertTrue(text(nf).contains("nope") && text(nf).contains("plain"), text(nf));
        HttpResponse<String> g = get(port, "/v1/samples");
        assertEquals(405, g.statusCode());
        assertEquals(cases.length + 1, server.metrics().requests("bad_request"));
        assertEquals(1, server.metrics().requests("not_found"));
        assertEquals(1, server.metrics().requests("body_too_large"));
        assertEquals(0, server.metrics().requests("ok"));
        assertEquals(0, server.metrics().stepsObserved(), "no bad request reached the worker");
    }

    @Test
    void fullQueueGets429WithRetryAfter() throws Exception {
        start(1, 1, 30_000, 5000, 1000);
        Gate gate = new Gate();
        server.engine().iterationHook = gate;
        gate.awaitBlocked();
        int port = server.port();
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<HttpResponse<byte[]>> first = pool.submit(() -> post(port, "{\"model\":\"plain\",\"steps\":3,\"seed\":1}"));
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (server.engine().queueDepth() < 1 && System.nanoTime() < until) Thread.sleep(5);
            assertEquals(1, server.engine().queueDepth(), "the first request waits in the queue of 1");
            HttpResponse<byte[]> second = post(port, "{\"model\":\"plain\",\"steps\":3,\"seed\":2}");
            assertEquals(429, second.statusCode(), text(second));
            assertEquals("1", second.headers().firstValue("Retry-After").orElse(null));
            gate.release();
            server.engine().iterationHook = null;
            HttpResponse<byte[]> r1 = first.get(60, TimeUnit.SECONDS);
            assertEquals(200, r1.statusCode(), text(r1));
            assertEquals("image/png", r1.headers().firstValue("Content-Type").orElse(""));
            HttpResponse<byte[]> third = post(port, "{\"model\":\"plain\",\"steps\":3,\"seed\":2}");
            assertEquals(200, third.statusCode(), "accepted again once the queue drained: " + text(third));
            assertEquals(1, server.metrics().requests("rejected_queue_full"));
            assertEquals(2, server.metrics().requests("ok"));
        } finally {
            gate.release();
            pool.shutdownNow();
        }
    }

    @Test
    void pastTheDeadline504AndTheRowsLeaveTheBatch() throws Exception {
        start(4, 8, 30_000, 5000, 60_000);
        server.engine().iterationHook = () -> sleep(40); // a slow device: >= 40 ms per step
        int port = server.port();
        long t0 = System.nanoTime();
        HttpResponse<byte[]> r = post(port, "{\"model\":\"plain\",\"steps\":100,\"n\":3,\"deadline_ms\":300,\"output\":\"json\"}");
        double s = (System.nanoTime() - t0) / 1e9;
        assertEquals(504, r.statusCode(), text(r));
        assertEquals("deadline_ms", Json.parseObject(text(r)).get("field"));
        assertTrue(s >= 0.3 && s < 5, "answered after " + s + " s");
        // the request's 3 rows leave at the next step
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (server.engine().rowsInFlight().get("plain") != 0 && System.nanoTime() < until) Thread.sleep(5);
        assertEquals(0, server.engine().rowsInFlight().get("plain"), "rows still in the batch after the deadline");
        assertTrue(server.metrics().stepsObserved() < 60, "the request did not run to its end: "
                + server.metrics().stepsObserved() + " steps");
        server.engine().iterationHook = null;
        HttpResponse<byte[]> ok = post(port, "{\"model\":\"plain\",\"steps\":4,\"seed\":3}");
        assertEquals(200, ok.statusCode(), text(ok));
        assertEquals(1, server.metrics().requests("deadline_exceeded"));
    }

    record Spec(ServedModel model, String sampler, int steps, float eta, long seed, int n, String spacing, String output) {
        String json() {
            StringBuilder b = new StringBuilder("{\"model\":\"" + model.name() + "\",\"sampler\":\"" + sampler + "\",\"steps\":"
                    + steps + ",\"seed\":" + seed + ",\"n\":" + n);
            if (eta != 0) b.append(",\"eta\":").append(eta);
            if (spacing != null) b.append(",\"timestep_spacing\":\"").append(spacing).append('"');
            if (output != null) b.append(",\"output\":\"").append(output).append('"');
            return b.append('}').toString();
        }
    }

    @Test
    void concurrentMixedRequestsEqualSamplerRunsBitForBit() throws Exception {
        start(8, 64, 120_000, 5000, 60_000);
        TestRandom rnd = TestRandom.fresh();
        List<Spec> specs = List.of(
                new Spec(plain, "ddim", 7, 0f, rnd.nextLong(), 3, null, "json"),
                new Spec(plain, "ddim", 4, 0.8f, rnd.nextLong(), 1, null, null),
                new Spec(plain, "ddpm", 5, 0f, rnd.nextLong(), 2, "trailing", "json"),
                new Spec(plain, "dpmsolver++", 6, 0f, rnd.nextLong(), 4, null, "json"),
                new Spec(plain, "dpmsolver++", 3, 0f, rnd.nextLong(), 1, "linspace", "png"),
                new Spec(thr, "ddim", 5, 1f, rnd.nextLong(), 2, null, "json"),
                new Spec(thr, "dpmsolver++", 8, 0f, rnd.nextLong(), 3, "leading", "json"),
                new Spec(thr, "ddpm", 4, 0f, rnd.nextLong(), 1, null, "png"),
                new Spec(plain, "ddim", 9, 0f, rnd.nextLong(), 2, "linspace", "json"),
                new Spec(plain, "ddim", 3, 0f, -5L, 1, null, null));
        // engine-level twins of some specs: their float samples are compared bit for bit
        Map<String, ServedModel> models = server.models();
        SampleRequest.Limits limits = new SampleRequest.Limits(4, 200, 2048, 120_000, 120_000);
        Gate gate = new Gate();
        server.engine().iterationHook = gate; // hold the worker so that everything is queued, then batched together
        gate.awaitBlocked();
        ExecutorService pool = Executors.newFixedThreadPool(specs.size());
        try {
            List<Future<HttpResponse<byte[]>>> http = new ArrayList<>();
            for (Spec s : specs) http.add(pool.submit(() -> post(server.port(), s.json())));
            List<BatchEngine.Job> direct = new ArrayList<>();
            for (int i = 0; i < specs.size(); i += 3) {
                direct.add(server.engine().submit(SampleRequest.parse(specs.get(i).json().getBytes(StandardCharsets.UTF_8),
                        models, limits)));
            }
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (server.engine().queueDepth() < specs.size() + direct.size() && System.nanoTime() < until) Thread.sleep(5);
            gate.release();
            server.engine().iterationHook = null;
            for (int i = 0; i < specs.size(); i++) {
                Spec s = specs.get(i);
                float[] ref = reference(s.model(), s.sampler(), s.steps(), s.eta(), s.seed(), s.n(), s.spacing());
                String ctx = s.json() + ", " + rnd.describe();
                HttpResponse<byte[]> r = http.get(i).get(120, TimeUnit.SECONDS);
                assertEquals(200, r.statusCode(), ctx + ": " + text(r));
                assertEquals(Long.toString(s.seed()), r.headers().firstValue("X-Seed").orElse(null), ctx);
                List<byte[]> pngs = new ArrayList<>();
                if (s.n() == 1 && !"json".equals(s.output())) {
                    assertEquals("image/png", r.headers().firstValue("Content-Type").orElse(""), ctx);
                    pngs.add(r.body());
                } else {
                    Map<String, Object> j = Json.parseObject(text(r));
                    assertEquals(s.seed(), j.get("seed"), ctx);
                    assertEquals((long) s.n(), j.get("n"), ctx);
                    for (Object o : (List<?>) j.get("images")) pngs.add(Base64.getDecoder().decode((String) o));
                }
                assertEquals(s.n(), pngs.size(), ctx);
                for (int g = 0; g < s.n(); g++) {
                    assertArrayEquals(Images.png(Images.image(ref, g, C, H, W)), pngs.get(g), "image " + g + " of " + ctx);
                }
            }
            for (int k = 0; k < direct.size(); k++) {
                Spec s = specs.get(3 * k);
                float[] ref = reference(s.model(), s.sampler(), s.steps(), s.eta(), s.seed(), s.n(), s.spacing());
                Tolerance.assertBitIdentical("samples of " + s.json(), ref, direct.get(k).result().get(120, TimeUnit.SECONDS),
                        rnd.describe());
            }
        } finally {
            gate.release();
            pool.shutdownNow();
        }
        // the requests really shared model calls: some step ran with more than one eighth of the rows in flight
        String m = get(server.port(), "/metrics").body();
        long low = metric(m, "d4j_batch_occupancy_bucket{le=\"0.125\"}"), all = metric(m, "d4j_batch_occupancy_count");
        assertTrue(low < all, "every step ran a single row: " + low + " of " + all);
    }

    @Test
    void metricsTextParsesAndCountsOutcomes() throws Exception {
        int port = start(2, 4, 30_000, 1000, 1000).port();
        for (int i = 0; i < 2; i++) assertEquals(200, post(port, "{\"model\":\"thr\",\"steps\":2}").statusCode());
        assertEquals(400, post(port, "{\"model\":\"thr\",\"steps\":-1}").statusCode());
        assertEquals(404, post(port, "{\"model\":\"x\"}").statusCode());
        HttpResponse<String> r = get(port, "/metrics");
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"));
        String text = r.body();
        // every line: a comment (# HELP / # TYPE) or "name{labels} value"
        Pattern sample = Pattern.compile("^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                + "(-?[0-9.eE+-]+|\\+Inf|NaN)$");
        Pattern comment = Pattern.compile("^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram))$");
        for (String line : text.split("\n")) {
            assertTrue(sample.matcher(line).matches() || comment.matcher(line).matches(), "not Prometheus text: '" + line + "'");
        }
        assertEquals(2, metric(text, "d4j_requests_total{outcome=\"ok\"}"));
        assertEquals(1, metric(text, "d4j_requests_total{outcome=\"bad_request\"}"));
        assertEquals(1, metric(text, "d4j_requests_total{outcome=\"not_found\"}"));
        assertEquals(0, metric(text, "d4j_requests_total{outcome=\"rejected_queue_full\"}"));
        assertEquals(2, metric(text, "d4j_images_total"));
        assertEquals(2, metric(text, "d4j_request_seconds_count{outcome=\"ok\"}"));
        assertEquals(metric(text, "d4j_steps_total"), metric(text, "d4j_step_seconds_count"));
        assertTrue(metric(text, "d4j_steps_total") >= 2, text);
        assertEquals(2, metric(text, "d4j_batch_capacity"));
        assertEquals(0, metric(text, "d4j_queue_depth"));
        assertTrue(text.contains("d4j_batch_rows{model=\"thr\"} 0") && text.contains("d4j_batch_rows{model=\"plain\"} 0"), text);
        assertTrue(metric(text, "d4j_native_live_bytes") >= weightsBytes, text);
        assertEquals(200, get(port, "/healthz").statusCode());
        assertEquals(200, get(port, "/readyz").statusCode());
    }

    @Test
    void shutdownFinishesInFlightWorkAndRefusesNewRequests() throws Exception {
        start(4, 8, 60_000, 20_000, 60_000);
        int port = server.port();
        server.engine().iterationHook = () -> sleep(20);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            long seed = TestRandom.fresh().nextLong();
            Future<HttpResponse<byte[]>> inFlight = pool.submit(() -> post(port,
                    "{\"model\":\"plain\",\"steps\":15,\"n\":2,\"output\":\"json\",\"seed\":" + seed + "}"));
            awaitRows("plain", 2);
            Future<Boolean> closing = pool.submit(() -> server.shutdown());
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (server.engine().accepting() && System.nanoTime() < until) Thread.sleep(2);
            assertFalse(server.engine().accepting());
            assertNewRequestRefused(port);
            HttpResponse<byte[]> r = inFlight.get(60, TimeUnit.SECONDS);
            assertEquals(200, r.statusCode(), text(r));
            float[] ref = reference(plain, "ddim", 15, 0f, seed, 2, null);
            List<?> imgs = (List<?>) Json.parseObject(text(r)).get("images");
            for (int g = 0; g < 2; g++) {
                assertArrayEquals(Images.png(Images.image(ref, g, C, H, W)), Base64.getDecoder().decode((String) imgs.get(g)));
            }
            assertTrue(closing.get(30, TimeUnit.SECONDS), "everything finished, nothing cancelled");
            assertEquals(weightsBytes, cpu.liveBytes(), "the worker freed every batch buffer and workspace");
            assertEquals(weightsBuffers, cpu.liveBuffers());
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void shutdownCancelsWorkPastTheDrainLimit() throws Exception {
        start(4, 8, 60_000, 300, 60_000);
        int port = server.port();
        server.engine().iterationHook = () -> sleep(20);
        ExecutorService pool = Executors.newFixedThreadPool(1);
        try {
            Future<HttpResponse<byte[]>> inFlight = pool.submit(() -> post(port, "{\"model\":\"plain\",\"steps\":200}"));
            awaitRows("plain", 1);
            long t0 = System.nanoTime();
            boolean all = server.shutdown();
            double s = (System.nanoTime() - t0) / 1e9;
            assertFalse(all, "the 200-step request cannot finish in 300 ms at 20 ms per step");
            assertTrue(s >= 0.3 && s < 3, "shutdown took " + s + " s for a drain limit of 0.3 s");
            HttpResponse<byte[]> r = inFlight.get(10, TimeUnit.SECONDS);
            assertEquals(503, r.statusCode(), text(r));
            assertTrue(text(r).contains("shutting down"), text(r));
            assertEquals(1, server.metrics().requests("cancelled_shutdown"));
            assertEquals(weightsBytes, cpu.liveBytes());
            assertNewRequestRefused(port);
        } finally {
            pool.shutdownNow();
        }
    }

    /** 300 requests of every sampler, both models, n 1..4, at concurrency 6; then back to the weights' bytes. */
    @Test
    void nativeMemoryReturnsToTheWeightsAfterManyRequests() throws Exception {
        int port = start(6, 64, 60_000, 5000, 100).port();
        String[] samplers = {"ddim", "ddpm", "dpmsolver++"};
        int requests = 300;
        ExecutorService pool = Executors.newFixedThreadPool(6);
        TestRandom rnd = TestRandom.fresh();
        try {
            List<Future<Integer>> fs = new ArrayList<>();
            for (int i = 0; i < requests; i++) {
                String body = "{\"model\":\"" + (i % 3 == 0 ? "thr" : "plain") + "\",\"sampler\":\"" + samplers[i % 3]
                        + "\",\"steps\":" + (1 + rnd.nextInt(3)) + ",\"n\":" + (1 + rnd.nextInt(4)) + ",\"output\":\"json\"}";
                fs.add(pool.submit(() -> post(port, body).statusCode()));
            }
            for (Future<Integer> f : fs) assertEquals(200, f.get(120, TimeUnit.SECONDS));
        } finally {
            pool.shutdownNow();
        }
        assertEquals(requests, server.metrics().requests("ok"));
        // idle for 100 ms: the worker frees the batches and workspaces and publishes the count
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        long live = -1;
        while (System.nanoTime() < until) {
            live = metric(get(port, "/metrics").body(), "d4j_native_live_bytes");
            if (live == weightsBytes) break;
            Thread.sleep(20);
        }
        assertEquals(weightsBytes, live, "native live bytes after " + requests + " requests (weights: " + weightsBytes + ")");
        assertEquals(weightsBuffers, metric(get(port, "/metrics").body(), "d4j_native_live_buffers"));
    }

    @Test
    void bucketsCoverTheRowsWithinHalfAgain() {
        for (int max : new int[] {1, 5, 16, 32, 100}) {
            for (int r = 1; r <= max; r++) {
                int b = BatchEngine.bucket(r, max);
                assertTrue(b >= r && b <= max && b <= Math.max(r, (3 * r + 1) / 2), "rows " + r + " max " + max + ": " + b);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------

    void awaitRows(String model, int rows) throws InterruptedException {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (server.engine().rowsInFlight().get(model) < rows && System.nanoTime() < until) Thread.sleep(2);
        assertEquals(rows, server.engine().rowsInFlight().get(model), "the request never reached the batch");
    }

    static void assertNewRequestRefused(int port) throws InterruptedException {
        try {
            HttpResponse<byte[]> r = post(port, "{\"model\":\"plain\",\"steps\":2}");
            assertEquals(503, r.statusCode(), text(r));
        } catch (java.io.IOException refused) {
            // the listener is already closed: refused as well
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static long metric(String text, String name) {
        Matcher m = Pattern.compile("^" + Pattern.quote(name) + " (\\S+)$", Pattern.MULTILINE).matcher(text);
        if (!m.find()) fail("no metric " + name + " in\n" + text);
        return (long) Double.parseDouble(m.group(1));
    }

    static void assertPresent(Object o, String what) {
        assertNotNull(o, what);
    }
}
