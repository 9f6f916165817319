package io.diffusion4j.serve;

import static io.diffusion4j.serve.ServeTestSupport.get;
import static io.diffusion4j.serve.ServeTestSupport.post;
import static io.diffusion4j.serve.ServeTestSupport.text;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.cli.GatedLoadServe;
import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.io.Json;
import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Replicas of {@code serve} (child JVMs, each with {@code --management-port}) behind a real nginx on loopback, the
 * configuration docs/server.md recommends: a replica killed mid-run fails only its own in-flight requests, with
 * nginx's 502, while every request that reached a survivor and every request sent after the kill succeeds; a replica
 * that is still loading its models, or draining after SIGTERM, gets no request while /readyz says 503; and with one
 * port, a loading replica answers 503 with Retry-After.
 */
class ReplicaFailoverTest {
    @TempDir
    Path dir;

    Path checkpoint;

    /** A request of one image: DDPM with every timestep, long enough to be in flight when a replica dies. */
    static final String LONG = "{\"model\":\"tiny\",\"sampler\":\"ddpm\",\"steps\":1000,\"n\":1,\"output\":\"json\"}";
    /** A short request. */
    static final String SHORT = "{\"model\":\"tiny\",\"sampler\":\"ddim\",\"steps\":5,\"n\":1,\"output\":\"json\"}";

    static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    @BeforeEach
    void checkpoint() throws IOException {
        checkpoint = ServeTestSupport.checkpoint(dir.resolve("ck"), TestRandom.fresh().nextLong());
    }

    // ---------------------------------------------------------------------------------------------------------
    // nginx

    /**
     * nginx, or a failure saying how to get it: the test must not pass without having run (CI installs the
     * package; Debian puts the binary in /usr/sbin, which a non-root PATH may lack).
     */
    static Path nginxBinary() {
        for (String d : (System.getenv().getOrDefault("PATH", "") + ":/usr/sbin:/usr/local/sbin").split(":")) {
            if (d.isEmpty()) continue;
            Path p = Path.of(d, "nginx");
            if (Files.isExecutable(p)) return p;
        }
        return fail("nginx not found (PATH, /usr/sbin): install it, e.g. apt-get install nginx-light; .ci/run does");
    }

    /** A port free on loopback now (the replica or nginx binds it a moment later). */
    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /**
     * The nginx configuration of docs/server.md for these upstream ports, everything nginx writes inside
     * {@code prefix}. nginx reports the upstream(s) it tried in X-Upstream, so a test knows which replica answered.
     */
    static String nginxConfig(Path prefix, int listen, List<Integer> upstreams) {
        StringBuilder servers = new StringBuilder();
        for (int p : upstreams) servers.append("        server 127.0.0.1:").append(p).append(" max_fails=1 fail_timeout=1s;\n");
        String root = "root".equals(System.getProperty("user.name"))
                ? "user root; # run as root (a container, CI): workers as nobody could not use the temp folders here\n"
                : "";
        return root + """
                worker_processes 1;
                pid %1$s/nginx.pid;
                error_log %1$s/error.log info;
                events { worker_connections 512; }
                http {
                    access_log off;
                    client_body_temp_path %1$s/client_body;
                    proxy_temp_path %1$s/proxy;
                    fastcgi_temp_path %1$s/fastcgi;
                    uwsgi_temp_path %1$s/uwsgi;
                    scgi_temp_path %1$s/scgi;
                    upstream d4j {
                %2$s    }
                    server {
                        listen 127.0.0.1:%3$d;
                        location /v1/ {
                            proxy_pass http://d4j;
                            proxy_next_upstream error timeout;
                            proxy_connect_timeout 2s;
                            proxy_read_timeout 120s;
                            client_max_body_size 1m;
                            add_header X-Upstream $upstream_addr always;
                        }
                    }
                }
                """.formatted(prefix, servers, listen);
    }

    /** An nginx master in the foreground on a free loopback port, proxying to {@code upstreams}. */
    static final class Nginx implements AutoCloseable {
        final Process process;
        final int port;
        final Path prefix;

