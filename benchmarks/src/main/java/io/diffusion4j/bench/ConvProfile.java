package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Times every convolution of a model separately for forward, dX only and dW only (for the CPU profile): the
 * per-shape table that says where the convolution time of a training or denoising step goes. {@code --model
 * fashion} (default): the Fashion-MNIST model (TrainingDefaults.config(): 28x28x1, block_out_channels 32/64/64, one
 * layer per block); {@code --model cifar10}: google/ddpm-cifar10-32's architecture. Prints, per batch size, one row
 * per distinct shape (with its multiplicity in the model) and the totals per step: ms per call, GFLOP/s.
 *
 * <p>Usage: {@code java --enable-native-access=ALL-UNNAMED -cp src/cli/target/diffusion4j.jar:CLASSES
 * io.diffusion4j.bench.ConvProfile [--model fashion|cifar10] [--threads 2] [--batches 64,16] [--seconds 0.4]
 * [--forward-only] [--cold-weights] [--library libd4j_cpu.so[,other.so]] [--shapes conv_in,downsample]}:
 * {@code --shapes} keeps the shapes whose name contains one of the given strings (the totals then cover those
 * shapes only); {@code --forward-only} skips dX and dW; {@code --cold-weights} gives each call the next of enough
 * weight copies (about 192 MiB) that its weights come from memory, as in a whole model's forward at small batches,
 * whose weights do not fit in the caches (without it every call finds its weights in the cache, which flatters
 * weight-bound shapes). Several comma-separated libraries (two builds to compare) are loaded side by side in one
 * process and timed in turn on every (shape, call), three rounds, medians reported: one table per build, all taken
 * under the same machine load.
 */
public final class ConvProfile {
    private ConvProfile() {}

    /** One convolution shape of the model: input [N, h, w, cIn], weight [k, k, cIn, cOut], count in the model. */
    record Shape(String name, int h, int cIn, int cOut, Conv2dSpec spec, int count) {
        long outPixels(int n) {
            long ho = spec.outputHeight(h);
            return n * ho * spec.outputWidth(h);
        }

        double gflop(int n) {
            return 2.0 * outPixels(n) * spec.kernelSize() * spec.kernelSize() * cIn * cOut / 1e9;
        }
    }

    static List<Shape> fashionShapes() {
        Conv2dSpec s3 = Conv2dSpec.same3x3(), s1 = Conv2dSpec.pointwise(), dn = Conv2dSpec.downsample3x3(1),
                up = Conv2dSpec.upsample3x3();
        return List.of(
                new Shape("conv_in", 28, 1, 32, s3, 1),
                new Shape("res 32->32 @28 (down0 conv1/conv2, up2.1 conv2, up2.0 conv2)", 28, 32, 32, s3, 4),
                new Shape("downsample 32 @28->14", 28, 32, 32, dn, 1),
                new Shape("res 32->64 @14 conv1 (down1)", 14, 32, 64, s3, 1),
                new Shape("res 64->64 @14 (down1 conv2, up1.0/1 conv2)", 14, 64, 64, s3, 3),
                new Shape("shortcut 1x1 32->64 @14", 14, 32, 64, s1, 1),
                new Shape("downsample 64 @14->7", 14, 64, 64, dn, 1),
                new Shape("res 64->64 @7 (down2, mid x2: conv1+conv2; up0.x conv2)", 7, 64, 64, s3, 8),
                new Shape("res 128->64 @7 conv1 (up0.0, up0.1)", 7, 128, 64, s3, 2),
                new Shape("shortcut 1x1 128->64 @7", 7, 128, 64, s1, 2),
                new Shape("upsample 64 @7->14", 7, 64, 64, up, 1),
                new Shape("res 128->64 @14 conv1 (up1.0)", 14, 128, 64, s3, 1),
                new Shape("res 96->64 @14 conv1 (up1.1)", 14, 96, 64, s3, 1),
                new Shape("shortcut 1x1 128->64 @14", 14, 128, 64, s1, 1),
                new Shape("shortcut 1x1 96->64 @14", 14, 96, 64, s1, 1),
                new Shape("upsample 64 @14->28", 14, 64, 64, up, 1),
                new Shape("res 96->32 @28 conv1 (up2.0)", 28, 96, 32, s3, 1),
                new Shape("res 64->32 @28 conv1 (up2.1)", 28, 64, 32, s3, 1),
                new Shape("shortcut 1x1 96->32 @28", 28, 96, 32, s1, 1),
                new Shape("shortcut 1x1 64->32 @28", 28, 64, 32, s1, 1),
                new Shape("conv_out", 28, 32, 1, s3, 1));
    }

