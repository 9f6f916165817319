package io.diffusion4j.train;

import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;
import java.util.zip.GZIPInputStream;

/**
 * Fashion-MNIST (or MNIST) from its gzipped IDX files: {@code train-images-idx3-ubyte.gz} /
 * {@code t10k-images-idx3-ubyte.gz} and the matching {@code *-labels-idx1-ubyte.gz}. Pixels
 * 0..255 map to {@code p / 127.5 - 1} in [-1, 1], one channel, HWC = 28x28x1.
 *
 * <p>IDX format: big-endian magic {@code 0x0000TTDD} (TT = 0x08 unsigned bytes, DD the number of
 * dimensions), DD big-endian int32 sizes, then the row-major bytes. Reading refuses, with an
 * {@link IOException} naming the file and the problem: a stream that is not gzip or is cut inside
 * the compressed data, a wrong magic or dimension count, non-positive or too large sizes, fewer
 * data bytes than the header promises (truncated) and trailing bytes after them.
 */
public final class FashionMnist implements Dataset {
    /** Where the Debian/Ubuntu package {@code dataset-fashion-mnist} installs the files. */
    public static final Path DEFAULT_DIRECTORY = Path.of("/usr/share/datasets/fashion-mnist");
    public static final String TRAIN_IMAGES = "train-images-idx3-ubyte.gz";
    public static final String TRAIN_LABELS = "train-labels-idx1-ubyte.gz";
    public static final String TEST_IMAGES = "t10k-images-idx3-ubyte.gz";
    public static final String TEST_LABELS = "t10k-labels-idx1-ubyte.gz";

    private static final int MAGIC_IMAGES = 0x00000803;
    private static final int MAGIC_LABELS = 0x00000801;

    private final byte[] pixels;
    private final int count;
    private final int rows;
    private final int cols;
    private final String source;
    private final int[] labels; // null: unlabelled

    /** Fashion-MNIST's class names, by label. */
    public static final java.util.List<String> CLASS_NAMES = java.util.List.of("T-shirt/top", "Trouser", "Pullover",
            "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot");

    private FashionMnist(byte[] pixels, int count, int rows, int cols, String source, int[] labels) {
        this.pixels = pixels;
        this.count = count;
        this.rows = rows;
        this.cols = cols;
        this.source = source;
        this.labels = labels;
    }

    /**
     * The training images of {@code dir} (or the test images) with their labels ({@value #TRAIN_LABELS} /
     * {@value #TEST_LABELS}): ten classes, {@link #CLASS_NAMES}.
     */
    public static FashionMnist loadLabelled(Path dir, boolean train) throws IOException {
        return loadLabelled(dir, train, 0, 0);
    }

    /**
     * {@link #loadLabelled(Path, boolean)} for a model of {@code rows x cols} images (0: any size): files of
     * another size are refused from their header, before their data are read.
     */
    public static FashionMnist loadLabelled(Path dir, boolean train, int rows, int cols) throws IOException {
        FashionMnist images = load(dir, train, rows, cols);
        Path file = dir.resolve(train ? TRAIN_LABELS : TEST_LABELS);
        if (!Files.isRegularFile(file)) {
            throw new IOException("no Fashion-MNIST labels at " + file + " (class-conditional training needs them)");
        }
        return images.withLabels(readLabels(file, images.size()), file);
    }

    /** These images with their labels (one per image, each in [0, 10)) read from {@code file}. */
    FashionMnist withLabels(int[] l, Path file) throws IOException {
        if (l.length != count) {
            throw new IOException(file + ": " + l.length + " labels for " + count + " images in " + source);
        }
        for (int i = 0; i < l.length; i++) {
            if (l[i] >= CLASS_NAMES.size()) {
                throw new IOException(file + ": label " + l[i] + " of image " + i + " is outside [0, "
                        + CLASS_NAMES.size() + ")");
            }
        }
        return new FashionMnist(pixels, count, rows, cols, source, l.clone());
    }

