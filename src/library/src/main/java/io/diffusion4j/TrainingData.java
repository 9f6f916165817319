package io.diffusion4j;

import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.train.Dataset;
import io.diffusion4j.train.FashionMnist;
import io.diffusion4j.train.ImageFolderDataset;
import io.diffusion4j.train.ProceduralDataset;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * The images a {@link TrainingRun} trains on: the built-in procedural shapes (no download), Fashion-MNIST,
 * a folder of PNG/JPEG files, or images given as float arrays. Immutable; files are read when the run is
 * built.
 */
public final class TrainingData {
    /** Number of distinct images of {@link #procedural()}. */
    public static final int PROCEDURAL_IMAGES = ProceduralDataset.TRAINING_IMAGES;

    private enum Kind { PROCEDURAL, FASHION_MNIST, IMAGES, ARRAYS }

    private final Kind kind;
    private final Path dir;
    private final float[] nchw;
    private final int count, channels, height, width;
    private final int[] labels; // fromArray data with labels, else null
    private final int numClasses;

    private TrainingData(Kind kind, Path dir, float[] nchw, int count, int channels, int height, int width) {
        this(kind, dir, nchw, count, channels, height, width, null, 0);
    }

    private TrainingData(Kind kind, Path dir, float[] nchw, int count, int channels, int height, int width, int[] labels,
                         int numClasses) {
        this.labels = labels;
        this.numClasses = numClasses;
        this.kind = kind;
        this.dir = dir;
        this.nchw = nchw;
        this.count = count;
        this.channels = channels;
        this.height = height;
        this.width = width;
    }

    /**
     * The built-in procedural dataset: 60,000 images of 1 to 3 shapes (discs, rectangles, stripes) on a dark
     * background, generated at the model's {@code sample_size} and {@code in_channels} from the run's seed.
     *
     * @return the data source
     */
    public static TrainingData procedural() {
        return new TrainingData(Kind.PROCEDURAL, null, null, 0, 0, 0, 0);
    }

    /**
     * The Fashion-MNIST training set (60,000 images 28x28x1) from the IDX files in {@code dir}
     * ({@code train-images-idx3-ubyte.gz}; Debian's {@code dataset-fashion-mnist} package installs them in
     * {@code /usr/share/datasets/fashion-mnist}).
     *
     * @param dir the folder of the IDX files
     * @return the data source
     */
    public static TrainingData fashionMnist(Path dir) {
        return new TrainingData(Kind.FASHION_MNIST, Objects.requireNonNull(dir, "dir"), null, 0, 0, 0, 0);
    }

    /**
     * Every PNG and JPEG file under {@code dir} (recursively, in sorted order), center-cropped and resized to the
     * model's {@code sample_size}, as luminance (1 channel) or RGB (3 channels) by its {@code in_channels}.
     *
     * @param dir the folder
     * @return the data source
     */
    public static TrainingData imageFolder(Path dir) {
        return new TrainingData(Kind.IMAGES, Objects.requireNonNull(dir, "dir"), null, 0, 0, 0, 0);
    }

    /**
     * Images given as floats in [-1, 1], NCHW {@code [count, channels, height, width]}; the array is copied.
     *
     * @param nchw the images
     * @param count number of images, at least 1
     * @param channels channels per image
     * @param height image height
     * @param width image width
     * @return the data source
     * @throws IllegalArgumentException if the array length is not {@code count * channels * height * width},
     *     a dimension is below 1, or a value is not finite
     */
    public static TrainingData fromArray(float[] nchw, int count, int channels, int height, int width) {
        Objects.requireNonNull(nchw, "nchw");
        if (count < 1 || channels < 1 || height < 1 || width < 1) {
            throw new IllegalArgumentException("count, channels, height and width must be >= 1, got " + count + ", "
                    + channels + ", " + height + ", " + width);
        }
        if ((long) count * channels * height * width != nchw.length) {
            throw new IllegalArgumentException("nchw has " + nchw.length + " floats, [" + count + ", " + channels + ", "
                    + height + ", " + width + "] needs " + (long) count * channels * height * width);
        }
        for (int i = 0; i < nchw.length; i++) {
            if (!Float.isFinite(nchw[i])) throw new IllegalArgumentException("nchw[" + i + "] is not finite: " + nchw[i]);
        }
        return new TrainingData(Kind.ARRAYS, null, nchw.clone(), count, channels, height, width);
    }

    /** The train command's name of the source ({@code --data}), or null for arrays. */
    String commandName() {
        return switch (kind) {
            case PROCEDURAL -> "procedural";
            case FASHION_MNIST -> "fashion-mnist";
            case IMAGES -> "images";
            case ARRAYS -> null;
        };
    }

