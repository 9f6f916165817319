package io.diffusion4j.serve;

import static io.diffusion4j.serve.ServeTestSupport.get;
import static io.diffusion4j.serve.ServeTestSupport.post;
import static io.diffusion4j.serve.ServeTestSupport.text;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.cli.Main;
import io.diffusion4j.io.Json;
import io.diffusion4j.testutil.TestRandom;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The {@code serve} command: option errors, and a real server process (a child JVM running {@code Main serve} on
 * a checkpoint folder) whose images equal the PNGs {@code sample} writes for the same seed, which finishes its
 * in-flight request after SIGTERM and exits 0.
 */
class ServeCommandTest {
    @TempDir
    Path dir;

    static int run(String... args) {
        ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
        return Main.run(args, new PrintStream(o, true, StandardCharsets.UTF_8), new PrintStream(e, true, StandardCharsets.UTF_8));
    }

    @Test
    void optionErrorsExit2() {
        assertEquals(2, run("serve"));
        assertEquals(2, run("serve", "--model", "noequals"));
        assertEquals(2, run("serve", "--model", "a=x", "--model", "a=y"));
        assertEquals(2, run("serve", "--model", "a b=x"));
        assertEquals(2, run("serve", "--model", "a=x", "--max-batch", "2", "--max-n", "3"));
        assertEquals(2, run("serve", "--model", "a=x", "--port", "70000"));
        assertEquals(2, run("serve", "--model", "a=x", "--deadline-ms", "100", "--max-deadline-ms", "50"));
        assertEquals(2, run("serve", "--model", "a=x", "--queue", "0"));
        assertEquals(2, run("serve", "--model", "a=x", "--read-timeout-ms", "0"));
        assertEquals(2, run("serve", "--model", "a=x", "--idle-timeout-ms", "0"));
        assertEquals(2, run("serve", "--model", "a=x", "--max-connections", "0"));
        assertEquals(2, run("serve", "--model", "a=x", "--bogus", "1"));
        assertEquals(2, run("serve", "--model", "a=x", "--management-port", "-1"));
        assertEquals(2, run("serve", "--model", "a=x", "--management-port", "70000"));
        assertEquals(2, run("serve", "--model", "a=x", "--port", "8123", "--management-port", "8123"));
        assertEquals(0, run("serve", "--help"));
        assertEquals(1, run("serve", "--model", "a=" + dir.resolve("missing"), "--backend", "cpu"));
    }

    @Test
    void serverProcessMatchesSampleAndDrainsOnSigterm() throws Exception {
        Path ck = ServeTestSupport.checkpoint(dir.resolve("ck"), TestRandom.fresh().nextLong());
        long seed = TestRandom.fresh().nextLong();
        // what `sample` writes for seed, 3 images, DDIM-5
        Path samples = dir.resolve("samples");
        assertEquals(0, run("sample", "--checkpoint", ck.toString(), "--sampler", "ddim", "--steps", "5", "--n", "3",
                "--seed", Long.toString(seed), "--out", samples.toString(), "--backend", "cpu"));

        try (ChildServer child = ChildServer.start(List.of(), List.of("--model", "tiny=" + ck, "--port", "0", "--backend",
                "cpu", "--max-batch", "4", "--drain-ms", "60000"))) {
            Process p = child.process;
            StringBuffer all = child.output;
            int port = child.port;
            assertEquals(200, get(port, "/readyz").statusCode());

            HttpResponse<byte[]> r = post(port, "{\"model\":\"tiny\",\"sampler\":\"ddim\",\"steps\":5,\"n\":3,\"seed\":" + seed + "}");
            assertEquals(200, r.statusCode(), text(r));
            List<?> imgs = (List<?>) Json.parseObject(text(r)).get("images");
            for (int g = 0; g < 3; g++) {
                byte[] expected = Files.readAllBytes(samples.resolve(String.format(Locale.ROOT, "sample_%05d.png", g)));
                assertArrayEquals(expected, Base64.getDecoder().decode((String) imgs.get(g)), "image " + g + " vs sample's PNG");
            }

            // a long request (DDPM, all 1000 timesteps, 4 images) in flight, then SIGTERM
            final int fport = port;
            CompletableFuture<HttpResponse<byte[]>> longOne = CompletableFuture.supplyAsync(() -> {
                try {
                    return post(fport, "{\"model\":\"tiny\",\"sampler\":\"ddpm\",\"steps\":1000,\"n\":4,\"output\":\"json\"}");
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < until && !get(port, "/metrics").body().contains("d4j_batch_rows{model=\"tiny\"} 4")) {
                Thread.sleep(5);
            }
            long stepsBefore = steps(get(port, "/metrics").body());
            boolean doneBefore = longOne.isDone();
            long tKill = System.nanoTime();
            p.toHandle().destroy(); // SIGTERM (Process.destroy would also close our end of its output pipe)
            HttpResponse<byte[]> done = longOne.get(120, TimeUnit.SECONDS);
            assertEquals(200, done.statusCode(), "the in-flight request finishes during the drain: " + text(done));
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the server did not exit after SIGTERM:\n" + all);
            assertTrue(child.awaitOutputEnd(10_000), "the child's output did not end");
            assertEquals(0, p.exitValue(), "exit status after SIGTERM:\n" + all);
            assertTrue(all.toString().contains("serve: shutting down") && all.toString().contains("serve: stopped"),
                    "done before SIGTERM " + doneBefore + ", exit after " + (System.nanoTime() - tKill) / 1e6 + " ms, steps "
                    + stepsBefore + ":\n" + all);
            assertTrue(stepsBefore < 1000, "the request had finished before SIGTERM (" + stepsBefore + " steps): test too fast");
        }
    }

    static long steps(String metrics) {
        Matcher m = Pattern.compile("^d4j_steps_total (\\d+)$", Pattern.MULTILINE).matcher(metrics);
        return m.find() ? Long.parseLong(m.group(1)) : -1;
    }
}