        Nginx(Path prefix, List<Integer> upstreams) throws Exception {
            Path binary = nginxBinary();
            this.prefix = Files.createDirectories(prefix);
            this.port = freePort();
            Path conf = prefix.resolve("nginx.conf");
            AtomicFiles.writeString(conf, nginxConfig(prefix, port, upstreams));
            // -e: the error log before the configuration is read (the compiled-in one is /var/log/nginx)
            process = new ProcessBuilder(binary.toString(), "-p", prefix.toString(), "-c", conf.toString(),
                    "-e", prefix.resolve("error.log").toString(), "-g", "daemon off;")
                    .redirectErrorStream(true).redirectOutput(prefix.resolve("stdout.log").toFile()).start();
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (true) {
                try (Socket s = new Socket()) {
                    s.connect(new InetSocketAddress("127.0.0.1", port), 1000);
                    return;
                } catch (IOException notYet) {
                    if (!process.isAlive() || System.nanoTime() > until) {
                        process.destroyForcibly();
                        fail("nginx did not start: " + log());
                    }
                    Thread.sleep(20);
                }
            }
        }

        String log() {
            StringBuilder b = new StringBuilder();
            for (String f : List.of("stdout.log", "error.log")) {
                try {
                    b.append('\n').append(f).append(":\n").append(Files.readString(prefix.resolve(f)));
                } catch (IOException e) {
                    b.append('\n').append(f).append(": ").append(e);
                }
            }
            return b.toString();
        }

