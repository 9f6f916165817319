package io.diffusion4j.train;

import java.awt.color.ColorSpace;
import java.awt.image.BufferedImage;
import java.awt.image.ColorModel;
import java.awt.image.IndexColorModel;
import java.awt.image.Raster;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import javax.imageio.ImageReader;
import javax.imageio.stream.ImageInputStream;

/**
 * Every PNG and JPEG image under a directory, prepared the way diffusers' train_unconditional.py
 * prepares an image folder (load, convert, resize and crop to the resolution, ToTensor, Normalize(0.5,
 * 0.5)), decoded once at construction and kept as 8-bit pixels:
 * <ol>
 *   <li>files: {@code *.png, *.jpg, *.jpeg} (any case) found recursively, following no symbolic links
 *       and skipping hidden files and directories (names starting with '.'), sorted by their relative
 *       path with '/' separators, so image {@code i} is the same file on every run and platform;</li>
 *   <li>decoding with {@link ImageIO}; a file it cannot decode (corrupt, truncated, CMYK JPEG, ...) is
 *       refused with an {@link IOException} naming the file — the dataset is never partially loaded;</li>
 *   <li>channels: 1 = luminance ({@code 0.299 R + 0.587 G + 0.114 B}, ITU-R 601 as PIL's
 *       {@code convert("L")}; grey images are read as stored, without the colour-space conversion
 *       {@code BufferedImage.getRGB} would apply), 3 = RGB (grey replicated); alpha is ignored, as
 *       PIL's {@code convert("RGB")} does; 16-bit samples are scaled to 8 bits;</li>
 *   <li>geometry: the largest centred crop with the target's aspect ratio, then a separable resize of
 *       each axis to the target size — area averaging (each output pixel the coverage-weighted mean of
 *       the input pixels under it) where the axis shrinks, bilinear interpolation with half-pixel
 *       centres where it grows, the identity where it keeps its size — computed in float64 and rounded
 *       to 8 bits (as the PIL image of the diffusers pipeline is);</li>
 *   <li>values: {@code p / 127.5 - 1} in [-1, 1], as {@link FashionMnist}.</li>
 * </ol>
 */
public final class ImageFolderDataset implements Dataset {
    /**
     * The most pixels an image file may declare: 2^24 (16.8 million, e.g. 4096 x 4096 or a 12-megapixel photo).
     * Decoding costs about 28 bytes a pixel here (the decoded image and the float64 planes it is resized from), so
     * an image at the limit takes about 470 MB while being prepared, once per decoding thread; a larger declared
     * size is refused from the file's header before any pixel is decoded. Raise it with the system property
     * {@value #MAX_PIXELS_PROPERTY}.
     */
    public static final long DEFAULT_MAX_PIXELS = 1L << 24;

    /** The system property that replaces {@link #DEFAULT_MAX_PIXELS}. */
    public static final String MAX_PIXELS_PROPERTY = "diffusion4j.maxImagePixels";

    /** The most pixels a side may have (the largest the PNG and JPEG decoders handle without trouble). */
    public static final int MAX_SIDE = 1 << 16;

    private final Path dir;
    private final List<String> files;
    private final byte[] pixels;
    private final int height;
    private final int width;
    private final int channels;
    private final List<String> classNames; // empty: unlabelled
    private final int[] labels;

    private ImageFolderDataset(Path dir, List<String> files, byte[] pixels, int height, int width, int channels,
                               List<String> classNames, int[] labels) {
        this.dir = dir;
        this.files = files;
        this.pixels = pixels;
        this.height = height;
        this.width = width;
        this.channels = channels;
        this.classNames = classNames;
        this.labels = labels;
    }

