package io.diffusion4j.kernels;

import static io.diffusion4j.kernels.TensorChecks.requireFloat;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;

/**
 * 2-D convolution of diffusers' UNet2DModel (ResnetBlock2D convs and shortcut, Downsample2D,
 * Upsample2D) on NHWC activations and HWIO weights; see {@code d4j_conv2d_forward} and
 * {@code d4j_conv2d_backward} in native/include/d4j.h for the exact semantics and output size.
 * Shapes: x {@code [N, H, W, C_in]}, weight {@code [K, K, C_in, C_out]}, bias {@code [C_out]},
 * y and dy {@code [N, H_out, W_out, C_out]}. All tensors of a call must be float32 and on one backend.
 */
public final class ConvKernels {
    private ConvKernels() {}

    /**
     * Geometry of one convolution: kernel size (1 or 3), stride (1 or 2), zero padding per side (each in
     * [0, kernelSize - 1]) and whether the input is read as its nearest-neighbour 2x upsampling.
     */
    public record Conv2dSpec(int kernelSize, int stride, int padTop, int padLeft, int padBottom, int padRight,
                             boolean upsample2x) {
        public Conv2dSpec {
            if (kernelSize != 1 && kernelSize != 3) {
                throw new IllegalArgumentException("kernelSize must be 1 or 3, got " + kernelSize);
            }
            if (stride != 1 && stride != 2) throw new IllegalArgumentException("stride must be 1 or 2, got " + stride);
            int[] pads = {padTop, padLeft, padBottom, padRight};
            String[] names = {"padTop", "padLeft", "padBottom", "padRight"};
            for (int i = 0; i < 4; i++) {
                if (pads[i] < 0 || pads[i] > kernelSize - 1) {
                    throw new IllegalArgumentException(names[i] + " must be in [0, " + (kernelSize - 1) + "], got "
                            + pads[i]);
                }
            }
        }

        /** 3x3, stride 1, padding 1 (conv1/conv2 of ResnetBlock2D, conv_in, conv_out). */
        public static Conv2dSpec same3x3() {
            return new Conv2dSpec(3, 1, 1, 1, 1, 1, false);
        }

        /** 1x1 shortcut (conv_shortcut of ResnetBlock2D). */
        public static Conv2dSpec pointwise() {
            return new Conv2dSpec(1, 1, 0, 0, 0, 0, false);
        }

        /**
         * Downsample2D with use_conv: 3x3 stride 2. {@code downsamplePadding} 1 pads every side by one;
         * 0 is diffusers' {@code F.pad(x, (0, 1, 0, 1))}: one zero row at the bottom and one zero column
         * at the right, then no padding.
         */
        public static Conv2dSpec downsample3x3(int downsamplePadding) {
            return switch (downsamplePadding) {
                case 1 -> new Conv2dSpec(3, 2, 1, 1, 1, 1, false);
                case 0 -> new Conv2dSpec(3, 2, 0, 0, 1, 1, false);
                default -> throw new IllegalArgumentException("downsamplePadding must be 0 or 1, got " + downsamplePadding);
            };
        }

        /** Upsample2D with use_conv: nearest 2x upsampling then a 3x3 padding-1 conv, without materialising it. */
        public static Conv2dSpec upsample3x3() {
            return new Conv2dSpec(3, 1, 1, 1, 1, 1, true);
        }

        /** Output height for an input of height h (before upsampling); throws when the input is too small. */
        public long outputHeight(long h) {
            return outputSize(h, padTop + padBottom, "height");
        }

        /** Output width for an input of width w (before upsampling). */
        public long outputWidth(long w) {
            return outputSize(w, padLeft + padRight, "width");
        }

        private long outputSize(long in, int pads, String what) {
            long eff = (upsample2x ? 2 * in : in) + pads;
            if (in < 1 || eff < kernelSize) {
                throw new IllegalArgumentException("input " + what + " " + in + " is too small for " + this);
            }
            return (eff - kernelSize) / stride + 1;
        }

        /** The output shape {@code [N, H_out, W_out, cOut]} for input shape {@code [N, H, W, C_in]}. */
        public long[] outputShape(long[] inputShape, long cOut) {
            if (inputShape.length != 4) {
                throw new IllegalArgumentException("input shape must be [N, H, W, C], got " + Arrays.toString(inputShape));
            }
            return new long[] {inputShape[0], outputHeight(inputShape[1]), outputWidth(inputShape[2]), cOut};
        }
    }

