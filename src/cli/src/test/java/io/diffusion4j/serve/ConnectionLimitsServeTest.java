package io.diffusion4j.serve;

import static io.diffusion4j.serve.RawHttp.postHead;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.net.Socket;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The connection limits of {@code serve} (read and idle timeouts, the bound on open connections), which the JDK's
 * HttpServer reads once per process: a child JVM runs {@code Main serve} with short settings, and raw sockets
 * play silent, stalled and too many clients while a well-behaved client keeps being answered.
 */
class ConnectionLimitsServeTest {
    static final int READ_TIMEOUT_MS = 2000, IDLE_TIMEOUT_MS = 20_000, MAX_CONNECTIONS = 400;
    /**
     * When a silent or stalled connection must be closed by: the read timeout rounded up to seconds, plus one, plus
     * the JDK timers' tick (a quarter of the read timeout), plus slack for a loaded machine.
     */
    static final long CLOSED_WITHIN_MS = 3000 + 500 + 4500;
    @TempDir
    static Path dir;
    static ChildServer child;
    static int port;
    final List<Socket> sockets = new ArrayList<>();

    @BeforeAll
    static void startServer() throws Exception {
        Path ck = ServeTestSupport.checkpoint(dir.resolve("ck"), TestRandom.fresh().nextLong());
        child = ChildServer.start(List.of(), List.of("--model", "tiny=" + ck, "--port", "0", "--backend", "cpu",
                "--max-batch", "2", "--read-timeout-ms", Integer.toString(READ_TIMEOUT_MS), "--idle-timeout-ms",
                Integer.toString(IDLE_TIMEOUT_MS), "--max-connections", Integer.toString(MAX_CONNECTIONS)));
        port = child.port;
    }

    @AfterAll
    static void stopServer() throws Exception {
        if (child != null && child.process.isAlive()) {
            child.process.toHandle().destroy();
            if (!child.process.waitFor(30, TimeUnit.SECONDS)) child.close();
        }
    }

    @AfterEach
    void closeSockets() {
        for (Socket s : sockets) {
            try {
                s.close();
            } catch (IOException ignored) {
                // already gone
            }
        }
        sockets.clear();
    }

    Socket open() throws IOException {
        Socket s = RawHttp.open(port, 10_000);
        sockets.add(s);
        return s;
    }

    /** GET /healthz on a fresh connection: 200 within a few seconds. */
    void assertHealthy(String when) throws IOException {
        try (Socket s = RawHttp.open(port, 5000)) {
            RawHttp.write(s, "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
            assertEquals(200, RawHttp.read(s).status(), when);
        }
    }

    @Test
    void silentAndStalledConnectionsAreClosedWhileTheServerAnswers() throws Exception {
        long t0 = System.nanoTime();
        List<Socket> silent = new ArrayList<>(), headers = new ArrayList<>(), bodies = new ArrayList<>();
        for (int i = 0; i < 200; i++) silent.add(open());
        for (int i = 0; i < 75; i++) {
            Socket s = open();
            RawHttp.write(s, "POST /v1/samples HTTP/1.1\r\nHost: test\r\nContent-Le"); // the headers stop here
            headers.add(s);
        }
        for (int i = 0; i < 75; i++) {
            Socket s = open();
            RawHttp.write(s, postHead("Content-Length: 100") + "{\"model\":"); // the body stops here
            bodies.add(s);
        }
        double opened = (System.nanoTime() - t0) / 1e6;
        assertHealthy("with 350 silent or stalled connections open (opened in " + opened + " ms)");
        for (Socket s : bodies) {
            RawHttp.Response r = RawHttp.read(s);
            assertEquals(408, r.status(), RawHttp.describe(r));
        }
        List<Socket> all = new ArrayList<>(silent);
        all.addAll(headers);
        all.addAll(bodies);
        int open = 0;
        for (Socket s : all) {
            long left = CLOSED_WITHIN_MS - (System.nanoTime() - t0) / 1_000_000L;
            if (RawHttp.awaitClosed(s, Math.max(1, left)) < 0) open++;
        }
        assertEquals(0, open, "connections still open " + CLOSED_WITHIN_MS + " ms after they went silent");
        assertHealthy("after they were closed");
    }

    @Test
    void connectionsPastTheBoundAreClosedWhileAnOpenClientIsServed() throws Exception {
        Socket good = open(); // a well-behaved client with a keep-alive connection, opened first
        String healthz = "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
        RawHttp.write(good, healthz);
        assertEquals(200, RawHttp.read(good).status());
        long t0 = System.nanoTime();
        for (int i = 1; i < MAX_CONNECTIONS; i++) open(); // silent: the bound is reached
        Thread.sleep(200); // the server accepts them
        List<Socket> extras = new ArrayList<>();
        for (int i = 0; i < 10; i++) extras.add(open());
        int closed = 0;
        for (Socket extra : extras) {
            if (RawHttp.awaitClosed(extra, 1000) >= 0) closed++;
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        // a silent connection within the bound lives about 3 s; those past it are closed at once
        assertEquals(10, closed, "connections past the bound of " + MAX_CONNECTIONS + " not closed at once (" + ms
                + " ms after the first silent one)");
        for (int i = 0; i < 3; i++) {
            RawHttp.write(good, healthz);
            assertEquals(200, RawHttp.read(good).status(), "the well-behaved client while the bound is reached");
        }
    }
}