    /**
     * These images labelled by their sub-folder, as torchvision's ImageFolder does: every image must lie in a
     * sub-folder of the directory (its first path component), the classes are the sub-folder names sorted, class
     * i the i-th.
     *
     * @throws IOException if an image lies directly in the directory
     */
    public ImageFolderDataset labelledBySubfolder() throws IOException {
        java.util.TreeSet<String> names = new java.util.TreeSet<>();
        for (String f : files) {
            int slash = f.indexOf('/');
            if (slash < 0) {
                throw new IOException(dir.resolve(f) + ": class-conditional training takes one sub-folder per class,"
                        + " and this image lies directly in " + dir);
            }
            names.add(f.substring(0, slash));
        }
        List<String> classes = List.copyOf(names);
        int[] l = new int[files.size()];
        for (int i = 0; i < l.length; i++) l[i] = classes.indexOf(files.get(i).substring(0, files.get(i).indexOf('/')));
        return new ImageFolderDataset(dir, files, pixels, height, width, channels, classes, l);
    }

    @Override
    public int numClasses() {
        return classNames.size();
    }

    @Override
    public int label(int index) {
        if (labels == null) return Dataset.super.label(index);
        return labels[Objects.checkIndex(index, files.size())];
    }

    @Override
    public List<String> classNames() {
        return classNames;
    }

    /**
     * Loads every image under {@code dir} at {@code height x width} with {@code channels} (1 or 3).
     *
     * @throws IOException if {@code dir} is not a directory, holds no PNG/JPEG file, or a file cannot be read
     */
    public static ImageFolderDataset load(Path dir, int height, int width, int channels) throws IOException {
        Objects.requireNonNull(dir, "dir");
        if (height < 1 || width < 1 || height > 4096 || width > 4096) {
            throw new IllegalArgumentException("image size must be in [1, 4096], got " + height + "x" + width);
        }
        if (channels != 1 && channels != 3) {
            throw new IllegalArgumentException("an image folder gives 1 (luminance) or 3 (RGB) channels, the model needs "
                    + channels);
        }
        if (!Files.isDirectory(dir)) throw new IOException(dir + ": not a directory");
        List<String> files = list(dir);
        if (files.isEmpty()) throw new IOException(dir + ": no PNG or JPEG images (*.png, *.jpg, *.jpeg) in the directory tree");
        int per = height * width * channels;
        if ((long) per * files.size() > Integer.MAX_VALUE - 16) {
            throw new IOException(dir + ": " + files.size() + " images of " + height + "x" + width + "x" + channels
                    + " do not fit in memory as one array");
        }
        byte[] pixels = new byte[per * files.size()];
        ImageIO.setUseCache(false); // no temporary files
        String[] errors = new String[files.size()];
        // decoding is independent per file and writes disjoint ranges: the result does not depend on the order
        IntStream.range(0, files.size()).parallel().forEach(i -> {
            Path f = dir.resolve(files.get(i));
            try {
                prepare(read(f), height, width, channels, pixels, i * per);
            } catch (IOException | RuntimeException e) {
                errors[i] = f + ": " + (e.getMessage() == null ? e.toString() : e.getMessage());
            } catch (OutOfMemoryError e) {
                // what the header allowed still did not fit: this file's message, not a crash of the whole run
                errors[i] = f + ": out of memory while decoding it (" + e.getMessage() + "); lower -D"
                        + MAX_PIXELS_PROPERTY + " or raise -Xmx";
            }
        });
        for (String e : errors) {
            if (e != null) throw new IOException(e); // the first failing file in the sorted order
        }
        return new ImageFolderDataset(dir, List.copyOf(files), pixels, height, width, channels, List.of(), null);
    }

    /**
     * One image file prepared as this class prepares every image (decode, luminance or RGB, center crop, resize),
     * as 8-bit HWC pixels.
     *
     * @throws IOException naming the file if it cannot be read or decoded
     */
    public static byte[] loadPixels(Path file, int height, int width, int channels) throws IOException {
        Objects.requireNonNull(file, "file");
        if (height < 1 || width < 1 || height > 4096 || width > 4096) {
            throw new IllegalArgumentException("image size must be in [1, 4096], got " + height + "x" + width);
        }
        if (channels != 1 && channels != 3) {
            throw new IllegalArgumentException("an image gives 1 (luminance) or 3 (RGB) channels, the model needs " + channels);
        }
        if (!Files.isRegularFile(file)) throw new IOException(file + ": no such image file");
        byte[] out = new byte[height * width * channels];
        ImageIO.setUseCache(false);
        try {
            prepare(read(file), height, width, channels, out, 0);
        } catch (IOException | RuntimeException e) {
            throw new IOException(file + ": " + (e.getMessage() == null ? e.toString() : e.getMessage()), e);
        } catch (OutOfMemoryError e) {
            throw new IOException(file + ": out of memory while decoding it (" + e.getMessage() + ")");
        }
        return out;
    }

