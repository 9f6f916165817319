package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.testutil.TestRandom;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** ProceduralDataset, BatchSampler (flips, exact state) and the Fashion-MNIST IDX reader. */
class DatasetTest {
    @Test
    void proceduralImagesAreDeterministicVariedAndInRange() {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        ProceduralDataset a = new ProceduralDataset(100, 13, 7, 3, seed), b = new ProceduralDataset(100, 13, 7, 3, seed);
        float[] x = new float[a.imageFloats()], y = new float[a.imageFloats()], z = new float[a.imageFloats()];
        int bright = 0;
        for (int i = 0; i < 100; i++) {
            a.image(i, x, 0);
            b.image(i, y, 0);
            assertArrayEquals(x, y, "image " + i + " not deterministic " + rnd.describe());
            for (float v : x) assertTrue(v >= -1f && v <= 1f, "value " + v + " outside [-1, 1] " + rnd.describe());
            for (float v : x) if (v > -1f) bright++;
            a.image((i + 1) % 100, z, 0);
            assertFalse(Arrays.equals(x, z), "images " + i + " and " + (i + 1) + " equal " + rnd.describe());
        }
        double fraction = bright / (100.0 * x.length);
        assertTrue(fraction > 0.05 && fraction < 0.95, "fraction of shape pixels " + fraction + " " + rnd.describe());
        new ProceduralDataset(100, 13, 7, 3, seed + 1).image(0, y, 0);
        a.image(0, x, 0);
        assertFalse(Arrays.equals(x, y), "another seed gives the same image");
        assertThrows(IllegalArgumentException.class, () -> new ProceduralDataset(0, 8, 8, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new ProceduralDataset(1, 3, 8, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new ProceduralDataset(1, 8, 8, 0, 0));
        assertThrows(IndexOutOfBoundsException.class, () -> a.image(100, x, 0));
        assertThrows(IndexOutOfBoundsException.class, () -> a.image(0, x, 1));
    }

    static float[] mirror(float[] img, int h, int w, int c) {
        float[] m = new float[img.length];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) System.arraycopy(img, (y * w + x) * c, m, (y * w + w - 1 - x) * c, c);
        }
        return m;
    }

    /**
     * With one image in the set, every sample is that image or its mirror; both occur; without flips
     * only the image. A sampler rebuilt from {@link BatchSampler#state()} continues the same sequence.
     */
    @Test
    void samplerFlipsAndResumesExactly() {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        ProceduralDataset one = null;
        float[] img = null, mir = null;
        for (long s = seed; ; s++) { // an image that is not itself symmetric
            one = new ProceduralDataset(1, 8, 6, 2, s);
            img = new float[one.imageFloats()];
            one.image(0, img, 0);
            mir = mirror(img, 8, 6, 2);
            if (!Arrays.equals(img, mir)) break;
        }
        int n = one.imageFloats();
        BatchSampler flips = new BatchSampler(one, seed, true), plain = new BatchSampler(one, seed, false);
        float[] batch = new float[5 * n];
        int mirrored = 0, straight = 0;
        for (int k = 0; k < 20; k++) {
            flips.next(batch, 5);
            for (int b = 0; b < 5; b++) {
                float[] s = Arrays.copyOfRange(batch, b * n, (b + 1) * n);
                if (Arrays.equals(s, img)) straight++;
                else if (Arrays.equals(s, mir)) mirrored++;
                else throw new AssertionError("sample is neither the image nor its mirror " + rnd.describe());
            }
            plain.next(batch, 5);
            for (int b = 0; b < 5; b++) assertArrayEquals(img, Arrays.copyOfRange(batch, b * n, (b + 1) * n));
        }
        assertTrue(mirrored > 20 && straight > 20, "flips " + mirrored + " of 100 " + rnd.describe());

        ProceduralDataset many = new ProceduralDataset(1000, 8, 6, 2, seed);
        BatchSampler s1 = new BatchSampler(many, seed, true);
        float[] a = new float[3 * n], b2 = new float[3 * n];
        s1.next(a, 3);
        BatchSampler s2 = new BatchSampler(many, s1.state(), true);
        s1.next(a, 3);
        s2.next(b2, 3);
        assertArrayEquals(a, b2, "a sampler rebuilt from state() must continue the sequence");
        assertThrows(IllegalArgumentException.class, () -> s1.next(new float[n * 3 + 1], 3));
    }

    @Test
    void splitMixIntsAreUniform() {
        SplitMix64 r = new SplitMix64(TestRandom.fresh().nextLong());
        int[] counts = new int[7];
        for (int i = 0; i < 70000; i++) counts[r.nextInt(7)]++;
        for (int c : counts) assertTrue(Math.abs(c - 10000) < 600, "counts " + Arrays.toString(counts)); // ~6 sigma
        assertThrows(IllegalArgumentException.class, () -> r.nextInt(0));
    }

    // ---- Fashion-MNIST IDX files