    /** google/ddpm-cifar10-32 (src/library/src/test/resources/crosscheck/ddpm-cifar10-32.json): 32x32x3, 128/256/256/256. */
    static List<Shape> cifar10Shapes() {
        Conv2dSpec s3 = Conv2dSpec.same3x3(), s1 = Conv2dSpec.pointwise(), dn = Conv2dSpec.downsample3x3(1),
                up = Conv2dSpec.upsample3x3();
        return List.of(
                new Shape("conv_in", 32, 3, 128, s3, 1),
                new Shape("res 128->128 @32 (down0 x4, up3 conv2 x3)", 32, 128, 128, s3, 7),
                new Shape("downsample 128 @32->16", 32, 128, 128, dn, 1),
                new Shape("res 128->256 @16 conv1 (down1.0)", 16, 128, 256, s3, 1),
                new Shape("res 256->256 @16 (down1 x3, up2 conv2 x3)", 16, 256, 256, s3, 6),
                new Shape("shortcut 1x1 128->256 @16", 16, 128, 256, s1, 1),
                new Shape("downsample 256 @16->8", 16, 256, 256, dn, 1),
                new Shape("res 256->256 @8 (down2 x4, up1 conv2 x3)", 8, 256, 256, s3, 7),
                new Shape("downsample 256 @8->4", 8, 256, 256, dn, 1),
                new Shape("res 256->256 @4 (down3 x4, mid x4, up0 conv2 x3)", 4, 256, 256, s3, 11),
                new Shape("res 512->256 @4 conv1 (up0 x3)", 4, 512, 256, s3, 3),
                new Shape("shortcut 1x1 512->256 @4", 4, 512, 256, s1, 3),
                new Shape("upsample 256 @4->8", 4, 256, 256, up, 1),
                new Shape("res 512->256 @8 conv1 (up1 x3)", 8, 512, 256, s3, 3),
                new Shape("shortcut 1x1 512->256 @8", 8, 512, 256, s1, 3),
                new Shape("upsample 256 @8->16", 8, 256, 256, up, 1),
                new Shape("res 512->256 @16 conv1 (up2.0, up2.1)", 16, 512, 256, s3, 2),
                new Shape("res 384->256 @16 conv1 (up2.2)", 16, 384, 256, s3, 1),
                new Shape("shortcut 1x1 512->256 @16", 16, 512, 256, s1, 2),
                new Shape("shortcut 1x1 384->256 @16", 16, 384, 256, s1, 1),
                new Shape("upsample 256 @16->32", 16, 256, 256, up, 1),
                new Shape("res 384->128 @32 conv1 (up3.0)", 32, 384, 128, s3, 1),
                new Shape("res 256->128 @32 conv1 (up3.1, up3.2)", 32, 256, 128, s3, 2),
                new Shape("shortcut 1x1 384->128 @32", 32, 384, 128, s1, 1),
                new Shape("shortcut 1x1 256->128 @32", 32, 256, 128, s1, 2),
                new Shape("conv_out", 32, 128, 3, s3, 1));
    }

    interface Call {
        void run();
    }

    /** Median ms of repeated calls for about `seconds`. */
    static double time(Call c, double seconds) {
        c.run();
        c.run();
        long t0 = System.nanoTime();
        c.run();
        double once = (System.nanoTime() - t0) / 1e9;
        int iters = (int) Math.max(3, Math.min(200, seconds / Math.max(once, 1e-6)));
        double[] ms = new double[iters];
        for (int i = 0; i < iters; i++) {
            long a = System.nanoTime();
            c.run();
            ms[i] = (System.nanoTime() - a) / 1e6;
        }
        Arrays.sort(ms);
        return ms[iters / 2];
    }

    static Tensor random(Backend be, SplittableRandom r, long... shape) {
        float[] v = new float[(int) Tensor.elementCount(shape)];
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
        return Tensor.of(be, v, shape);
    }

    /** One shape on one backend: its tensors and the three timed calls. */
    static final class Bench implements AutoCloseable {
        final List<Tensor> owned = new ArrayList<>();
        final Call[] calls;

        Bench(Backend be, Shape s, int n, SplittableRandom r, boolean cold) {
            int k = s.spec().kernelSize();
            long[] xs = {n, s.h(), s.h(), s.cIn()};
            long[] ys = s.spec().outputShape(xs, s.cOut());
            Tensor x = random(be, r, xs), b = random(be, r, s.cOut()), dy = random(be, r, ys),
                    y = Tensor.allocate(be, DType.FLOAT32, ys), dx = Tensor.allocate(be, DType.FLOAT32, xs),
                    dw = Tensor.allocate(be, DType.FLOAT32, k, k, s.cIn(), s.cOut());
            owned.addAll(List.of(x, b, dy, y, dx, dw));
            // cold: enough copies of the weights (about 192 MiB) that each call reads its weights from memory, as a
            // model's forward at batch 1 does (its weights do not fit in the caches); activations stay hot
            long wBytes = 4L * k * k * s.cIn() * s.cOut();
            int copies = cold ? (int) Math.min(256, Math.max(2, (192L << 20) / wBytes)) : 1;
            Tensor[] ws = new Tensor[copies];
            for (int i = 0; i < copies; i++) {
                ws[i] = random(be, r, k, k, s.cIn(), s.cOut());
                owned.add(ws[i]);
            }
            int[] next = {0};
            java.util.function.Supplier<Tensor> w = () -> ws[next[0]++ % copies];
            dw.fill(0f);
            calls = new Call[] {() -> ConvKernels.forward(s.spec(), x, w.get(), b, y),
                    () -> ConvKernels.backward(s.spec(), x, w.get(), dy, dx, null, null),
                    () -> ConvKernels.backward(s.spec(), x, w.get(), dy, null, dw, null)};
        }