    /** {@code y = conv(x, weight) + bias}; bias may be null. y is overwritten. */
    public static void forward(Conv2dSpec spec, Tensor x, Tensor weight, Tensor bias, Tensor y) {
        forward(spec, x, weight, null, bias, y);
    }

    /**
     * {@link #forward(Conv2dSpec, Tensor, Tensor, Tensor, Tensor)} reading {@code prepared} (from {@link #prepare}
     * of this weight, for x's height and width) instead of the weights when it is not null: the same bits.
     */
    public static void forward(Conv2dSpec spec, Tensor x, Tensor weight, Tensor prepared, Tensor bias, Tensor y) {
        Objects.requireNonNull(spec, "spec");
        Geometry g = geometry(spec, x, weight);
        if (bias != null) requireShape(bias, "bias", x, g.cOut);
        requireShape(y, "y", x, g.yShape);
        MemorySegment b = bias == null ? MemorySegment.NULL : bias.handle();
        int up = spec.upsample2x() ? 1 : 0;
        if (prepared == null) {
            Native.check(d4j_h.d4j_conv2d_forward(x.backend().handle(), x.handle(), g.n, g.h, g.w, g.cIn,
                    weight.handle(), b, g.cOut, spec.kernelSize(), spec.stride(), spec.padTop(), spec.padLeft(),
                    spec.padBottom(), spec.padRight(), up, y.handle()));
        } else {
            requirePrepared(prepared, x);
            Native.check(d4j_h.d4j_conv2d_forward_prepared(x.backend().handle(), x.handle(), g.n, g.h, g.w, g.cIn,
                    prepared.handle(), b, g.cOut, spec.kernelSize(), spec.stride(), spec.padTop(), spec.padLeft(),
                    spec.padBottom(), spec.padRight(), up, y.handle()));
        }
    }