    static byte[] idx(int magic, int[] dims, byte[] data) throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        DataOutputStream d = new DataOutputStream(bo);
        d.writeInt(magic);
        for (int x : dims) d.writeInt(x);
        d.write(data);
        d.flush();
        return bo.toByteArray();
    }

    static byte[] gzip(byte[] raw) throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        try (GZIPOutputStream g = new GZIPOutputStream(bo)) {
            g.write(raw);
        }
        return bo.toByteArray();
    }

    @Test
    void idxImagesAndLabelsAreRead(@TempDir Path dir) throws IOException {
        TestRandom rnd = TestRandom.fresh();
        int n = 3, rows = 5, cols = 7;
        byte[] px = new byte[n * rows * cols];
        for (int i = 0; i < px.length; i++) px[i] = (byte) rnd.nextInt(256);
        px[0] = 0;
        px[1] = (byte) 255;
        Files.write(dir.resolve(FashionMnist.TRAIN_IMAGES), gzip(idx(0x803, new int[] {n, rows, cols}, px)));
        Files.write(dir.resolve(FashionMnist.TRAIN_LABELS), gzip(idx(0x801, new int[] {n}, new byte[] {9, 0, (byte) 200})));
        FashionMnist f = FashionMnist.load(dir, true);
        assertEquals(n, f.size());
        assertEquals(rows, f.height());
        assertEquals(cols, f.width());
        assertEquals(1, f.channels());
        float[] img = new float[f.imageFloats() + 2];
        for (int i = 0; i < n; i++) {
            f.image(i, img, 2);
            for (int y = 0; y < rows; y++) {
                for (int x = 0; x < cols; x++) {
                    int p = px[(i * rows + y) * cols + x] & 0xFF;
                    assertEquals(p, f.pixel(i, y, x));
                    assertEquals(p / 127.5f - 1f, img[2 + y * cols + x], 0f);
                }
            }
        }
        f.image(0, img, 0);
        assertEquals(-1f, img[0], 0f);
        assertEquals(1f, img[1], 0f);
        assertArrayEquals(new int[] {9, 0, 200}, FashionMnist.readLabels(dir.resolve(FashionMnist.TRAIN_LABELS)));
        IOException e = assertThrows(IOException.class, () -> FashionMnist.load(dir, false));
        assertTrue(e.getMessage().contains(FashionMnist.TEST_IMAGES), e.getMessage());
    }

    @Test
    void corruptIdxFilesAreRefused(@TempDir Path dir) throws IOException {
        byte[] px = new byte[2 * 4 * 4];
        Arrays.fill(px, (byte) 7);
        byte[] good = idx(0x803, new int[] {2, 4, 4}, px);
        record Case(String name, byte[] file, String expect) {}
        byte[] gz = gzip(good);
        Case[] cases = {
            new Case("payload short", gzip(Arrays.copyOf(good, good.length - 1)), "truncated"),
            new Case("header short", gzip(Arrays.copyOf(good, 10)), "truncated"),
            new Case("trailing bytes", gzip(Arrays.copyOf(good, good.length + 3)), "trailing"),
            new Case("gzip cut", Arrays.copyOf(gz, gz.length - 12), "truncated"),
            new Case("not gzip", good, "not a gzip"),
            new Case("label magic", gzip(idx(0x801, new int[] {2}, new byte[2])), "magic"),
            new Case("zero images", gzip(idx(0x803, new int[] {0, 4, 4}, new byte[0])), "bad sizes"),
            new Case("negative rows", gzip(idx(0x803, new int[] {1, -4, 4}, new byte[0])), "bad sizes"),
            // announces 822 MB: refused as truncated without allocating them up front
            new Case("huge announced", gzip(idx(0x803, new int[] {1 << 20, 28, 28}, new byte[16])), "truncated"),
            new Case("over 2^31", gzip(idx(0x803, new int[] {1 << 20, 4096, 4096}, new byte[0])), "bad sizes"),
        };
        for (Case c : cases) {
            Path p = dir.resolve(c.name().replace(' ', '_') + ".gz");
            Files.write(p, c.file());
            IOException e = assertThrows(IOException.class, () -> FashionMnist.readImages(p), c.name());
            assertTrue(e.getMessage().contains(p.toString()) && e.getMessage().contains(c.expect()),
                    c.name() + ": '" + e.getMessage() + "' should name the file and say '" + c.expect() + "'");
        }
        Path lab = dir.resolve("labels.gz");
        Files.write(lab, gzip(Arrays.copyOf(idx(0x801, new int[] {5}, new byte[5]), 10)));
        IOException e = assertThrows(IOException.class, () -> FashionMnist.readLabels(lab));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
        // the good file itself reads
        Path ok = dir.resolve("ok.gz");
        Files.write(ok, gz);
        assertEquals(2, FashionMnist.readImages(ok).size());
    }

    /** The real files of the dataset-fashion-mnist package, when installed (not needed by the other tests). */
    @Test
    void installedFashionMnistReads() throws IOException {
        Assumptions.assumeTrue(Files.isRegularFile(FashionMnist.DEFAULT_DIRECTORY.resolve(FashionMnist.TRAIN_IMAGES)),
                "dataset-fashion-mnist is not installed at " + FashionMnist.DEFAULT_DIRECTORY);
        FashionMnist f = FashionMnist.load(FashionMnist.DEFAULT_DIRECTORY, true);
        assertEquals(60000, f.size());
        assertEquals(28, f.height());
        assertEquals(28, f.width());
        int[] labels = FashionMnist.readLabels(FashionMnist.DEFAULT_DIRECTORY.resolve(FashionMnist.TRAIN_LABELS));
        assertEquals(60000, labels.length);
        for (int l : labels) assertTrue(l >= 0 && l <= 9, "label " + l);
        assertEquals(10000, FashionMnist.load(FashionMnist.DEFAULT_DIRECTORY, false).size());
    }
}