    @Override
    public int numClasses() {
        return labels == null ? 0 : CLASS_NAMES.size();
    }

    @Override
    public int label(int index) {
        if (labels == null) return Dataset.super.label(index);
        return labels[Objects.checkIndex(index, count)];
    }

    @Override
    public java.util.List<String> classNames() {
        return labels == null ? java.util.List.of() : CLASS_NAMES;
    }

    /** The training images of {@code dir} ({@value #TRAIN_IMAGES}), or the test images. */
    public static FashionMnist load(Path dir, boolean train) throws IOException {
        return load(dir, train, 0, 0);
    }

    /**
     * {@link #load(Path, boolean)} for a model of {@code rows x cols} images (0: any size): files of another size
     * are refused from their header, before their data are read.
     */
    public static FashionMnist load(Path dir, boolean train, int rows, int cols) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Path file = dir.resolve(train ? TRAIN_IMAGES : TEST_IMAGES);
        if (!Files.isRegularFile(file)) {
            throw new IOException("no Fashion-MNIST images at " + file
                    + " (install the dataset-fashion-mnist package or pass the directory holding " + TRAIN_IMAGES + ")");
        }
        return readImages(file, rows, cols);
    }

    /** Reads and validates a gzipped IDX3 image file. */
    public static FashionMnist readImages(Path file) throws IOException {
        return readImages(file, 0, 0);
    }

    /**
     * Deflate's largest compression ratio (a run of 258-byte matches, each coded in about 2 bits, is about 1032:1):
     * a gzip file of S bytes cannot hold more than this many times S bytes of data, so a header announcing more
     * is refused before any of it is read.
     */
    static final long MAX_DEFLATE_RATIO = 1032;

    /**
     * Reads and validates a gzipped IDX3 image file whose images must be {@code rows x cols} (0: any size). The
     * header is checked before any data is read: the magic, the sizes (positive, at most 4096 a side, the expected
     * size, a total that fits one array and that a gzip file of this length can hold).
     */
    public static FashionMnist readImages(Path file, int rows, int cols) throws IOException {
        Objects.requireNonNull(file, "file");
        long fileBytes = Files.size(file);
        try (DataInputStream in = open(file)) {
            int magic = in.readInt();
            if (magic != MAGIC_IMAGES) {
                throw new IOException(file + ": magic 0x" + Integer.toHexString(magic)
                        + " is not an IDX file of unsigned bytes with 3 dimensions (0x803)");
            }
            int n = in.readInt(), r = in.readInt(), c = in.readInt();
            if (n < 1 || r < 1 || c < 1 || r > 4096 || c > 4096 || (long) n * r * c > Integer.MAX_VALUE - 16) {
                throw new IOException(file + ": bad sizes " + n + " x " + r + " x " + c);
            }
            if ((rows > 0 && r != rows) || (cols > 0 && c != cols)) {
                throw new IOException(file + ": images of " + r + "x" + c + ", the model takes " + rows + "x" + cols
                        + " (its sample_size)");
            }
            if ((long) n * r * c > MAX_DEFLATE_RATIO * fileBytes + 1024) {
                throw new IOException(file + ": truncated or corrupt: the header announces " + n + " images of " + r + "x" + c + " ("
                        + (long) n * r * c + " bytes), more than a gzip file of " + fileBytes + " bytes can hold");
            }
            byte[] data = readPayload(in, n * r * c, file);
            return new FashionMnist(data, n, r, c, file.toString(), null);
        } catch (EOFException e) {
            throw new IOException(file + ": truncated (the IDX header is incomplete)", e);
        }
    }

    /** Reads and validates a gzipped IDX1 label file (values 0..255 as ints). */
    public static int[] readLabels(Path file) throws IOException {
        return readLabels(file, -1);
    }

    /** {@link #readLabels(Path)} of a file that must hold {@code expected} labels (checked from its header). */
    public static int[] readLabels(Path file, int expected) throws IOException {
        Objects.requireNonNull(file, "file");
        try (DataInputStream in = open(file)) {
            int magic = in.readInt();
            if (magic != MAGIC_LABELS) {
                throw new IOException(file + ": magic 0x" + Integer.toHexString(magic)
                        + " is not an IDX file of unsigned bytes with 1 dimension (0x801)");
            }
            int n = in.readInt();
            if (n < 1 || n > Integer.MAX_VALUE - 16) throw new IOException(file + ": bad label count " + n);
            if (expected >= 0 && n != expected) {
                throw new IOException(file + ": " + n + " labels for " + expected + " images");
            }
            long fileBytes = Files.size(file);
            if (n > MAX_DEFLATE_RATIO * fileBytes + 1024) {
                throw new IOException(file + ": truncated or corrupt: the header announces " + n + " labels, more than a "
                        + "gzip file of " + fileBytes + " bytes can hold");
            }
            byte[] data = readPayload(in, n, file);
            int[] out = new int[n];
            for (int i = 0; i < n; i++) out[i] = data[i] & 0xFF;
            return out;
        } catch (EOFException e) {
            throw new IOException(file + ": truncated (the IDX header is incomplete)", e);
        }
    }

    private static DataInputStream open(Path file) throws IOException {
        InputStream raw = new BufferedInputStream(Files.newInputStream(file), 1 << 16);
        try {
            return new DataInputStream(new GZIPInputStream(raw, 1 << 16));
        } catch (IOException e) {
            raw.close();
            throw new IOException(file + ": not a gzip stream (" + e.getMessage() + ")", e);
        }
    }

    /**
     * Reads exactly {@code length} bytes and checks the stream ends there. The buffer grows with the data
     * actually present, so a small corrupt file announcing huge sizes cannot make us allocate them.
     */
    private static byte[] readPayload(DataInputStream in, int length, Path file) throws IOException {
        byte[] data = new byte[Math.min(length, 1 << 20)];
        int got = 0;
        try {
            while (got < length) {
                if (got == data.length) data = java.util.Arrays.copyOf(data, (int) Math.min(length, 2L * data.length));
                int k = in.read(data, got, data.length - got);
                if (k < 0) break;
                got += k;
            }
        } catch (EOFException e) {
            // GZIPInputStream reports a stream cut inside the deflate data this way
            throw new IOException(file + ": truncated gzip stream after " + got + " of " + length + " data bytes", e);
        }
        if (got < length) {
            throw new IOException(file + ": truncated: " + got + " of the " + length
                    + " data bytes the IDX header announces");
        }
        if (in.read() >= 0) {
            throw new IOException(file + ": trailing bytes after the " + length + " data bytes of the IDX header");
        }
        return data;
    }

    @Override
    public int size() {
        return count;
    }

    @Override
    public int height() {
        return rows;
    }

    @Override
    public int width() {
        return cols;
    }

    @Override
    public int channels() {
        return 1;
    }

    /** Raw pixel {@code (index, y, x)} in 0..255. */
    public int pixel(int index, int y, int x) {
        Objects.checkIndex(index, count);
        Objects.checkIndex(y, rows);
        Objects.checkIndex(x, cols);
        return pixels[(index * rows + y) * cols + x] & 0xFF;
    }

    @Override
    public void image(int index, float[] dst, int offset) {
        Objects.checkIndex(index, count);
        int n = rows * cols;
        Objects.checkFromIndexSize(offset, n, dst.length);
        int base = index * n;
        for (int i = 0; i < n; i++) dst[offset + i] = (pixels[base + i] & 0xFF) / 127.5f - 1f;
    }

    @Override
    public String describe() {
        return "Fashion-MNIST " + source + " (" + count + " images " + rows + "x" + cols
                + (labels == null ? "" : ", " + CLASS_NAMES.size() + " classes") + ")";
    }
}
