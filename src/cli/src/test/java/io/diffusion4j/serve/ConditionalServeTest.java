package io.diffusion4j.serve;

import static io.diffusion4j.serve.ServeTestSupport.C;
import static io.diffusion4j.serve.ServeTestSupport.H;
import static io.diffusion4j.serve.ServeTestSupport.W;
import static io.diffusion4j.serve.ServeTestSupport.post;
import static io.diffusion4j.serve.ServeTestSupport.text;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.cli.Main;
import io.diffusion4j.io.Json;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.sample.DdimScheduler;
import io.diffusion4j.sample.ImageInputs;
import io.diffusion4j.sample.Images;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.sample.SamplerScheduler;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.zip.CRC32;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Conditional requests on the sampling server: class labels (numbers and names), classifier-free guidance,
 * image-to-image and inpainting. Requests of every kind share the steps of one batch (guided rows with their
 * unconditional copies beside plain and inpainting rows) and each equals, bit for bit, the {@link Sampler} run that
 * {@code sample} makes with the same seed and settings; bad conditioning fields get 400 naming the field before
 * anything reaches the worker; a served class-conditional checkpoint gives the PNGs {@code sample} writes.
 */
class ConditionalServeTest {
    static final ClassLabels ANIMALS = new ClassLabels(List.of("cat", "dog", "bird"), 3);
    static Backend cpu;
    static ServedModel cond, uncond, nonull;
    static long weightsBytes, weightsBuffers;
    SampleServer server;