    /**
     * {@link #loadPixels(Path, int, int, int)} for an encoded image held in memory (PNG or JPEG bytes, as a
     * request body carries them). The image's declared size is read from its header first: an image wider or
     * taller than {@code maxSide} or with more than {@code maxPixels} pixels is refused before any pixel is
     * decoded, so a small file that declares a huge image cannot make the decoder allocate for it.
     *
     * @throws IOException saying why the bytes are not a usable image (no decoder, too large, corrupt)
     */
    public static byte[] loadPixels(byte[] encoded, int height, int width, int channels, int maxSide, long maxPixels)
            throws IOException {
        Objects.requireNonNull(encoded, "encoded");
        if (height < 1 || width < 1 || height > 4096 || width > 4096) {
            throw new IllegalArgumentException("image size must be in [1, 4096], got " + height + "x" + width);
        }
        if (channels != 1 && channels != 3) {
            throw new IllegalArgumentException("an image gives 1 (luminance) or 3 (RGB) channels, the model needs " + channels);
        }
        byte[] out = new byte[height * width * channels];
        ImageIO.setUseCache(false);
        BufferedImage img;
        try (ImageInputStream in = ImageIO.createImageInputStream(new ByteArrayInputStream(encoded))) {
            if (in == null) throw new IOException("not a readable PNG or JPEG image (no decoder recognises it)");
            img = decode(in, maxSide, maxPixels);
        } catch (IOException | RuntimeException e) {
            throw new IOException(e.getMessage() == null ? e.toString() : e.getMessage(), e);
        }
        try {
            prepare(img, height, width, channels, out, 0);
        } catch (RuntimeException e) {
            throw new IOException(e.getMessage() == null ? e.toString() : e.getMessage(), e);
        }
        return out;
    }

