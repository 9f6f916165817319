package io.diffusion4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The strict float32 .npy reader / writer: round trip, NumPy's exact header, and refusals. */
class NpyTest {
    @TempDir
    Path dir;

    @Test
    void roundTripAndHeaderAsNumpyWritesIt() throws IOException {
        TestRandom r = TestRandom.fresh();
        float[] data = r.gaussians(2 * 3 * 5 * 7, 1.0);
        Path f = dir.resolve("a.npy");
        Npy.write(f, new long[] {2, 3, 5, 7}, data);
        Npy.Array a = Npy.read(f);
        assertArrayEquals(new long[] {2, 3, 5, 7}, a.shape());
        assertArrayEquals(data, a.data());
        byte[] bytes = Files.readAllBytes(f);
        // np.save writes version 1.0, the dict with a trailing ", }", spaces, '\n', data aligned to 64 bytes
        String header = new String(bytes, 10, 100, StandardCharsets.ISO_8859_1);
        assertTrue(header.startsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 5, 7), }"), header);
        assertTrue((bytes.length - 4 * data.length) % 64 == 0, "header not 64-byte aligned");
        assertTrue(bytes[bytes.length - 4 * data.length - 1] == '\n');
        // 1-d shapes are written "(n,)"
        Npy.write(f, new long[] {4}, new float[4]);
        assertArrayEquals(new long[] {4}, Npy.read(f).shape());
    }

    static byte[] file(String dict, int dataBytes) {
        String h = dict + " ".repeat((64 - (10 + dict.length() + 1) % 64) % 64) + "\n";
        byte[] out = new byte[10 + h.length() + dataBytes];
        byte[] magic = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (byte) h.length(), (byte) (h.length() >> 8)};
        System.arraycopy(magic, 0, out, 0, 10);
        System.arraycopy(h.getBytes(StandardCharsets.ISO_8859_1), 0, out, 10, h.length());
        return out;
    }

    void refused(byte[] bytes, String expect) throws IOException {
        Path f = dir.resolve("bad.npy");
        Files.write(f, bytes);
        IOException e = assertThrows(IOException.class, () -> Npy.read(f));
        assertTrue(e.getMessage().contains(expect), e.getMessage());
    }

    @Test
    void refusesEverythingButLittleEndianFloat32COrder() throws IOException {
        refused(file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16), "'<f8'");
        refused(file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8), "'>f4'");
        refused(file("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 8), "'|O'");
        refused(file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16), "Fortran");
        refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 12), "needs 16 bytes");
        refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 20), "needs 16 bytes");
        refused(file("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8), "unsupported .npy header");
        refused("not a numpy file".getBytes(StandardCharsets.US_ASCII), "magic");
        byte[] ok = file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
        byte[] v9 = Arrays.copyOf(ok, ok.length);
        v9[6] = 9;
        refused(v9, "version 9");
        refused(Arrays.copyOf(ok, 20), "truncated");
    }
}
