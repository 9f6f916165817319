package io.diffusion4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
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

    /**
     * The longest header read. NumPy writes about 70 bytes padded to 64 or 128 and its own reader refuses headers
     * above 10,000 bytes unless told otherwise; 64 KiB is the most a version 1.0 header can declare and leaves room
     * for any real file, while a version 2.0 header claiming gigabytes is refused before it is read.
     */
    public static final int MAX_HEADER_BYTES = 1 << 16;

    /**
     * The most elements {@link #read} returns: one Java float array (less the few words a JVM reserves). The
     * caller checks the shape against what it expects ({@link #header}) before reading the data.
     */
    public static final long MAX_ELEMENTS = Integer.MAX_VALUE - 16;

    private Npy() {}

    /** A float32 array and its shape. */
    public record Array(long[] shape, float[] data) {}

    /**
     * What the header of a float32 .npy file says, validated against the file: its shape (whose element count fits a
     * long and whose data are exactly the bytes after the header) and where the data start.
     */
    public record Header(long[] shape, long dataOffset, long elementCount) {
        public Header {
            shape = shape.clone();
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }
    }

    /**
     * Reads and checks the header of a float32 .npy file without reading its data: magic, version, a header length
     * of at most {@value #MAX_HEADER_BYTES} bytes, dtype {@code '<f4'}, C order, a shape of non-negative dimensions
     * whose product neither overflows nor disagrees with the file's size.
     */
    public static Header header(Path file) throws IOException {
        if (!Files.isRegularFile(file)) {
            throw new IOException(file + (Files.isDirectory(file) ? ": is a directory, not a .npy file"
                    : Files.exists(file) ? ": not a regular file" : ": no such file"));
        }
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            return header(file, ch);
        } catch (IOException e) {
            throw SmallFiles.withPath(file, e);
        }
    }

    private static Header header(Path file, FileChannel ch) throws IOException {
        long size = ch.size();
        ByteBuffer pre = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        readFully(ch, pre, 0);
        if (pre.position() < 10 || !Arrays.equals(Arrays.copyOf(pre.array(), 6), MAGIC)) {
            throw new IOException(file + ": not a NumPy .npy file (no \\x93NUMPY magic)");
        }
        int major = pre.get(6) & 0xff;
        long headerLen;
        int start;
        if (major == 1) {
            headerLen = pre.getShort(8) & 0xffff;
            start = 10;
        } else if (major == 2 || major == 3) {
            if (pre.position() < 12) throw new IOException(file + ": truncated .npy header");
            headerLen = pre.getInt(8) & 0xffffffffL;
            start = 12;
        } else {
            throw new IOException(file + ": unsupported .npy format version " + major + "." + (pre.get(7) & 0xff));
        }
        if (headerLen > MAX_HEADER_BYTES) {
            throw new IOException(file + ": .npy header length " + headerLen + " exceeds " + MAX_HEADER_BYTES + " bytes");
        }
        if (start + headerLen > size) throw new IOException(file + ": truncated .npy header");
        ByteBuffer hb = ByteBuffer.allocate((int) headerLen);
        readFully(ch, hb, start);
        String header = new String(hb.array(), 0, hb.position(), major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
        Matcher m = HEADER.matcher(header);
        if (!m.matches()) {
            String shown = header.strip();
            if (shown.length() > 200) shown = shown.substring(0, 200) + "...";
            throw new IOException(file + ": unsupported .npy header " + shown
                    + " (expected {'descr': '<f4', 'fortran_order': False, 'shape': (...)})");
        }
        String descr = m.group(1);
        if (!descr.equals("<f4")) {
            throw new IOException(file + ": dtype '" + descr + "' is not little-endian float32 ('<f4'); convert with"
                    + " array.astype('<f4')");
        }
        if (m.group(2).equals("True")) throw new IOException(file + ": Fortran-order arrays are not supported");
        String[] dims = m.group(3).split(",");
        long[] shape = Arrays.stream(dims).map(String::strip).filter(d -> !d.isEmpty()).mapToLong(d -> {
            try {
                return Long.parseLong(d);
            } catch (NumberFormatException e) {
                return -1;
            }
        }).toArray();
        long count = 1;
        long bytes;
        try {
            for (long d : shape) {
                if (d < 0) throw new IOException(file + ": bad shape (" + m.group(3) + ")");
                count = Math.multiplyExact(count, d);
            }
            bytes = Math.multiplyExact(count, 4L);
        } catch (ArithmeticException e) {
            throw new IOException(file + ": shape (" + m.group(3).strip() + ") has more elements than a long counts", e);
        }
        long payload = size - start - headerLen;
        if (payload != bytes) {
            throw new IOException(file + ": shape " + Arrays.toString(shape) + " needs " + bytes
                    + " bytes of data, the file has " + payload);
        }
        return new Header(shape, start + headerLen, count);
    }

    /**
     * Reads a float32 .npy file: the header first ({@link #header}), then exactly the data it announces, in chunks
     * (never the whole file at once, so a device or a file that grows cannot make it read without end).
     */
    public static Array read(Path file) throws IOException {
        if (!Files.isRegularFile(file)) header(file); // the message for what is not a regular file
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            Header h = header(file, ch);
            if (h.elementCount() > MAX_ELEMENTS) {
                throw new IOException(file + ": shape " + Arrays.toString(h.shape()) + " has " + h.elementCount()
                        + " elements; at most " + MAX_ELEMENTS + " are read (one Java array)");
            }
            float[] data = new float[(int) h.elementCount()];
            ByteBuffer chunk = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
            long pos = h.dataOffset();
            int done = 0;
            while (done < data.length) {
                chunk.clear();
                chunk.limit((int) Math.min(chunk.capacity(), 4L * (data.length - done)));
                readFully(ch, chunk, pos);
                if (chunk.hasRemaining()) throw new IOException(file + ": the file shrank while it was read");
                chunk.flip();
                int k = chunk.remaining() / 4;
                chunk.asFloatBuffer().get(data, done, k);
                done += k;
                pos += 4L * k;
            }
            return new Array(h.shape(), data);
        } catch (IOException e) {
            throw SmallFiles.withPath(file, e);
        }
    }

    /** The index of the first NaN or infinite value of {@code data}, or -1 when every value is finite. */
    public static long firstNonFinite(float[] data) {
        for (int i = 0; i < data.length; i++) {
            if (!Float.isFinite(data[i])) return i;
        }
        return -1;
    }

    /** A flat C-order index as the index tuple of {@code shape}, e.g. {@code [0, 2, 5, 7]}. */
    public static String indexIn(long[] shape, long flat) {
        long[] at = new long[shape.length];
        for (int d = shape.length - 1; d >= 0; d--) {
            if (shape[d] == 0) return "[" + flat + "]";
            at[d] = flat % shape[d];
            flat /= shape[d];
        }
        return Arrays.toString(at);
    }

    /** Reads from {@code pos} until {@code b} is full or the channel ends. */
    private static void readFully(FileChannel ch, ByteBuffer b, long pos) throws IOException {
        while (b.hasRemaining()) {
            int k = ch.read(b, pos);
            if (k < 0) return;
            pos += k;
        }
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
        long bytes = 10L + header.length() + 4L * data.length;
        if (bytes > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("an .npy file of " + bytes + " bytes is too large to encode in memory");
        }
        ByteBuffer out = ByteBuffer.allocate((int) bytes).order(ByteOrder.LITTLE_ENDIAN);
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
