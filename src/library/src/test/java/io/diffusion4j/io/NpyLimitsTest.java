package io.diffusion4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Hostile .npy files: the header is read and checked before any data, so a lying header or a file larger than an
 * array is an IOException naming the file, never an ArithmeticException or an OutOfMemoryError.
 */
class NpyLimitsTest {
    @TempDir
    Path dir;

    /** A version 1.0 file whose header declares {@code shape} followed by {@code payload} bytes of data. */
    static byte[] npy(String shape, int payload) {
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
        String header = dict + " ".repeat((64 - (10 + dict.length() + 1) % 64) % 64) + "\n";
        ByteBuffer b = ByteBuffer.allocate(10 + header.length() + payload).order(ByteOrder.LITTLE_ENDIAN);
        b.put(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0}).putShort((short) header.length());
        b.put(header.getBytes(StandardCharsets.ISO_8859_1));
        return b.array();
    }

    void assertRefused(Path p, String expect) {
        IOException e = assertThrows(IOException.class, () -> Npy.read(p));
        assertTrue(e.getMessage().contains(p.toString()) && e.getMessage().contains(expect),
                "'" + e.getMessage() + "' should name the file and say '" + expect + "'");
    }

    @Test
    void shapeWhoseElementCountOverflowsIsAnIoException() throws IOException {
        Path p = dir.resolve("overflow.npy");
        Files.write(p, npy("1099511627776, 1099511627776, 1, 1", 16)); // (2^40, 2^40, 1, 1)
        assertRefused(p, "more elements than a long counts");
    }

    @Test
    void fileLargerThanAnArrayIsRefusedFromItsHeaderWithoutReadingIt() throws IOException {
        // a sparse 3 GiB file whose header declares 4 floats: refused by comparing sizes, nothing read whole
        Path p = dir.resolve("big.npy");
        Files.write(p, npy("4,", 16));
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(3L << 30);
        }
        assertRefused(p, "bytes of data, the file has");
        IOException e = assertThrows(IOException.class, () -> Npy.header(p));
        assertTrue(e.getMessage().contains("needs 16 bytes"), e.getMessage());
    }

    @Test
    void devicesDirectoriesAndHugeHeadersAreRefusedBeforeReading() throws IOException {
        Path zero = Path.of("/dev/zero");
        if (Files.exists(zero)) assertRefused(zero, "not a regular file");
        assertRefused(dir, "is a directory");
        Path v2 = dir.resolve("v2.npy");
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
        b.put(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0}).putInt(1 << 30); // a 1 GiB header
        Files.write(v2, b.array());
        assertRefused(v2, "header length 1073741824 exceeds");
    }

    @Test
    void validFilesStillReadAndNonFiniteValuesAreFound() throws IOException {
        Path p = dir.resolve("ok.npy");
        float[] data = new float[2 * 3 * 4 * 5];
        for (int i = 0; i < data.length; i++) data[i] = i * 0.5f - 3f;
        data[37] = Float.NaN;
        Npy.write(p, new long[] {2, 3, 4, 5}, data);
        Npy.Array a = Npy.read(p);
        assertArrayEquals(new long[] {2, 3, 4, 5}, a.shape());
        assertArrayEquals(data, a.data());
        assertEquals(37, Npy.firstNonFinite(a.data()));
        assertEquals("[0, 1, 3, 2]", Npy.indexIn(a.shape(), 37)); // 37 = 1*20 + 3*5 + 2
        assertEquals(-1, Npy.firstNonFinite(new float[] {1f, -2f}));
    }
}