    /** The image files under {@code dir}, relative, '/'-separated, sorted. */
    static List<String> list(Path dir) throws IOException {
        List<String> out = new ArrayList<>();
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                if (!Files.isRegularFile(p)) continue;
                Path rel = dir.relativize(p);
                boolean hidden = false;
                for (Path part : rel) hidden |= part.toString().startsWith(".");
                String name = p.getFileName().toString().toLowerCase(Locale.ROOT);
                if (hidden || !(name.endsWith(".png") || name.endsWith(".jpg") || name.endsWith(".jpeg"))) continue;
                StringBuilder sb = new StringBuilder();
                for (Path part : rel) sb.append(sb.isEmpty() ? "" : "/").append(part);
                out.add(sb.toString());
            }
        }
        out.sort(null);
        return out;
    }

    /** The pixel limit in effect: {@value #MAX_PIXELS_PROPERTY} when set to a positive count, else the default. */
    public static long maxPixels() {
        return io.diffusion4j.model.ModelLimits.positiveLimit(MAX_PIXELS_PROPERTY, DEFAULT_MAX_PIXELS, "pixel count");
    }

    /**
     * Decodes an image file after reading its declared size from the header: more than {@link #maxPixels()} pixels
     * or {@link #MAX_SIDE} a side is refused before any pixel is decoded.
     */
    private static BufferedImage read(Path f) throws IOException {
        try (ImageInputStream in = ImageIO.createImageInputStream(f.toFile())) {
            if (in == null) throw new IOException("cannot open the file");
            return decode(in, MAX_SIDE, maxPixels());
        }
    }

    /** The first image of a stream, refused from its header when larger than the limits. */
    private static BufferedImage decode(ImageInputStream in, int maxSide, long maxPixels) throws IOException {
        // PNG and JPEG decoders only, whatever the file's name: the JDK's other decoders (TIFF, BMP, GIF) size
        // buffers from counts the file declares before this size check could see them
        Iterator<ImageReader> readers = ImageIO.getImageReaders(in);
        ImageReader reader = null;
        while (reader == null && readers.hasNext()) {
            ImageReader r = readers.next();
            String format = r.getFormatName().toLowerCase(java.util.Locale.ROOT);
            if (format.equals("png") || format.equals("jpeg") || format.equals("jpg")) reader = r;
            else r.dispose();
        }
        if (reader == null) throw new IOException("not a readable PNG or JPEG image (no decoder recognises it)");
        try {
            reader.setInput(in, true, true);
            int sw = reader.getWidth(0), sh = reader.getHeight(0);
            if (sw < 1 || sh < 1) throw new IOException("empty image");
            if (sw > maxSide || sh > maxSide || (long) sw * sh > maxPixels) {
                throw new IOException("the image is " + sw + "x" + sh + "; at most " + maxSide + " pixels a side and "
                        + maxPixels + " pixels are accepted (raise with -D" + MAX_PIXELS_PROPERTY + "=N)");
            }
            BufferedImage img = reader.read(0, reader.getDefaultReadParam());
            if (img == null || img.getWidth() < 1 || img.getHeight() < 1) throw new IOException("empty image");
            return img;
        } finally {
            reader.dispose();
        }
    }

    /** Source pixels as float64 planes [c][y][x] in 0..255, 1 (luminance) or 3 (RGB) channels. */
    static double[][] planes(BufferedImage img, int channels) {
        int w = img.getWidth(), h = img.getHeight();
        double[][] out = new double[channels][w * h];
        ColorModel cm = img.getColorModel();
        boolean grey = cm.getColorSpace().getType() == ColorSpace.TYPE_GRAY && !(cm instanceof IndexColorModel);
        if (grey) {
            Raster r = img.getRaster();
            double scale = 255.0 / ((1L << cm.getComponentSize(0)) - 1);
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    double v = r.getSample(x, y, 0) * scale;
                    for (int c = 0; c < channels; c++) out[c][y * w + x] = v;
                }
            }
            return out;
        }
        int[] argb = img.getRGB(0, 0, w, h, null, 0, w);
        for (int i = 0; i < argb.length; i++) {
            int r = (argb[i] >> 16) & 0xFF, g = (argb[i] >> 8) & 0xFF, b = argb[i] & 0xFF;
            if (channels == 1) {
                out[0][i] = 0.299 * r + 0.587 * g + 0.114 * b;
            } else {
                out[0][i] = r;
                out[1][i] = g;
                out[2][i] = b;
            }
        }
        return out;
    }

    /** Crops, resizes and quantises one image into {@code dst[offset ..]} as HWC bytes. */
    static void prepare(BufferedImage img, int height, int width, int channels, byte[] dst, int offset) {
        int sw = img.getWidth(), sh = img.getHeight();
        double[][] src = planes(img, channels);
        // the largest centred crop with the target aspect ratio width:height
        int cw = sw, ch = sh;
        if ((long) sw * height > (long) sh * width) {
            cw = (int) Math.max(1, Math.min(sw, Math.round((double) sh * width / height)));
        } else {
            ch = (int) Math.max(1, Math.min(sh, Math.round((double) sw * height / width)));
        }
        int x0 = (sw - cw) / 2, y0 = (sh - ch) / 2;
        Kernel kx = Kernel.of(cw, width), ky = Kernel.of(ch, height);
        double[] rows = new double[ch * width];
        for (int c = 0; c < channels; c++) {
            double[] s = src[c];
            for (int y = 0; y < ch; y++) {
                int base = (y0 + y) * sw + x0;
                for (int x = 0; x < width; x++) {
                    double acc = 0;
                    for (int k = kx.start[x], e = kx.start[x + 1]; k < e; k++) acc += kx.weight[k] * s[base + kx.index[k]];
                    rows[y * width + x] = acc;
                }
            }
            for (int y = 0; y < height; y++) {
                for (int x = 0; x < width; x++) {
                    double acc = 0;
                    for (int k = ky.start[y], e = ky.start[y + 1]; k < e; k++) acc += ky.weight[k] * rows[ky.index[k] * width + x];
                    long q = Math.round(acc);
                    dst[offset + (y * width + x) * channels + c] = (byte) Math.max(0, Math.min(255, q));
                }
            }
        }
    }

    /**
     * The 1-D resampling of {@code n} inputs to {@code m} outputs: output j is {@code sum weight[k] *
     * in[index[k]]} for k in {@code start[j] .. start[j+1]}. Area averaging when shrinking, bilinear
     * (half-pixel centres, clamped at the edges) when growing, the identity for equal sizes.
     */
    record Kernel(int[] start, int[] index, double[] weight) {
        static Kernel of(int n, int m) {
            int[] start = new int[m + 1];
            List<int[]> idx = new ArrayList<>();
            List<Double> wts = new ArrayList<>();
            for (int j = 0; j < m; j++) {
                start[j] = wts.size();
                if (m == n) {
                    idx.add(new int[] {j});
                    wts.add(1.0);
                } else if (m < n) { // output j covers [j * n / m, (j + 1) * n / m) of the input
                    double a = (double) j * n / m, b = (double) (j + 1) * n / m;
                    for (int i = (int) Math.floor(a); i < Math.min(n, (int) Math.ceil(b)); i++) {
                        double cover = Math.min(b, i + 1) - Math.max(a, i);
                        if (cover > 0) {
                            idx.add(new int[] {i});
                            wts.add(cover * m / n);
                        }
                    }
                } else {
                    double x = Math.max(0, Math.min(n - 1, (j + 0.5) * n / m - 0.5));
                    int i0 = (int) Math.floor(x);
                    int i1 = Math.min(n - 1, i0 + 1);
                    double f = x - i0;
                    idx.add(new int[] {i0});
                    wts.add(1 - f);
                    if (f > 0) {
                        idx.add(new int[] {i1});
                        wts.add(f);
                    }
                }
            }
            start[m] = wts.size();
            int[] index = new int[wts.size()];
            double[] weight = new double[wts.size()];
            for (int k = 0; k < index.length; k++) {
                index[k] = idx.get(k)[0];
                weight[k] = wts.get(k);
            }
            return new Kernel(start, index, weight);
        }
    }

    /** The image files, relative to the directory, in dataset order. */
    public List<String> files() {
        return files;
    }

    /** Pixel {@code (index, y, x, c)} in 0..255 after crop and resize. */
    public int pixel(int index, int y, int x, int c) {
        Objects.checkIndex(index, files.size());
        Objects.checkIndex(y, height);
        Objects.checkIndex(x, width);
        Objects.checkIndex(c, channels);
        return pixels[((index * height + y) * width + x) * channels + c] & 0xFF;
    }

    @Override
    public int size() {
        return files.size();
    }

    @Override
    public int height() {
        return height;
    }

    @Override
    public int width() {
        return width;
    }

    @Override
    public int channels() {
        return channels;
    }

    @Override
    public void image(int index, float[] dst, int offset) {
        Objects.checkIndex(index, files.size());
        int n = imageFloats();
        Objects.checkFromIndexSize(offset, n, dst.length);
        int base = index * n;
        for (int i = 0; i < n; i++) dst[offset + i] = (pixels[base + i] & 0xFF) / 127.5f - 1f;
    }

    @Override
    public String describe() {
        return "images " + dir + " (" + files.size() + " files, center-cropped and resized to " + height + "x" + width + "x"
                + channels + (labels == null ? "" : ", " + classNames.size() + " classes by sub-folder") + ")";
    }
}