        @Override
        public void close() {
            for (Tensor t : owned) t.close();
        }
    }

    public static void main(String[] args) {
        int threads = 2;
        int[] batches = {64, 16};
        double seconds = 0.4;
        String[] libraries = {null};
        String[] only = null;
        boolean cifar = false, cold = false;
        int calls = 3;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--batches" -> batches = Arrays.stream(args[++i].split(",")).mapToInt(Integer::parseInt).toArray();
                case "--seconds" -> seconds = Double.parseDouble(args[++i]);
                case "--library" -> libraries = args[++i].split(",");
                case "--shapes" -> only = args[++i].split(",");
                case "--model" -> cifar = switch (args[++i]) {
                    case "fashion" -> false;
                    case "cifar10" -> true;
                    default -> throw new IllegalArgumentException("--model fashion or cifar10, got " + args[i]);
                };
                case "--forward-only" -> calls = 1;
                case "--cold-weights" -> cold = true;
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        final String[] keep = only;
        int libs = libraries.length;
        // with several libraries every (shape, call) is timed on each in turn, `rounds` times, and the median of
        // the rounds is reported: the builds see the same machine load
        int rounds = libs > 1 ? 3 : 1;
        List<Backend> backends = new ArrayList<>();
        try {
            for (String lib : libraries) {
                Backend be = lib == null ? Backend.open(Device.CPU)
                        : Backend.openLibrary(Device.CPU, java.nio.file.Path.of(lib));
                backends.add(be);
                be.setThreads(threads);
            }
            List<StringBuilder> out = new ArrayList<>();
            for (int l = 0; l < libs; l++) {
                StringBuilder sb = new StringBuilder();
                sb.append("# conv2d per shape, ").append(backends.get(l).description()).append(", ").append(threads)
                        .append(" threads").append(libraries[l] == null ? "" : ", " + libraries[l])
                        .append(libs > 1 ? ", interleaved with " + (libs - 1) + " other build(s), median of "
                                + rounds + " rounds" : "").append('\n');
                out.add(sb);
            }
            for (int n : batches) {
                double[][] tot = new double[libs][3];
                double gf = 0;
                for (StringBuilder sb : out) {
                    sb.append(String.format(Locale.ROOT, "%n## batch %d%n%n", n));
                    sb.append("| shape | x count | GFLOP/call | fwd ms | fwd GFLOP/s | dX ms | dX GFLOP/s | dW ms | dW GFLOP/s |\n");
                    sb.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
                }
                for (Shape s : cifar ? cifar10Shapes() : fashionShapes()) {
                    if (keep != null && Arrays.stream(keep).noneMatch(o -> s.name().contains(o))) continue;
                    List<Bench> benches = new ArrayList<>();
                    for (Backend be : backends) benches.add(new Bench(be, s, n, new SplittableRandom(42), cold));
                    double[][][] ms = new double[libs][3][rounds];
                    for (int c = 0; c < calls; c++)
                        for (int round = 0; round < rounds; round++)
                            for (int l = 0; l < libs; l++) ms[l][c][round] = time(benches.get(l).calls[c], seconds / rounds);
                    for (Bench bench : benches) bench.close();
                    double g = s.gflop(n);
                    gf += g * s.count();
                    for (int l = 0; l < libs; l++) {
                        double[] m = new double[3];
                        for (int c = 0; c < calls; c++) {
                            Arrays.sort(ms[l][c]);
                            m[c] = ms[l][c][rounds / 2];
                            tot[l][c] += m[c] * s.count();
                        }
                        out.get(l).append(String.format(Locale.ROOT,
                                "| %s | %d | %.3f | %.3f | %.1f | %.3f | %.1f | %.3f | %.1f |%n", s.name(), s.count(), g,
                                m[0], g / m[0] * 1e3, m[1], g / m[1] * 1e3, m[2], g / m[2] * 1e3));
                    }
                }
                for (int l = 0; l < libs; l++)
                    out.get(l).append(String.format(Locale.ROOT,
                            "| **per step (x count)** | | %.3f | %.2f | %.1f | %.2f | %.1f | %.2f | %.1f |%n", gf,
                            tot[l][0], gf / tot[l][0] * 1e3, tot[l][1], gf / tot[l][1] * 1e3, tot[l][2],
                            gf / tot[l][2] * 1e3));
            }
            for (StringBuilder sb : out) System.out.println(sb);
        } finally {
            for (Backend be : backends) be.close();
        }
    }
}