        @Override
        public void close() throws InterruptedException {
            process.destroy(); // SIGTERM: nginx's fast shutdown, workers included
            if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // replicas and requests

    List<String> replicaArgs(int port) {
        return List.of("--model", "tiny=" + checkpoint, "--port", Integer.toString(port), "--management-port", "0",
                "--backend", "cpu", "--threads", "1", "--max-batch", "8", "--drain-ms", "30000");
    }

    /** Replicas started in parallel (a JVM start each), listening on the given ports once loaded. */
    List<ChildServer> startReplicas(List<Integer> ports) throws Exception {
        try (ExecutorService ex = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<ChildServer>> fs = new ArrayList<>();
            for (int p : ports) fs.add(ex.submit(() -> ChildServer.start(List.of(), replicaArgs(p))));
            List<ChildServer> out = new ArrayList<>();
            for (Future<ChildServer> f : fs) out.add(f.get(90, TimeUnit.SECONDS));
            return out;
        }
    }

    /** One request through nginx: what came back (an exception if no HTTP response did), when, and from whom. */
    record Outcome(long startNanos, long endNanos, int status, String upstream, String body, Exception failure) {
        /** The replica that gave the answer: the last address nginx tried ("a, b" after a failed connection). */
        String answeredBy() {
            if (upstream == null) return null;
            String[] tried = upstream.split(",\\s*");
            return tried[tried.length - 1].trim();
        }

        @Override
        public String toString() {
            return "status " + status + " upstream [" + upstream + "] after " + (endNanos - startNanos) / 1_000_000 + " ms"
                    + (failure != null ? " failure " + failure : "") + (status != 200 && body != null
                    ? " body " + body.substring(0, Math.min(200, body.length())) : "");
        }
    }

    static Outcome send(int nginxPort, String body) {
        long t0 = System.nanoTime();
        try {
            HttpRequest r = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + nginxPort + "/v1/samples"))
                    .timeout(Duration.ofSeconds(60)).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(body)).build();
            HttpResponse<String> resp = CLIENT.send(r, HttpResponse.BodyHandlers.ofString());
            return new Outcome(t0, System.nanoTime(), resp.statusCode(), resp.headers().firstValue("X-Upstream").orElse(null),
                    resp.body(), null);
        } catch (Exception e) {
            return new Outcome(t0, System.nanoTime(), -1, null, null, e);
        }
    }

    /** A 200 carrying one 8x8 PNG, as the replicas answer. */
    static void assertImage(Outcome o) {
        assertEquals(200, o.status(), o.toString());
        Map<String, Object> json = Json.parseObject(o.body());
        List<?> images = (List<?>) json.get("images");
        assertEquals(1, images.size(), o.toString());
        byte[] png = Base64.getDecoder().decode((String) images.getFirst());
        assertTrue(png.length > 8 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G', "a PNG: " + o);
    }

    static String addr(int port) {
        return "127.0.0.1:" + port;
    }

    static long batchRows(ChildServer s) throws Exception {
        Matcher m = Pattern.compile("(?m)^d4j_batch_rows\\{model=\"tiny\"} (\\d+)$").matcher(get(s.healthPort, "/metrics").body());
        return m.find() ? Long.parseLong(m.group(1)) : -1;
    }

    static long requestsTotal(ChildServer s) throws Exception {
        Matcher m = Pattern.compile("(?m)^d4j_requests_total\\{outcome=\"\\w+\"} (\\d+)$").matcher(get(s.healthPort, "/metrics").body());
        long sum = 0;
        while (m.find()) sum += Long.parseLong(m.group(1));
        return sum;
    }

    static void assertRefused(int port) {
        assertThrows(ConnectException.class, () -> {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 2000);
            }
        }, "port " + port + " refuses connections");
    }

    /**
     * Waits (up to 5 s) until {@code port} refuses connections; returns when it did. The listener closes on a thread
     * of its own right after /readyz turned 503, so it may take a few milliseconds more.
     */
    static long awaitRefused(int port) throws InterruptedException {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (true) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 2000);
            } catch (ConnectException refused) {
                return System.nanoTime();
            } catch (IOException other) {
                fail("port " + port + ": " + other);
            }
            if (System.nanoTime() > until) fail("port " + port + " still accepts connections");
            Thread.sleep(1);
        }
    }

    static void closeAll(List<? extends AutoCloseable> cs) throws Exception {
        for (AutoCloseable c : cs) c.close();
    }

    // ---------------------------------------------------------------------------------------------------------

    @Test
    void aKilledReplicaFailsOnlyItsInFlightRequestsAndTheSurvivorsTakeTheLoad() throws Exception {
        List<Integer> ports = List.of(freePort(), freePort(), freePort());
        List<ChildServer> replicas = startReplicas(ports);
        try (Nginx nginx = new Nginx(dir.resolve("nginx"), ports)) {
            ChildServer victim = replicas.get(1);
            String victimAddr = addr(ports.get(1));
            ConcurrentLinkedQueue<Outcome> outcomes = new ConcurrentLinkedQueue<>();
            java.util.concurrent.atomic.AtomicLong stopAt = new java.util.concurrent.atomic.AtomicLong(Long.MAX_VALUE);
            int clients = 12;
            List<Thread> load = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                load.add(Thread.ofVirtual().start(() -> {
                    while (System.nanoTime() < stopAt.get()) outcomes.add(send(nginx.port, LONG));
                }));
            }
            // kill once every replica has answered and the victim has requests in its batch
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < until) {
                long answering = outcomes.stream().map(Outcome::answeredBy).distinct().filter(a -> a != null).count();
                if (answering == 3 && batchRows(victim) > 0) break;
                Thread.sleep(10);
            }
            long rowsAtKill = batchRows(victim);
            long kill = System.nanoTime();
            victim.process.destroyForcibly(); // SIGKILL: no drain, its connections reset by the kernel
            assertTrue(victim.process.waitFor(10, TimeUnit.SECONDS), "the victim did not die");
            long dead = System.nanoTime();
            // the load goes on until a dozen requests sent after the kill have their answers (seconds on a busy machine)
            until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < until && outcomes.stream().filter(o -> o.startNanos() > dead).count() < clients) {
                Thread.sleep(10);
            }
            stopAt.set(System.nanoTime());
            for (Thread t : load) t.join(Duration.ofSeconds(90));
            for (Thread t : load) assertFalse(t.isAlive(), "a client hangs");

            List<Outcome> all = new ArrayList<>(outcomes);
            String report = all.size() + " requests, " + rowsAtKill + " rows in the victim's batch at the kill\n" + nginx.log();
            assertTrue(rowsAtKill > 0, "the victim had nothing in flight at the kill: " + report);
            int failedInFlight = 0, afterKill = 0;
            long slowestFailure = 0;
            for (Outcome o : all) {
                // every request got an HTTP answer in time: no hang, no transport error, nothing malformed
                assertNotNull(o.upstream(), "no answer from nginx: " + o + "\n" + report);
                if (o.status() == 200) {
                    assertImage(o);
                } else {
                    assertEquals(502, o.status(), "only nginx's 502 may fail a request: " + o);
                    assertEquals(victimAddr, o.answeredBy(), "a request failed on a healthy replica: " + o);
                    assertTrue(o.startNanos() < dead, "a request sent after the kill failed: " + o);
                    assertTrue(o.endNanos() - dead < TimeUnit.SECONDS.toNanos(5), "the failure came late: " + o);
                    failedInFlight++;
                    slowestFailure = Math.max(slowestFailure, o.endNanos() - kill);
                }
                if (o.startNanos() > dead) {
                    afterKill++;
                    assertEquals(200, o.status(), "a request sent after the kill: " + o);
                    assertTrue(!o.answeredBy().equals(victimAddr), "answered by the dead replica: " + o);
                }
            }
            assertTrue(failedInFlight > 0, "the victim's in-flight requests were not failed: " + report);
            assertTrue(afterKill >= clients, "too few requests after the kill (" + afterKill + "): " + report);
            System.out.printf(java.util.Locale.ROOT, "failover: %d requests from %d clients, %d rows in the killed replica's"
                    + " batch, %d requests failed with 502 (the last %.0f ms after the kill), %d sent after the kill all"
                    + " 200%n", all.size(), clients, rowsAtKill, failedInFlight, slowestFailure / 1e6, afterKill);
            // the survivors still answer, with the victim's port refusing
            assertRefused(ports.get(1));
            for (int i = 0; i < 4; i++) assertImage(send(nginx.port, SHORT));
        } finally {
            closeAll(replicas);
        }
    }

    @Test
    void aLoadingReplicaGetsNoTrafficUntilReadyzSays200() throws Exception {
        int readyPort = freePort(), loadingPort = freePort();
        ChildServer ready = ChildServer.start(List.of(), replicaArgs(readyPort));
        ChildServer loading = ChildServer.launch(GatedLoadServe.class.getName(), List.of(), replicaArgs(loadingPort));
        try (Nginx nginx = new Nginx(dir.resolve("nginx"), List.of(loadingPort, readyPort))) {
            assertEquals(200, get(loading.healthPort, "/healthz").statusCode(), "alive while loading");
            HttpResponse<String> r = get(loading.healthPort, "/readyz");
            assertEquals(503, r.statusCode(), "not ready while loading");
            assertEquals("loading\n", r.body());
            assertRefused(loadingPort);
            for (int i = 0; i < 12; i++) {
                Outcome o = send(nginx.port, SHORT);
                assertImage(o);
                assertEquals(addr(readyPort), o.answeredBy(), "a request reached the loading replica: " + o);
            }
            assertEquals(503, get(loading.healthPort, "/readyz").statusCode(), "still loading");
            assertEquals(0, requestsTotal(loading), "requests reached the loading replica");

            try (OutputStream gate = loading.process.getOutputStream()) {
                gate.write('\n'); // the models load now
            }
            assertEquals(loadingPort, loading.awaitListening());
            assertEquals(200, get(loading.healthPort, "/readyz").statusCode(), "ready once loaded");
            // nginx retries the replica once its fail_timeout (1 s) from the refused connections has passed
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            boolean reached = false;
            while (!reached && System.nanoTime() < until) {
                Outcome o = send(nginx.port, SHORT);
                assertImage(o);
                reached = o.answeredBy().equals(addr(loadingPort));
            }
            assertTrue(reached, "the replica got no request after it became ready\n" + loading.output + nginx.log());
        } finally {
            closeAll(List.of(ready, loading));
        }
    }

    @Test
    void aDrainingReplicaTakesNoNewRequestsWhileItsInFlightOnesFinish() throws Exception {
        List<Integer> ports = List.of(freePort(), freePort());
        List<ChildServer> replicas = startReplicas(ports);
        ChildServer draining = replicas.get(0);
        try (Nginx nginx = new Nginx(dir.resolve("nginx"), ports);
             ExecutorService ex = Executors.newVirtualThreadPerTaskExecutor()) {
            List<CompletableFuture<Outcome>> longOnes = new ArrayList<>();
            for (int i = 0; i < 4; i++) longOnes.add(CompletableFuture.supplyAsync(() -> send(nginx.port, LONG), ex));
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < until && batchRows(draining) == 0) Thread.sleep(5);
            assertTrue(batchRows(draining) > 0, "no request in flight on the replica to drain");

            long term = System.nanoTime();
            draining.process.toHandle().destroy(); // SIGTERM (Process.destroy would also close our end of its output)
            until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (System.nanoTime() < until && get(draining.healthPort, "/readyz").statusCode() == 200) Thread.sleep(5);
            HttpResponse<String> r = get(draining.healthPort, "/readyz");
            assertEquals(503, r.statusCode());
            assertEquals("draining\n", r.body());
            long refused = awaitRefused(ports.get(0));
            long before = requestsTotal(draining);
            List<Outcome> shortOnes = new ArrayList<>();
            for (int i = 0; i < 10; i++) shortOnes.add(send(nginx.port, SHORT));
            boolean stillDraining = draining.process.isAlive() && batchRows(draining) > 0;
            for (Outcome o : shortOnes) {
                assertImage(o);
                assertEquals(addr(ports.get(1)), o.answeredBy(), "a new request reached the draining replica: " + o);
            }
            assertEquals(before, requestsTotal(draining), "the draining replica counted new requests");
            assertTrue(stillDraining, "the drain was over before the new requests were answered: test too fast\n"
                    + draining.output);

            int onDrained = 0;
            for (CompletableFuture<Outcome> f : longOnes) {
                Outcome o = f.get(90, TimeUnit.SECONDS);
                assertImage(o); // those in flight on the draining replica finish
                if (o.answeredBy().equals(addr(ports.get(0)))) onDrained++;
            }
            assertTrue(onDrained > 0, "no in-flight request finished on the draining replica");
            assertTrue(draining.process.waitFor(60, TimeUnit.SECONDS), "no exit after the drain\n" + draining.output);
            assertEquals(0, draining.process.exitValue(), draining.output.toString());
            System.out.printf(java.util.Locale.ROOT, "drain: %d of 4 long requests finished on the draining replica, "
                    + "10 new ones went to the other, its port refusing %.0f ms and the process exited 0 %.0f ms after "
                    + "SIGTERM%n", onDrained, (refused - term) / 1e6, (System.nanoTime() - term) / 1e6);
        } finally {
            closeAll(replicas);
        }
    }

    @Test
    void onOnePortALoadingReplicaAnswers503WithRetryAfter() throws Exception {
        ChildServer s = ChildServer.launch(GatedLoadServe.class.getName(), List.of(), List.of("--model",
                "tiny=" + checkpoint, "--port", "0", "--backend", "cpu", "--threads", "1"));
        try {
            assertEquals(200, get(s.healthPort, "/healthz").statusCode());
            HttpResponse<String> ready = get(s.healthPort, "/readyz");
            assertEquals(503, ready.statusCode());
            assertEquals("loading\n", ready.body());
            HttpResponse<byte[]> r = post(s.healthPort, SHORT);
            assertEquals(503, r.statusCode(), text(r));
            assertEquals("1", r.headers().firstValue("Retry-After").orElse(null));
            assertEquals("application/json", r.headers().firstValue("Content-Type").orElse(null));
            assertEquals("the models are still loading", Json.parseObject(text(r)).get("error"));
            try (OutputStream gate = s.process.getOutputStream()) {
                gate.write('\n');
            }
            assertEquals(s.healthPort, s.awaitListening(), "one port for everything");
            assertEquals(200, get(s.healthPort, "/readyz").statusCode());
            assertEquals(200, post(s.port, SHORT).statusCode());
            assertTrue(get(s.port, "/metrics").body().contains("d4j_requests_total{outcome=\"unavailable\"} 1"));
        } finally {
            s.close();
        }
    }
}
