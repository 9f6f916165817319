package io.diffusion4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A strict reader and writer of NumPy {@code .npy} files holding one little-endian float32 C-order array
 * ({@code descr '<f4'}, {@code fortran_order False}). Anything else (another dtype or byte order, Fortran
 * order, object arrays / pickles, a truncated or oversized payload) is refused with a message.
 */
public final class Npy {
    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    private static final Pattern HEADER = Pattern.compile(
            "\\{\\s*'descr'\\s*:\\s*'([^']*)'\\s*,\\s*'fortran_order'\\s*:\\s*(True|False)\\s*,\\s*"
                    + "'shape'\\s*:\\s*\\(([^)]*)\\)\\s*,?\\s*\\}\\s*");

    private Npy() {}

    /** A float32 array and its shape. */
    public record Array(long[] shape, float[] data) {}

    /** Reads a float32 .npy file. */
    public static Array read(Path file) throws IOException {
        byte[] bytes = Files.readAllBytes(file);
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes.length < 10 || !Arrays.equals(Arrays.copyOf(bytes, 6), MAGIC)) {
            throw new IOException(file + ": not a NumPy .npy file (no \\x93NUMPY magic)");
        }
        int major = bytes[6] & 0xff;
        int headerLen;
        int start;
        if (major == 1) {
            headerLen = buf.getShort(8) & 0xffff;
            start = 10;
        } else if (major == 2 || major == 3) {
            if (bytes.length < 12) throw new IOException(file + ": truncated .npy header");
            long hl = buf.getInt(8) & 0xffffffffL;
            if (hl > bytes.length) throw new IOException(file + ": .npy header length " + hl + " exceeds the file");
            headerLen = (int) hl;
            start = 12;
        } else {
            throw new IOException(file + ": unsupported .npy format version " + major + "." + (bytes[7] & 0xff));
        }
        if (start + headerLen > bytes.length) throw new IOException(file + ": truncated .npy header");
        String header = new String(bytes, start, headerLen, major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
        Matcher m = HEADER.matcher(header);
        if (!m.matches()) {
            throw new IOException(file + ": unsupported .npy header " + header.strip()
                    + " (expected {'descr': '<f4', 'fortran_order': False, 'shape': (...)})");
        }
        String descr = m.group(1);
        if (!descr.equals("<f4")) {
            throw new IOException(file + ": dtype '" + descr + "' is not little-endian float32 ('<f4'); convert with"
                    + " array.astype('<f4')");
        }
        if (m.group(2).equals("True")) throw new IOException(file + ": Fortran-order arrays are not supported");
        String[] dims = m.group(3).split(",");
        long[] shape = Arrays.stream(dims).map(String::strip).filter(s -> !s.isEmpty()).mapToLong(s -> {
            try {
                return Long.parseLong(s);
            } catch (NumberFormatException e) {
                return -1;
            }
        }).toArray();
        long count = 1;
        for (long d : shape) {
            if (d < 0) throw new IOException(file + ": bad shape (" + m.group(3) + ")");
            count = Math.multiplyExact(count, d);
        }
        long payload = (long) bytes.length - start - headerLen;
        if (count > Integer.MAX_VALUE || payload != count * 4) {
            throw new IOException(file + ": shape " + Arrays.toString(shape) + " needs " + count * 4
                    + " bytes of data, the file has " + payload);
        }
        float[] data = new float[(int) count];
        buf.position(start + headerLen);
        buf.asFloatBuffer().get(data);
        return new Array(shape, data);
    }

    /** The bytes of a version 1.0 float32 .npy file (header padded to a multiple of 64 bytes). */
    public static byte[] encode(long[] shape, float[] data) {
        long count = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            count = Math.multiplyExact(count, d);
        }
        if (count != data.length) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has " + count + " elements, data "
                    + data.length);
        }
        StringBuilder dims = new StringBuilder();
        for (int i = 0; i < shape.length; i++) dims.append(i == 0 ? "" : ", ").append(shape[i]);
        if (shape.length == 1) dims.append(',');
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
        int total = 10 + dict.length() + 1;
        int pad = (64 - total % 64) % 64;
        String header = dict + " ".repeat(pad) + "\n";
        ByteBuffer out = ByteBuffer.allocate(10 + header.length() + 4 * data.length).order(ByteOrder.LITTLE_ENDIAN);
        out.put(MAGIC).put((byte) 1).put((byte) 0).putShort((short) header.length());
        out.put(header.getBytes(StandardCharsets.ISO_8859_1));
        out.asFloatBuffer().put(data);
        return out.array();
    }

    /** Writes a float32 .npy file atomically. */
    public static void write(Path file, long[] shape, float[] data) throws IOException {
        AtomicFiles.write(file, encode(shape, data));
    }
}
