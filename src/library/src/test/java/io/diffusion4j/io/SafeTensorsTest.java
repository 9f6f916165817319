package io.diffusion4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.testutil.TestRandom;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafeTensorsTest {

    @TempDir
    Path dir;

    /** 8-byte little-endian header length, header text, data: a file image built by hand. */
    private static byte[] image(String header, byte[] data) {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h).put(data);
        return b.array();
    }

    private static byte[] hex(String s) {
        return HexFormat.of().parseHex(s.replace(" ", ""));
    }

    private static String info(String dtype, String shape, long begin, long end) {
        return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + "," + end + "]}";
    }

    private static SafeTensorsException refused(byte[] img, String expected) {
        SafeTensorsException e = assertThrows(SafeTensorsException.class, () -> SafeTensors.read(img).close(),
                "should refuse: " + expected);
        assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' should contain '" + expected + "'");
        return e;
    }

    // ---- interop with the format as specified ----------------------------------------------------

    /**
     * The exact bytes the reference implementation produces for {"a": [1, -2] (F32), "b": [[0.5]]}
     * with metadata {"format": "pt"}: metadata first, tensors in data order, compact JSON, header
     * padded with spaces to a multiple of 8 (141 + 3 = 144), little-endian floats.
     */
    @Test
    void writerProducesTheReferenceBytes() throws IOException {
        String header = "{\"__metadata__\":{\"format\":\"pt\"},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[8,12]}}";
        assertEquals(141, header.length());
        byte[] expected = new byte[8 + 144 + 12];
        expected[0] = (byte) 144; // u64 LE header length
        byte[] h = (header + "   ").getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(h, 0, expected, 8, 144);
        byte[] data = hex("0000803f 000000c0 0000003f"); // 1.0f, -2.0f, 0.5f little-endian
        System.arraycopy(data, 0, expected, 152, 12);

        List<SafeTensors.Entry> tensors = List.of(
                new SafeTensors.Entry("a", new long[] {2}, new float[] {1f, -2f}),
                new SafeTensors.Entry("b", new long[] {1, 1}, new float[] {0.5f}));
        byte[] mem = SafeTensors.toBytes(tensors, Map.of("format", "pt"));
        assertArrayEquals(expected, mem);

        Path p = dir.resolve("ref.safetensors");
        SafeTensors.write(p, tensors, Map.of("format", "pt"));
        assertArrayEquals(expected, Files.readAllBytes(p), "file writer and in-memory writer agree");

        try (SafeTensors.Reader r = SafeTensors.read(expected)) {
            assertEquals(Map.of("format", "pt"), r.metadata());
            assertEquals(List.of("a", "b"), r.tensors().stream().map(SafeTensors.TensorInfo::name).toList());
            assertEquals(List.of(1L, 1L), r.info("b").shape());
            assertEquals(8, r.info("b").begin());
            assertArrayEquals(new float[] {1f, -2f}, r.readFloat32("a"));
            assertArrayEquals(new float[] {0.5f}, r.readFloat32("b"));
        }
    }

    @Test
    void readsHalfBfloatAndDoubleConvertingToFloat32() throws IOException {
        String header = "{\"h\":" + info("F16", "[2,3]", 0, 12)
                + ",\"bf\":" + info("BF16", "[3]", 12, 18)
                + ",\"d\":" + info("F64", "[2]", 18, 34)
                + ",\"s\":" + info("F32", "[]", 34, 38)
                + ",\"z\":" + info("F32", "[0,5]", 38, 38) + "}";
        byte[] data = hex(
                "003c 00c0 ff7b 0100 007c 00fc" // F16: 1, -2, 65504, 2^-24 (subnormal), +inf, -inf
                + "803f c0bf 497f"              // BF16: 1, -1.5, 0x7f49 -> 0x7f490000
                + "9a9999999999b93f 000000000000f0bf" // F64: 0.1, -1
                + "0000c07f");                  // F32 scalar: NaN (quiet)
        byte[] img = image(header, data);
        try (SafeTensors.Reader r = SafeTensors.read(img)) {
            assertArrayEquals(new float[] {1f, -2f, 65504f, 0x1p-24f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY},
                    r.readFloat32("h"));
            assertArrayEquals(new float[] {1f, -1.5f, Float.intBitsToFloat(0x7f490000)}, r.readFloat32("bf"));
            assertArrayEquals(new float[] {0.1f, -1f}, r.readFloat32("d"));
            assertTrue(Float.isNaN(r.readFloat32("s")[0]));
            assertEquals(1, r.info("s").elementCount(), "a scalar has one element");
            assertEquals(0, r.readFloat32("z").length);
            float[] dst = new float[10];
            Arrays.fill(dst, 7f);
            r.readFloat32("bf", dst, 4);
            assertArrayEquals(new float[] {7, 7, 7, 7, 1f, -1.5f, Float.intBitsToFloat(0x7f490000), 7, 7, 7}, dst);
            assertThrows(IllegalArgumentException.class, () -> r.readFloat32("bf", dst, 8));
            assertThrows(IllegalArgumentException.class, () -> r.readFloat32("nope"));
        }
    }

    @Test
    void f64OutsideFloatRangeIsRefusedNotInfinity() throws IOException {
        byte[] img = image("{\"d\":" + info("F64", "[1]", 0, 8) + "}", hex("a55cc3f129633d48")); // 1e40 > Float.MAX_VALUE
        try (SafeTensors.Reader r = SafeTensors.read(img)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> r.readFloat32("d"));
            assertTrue(e.getMessage().contains("outside the float32 range"), e.getMessage());
        }
    }

    @Test
    void knownButNonFloatDtypeOpensButDoesNotLoadAsFloat() throws IOException {
        byte[] img = image("{\"i\":" + info("I64", "[1]", 0, 8) + "}", new byte[8]);
        try (SafeTensors.Reader r = SafeTensors.read(img)) {
            assertEquals(SafeTensors.DType.I64, r.info("i").dtype());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> r.readFloat32("i"));
            assertTrue(e.getMessage().contains("cannot be loaded as float32"), e.getMessage());
        }
    }

    // ---- round trips -----------------------------------------------------------------------------

    @Test
    void randomRoundTripThroughFiles() throws IOException {
        TestRandom rnd = TestRandom.fresh();
        for (int round = 0; round < 5; round++) {
            List<SafeTensors.Entry> tensors = new ArrayList<>();
            int n = 1 + rnd.nextInt(12);
            for (int i = 0; i < n; i++) {
                int rank = rnd.nextInt(5);
                long[] shape = new long[rank];
                long count = 1;
                for (int d = 0; d < rank; d++) {
                    shape[d] = rnd.nextInt(8) == 0 ? 0 : rnd.nextInt(1, 14);
                    count *= shape[d];
                }
                float[] data = rnd.gaussians((int) count, 3.0);
                if (count > 0 && rnd.nextInt(3) == 0) data[0] = Float.NaN;
                tensors.add(new SafeTensors.Entry("t" + i + ".w\u00e9ight", shape, data));
            }
            Map<String, String> meta = rnd.nextInt(2) == 0 ? Map.of() : Map.of("format", "pt", "seed", "" + rnd.seed());
            Path p = dir.resolve("rt" + round + ".safetensors");
            SafeTensors.write(p, tensors, meta);
            LinkedHashMap<String, SafeTensors.Entry> back = SafeTensors.readAll(p);
            assertEquals(tensors, new ArrayList<>(back.values()), "round trip (" + rnd.describe() + ")");
            try (SafeTensors.Reader r = SafeTensors.open(p)) {
                assertEquals(meta, r.metadata());
                long headerLen = Files.size(p) - r.tensors().stream().mapToLong(SafeTensors.TensorInfo::byteLength).sum() - 8;
                assertEquals(0, headerLen % 8, "header padded to 8 bytes");
            }
        }
    }

    @Test
    void largeFileIsMemoryMappedAndRoundTrips() throws IOException {
        TestRandom rnd = TestRandom.fresh();
        float[] big = rnd.gaussians(600_000, 1.0); // 2.4 MB > MAP_THRESHOLD
        float[] small = rnd.gaussians(5, 1.0);
        Path p = dir.resolve("big.safetensors");
        SafeTensors.write(p, List.of(new SafeTensors.Entry("big", new long[] {600, 1000}, big),
                new SafeTensors.Entry("small", new long[] {5}, small)), null);
        assertTrue(Files.size(p) >= SafeTensors.MAP_THRESHOLD);
        try (SafeTensors.Reader r = SafeTensors.open(p)) {
            assertArrayEquals(big, r.readFloat32("big"), rnd.describe());
            assertArrayEquals(small, r.readFloat32("small"), rnd.describe());
        }
        // a truncated large file is refused through the mapped path too
        byte[] all = Files.readAllBytes(p);
        Path cut = dir.resolve("cut.safetensors");
        Files.write(cut, Arrays.copyOf(all, all.length - 3));
        SafeTensorsException e = assertThrows(SafeTensorsException.class, () -> SafeTensors.open(cut).close());
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains(cut.toString()), e.getMessage());
    }

    // ---- atomic writing --------------------------------------------------------------------------

    @Test
    void writeReplacesAtomicallyAndLeavesNoTemporaryFiles() throws IOException {
        Path p = dir.resolve("model.safetensors");
        SafeTensors.write(p, List.of(new SafeTensors.Entry("x", new long[] {1}, new float[] {1})), null);
        SafeTensors.write(p, List.of(new SafeTensors.Entry("y", new long[] {2}, new float[] {2, 3})), null);
        assertEquals(List.of("y"), new ArrayList<>(SafeTensors.readAll(p).keySet()));
        byte[] before = Files.readAllBytes(p);
        // a refused write leaves the previous file intact
        List<SafeTensors.Entry> dup = List.of(new SafeTensors.Entry("z", new long[] {1}, new float[] {1}),
                new SafeTensors.Entry("z", new long[] {1}, new float[] {2}));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> SafeTensors.write(p, dup, null));
        assertTrue(e.getMessage().contains("duplicate tensor name 'z'"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> SafeTensors.write(p,
                List.of(new SafeTensors.Entry(SafeTensors.METADATA_KEY, new long[] {0}, new float[0])), null));
        assertArrayEquals(before, Files.readAllBytes(p));
        // writing into a missing directory fails and leaves nothing behind
        assertThrows(IOException.class, () -> SafeTensors.write(dir.resolve("no/such/dir/m.safetensors"),
                List.of(new SafeTensors.Entry("x", new long[] {1}, new float[] {1})), null));
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of(p), s.toList(), "only the target remains, no temporary files");
        }
    }

    /** A failure after the temporary file exists (the rename) removes it and leaves the target alone. */
    @Test
    void failedRenameRemovesTheTemporaryFile() throws IOException {
        Path target = dir.resolve("occupied.safetensors");
        Files.createDirectory(target);
        Files.writeString(target.resolve("keep.txt"), "x"); // a non-empty directory cannot be replaced
        assertThrows(IOException.class, () -> SafeTensors.write(target,
                List.of(new SafeTensors.Entry("x", new long[] {3}, new float[] {1, 2, 3})), null));
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of(target), s.toList(), "no temporary file left behind");
        }
        assertTrue(Files.isDirectory(target));
        assertEquals("x", Files.readString(target.resolve("keep.txt")));
    }

    @Test
    void entryValidatesShapeAgainstData() {
        assertThrows(IllegalArgumentException.class, () -> new SafeTensors.Entry("a", new long[] {2, 2}, new float[3]));
        assertThrows(IllegalArgumentException.class, () -> new SafeTensors.Entry("a", new long[] {-1}, new float[0]));
        long[] shape = {3};
        SafeTensors.Entry e = new SafeTensors.Entry("a", shape, new float[3]);
        shape[0] = 4;
        assertArrayEquals(new long[] {3}, e.shape(), "shape is copied");
    }

    // ---- corruption classes ----------------------------------------------------------------------

    private static final String GOOD_HEADER = "{\"a\":" + info("F32", "[2]", 0, 8) + ",\"b\":" + info("F32", "[3]", 8, 20) + "}";

    @Test
    void validHandBuiltImageIsAccepted() throws IOException {
        try (SafeTensors.Reader r = SafeTensors.read(image(GOOD_HEADER, new byte[20]))) {
            assertEquals(2, r.tensors().size());
        }
    }

    @Test
    void headerLengthOutOfBounds() {
        refused(new byte[0], "too short");
        refused(new byte[7], "too short");
        byte[] huge = image(GOOD_HEADER, new byte[20]);
        ByteBuffer.wrap(huge).order(ByteOrder.LITTLE_ENDIAN).putLong(0, -1L); // 2^64 - 1
        refused(huge, "header length 18446744073709551615 is outside");
        ByteBuffer.wrap(huge).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 200_000_000L);
        refused(huge, "header length 200000000 is outside");
        ByteBuffer.wrap(huge).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 0L);
        refused(huge, "header length 0 is outside");
        ByteBuffer.wrap(huge).order(ByteOrder.LITTLE_ENDIAN).putLong(0, huge.length - 7);
        refused(huge, "exceeds");
    }

    @Test
    void badHeaderJson() {
        refused(image("{\"a\":" + info("F32", "[2]", 0, 8), new byte[8]), "invalid header JSON");
        refused(image("{\"a\":1,}", new byte[0]), "trailing comma");
        refused(image("[1,2]", new byte[0]), "does not start with '{'");
        refused(image(" {}", new byte[0]), "does not start with '{'");
        byte[] badUtf8 = image("{\"\u00e9\":" + info("F32", "[0]", 0, 0) + "}", new byte[0]);
        badUtf8[11] = (byte) 0xFF;
        refused(badUtf8, "malformed UTF-8");
        refused(image("{\"a\":" + info("F32", "[2]", 0, 8) + ",\"a\":" + info("F32", "[2]", 8, 16) + "}", new byte[16]),
                "duplicate key \"a\"");
        refused(image("{\"a\":[1]}", new byte[0]), "tensor 'a' is a JSON array");
        refused(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", new byte[4]),
                "unknown field \"x\"");
        refused(image("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]), "\"dtype\" missing");
        refused(image("{\"__metadata__\":{\"k\":1}}", new byte[0]), "metadata values must be strings");
        refused(image("{\"__metadata__\":[]}", new byte[0]), "__metadata__ is a JSON array");
    }

    @Test
    void badDtypeAndShape() {
        refused(image("{\"a\":" + info("F33", "[2]", 0, 8) + "}", new byte[8]), "unknown dtype \"F33\"");
        refused(image("{\"a\":" + info("f32", "[2]", 0, 8) + "}", new byte[8]), "unknown dtype \"f32\"");
        refused(image("{\"a\":" + info("F32", "[-2]", 0, 8) + "}", new byte[8]), "not a non-negative integer");
        refused(image("{\"a\":" + info("F32", "[2.0]", 0, 8) + "}", new byte[8]), "not a non-negative integer");
        refused(image("{\"a\":" + info("F32", "\"2\"", 0, 8) + "}", new byte[8]), "\"shape\" missing or not an array");
        refused(image("{\"a\":" + info("F32", "[4294967296,4294967296]", 0, 8) + "}", new byte[8]), "more than 2^63");
        refused(image("{\"a\":" + info("F32", "[3]", 0, 8) + "}", new byte[8]), "needs 12 bytes but data_offsets [0, 8] span 8");
        refused(image("{\"a\":" + info("F16", "[2]", 0, 8) + "}", new byte[8]), "needs 4 bytes");
    }

    @Test
    void badOffsets() {
        refused(image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", new byte[8]), "two integers");
        refused(image("{\"a\":" + info("F32", "[0]", 8, 4) + "}", new byte[8]),
                "not an ordered non-negative range");
        // overlapping: b starts inside a
        refused(image("{\"a\":" + info("F32", "[2]", 0, 8) + ",\"b\":" + info("F32", "[2]", 4, 12) + "}", new byte[12]),
                "overlaps tensor 'a'");
        // two tensors on the same bytes
        refused(image("{\"a\":" + info("F32", "[2]", 0, 8) + ",\"b\":" + info("F32", "[2]", 0, 8) + "}", new byte[8]),
                "overlaps");
        // gap between tensors, or not starting at 0
        refused(image("{\"a\":" + info("F32", "[1]", 0, 4) + ",\"b\":" + info("F32", "[1]", 8, 12) + "}", new byte[12]),
                "gap of 4 bytes before tensor 'b'");
        refused(image("{\"a\":" + info("F32", "[1]", 4, 8) + "}", new byte[8]), "gap of 4 bytes before tensor 'a'");
    }

    @Test
    void truncatedOrOverlongData() {
        refused(image(GOOD_HEADER, new byte[19]), "header says the data buffer has 20 bytes but the file holds only 19");
        refused(image(GOOD_HEADER, new byte[0]), "truncated");
        refused(image(GOOD_HEADER, new byte[21]), "1 bytes after the last tensor");
        // header claims more than the file: every proper prefix of a valid image is refused
        byte[] good = image(GOOD_HEADER, new byte[20]);
        for (int len = 0; len < good.length; len++) {
            byte[] prefix = Arrays.copyOf(good, len);
            try {
                SafeTensors.read(prefix).close();
                fail("prefix of " + len + " bytes of " + good.length + " was accepted");
            } catch (SafeTensorsException e) {
                assertFalse(e.getMessage().isBlank());
            }
        }
    }

    /** Random byte flips of a valid image: accepted whole or refused with a message, nothing else. */
    @Test
    void byteFlipFuzz() {
        TestRandom rnd = TestRandom.fresh();
        byte[] good = SafeTensors.toBytes(List.of(
                new SafeTensors.Entry("conv.weight", new long[] {2, 1, 3, 3}, rnd.gaussians(18, 1)),
                new SafeTensors.Entry("conv.bias", new long[] {2}, rnd.gaussians(2, 1))), Map.of("format", "pt"));
        int accepted = 0;
        int refusedCount = 0;
        for (int iter = 0; iter < 3000; iter++) {
            byte[] img = good.clone();
            int flips = 1 + rnd.nextInt(3);
            for (int k = 0; k < flips; k++) {
                int at = rnd.nextInt(Math.min(img.length, 8 + 200)); // mostly the length field and header
                img[at] = (byte) (rnd.nextInt(3) == 0 ? rnd.nextInt(256) : img[at] ^ (1 << rnd.nextInt(8)));
            }
            try (SafeTensors.Reader r = SafeTensors.read(img)) {
                for (SafeTensors.TensorInfo t : r.tensors()) {
                    if (t.dtype().toFloat32() && t.elementCount() < 1_000_000) {
                        r.readFloat32(t.name());
                    }
                }
                accepted++;
            } catch (SafeTensorsException e) {
                refusedCount++;
                assertFalse(e.getMessage().isBlank());
            } catch (IllegalArgumentException e) {
                // only the documented float32 conversion refusal may come out of readFloat32
                assertTrue(e.getMessage().contains("float32"), e.getMessage() + " (" + rnd.describe() + ")");
            } catch (RuntimeException e) {
                fail("flip " + iter + " escaped with " + e + " (" + rnd.describe() + ")", e);
            }
        }
        assertTrue(accepted > 0 && refusedCount > 1000, "accepted " + accepted + ", refused " + refusedCount);
    }

    @Test
    void fileLevelErrorsNameTheFile() throws IOException {
        Path p = dir.resolve("bad.safetensors");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(image("{\"a\":" + info("BAD", "[1]", 0, 4) + "}", new byte[4]));
        Files.write(p, out.toByteArray());
        SafeTensorsException e = assertThrows(SafeTensorsException.class, () -> SafeTensors.open(p).close());
        assertTrue(e.getMessage().startsWith(p.toString() + ": "), e.getMessage());
        assertTrue(e.getMessage().contains("unknown dtype \"BAD\""), e.getMessage());
        assertThrows(IOException.class, () -> SafeTensors.open(dir.resolve("missing.safetensors")));
    }
}