    Path directory() {
        return dir;
    }

    /**
     * The same in-memory images with class labels (for class-conditional training): one label per image, classes
     * {@code 0 .. numClasses - 1}, named by their numbers.
     *
     * @param labels one per image, each in {@code [0, numClasses)}
     * @param numClasses at least 1
     * @return the labelled data source
     * @throws IllegalStateException if this source is not {@link #fromArray} data
     * @throws IllegalArgumentException if the labels do not fit
     */
    public TrainingData withClassLabels(int[] labels, int numClasses) {
        Objects.requireNonNull(labels, "labels");
        if (kind != Kind.ARRAYS) throw new IllegalStateException("labels can be given to fromArray data only; " + this
                + " reads its own (Fashion-MNIST's label files, an image folder's sub-folders)");
        if (numClasses < 1) throw new IllegalArgumentException("numClasses must be >= 1, got " + numClasses);
        if (labels.length != count) {
            throw new IllegalArgumentException("labels has " + labels.length + " entries for " + count + " images");
        }
        for (int i = 0; i < labels.length; i++) {
            if (labels[i] < 0 || labels[i] >= numClasses) {
                throw new IllegalArgumentException("labels[" + i + "] = " + labels[i] + " is outside [0, " + numClasses + ")");
            }
        }
        return new TrainingData(kind, dir, nchw, count, channels, height, width, labels.clone(), numClasses);
    }

    /** The dataset for a model of this config, reading files now; {@code labelled}: with class labels. */
    Dataset open(UNet2DConfig config, long seed, boolean labelled) throws IOException {
        int h = config.sampleHeight(), w = config.sampleWidth();
        if (labelled && (kind == Kind.PROCEDURAL || (kind == Kind.ARRAYS && labels == null))) {
            throw new IllegalArgumentException("class-conditional training needs labelled data: Fashion-MNIST, an image"
                    + " folder with one sub-folder per class, or fromArray(...).withClassLabels(...); got " + this);
        }
        return switch (kind) {
            case PROCEDURAL -> ProceduralDataset.forModel(config, seed);
            case FASHION_MNIST -> labelled ? FashionMnist.loadLabelled(dir, true, Math.max(h, 0), Math.max(w, 0))
                    : FashionMnist.load(dir, true, Math.max(h, 0), Math.max(w, 0));
            case IMAGES -> {
                if (h < 0) throw new IllegalArgumentException("image folders are resized to the model's sample_size, and its config has none");
                ImageFolderDataset images = ImageFolderDataset.load(dir, h, w, config.inChannels());
                yield labelled ? images.labelledBySubfolder() : images;
            }
            case ARRAYS -> labelled ? new LabelledArrays(new ArrayDataset(nchw, count, channels, height, width), labels,
                    numClasses) : new ArrayDataset(nchw, count, channels, height, width);
        };
    }

    /** Array images with labels, classes named by their numbers. */
    private record LabelledArrays(ArrayDataset images, int[] labels, int classes) implements Dataset {
        public int size() { return images.size(); }
        public int height() { return images.height(); }
        public int width() { return images.width(); }
        public int channels() { return images.channels(); }
        public void image(int index, float[] dst, int offset) { images.image(index, dst, offset); }
        public String describe() { return images.describe() + ", " + classes + " classes"; }
        public int numClasses() { return classes; }
        public int label(int index) { return labels[index]; }
        public java.util.List<String> classNames() {
            return java.util.stream.IntStream.range(0, classes).mapToObj(Integer::toString).toList();
        }
    }

    /** NCHW floats served as the HWC images the trainer reads. */
    private record ArrayDataset(float[] nchw, int size, int channels, int height, int width) implements Dataset {
        @Override
        public void image(int index, float[] dst, int offset) {
            if (index < 0 || index >= size) throw new IndexOutOfBoundsException("image " + index + " of " + size);
            int hw = height * width, base = index * channels * hw;
            for (int p = 0; p < hw; p++) {
                for (int c = 0; c < channels; c++) dst[offset + p * channels + c] = nchw[base + c * hw + p];
            }
        }

        @Override
        public String describe() {
            return "in-memory images (" + size + " images " + height + "x" + width + "x" + channels + ")";
        }
    }

    /**
     * A short description of the source.
     *
     * @return the description
     */
    @Override
    public String toString() {
        return switch (kind) {
            case PROCEDURAL -> "TrainingData[procedural]";
            case FASHION_MNIST -> "TrainingData[fashion-mnist " + dir + "]";
            case IMAGES -> "TrainingData[images " + dir + "]";
            case ARRAYS -> "TrainingData[" + count + " arrays " + channels + "x" + height + "x" + width + "]";
        };
    }
}