    @TempDir
    Path dir;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        TestRandom rnd = TestRandom.fresh();
        cond = ServeTestSupport.conditionalModel(cpu, "cond", rnd.nextLong(), ANIMALS);
        uncond = ServeTestSupport.model(cpu, "uncond", rnd.nextLong(), ServeTestSupport.plainConfig());
        nonull = ServeTestSupport.conditionalModel(cpu, "nonull", rnd.nextLong(), new ClassLabels(List.of("a", "b", "c"), -1));
        weightsBytes = cpu.liveBytes();
        weightsBuffers = cpu.liveBuffers();
    }

    @AfterAll
    static void closeAll() {
        nonull.close();
        uncond.close();
        cond.close();
        cpu.close();
    }

    @AfterEach
    void stop() {
        if (server != null) server.close();
        server = null;
    }

    static final SampleRequest.Limits LIMITS = new SampleRequest.Limits(4, 200, 1 << 20, 120_000, 120_000);

    int start(int maxBatch, long idleMs) throws IOException {
        server = new SampleServer(cpu, List.of(cond, uncond, nonull), new SampleServer.Config("127.0.0.1", 0, LIMITS,
                new BatchEngine.Options(maxBatch, 64, idleMs), 5000));
        return server.port();
    }

    /**
     * A request and how {@code sample} would be asked for it: labels (resolved per image, or null), guidance, an init
     * image and mask as PNG bytes, strength and RePaint's jumps.
     */
    record Case(ServedModel model, String sampler, int steps, float eta, long seed, int n, boolean clipped, String labelsJson,
                int[] labels, float scale, byte[] image, byte[] mask, double strength, int jumpLength, int jumpNSample) {
        String json() {
            StringBuilder b = new StringBuilder("{\"model\":\"" + model.name() + "\",\"sampler\":\"" + sampler
                    + "\",\"steps\":" + steps + ",\"seed\":" + seed + ",\"n\":" + n + ",\"output\":\"json\"");
            if (eta != 0) b.append(",\"eta\":").append(eta);
            if (clipped) b.append(",\"use_clipped_model_output\":true");
            if (labelsJson != null) b.append(",\"class_labels\":").append(labelsJson);
            if (scale != 1f) b.append(",\"guidance_scale\":").append(scale);
            if (image != null) b.append(",\"init_image\":\"").append(Base64.getEncoder().encodeToString(image)).append('"');
            if (mask != null) {
                b.append(",\"mask_image\":\"").append(Base64.getEncoder().encodeToString(mask)).append('"');
                b.append(",\"jump_length\":").append(jumpLength).append(",\"jump_n_sample\":").append(jumpNSample);
            } else if (image != null) {
                b.append(",\"strength\":").append(strength);
            }
            return b.append('}').toString();
        }

        String describe() {
            return model.name() + " " + sampler + "-" + steps + " n " + n + " labels " + labelsJson + " scale " + scale
                    + (image != null ? mask != null ? " inpaint " + jumpLength + "/" + jumpNSample : " img2img " + strength : "");
        }

        Case withScale(float s) {
            return new Case(model, sampler, steps, eta, seed, n, clipped, labelsJson, labels, s, image, mask, strength,
                    jumpLength, jumpNSample);
        }
    }

    static Case plainCase(ServedModel m, String sampler, int steps, long seed, int n, String labelsJson, int[] labels, float scale) {
        return new Case(m, sampler, steps, 0f, seed, n, false, labelsJson, labels, scale, null, null, 1, 1, 1);
    }

    /** What {@code sample} computes: the image files read as SampleCommand reads them, one Sampler run of batch n. */
    float[] reference(Case k) throws IOException {
        SamplerScheduler s = SamplerScheduler.fromConfig(k.sampler(), k.eta(), k.model().schedulerConfig());
        if (k.clipped()) s = ((DdimScheduler) s).withUseClippedModelOutput(true);
        float[] image = null, mask = null;
        if (k.image() != null) {
            Path f = Files.write(dir.resolve("init.png"), k.image());
            image = ImageInputs.perImage("init", ImageInputs.readImage(f, H, W, C), k.n(), H, W, C, false);
        }
        if (k.mask() != null) {
            Path f = Files.write(dir.resolve("mask.png"), k.mask());
            mask = ImageInputs.perImage("mask", ImageInputs.readMask(f, H, W), k.n(), H, W, C, true);
        }
        ClassLabels classes = k.model().classes();
        Sampler.Inputs in = new Sampler.Inputs(k.labels(), classes == null ? -1 : classes.nullClass(), k.scale(), image, mask,
                k.strength(), k.jumpLength(), k.jumpNSample());
        try (Sampler sm = new Sampler(k.model().model(), k.model().schedule(), s, k.steps(), k.n(), H, W)) {
            return sm.run(k.seed(), 0, k.n(), null, in, null);
        }
    }

    static byte[] png(BufferedImage img) throws IOException {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        assertTrue(ImageIO.write(img, "png", o));
        return o.toByteArray();
    }

    /** A random image, grey or RGB, of any size (the server resizes it as sample does). */
    static byte[] randomPng(TestRandom rnd, int w, int h, boolean rgb) throws IOException {
        BufferedImage img = new BufferedImage(w, h, rgb ? BufferedImage.TYPE_INT_RGB : BufferedImage.TYPE_BYTE_GRAY);
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int v = rnd.nextInt(256);
                img.setRGB(x, y, rgb ? rnd.nextInt(1 << 24) : (v << 16) | (v << 8) | v);
            }
        }
        return png(img);
    }

    /** A mask keeping (white) the left half and a corner, generating (black) the rest. */
    static byte[] maskPng() throws IOException {
        BufferedImage img = new BufferedImage(W, H, BufferedImage.TYPE_BYTE_GRAY);
        for (int y = 0; y < H; y++) {
            for (int x = 0; x < W; x++) {
                int v = x < W / 2 || (x == W - 1 && y == 0) ? 255 : 0;
                img.setRGB(x, y, (v << 16) | (v << 8) | v);
            }
        }
        return png(img);
    }

    // ---------------------------------------------------------------------------------------------

    @Test
    void mixedConditionalRequestsShareStepsAndEqualSamplerRunsBitForBit() throws Exception {
        int port = start(24, 100);
        TestRandom rnd = TestRandom.fresh();
        byte[] grey = randomPng(rnd, W, H, false), photo = randomPng(rnd, 13, 10, true), mask = maskPng();
        List<Case> cases = List.of(
                // guided, by name, one label for both images
                plainCase(cond, "ddim", 6, rnd.nextLong(), 2, "[\"dog\"]", new int[] {1, 1}, 3f),
                // guided at another scale, one label per image, another sampler
                plainCase(cond, "dpmsolver++", 5, rnd.nextLong(), 3, "[0, 2, 1]", new int[] {0, 2, 1}, 0.5f),
                // conditional, not guided
                plainCase(cond, "ddpm", 4, rnd.nextLong(), 1, "1", new int[] {1}, 1f),
                // the null class (no labels), DDIM with eta
                new Case(cond, "ddim", 5, 0.5f, rnd.nextLong(), 1, false, null, null, 1f, null, null, 1, 1, 1),
                // guided inpainting with RePaint's jumps
                new Case(cond, "ddim", 8, 0f, rnd.nextLong(), 2, false, "[\"bird\"]", new int[] {2, 2}, 2f, grey, mask, 1, 2, 3),
                // image-to-image of a resized RGB image, DDIM with use_clipped_model_output
                new Case(cond, "ddim", 10, 0f, rnd.nextLong(), 1, true, "[\"cat\"]", new int[] {0}, 1f, photo, null, 0.6, 1, 1),
                // an unconditional model: inpainting, image-to-image and plain sampling in one batch
                new Case(uncond, "dpmsolver++", 6, 0f, rnd.nextLong(), 2, false, null, null, 1f, grey, mask, 1, 3, 2),
                new Case(uncond, "ddpm", 5, 0f, rnd.nextLong(), 1, false, null, null, 1f, grey, null, 0.5, 1, 1),
                plainCase(uncond, "ddim", 5, rnd.nextLong(), 2, null, null, 1f));
        Map<String, ServedModel> models = server.models();
        // hold the worker until every request is queued, so that all are admitted together and share steps
        SampleServerTest.Gate gate = new SampleServerTest.Gate();
        AtomicInteger maxCondRows = new AtomicInteger();
        server.engine().iterationHook = () -> {
            gate.run();
            maxCondRows.accumulateAndGet(server.engine().rowsInFlight().get("cond"), Math::max);
        };
        gate.awaitBlocked();
        ExecutorService pool = Executors.newFixedThreadPool(cases.size());
        try {
            List<Future<HttpResponse<byte[]>>> http = new ArrayList<>();
            List<BatchEngine.Job> direct = new ArrayList<>();
            for (Case k : cases) {
                direct.add(server.engine().submit(SampleRequest.parse(k.json().getBytes(StandardCharsets.UTF_8), models, LIMITS)));
                http.add(pool.submit(() -> post(port, k.json())));
            }
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (server.engine().queueDepth() < 2 * cases.size() && System.nanoTime() < until) Thread.sleep(5);
            assertEquals(2 * cases.size(), server.engine().queueDepth());
            gate.release();
            for (int i = 0; i < cases.size(); i++) {
                Case k = cases.get(i);
                String ctx = k.describe() + ", " + rnd.describe();
                float[] ref = reference(k);
                float[] got = direct.get(i).result().get(120, TimeUnit.SECONDS);
                Tolerance.assertBitIdentical("samples of " + ctx, ref, got, rnd.describe());
                HttpResponse<byte[]> r = http.get(i).get(120, TimeUnit.SECONDS);
                assertEquals(200, r.statusCode(), ctx + ": " + text(r));
                Map<String, Object> j = Json.parseObject(text(r));
                List<?> imgs = (List<?>) j.get("images");
                for (int g = 0; g < k.n(); g++) {
                    assertArrayEquals(Images.png(Images.image(ref, g, C, H, W)), Base64.getDecoder().decode((String) imgs.get(g)),
                            "image " + g + " of " + ctx);
                }
                if (k.model() == cond) {
                    List<Long> labels = new ArrayList<>();
                    for (int g = 0; g < k.n(); g++) labels.add((long) (k.labels() == null ? ANIMALS.nullClass() : k.labels()[g]));
                    assertEquals(labels, j.get("class_labels"), ctx);
                    assertEquals((double) k.scale(), j.get("guidance_scale"), ctx);
                } else {
                    assertFalse(j.containsKey("class_labels"), ctx);
                }
            }
            // guidance changed the images (the unconditional copies were used) ...
            Case guided = cases.get(0);
            assertFalse(Arrays.equals(reference(guided), reference(guided.withScale(1f))), "guidance had no effect");
            // ... and inpainting kept the known pixels exactly, generating the others
            float[] inpainted = direct.get(4).result().get(), known = ImageInputs.readImage(Files.write(dir.resolve("k.png"), grey), H, W, C);
            float[] keep = ImageInputs.readMask(Files.write(dir.resolve("m.png"), mask), H, W);
            int kept = 0, generated = 0;
            for (int g = 0; g < 2; g++) {
                for (int p = 0; p < H * W; p++) {
                    float v = inpainted[g * H * W + p];
                    if (keep[p] == 1f) {
                        assertEquals(known[p], v, 0f, "kept pixel " + p + " of image " + g);
                        kept++;
                    } else if (v != known[p]) {
                        generated++;
                    }
                }
            }
            assertEquals(2 * (H * W / 2 + 1), kept);
            assertTrue(generated > H * W / 2, "the masked pixels were not generated: " + generated);
        } finally {
            gate.release();
            server.engine().iterationHook = null;
            pool.shutdownNow();
        }
        assertEquals(20, maxCondRows.get(), "the conditional model's ten images of each path shared a step");
        // idle: the worker frees the batches (x with room for the copies, known and mask rows) and workspaces
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        long live = -1;
        while (System.nanoTime() < until && (live = cpu.liveBytes()) != weightsBytes) Thread.sleep(20);
        assertEquals(weightsBytes, live, "native live bytes after the requests");
        assertEquals(weightsBuffers, cpu.liveBuffers());
        assertEquals(cases.size(), server.metrics().requests("ok"), "the HTTP requests (the direct ones are not counted)");
    }

    @Test
    void badConditioningFieldsGet400NamingTheFieldBeforeReachingTheWorker() throws Exception {
        long before = cpu.liveBytes();
        int port = start(4, 1000);
        TestRandom rnd = TestRandom.fresh();
        String img = Base64.getEncoder().encodeToString(randomPng(rnd, W, H, false));
        String huge = Base64.getEncoder().encodeToString(declaredSize(randomPng(rnd, 2, 2, false), 100_000, 100_000));
        String tall = Base64.getEncoder().encodeToString(declaredSize(randomPng(rnd, 2, 2, false), 16, 5000));
        String[][] cases = {
            {"{\"model\":\"uncond\",\"class_labels\":[1]}", "class_labels", "unconditional"},
            {"{\"model\":\"cond\",\"class_labels\":[3]}", "class_labels", "0 to 2"}, // the null class is no class
            {"{\"model\":\"cond\",\"class_labels\":[-1]}", "class_labels", "not a class"},
            {"{\"model\":\"cond\",\"class_labels\":[\"wolf\"]}", "class_labels", "cat, dog, bird"},
            {"{\"model\":\"cond\",\"class_labels\":[0, 1],\"n\":3,\"output\":\"json\"}", "class_labels", "one per image (3)"},
            {"{\"model\":\"cond\",\"class_labels\":[true]}", "class_labels", "class number or name"},
            {"{\"model\":\"cond\",\"class_labels\":1.5}", "class_labels", "class number or name"},
            {"{\"model\":\"nonull\"}", "class_labels", "without a null class"},
            {"{\"model\":\"uncond\",\"guidance_scale\":2}", "guidance_scale", "unconditional"},
            {"{\"model\":\"nonull\",\"class_labels\":0,\"guidance_scale\":2}", "guidance_scale", "null class"},
            {"{\"model\":\"cond\",\"guidance_scale\":-1}", "guidance_scale", ">= 0"},
            {"{\"model\":\"cond\",\"guidance_scale\":1e39}", "guidance_scale", "finite"},
            {"{\"model\":\"cond\",\"guidance_scale\":\"2\"}", "guidance_scale", "number"},
            {"{\"model\":\"cond\",\"guidance_scale\":NaN}", "body", "JSON"},
            {"{\"model\":\"cond\",\"mask_image\":\"" + img + "\"}", "mask_image", "needs init_image"},
            {"{\"model\":\"cond\",\"strength\":0.5}", "strength", "init_image"},
            {"{\"model\":\"cond\",\"init_image\":\"" + img + "\",\"mask_image\":\"" + img + "\",\"strength\":0.5}", "strength", "without mask_image"},
            {"{\"model\":\"cond\",\"init_image\":\"" + img + "\",\"strength\":0}", "strength", "(0, 1]"},
            {"{\"model\":\"cond\",\"init_image\":\"" + img + "\",\"strength\":1.5}", "strength", "(0, 1]"},
            {"{\"model\":\"cond\",\"steps\":5,\"init_image\":\"" + img + "\",\"strength\":0.1}", "strength", "runs no step"},
            {"{\"model\":\"cond\",\"init_image\":\"" + img + "\",\"jump_length\":2}", "jump_length", "mask_image"},
            {"{\"model\":\"cond\",\"jump_n_sample\":2}", "jump_n_sample", "mask_image"},
            {"{\"model\":\"cond\",\"init_image\":\"" + img + "\",\"mask_image\":\"" + img + "\",\"jump_n_sample\":0}", "jump_n_sample", "must be in [1, "},
            // 50 steps, jumps of 1 revisited 100 times: 4901 model calls, above 10 x the max steps of 200
            {"{\"model\":\"cond\",\"steps\":50,\"init_image\":\"" + img + "\",\"mask_image\":\"" + img
                    + "\",\"jump_length\":1,\"jump_n_sample\":100}", "jump_n_sample", "4901 model calls"},
            {"{\"model\":\"cond\",\"init_image\":\"aGVsbG8=\"}", "init_image", "not a readable"},
            {"{\"model\":\"cond\",\"init_image\":\"\"}", "init_image", "empty"},
            {"{\"model\":\"cond\",\"init_image\":7}", "init_image", "string"},
            {"{\"model\":\"cond\",\"init_image\":\"data:image/png,abc\"}", "init_image", "base64"},
            {"{\"model\":\"cond\",\"init_image\":\"" + huge + "\"}", "init_image", "100000x100000"},
            {"{\"model\":\"cond\",\"init_image\":\"" + tall + "\"}", "init_image", "16x5000"},
            {"{\"model\":\"cond\",\"init_image\":\"" + img + "\",\"mask_image\":\"" + huge + "\"}", "mask_image", "100000x100000"},
            {"{\"model\":\"cond\",\"sampler\":\"dpmsolver++\",\"use_clipped_model_output\":true}", "use_clipped_model_output", "ddim only"},
            {"{\"model\":\"cond\",\"use_clipped_model_output\":1}", "use_clipped_model_output", "true or false"},
        };
        for (String[] c : cases) {
            HttpResponse<byte[]> r = post(port, c[0]);
            String what = "body " + (c[0].length() > 120 ? c[0].substring(0, 120) + "..." : c[0]) + " -> " + text(r);
            assertEquals(400, r.statusCode(), what);
            Map<String, Object> err = Json.parseObject(text(r));
            assertEquals(c[1], err.get("field"), what);
            String msg = (String) err.get("error");
            assertTrue(msg.startsWith(c[1] + ": ") && msg.contains(c[2]), what);
        }
        assertEquals(cases.length, server.metrics().requests("bad_request"));
        assertEquals(0, server.metrics().stepsObserved(), "no bad request reached the worker");
        assertEquals(before, cpu.liveBytes(), "nothing was allocated for them");
        // the same fields, well formed, are accepted
        HttpResponse<byte[]> ok = post(port, "{\"model\":\"nonull\",\"steps\":3,\"class_labels\":\"b\"}");
        assertEquals(200, ok.statusCode(), text(ok));
        ok = post(port, "{\"model\":\"cond\",\"steps\":3,\"guidance_scale\":0,\"init_image\":\"data:image/png;base64," + img
                + "\",\"strength\":1}");
        assertEquals(200, ok.statusCode(), text(ok));
    }

    /** A PNG whose header declares another size (its CRC fixed), so that only the declared size is wrong. */
    static byte[] declaredSize(byte[] png, int width, int height) {
        byte[] b = png.clone();
        ByteBuffer bb = ByteBuffer.wrap(b); // signature (8), length (4), "IHDR" (4), width, height, ...
        bb.putInt(16, width).putInt(20, height);
        CRC32 crc = new CRC32();
        crc.update(b, 12, 17);
        bb.putInt(29, (int) crc.getValue());
        return b;
    }

    /**
     * A class-conditional checkpoint with class_labels.json, served from its folder, gives the PNGs {@code sample}
     * writes: labels by name, guided inpainting with jumps, and image-to-image of an RGB image of another size
     * (decoded from the request's bytes, resized and converted as sample does from the file).
     */
    @Test
    void servedCheckpointGivesWhatSampleWrites() throws Exception {
        TestRandom rnd = TestRandom.fresh();
        Path ck = ServeTestSupport.conditionalCheckpoint(dir.resolve("ck"), rnd.nextLong(), ANIMALS);
        byte[] photo = randomPng(rnd, 11, 14, true), mask = maskPng();
        Path photoFile = Files.write(dir.resolve("photo.png"), photo), maskFile = Files.write(dir.resolve("mask.png"), mask);
        long seed = rnd.nextLong();
        long before = cpu.liveBytes();
        try (ServedModel served = ServedModel.load("animals", ck, false, cpu)) {
            assertEquals(ANIMALS, served.classes());
            server = new SampleServer(cpu, List.of(served), new SampleServer.Config("127.0.0.1", 0, LIMITS,
                    new BatchEngine.Options(4, 8, 1000), 5000));
            try {
                checkAgainstSample(ck, photo, mask, photoFile, maskFile, seed);
            } finally {
                server.close(); // before the model it serves
                server = null;
            }
        }
        assertEquals(before, cpu.liveBytes());
    }

    /** Runs sample (guided inpainting, then image-to-image) and the same requests on the server; compares the PNGs. */
    private void checkAgainstSample(Path ck, byte[] photo, byte[] mask, Path photoFile, Path maskFile, long seed) throws Exception {
        String[][] runs = {
            {"--class-labels", "dog,bird", "--guidance-scale", "2.5", "--init-image", photoFile.toString(), "--mask-image",
                maskFile.toString(), "--jump-length", "2", "--jump-n-sample", "2"},
            {"--class-labels", "cat", "--init-image", photoFile.toString(), "--strength", "0.7"},
        };
        String[] bodies = {
            ",\"class_labels\":[\"dog\",\"bird\"],\"guidance_scale\":2.5,\"init_image\":\"" + b64(photo) + "\",\"mask_image\":\""
                    + b64(mask) + "\",\"jump_length\":2,\"jump_n_sample\":2",
            ",\"class_labels\":\"cat\",\"init_image\":\"" + b64(photo) + "\",\"strength\":0.7",
        };
        for (int k = 0; k < runs.length; k++) {
            Path out = dir.resolve("samples" + k);
            List<String> args = new ArrayList<>(List.of("sample", "--checkpoint", ck.toString(), "--sampler", "ddim",
                    "--steps", "6", "--n", "2", "--seed", Long.toString(seed), "--out", out.toString(), "--backend", "cpu"));
            args.addAll(List.of(runs[k]));
            ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
            int rc = Main.run(args.toArray(String[]::new), new PrintStream(o, true, StandardCharsets.UTF_8),
                    new PrintStream(e, true, StandardCharsets.UTF_8));
            assertEquals(0, rc, String.join(" ", args) + ": " + e.toString(StandardCharsets.UTF_8));
            HttpResponse<byte[]> r = post(server.port(), "{\"sampler\":\"ddim\",\"steps\":6,\"n\":2,\"seed\":" + seed + bodies[k] + "}");
            assertEquals(200, r.statusCode(), text(r));
            List<?> imgs = (List<?>) Json.parseObject(text(r)).get("images");
            for (int g = 0; g < 2; g++) {
                byte[] expected = Files.readAllBytes(out.resolve(String.format(Locale.ROOT, "sample_%05d.png", g)));
                assertArrayEquals(expected, Base64.getDecoder().decode((String) imgs.get(g)), "run " + k + " image " + g);
            }
        }
    }

    static String b64(byte[] b) {
        return Base64.getEncoder().encodeToString(b);
    }
}