    /**
     * Bytes of the backend's prepared form of a convolution's weights for inputs of {@code h x w} (see
     * {@code d4j_conv2d_prepare} in d4j.h): 0 when it has none for this geometry (every GPU backend; on the CPU
     * all but Winograd and upsampling convolutions).
     */
    public static long preparedBytes(Backend backend, Conv2dSpec spec, int h, int w, int cIn, int cOut) {
        Objects.requireNonNull(backend, "backend");
        Objects.requireNonNull(spec, "spec");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment bytes = arena.allocate(ValueLayout.JAVA_LONG);
            Native.check(d4j_h.d4j_conv2d_prepared_size(backend.handle(), h, w, cIn, cOut, spec.kernelSize(),
                    spec.stride(), spec.padTop(), spec.padLeft(), spec.padBottom(), spec.padRight(),
                    spec.upsample2x() ? 1 : 0, bytes));
            return bytes.get(ValueLayout.JAVA_LONG, 0);
        }
    }

    /**
     * The prepared form of {@code weight} (HWIO) for inputs of {@code h x w}, for the forwards that take one, or
     * null when the backend has none for this geometry. The caller owns it; it stays valid while the weights do
     * not change (prepare again after they do: nothing can check that).
     */
    public static Tensor prepare(Conv2dSpec spec, int h, int w, Tensor weight) {
        Objects.requireNonNull(weight, "weight");
        requireFloat(weight, "weight");
        if (weight.rank() != 4 || weight.dim(0) != spec.kernelSize() || weight.dim(1) != spec.kernelSize()) {
            throw new IllegalArgumentException("weight must be [" + spec.kernelSize() + ", " + spec.kernelSize()
                    + ", C_in, C_out] (HWIO), got " + weight.describe());
        }
        if (weight.dim(2) > Integer.MAX_VALUE || weight.dim(3) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("weight is too large: " + weight.describe());
        }
        int cIn = (int) weight.dim(2), cOut = (int) weight.dim(3);
        long bytes = preparedBytes(weight.backend(), spec, h, w, cIn, cOut);
        if (bytes == 0) return null;
        Tensor prepared = Tensor.allocate(weight.backend(), DType.FLOAT32, bytes / Float.BYTES);
        try {
            Native.check(d4j_h.d4j_conv2d_prepare(weight.backend().handle(), weight.handle(), h, w, cIn, cOut,
                    spec.kernelSize(), spec.stride(), spec.padTop(), spec.padLeft(), spec.padBottom(),
                    spec.padRight(), spec.upsample2x() ? 1 : 0, prepared.handle()));
            return prepared;
        } catch (RuntimeException e) {
            prepared.close();
            throw e;
        }
    }

    private static void requirePrepared(Tensor prepared, Tensor x) {
        requireFloat(prepared, "prepared");
        if (prepared.backend() != x.backend()) {
            throw new IllegalArgumentException("prepared is on backend " + prepared.backend().kind().cliName()
                    + ", x on " + x.backend().kind().cliName());
        }
    }

    /**
     * The GroupNorm (+ SiLU) that {@link #forward(Conv2dSpec, GroupNormInput, Tensor, Tensor, Tensor, Tensor)}
     * applies to its input as the convolution reads it: {@code u = silu?((x (+ tb[n, :]) - mean) * rstd * gamma +
     * beta)} per group, with the statistics of a {@link NormKernels#groupNorm} or {@link NormKernels#biasGroupNorm}
     * of the same x (and tb). Shapes: tb {@code [N, C_in]} or null, gamma and beta {@code [C_in]}, mean and rstd
     * {@code N * numGroups} elements.
     */
    public record GroupNormInput(Tensor tb, Tensor gamma, Tensor beta, Tensor mean, Tensor rstd, int numGroups,
                                 boolean silu) {
        public GroupNormInput {
            Objects.requireNonNull(gamma, "gamma");
            Objects.requireNonNull(beta, "beta");
            Objects.requireNonNull(mean, "mean");
            Objects.requireNonNull(rstd, "rstd");
            if (numGroups < 1) throw new IllegalArgumentException("numGroups must be >= 1, got " + numGroups);
        }
    }

    /**
     * {@code y = conv(u, weight) + bias} where u is the GroupNorm (+ SiLU) of x given by {@code norm}, computed
     * as the input is read: the same result as normalising x into a tensor and calling {@link #forward(Conv2dSpec,
     * Tensor, Tensor, Tensor, Tensor)} on it, without that tensor (d4j_group_norm_conv2d_forward). For inference:
     * a backward needs u.
     */
    public static void forward(Conv2dSpec spec, GroupNormInput norm, Tensor x, Tensor weight, Tensor bias, Tensor y) {
        forward(spec, norm, x, weight, null, bias, y);
    }

    /** The GroupNorm input forward reading {@code prepared} (see {@link #prepare}) when it is not null. */
    public static void forward(Conv2dSpec spec, GroupNormInput norm, Tensor x, Tensor weight, Tensor prepared,
                               Tensor bias, Tensor y) {
        Objects.requireNonNull(spec, "spec");
        Objects.requireNonNull(norm, "norm");
        Geometry g = geometry(spec, x, weight);
        if (bias != null) requireShape(bias, "bias", x, g.cOut);
        requireShape(y, "y", x, g.yShape);
        if (g.cIn % norm.numGroups() != 0) {
            throw new IllegalArgumentException("numGroups = " + norm.numGroups() + " must divide C_in = " + g.cIn);
        }
        if (norm.tb() != null) requireShape(norm.tb(), "tb", x, g.n, g.cIn);
        requireShape(norm.gamma(), "gamma", x, g.cIn);
        requireShape(norm.beta(), "beta", x, g.cIn);
        requireElements(norm.mean(), "mean", x, (long) g.n * norm.numGroups());
        requireElements(norm.rstd(), "rstd", x, (long) g.n * norm.numGroups());
        MemorySegment tb = norm.tb() == null ? MemorySegment.NULL : norm.tb().handle();
        MemorySegment b = bias == null ? MemorySegment.NULL : bias.handle();
        int up = spec.upsample2x() ? 1 : 0;
        if (prepared == null) {
            Native.check(d4j_h.d4j_group_norm_conv2d_forward(x.backend().handle(), x.handle(), tb,
                    norm.gamma().handle(), norm.beta().handle(), norm.mean().handle(), norm.rstd().handle(),
                    norm.numGroups(), norm.silu() ? 1 : 0, g.n, g.h, g.w, g.cIn, weight.handle(), b, g.cOut,
                    spec.kernelSize(), spec.stride(), spec.padTop(), spec.padLeft(), spec.padBottom(),
                    spec.padRight(), up, y.handle()));
        } else {
            requirePrepared(prepared, x);
            Native.check(d4j_h.d4j_group_norm_conv2d_forward_prepared(x.backend().handle(), x.handle(), tb,
                    norm.gamma().handle(), norm.beta().handle(), norm.mean().handle(), norm.rstd().handle(),
                    norm.numGroups(), norm.silu() ? 1 : 0, g.n, g.h, g.w, g.cIn, prepared.handle(), b, g.cOut,
                    spec.kernelSize(), spec.stride(), spec.padTop(), spec.padLeft(), spec.padBottom(),
                    spec.padRight(), up, y.handle()));
        }
    }

    /**
     * Backward of {@link #forward}: {@code dx} (written; with upsample2x the gradient of the small input),
     * {@code dWeight += dL/dweight} and {@code dBias += sum of dy over N, H_out, W_out}. Each of the three
     * may be null to skip it. x and weight define the geometry and must always be given.
     */
    public static void backward(Conv2dSpec spec, Tensor x, Tensor weight, Tensor dy, Tensor dx, Tensor dWeight,
                                Tensor dBias) {
        Objects.requireNonNull(spec, "spec");
        Geometry g = geometry(spec, x, weight);
        requireShape(dy, "dy", x, g.yShape);
        if (dx != null) requireShape(dx, "dx", x, x.shape());
        if (dWeight != null) requireShape(dWeight, "dWeight", x, weight.shape());
        if (dBias != null) requireShape(dBias, "dBias", x, g.cOut);
        Native.check(d4j_h.d4j_conv2d_backward(x.backend().handle(), x.handle(), g.n, g.h, g.w, g.cIn,
                weight.handle(), g.cOut, spec.kernelSize(), spec.stride(), spec.padTop(), spec.padLeft(),
                spec.padBottom(), spec.padRight(), spec.upsample2x() ? 1 : 0, dy.handle(),
                dx == null ? MemorySegment.NULL : dx.handle(), dWeight == null ? MemorySegment.NULL : dWeight.handle(),
                dBias == null ? MemorySegment.NULL : dBias.handle()));
    }

    /**
     * diffusers' on-disk OIHW weight {@code [cOut, cIn, kh, kw]} as HWIO {@code [kh, kw, cIn, cOut]}:
     * {@code hwio[((i * kw + j) * cIn + c) * cOut + o] = oihw[((o * cIn + c) * kh + i) * kw + j]}.
     */
    public static float[] oihwToHwio(float[] oihw, int cOut, int cIn, int kh, int kw) {
        int n = checkedWeightLength(oihw, "oihw", cOut, cIn, kh, kw);
        float[] hwio = new float[n];
        for (int o = 0; o < cOut; o++)
            for (int c = 0; c < cIn; c++)
                for (int i = 0; i < kh; i++)
                    for (int j = 0; j < kw; j++)
                        hwio[((i * kw + j) * cIn + c) * cOut + o] = oihw[((o * cIn + c) * kh + i) * kw + j];
        return hwio;
    }

    /** The inverse of {@link #oihwToHwio}: HWIO {@code [kh, kw, cIn, cOut]} to OIHW {@code [cOut, cIn, kh, kw]}. */
    public static float[] hwioToOihw(float[] hwio, int kh, int kw, int cIn, int cOut) {
        int n = checkedWeightLength(hwio, "hwio", cOut, cIn, kh, kw);
        float[] oihw = new float[n];
        for (int o = 0; o < cOut; o++)
            for (int c = 0; c < cIn; c++)
                for (int i = 0; i < kh; i++)
                    for (int j = 0; j < kw; j++)
                        oihw[((o * cIn + c) * kh + i) * kw + j] = hwio[((i * kw + j) * cIn + c) * cOut + o];
        return oihw;
    }

    private static int checkedWeightLength(float[] w, String name, int cOut, int cIn, int kh, int kw) {
        Objects.requireNonNull(w, name);
        if (cOut < 1 || cIn < 1 || kh < 1 || kw < 1) {
            throw new IllegalArgumentException("weight dimensions must be >= 1, got cOut=" + cOut + " cIn=" + cIn
                    + " kh=" + kh + " kw=" + kw);
        }
        long n = (long) cOut * cIn * kh * kw;
        if (n != w.length) {
            throw new IllegalArgumentException(name + " has " + w.length + " elements, expected cOut*cIn*kh*kw = " + n);
        }
        return (int) n;
    }

    private record Geometry(int n, int h, int w, int cIn, int cOut, long[] yShape) {}

    private static Geometry geometry(Conv2dSpec spec, Tensor x, Tensor weight) {
        requireFloat(x, "x");
        requireFloat(weight, "weight");
        if (x.rank() != 4) throw new IllegalArgumentException("x must be [N, H, W, C_in], got " + x.describe());
        int k = spec.kernelSize();
        if (weight.rank() != 4 || weight.dim(0) != k || weight.dim(1) != k || weight.dim(2) != x.dim(3)) {
            throw new IllegalArgumentException("weight must be [" + k + ", " + k + ", " + x.dim(3) + ", C_out] (HWIO) for x "
                    + x.describe() + ", got " + weight.describe());
        }
        if (weight.backend() != x.backend()) {
            throw new IllegalArgumentException("weight is on backend " + weight.backend().kind().cliName()
                    + ", x on " + x.backend().kind().cliName());
        }
        for (int i = 0; i < 4; i++) {
            if (x.dim(i) > Integer.MAX_VALUE) throw new IllegalArgumentException("x dimension " + i + " is too large: " + x.describe());
        }
        if (weight.dim(3) > Integer.MAX_VALUE) throw new IllegalArgumentException("weight C_out is too large: " + weight.describe());
        long[] yShape = spec.outputShape(x.shape(), weight.dim(3));
        return new Geometry((int) x.dim(0), (int) x.dim(1), (int) x.dim(2), (int) x.dim(3), (int) weight.dim(3), yShape);
    }

    private static void requireElements(Tensor t, String name, Tensor x, long elements) {
        requireFloat(t, name);
        if (t.elementCount() != elements) {
            throw new IllegalArgumentException(name + " must have " + elements + " elements, got " + t.describe());
        }
        if (t.backend() != x.backend()) {
            throw new IllegalArgumentException(name + " is on backend " + t.backend().kind().cliName() + ", x on "
                    + x.backend().kind().cliName());
        }
    }

    private static void requireShape(Tensor t, String name, Tensor x, long... shape) {
        requireFloat(t, name);
        if (!Arrays.equals(t.shape(), shape)) {
            throw new IllegalArgumentException(name + " must be float32" + Arrays.toString(shape) + ", got " + t.describe());
        }
        if (t.backend() != x.backend()) {
            throw new IllegalArgumentException(name + " is on backend " + t.backend().kind().cliName() + ", x on "
                    + x.backend().kind().cliName());
        }
    }

}
