package io.diffusion4j.serve;

import static io.diffusion4j.serve.RawHttp.postHead;
import static io.diffusion4j.serve.ServeTestSupport.get;
import static io.diffusion4j.serve.ServeTestSupport.post;
import static io.diffusion4j.serve.ServeTestSupport.text;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.Json;
import io.diffusion4j.testutil.TestRandom;
import java.net.Socket;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Clients that break HTTP framing, stall their body or leave mid-request, over raw sockets against an in-process
 * server: their faults are answered 4xx (400 bad framing, 413 too large, 408 too slow) and counted as client
 * errors, never as the server's; a client that leaves while its images are computed stops occupying the batch.
 */
class BadClientTest {
    static final int READ_TIMEOUT_MS = 600;
    static Backend cpu;
    static ServedModel plain;
    SampleServer server;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        plain = ServeTestSupport.model(cpu, "plain", TestRandom.fresh().nextLong(), ServeTestSupport.plainConfig());
    }

    @AfterAll
    static void closeAll() {
        plain.close();
        cpu.close();
    }

    @AfterEach
    void stop() {
        if (server != null) server.close();
        server = null;
    }

    int start(int maxBatch) throws Exception {
        SampleServer.Config cfg = new SampleServer.Config("127.0.0.1", 0,
                new SampleRequest.Limits(1, 500, 2048, 60_000, 120_000), new BatchEngine.Options(maxBatch, 8, 60_000), 2000,
                new ConnectionLimits(READ_TIMEOUT_MS, 30_000, 64));
        server = new SampleServer(cpu, List.of(plain), cfg);
        return server.port();
    }

    static final String BODY = "{\"model\":\"plain\",\"steps\":2}";

    /**
     * The answer to a request written as is, the client's side then half-closed (it sends nothing more: a body
     * cut short ends there).
     */
    static RawHttp.Response send(int port, String raw) throws Exception {
        return send(port, raw, true);
    }

    /** The same, the client's side left open when {@code halfClose} is false (a client that waits for its answer). */
    static RawHttp.Response send(int port, String raw, boolean halfClose) throws Exception {
        try (Socket s = RawHttp.open(port, 10_000)) {
            RawHttp.write(s, raw);
            if (halfClose) s.shutdownOutput();
            return RawHttp.read(s);
        }
    }

    void assertClientErrors(long client, String outcome, long count) throws Exception {
        String m = get(server.port(), "/metrics").body();
        assertEquals(count, SampleServerTest.metric(m, "d4j_requests_total{outcome=\"" + outcome + "\"}"), m);
        assertEquals(client, SampleServerTest.metric(m, "d4j_request_errors_total{by=\"client\"}"), m);
        assertEquals(0, SampleServerTest.metric(m, "d4j_request_errors_total{by=\"server\"}"), m);
        assertEquals(0, SampleServerTest.metric(m, "d4j_requests_total{outcome=\"error\"}"), m);
    }

    @Test
    void bodyShorterThanItsContentLengthIs400AndAClientError() throws Exception {
        int port = start(1);
        RawHttp.Response r = send(port, postHead("Content-Length: " + (BODY.length() + 40)) + BODY);
        assertEquals(400, r.status(), RawHttp.describe(r));
        assertEquals("body", Json.parseObject(r.body()).get("field"), r.body());
        assertEquals("close", r.header("Connection"), r.head());
        assertClientErrors(1, "bad_framing", 1);
        assertEquals(200, post(port, BODY).statusCode(), "a well-framed request after it");
    }

    @Test
    void badChunkSizeIs400AndAClientError() throws Exception {
        int port = start(1);
        String[] bad = {
            "zz\r\n" + BODY + "\r\n0\r\n\r\n", // not hexadecimal
            Integer.toHexString(BODY.length()) + "\r\n" + BODY + "XX0\r\n\r\n", // no CRLF after the chunk
            "80000000\r\n" + BODY + "\r\n0\r\n\r\n", // 2^31: past an int
        };
        for (int i = 0; i < bad.length; i++) {
            RawHttp.Response r = send(port, postHead("Transfer-Encoding: chunked") + bad[i]);
            assertEquals(400, r.status(), "case " + i + ": " + RawHttp.describe(r));
            assertEquals("body", Json.parseObject(r.body()).get("field"), r.body());
        }
        assertClientErrors(bad.length, "bad_framing", bad.length);
        RawHttp.Response ok = send(port, postHead("Transfer-Encoding: chunked") + Integer.toHexString(BODY.length()) + "\r\n"
                + BODY + "\r\n0\r\n\r\n", false);
        assertEquals(200, ok.status(), "a well-formed chunked body: " + RawHttp.describe(ok));
    }

    @Test
    void bodyOverTheLimitIs413() throws Exception {
        int port = start(1);
        String big = "{\"model\":\"plain\",\"steps\":2}" + " ".repeat(3000); // the limit is 2048 bytes
        RawHttp.Response declared = send(port, postHead("Content-Length: " + big.length()) + big);
        assertEquals(413, declared.status(), RawHttp.describe(declared));
        assertEquals("body", Json.parseObject(declared.body()).get("field"));
        RawHttp.Response chunked = send(port, postHead("Transfer-Encoding: chunked") + Integer.toHexString(big.length())
                + "\r\n" + big + "\r\n0\r\n\r\n");
        assertEquals(413, chunked.status(), RawHttp.describe(chunked));
        assertClientErrors(2, "body_too_large", 2);
    }

    @Test
    void stalledBodyIs408WithinTheReadTimeoutAndTheConnectionCloses() throws Exception {
        int port = start(1);
        try (Socket s = RawHttp.open(port, 10_000)) {
            long t0 = System.nanoTime();
            RawHttp.write(s, postHead("Content-Length: 100") + BODY.substring(0, 10)); // then nothing more
            RawHttp.Response r = RawHttp.read(s);
            double ms = (System.nanoTime() - t0) / 1e6;
            assertEquals(408, r.status(), RawHttp.describe(r));
            assertEquals("body", Json.parseObject(r.body()).get("field"));
            assertTrue(ms >= READ_TIMEOUT_MS - 50 && ms < READ_TIMEOUT_MS + 4000, "answered after " + ms + " ms");
            assertTrue(RawHttp.awaitClosed(s, 3000) >= 0, "the connection stayed open after the 408");
        }
        assertClientErrors(1, "request_timeout", 1);
        assertEquals(200, get(port, "/healthz").statusCode());
    }

    @Test
    void clientLeavingMidRequestFreesTheBatchAtTheNextSteps() throws Exception {
        assumeProcNet();
        int port = start(1); // one row: the leaving client's request holds the whole batch
        server.engine().iterationHook = () -> SampleServerTest.sleep(20); // >= 20 ms per step: 200 steps >= 4 s
        String longBody = "{\"model\":\"plain\",\"steps\":200}";
        try (Socket s = RawHttp.open(port, 10_000)) {
            RawHttp.write(s, postHead("Content-Length: " + longBody.length()) + longBody);
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (server.engine().rowsInFlight().get("plain") < 1 && System.nanoTime() < until) Thread.sleep(2);
            assertEquals(1, server.engine().rowsInFlight().get("plain"), "the request never reached the batch");
        } // the client leaves
        long stepsAtLeave = server.metrics().stepsObserved();
        long t0 = System.nanoTime();
        HttpResponse<byte[]> next = post(port, BODY);
        double s = (System.nanoTime() - t0) / 1e9;
        assertEquals(200, next.statusCode(), text(next));
        long steps = server.metrics().stepsObserved();
        assertTrue(steps < 120, "the next request waited for the one whose client left: " + steps + " steps in all ("
                + stepsAtLeave + " when it left), answered after " + s + " s");
        assertEquals(1, server.metrics().requests("client_gone"));
        assertEquals(0, server.metrics().requests("error"));
        assertEquals(0, server.engine().rowsInFlight().get("plain"));
    }

    static void assumeProcNet() {
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isReadable(Path.of("/proc/net/tcp")),
                "the server sees a client leave while it waits through /proc/net/tcp (Linux)");
    }

}
