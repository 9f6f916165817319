package io.diffusion4j.eval;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.Unwinding;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.VlbKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Negative log-likelihood in bits/dim by the variational bound of Ho et al. (2020), computed as
 * improved-diffusion's {@code GaussianDiffusion.calc_bpd_loop} does:
 * <pre>
 *   total = prior + sum_{t=0}^{T-1} vb[t]          (L_T + L_{T-2} + ... + L_0 in Ho et al.'s numbering)
 *   prior = KL(q(x_T | x0) || N(0, I))
 *   vb[t] = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))   for t &gt;= 1 (x_t drawn from q(x_t | x0))
 *   vb[0] = -log p(x0 | x_1)   (discretized Gaussian decoder over the 256 levels of 8-bit data)
 * </pre>
 * each in nats per dimension divided by ln 2. The model's mean comes from its prediction (epsilon, sample or
 * v_prediction), optionally clipped to [-r, r] ({@code clip_denoised}), and its variance is fixed
 * ({@code fixed_small} or {@code fixed_large}, with improved-diffusion's choices at t = 0); the terms are the
 * native kernel family "vlb" ({@link VlbKernels}, d4j.h section "vlb").
 *
 * <p>Cost: T model calls per batch of images (all timesteps). With {@code timestepStride} K &gt; 1 only the
 * KL terms at t = T-1, T-1-K, ... (t &gt;= 1) are evaluated and their sum is scaled by (T-1) / (number
 * evaluated): an <b>estimate</b> of the bound from a uniform subsample of its KL terms, not the bound; the
 * prior and the decoder term are always exact. K = 1 is the exact bound.
 *
 * <p>Data: images are 8-bit; every value is snapped to the nearest level {@code k / 127.5 - 1} (a no-op for
 * Fashion-MNIST, whose pixels are bytes) before evaluation. Randomness: image g (its index in the
 * evaluation) draws x_t at timestep t from the Philox stream (seed, offset {@code (g << 32) | t}), so an
 * image's terms depend on (seed, g) only, not on the batch it is evaluated in.
 *
 * <p>An evaluator owns its buffers and an inference instance of the model ({@link
 * UNet2DModel#sharingParameters()}); the model's parameters must not change while it runs. Layout: images
 * are exchanged as HWC floats per image (the model's NHWC layout; {@link io.diffusion4j.train.Dataset}'s).
 */
public final class NllEvaluator implements AutoCloseable {
    /** What to evaluate. */
    public record Options(PredictionType prediction, VarianceType variance, boolean clipDenoised, float clipRange,
                          int timestepStride) {
        public Options {
            Objects.requireNonNull(prediction, "prediction");
            Objects.requireNonNull(variance, "variance");
            if (clipDenoised && !(Float.isFinite(clipRange) && clipRange > 0)) {
                throw new IllegalArgumentException("clipRange must be finite and > 0, got " + clipRange);
            }
            if (timestepStride < 1) throw new IllegalArgumentException("timestepStride must be >= 1, got " + timestepStride);
        }

        /** The exact bound with improved-diffusion's defaults (clip_denoised, range 1). */
        public static Options exact(PredictionType prediction, VarianceType variance) {
            return new Options(prediction, variance, true, 1f, 1);
        }
    }

    /**
     * One image's bound in bits/dim: {@code total = prior + vb}, {@code vb = decoder + klSum} (klSum scaled when
     * strided); {@code terms[t]} the term at timestep t (t = 0: the decoder), NaN where not evaluated.
     */
    public record ImageResult(double totalBpd, double priorBpd, double vbBpd, double decoderBpd, double klBpd,
                              double[] terms) {}

    /** Called after every model call with the number of calls done and the total of this batch. */
    public interface Progress {
        void step(int done, int total);
    }

    private final UNet2DModel model;
    private final NativeSchedule nativeSchedule;
    private final Options options;
    private final int batch, timesteps;
    private final long perImage;
    private final int[] schedule; // evaluated timesteps, descending, ending with 0
    private final Tensor x0, xt, eps;
    private final List<Tensor> x0Rows = new ArrayList<>(), xtRows = new ArrayList<>(), epsRows = new ArrayList<>();
    private final float[] tModel;
    private final int[] tAll;
    private boolean closed;

    /**
     * @param shared the model (read only; must outlive this evaluator)
     * @param noise the noise schedule the model was trained with (T &gt;= 2)
     * @param batch images per model call
     * @param height image height (a multiple of the model's downsampling factor)
     * @param width image width
     */
    public NllEvaluator(UNet2DModel shared, NoiseSchedule noise, Options options, int batch, int height, int width) {
        Objects.requireNonNull(shared, "model");
        Objects.requireNonNull(noise, "schedule");
        this.options = Objects.requireNonNull(options, "options");
        if (batch < 1) throw new IllegalArgumentException("batch must be >= 1, got " + batch);
        if (height < 1 || width < 1) throw new IllegalArgumentException("height and width must be >= 1");
        UNet2DConfig cfg = shared.config();
        if (cfg.inChannels() != cfg.outChannels()) {
            throw new IllegalArgumentException("the model maps " + cfg.inChannels() + " to " + cfg.outChannels()
                    + " channels; the bound needs equal counts (learned variance is not supported)");
        }
        this.timesteps = noise.numTrainTimesteps();
        if (timesteps < 2) throw new IllegalArgumentException("the bound needs a schedule of at least 2 timesteps, got " + timesteps);
        this.batch = batch;
        this.perImage = (long) height * width * cfg.inChannels();
        this.schedule = evaluatedTimesteps(timesteps, options.timestepStride());
        Backend be = shared.backend();
        List<AutoCloseable> made = new ArrayList<>();
        try {
            UNet2DModel m = shared.sharingParameters();
            made.add(m);
            NativeSchedule ns = NativeSchedule.of(noise);
            made.add(ns);
            Tensor a = Tensor.allocate(be, DType.FLOAT32, batch, height, width, cfg.inChannels());
            made.add(a);
            Tensor b = Tensor.allocate(be, DType.FLOAT32, batch, height, width, cfg.inChannels());
            made.add(b);
            Tensor c = Tensor.allocate(be, DType.FLOAT32, batch, height, width, cfg.inChannels());
            made.add(c);
            for (int r = 0; r < batch; r++) {
                for (Object[] pair : new Object[][] {{a, x0Rows}, {b, xtRows}, {c, epsRows}}) {
                    Tensor v = ((Tensor) pair[0]).view(r * perImage, 1, perImage);
                    made.add(v);
                    @SuppressWarnings("unchecked")
                    List<Tensor> rows = (List<Tensor>) pair[1];
                    rows.add(v);
                }
            }
            this.model = m;
            this.nativeSchedule = ns;
            this.x0 = a;
            this.xt = b;
            this.eps = c;
        } catch (RuntimeException e) {
            x0Rows.clear();
            xtRows.clear();
            epsRows.clear();
            throw Unwinding.closeAll(made, e);
        }
        tModel = new float[batch];
        tAll = new int[batch];
    }

    /**
     * The timesteps evaluated, descending: with stride K the KL timesteps T-1, T-1-K, ... down to 1 (those
     * &gt;= 1), then 0 (the decoder). K = 1: every timestep.
     */
    public static int[] evaluatedTimesteps(int numTrainTimesteps, int stride) {
        if (numTrainTimesteps < 2) throw new IllegalArgumentException("numTrainTimesteps must be >= 2, got " + numTrainTimesteps);
        if (stride < 1) throw new IllegalArgumentException("stride must be >= 1, got " + stride);
        int kl = (numTrainTimesteps - 2) / stride + 1; // t = T-1 - j*K >= 1
        int[] out = new int[kl + 1];
        for (int j = 0; j < kl; j++) out[j] = numTrainTimesteps - 1 - j * stride;
        out[kl] = 0;
        return out;
    }

    /** Model calls per batch (the number of evaluated timesteps). */
    public int callsPerBatch() {
        return schedule.length;
    }

    public int batch() {
        return batch;
    }

    public Options options() {
        return options;
    }

    /** Snaps a value in [-1, 1] to the nearest 8-bit level k / 127.5 - 1 (clamped to [0, 255]). */
    public static float quantize8(float v) {
        long k = Math.round(((double) v + 1.0) * 127.5);
        if (k < 0) k = 0;
        if (k > 255) k = 255;
        return k / 127.5f - 1f;
    }

    /**
     * Evaluates {@code count <= batch} images g = firstImage .. firstImage + count - 1 (the batch is always run
     * whole; rows past count repeat image 0 and are dropped).
     *
     * @param images HWC floats of the count images, {@code count * C * H * W}, in [-1, 1]; snapped to 8 bits
     * @param progress may be null
     */
    public List<ImageResult> evaluate(float[] images, int count, long seed, long firstImage, Progress progress) {
        if (closed) throw new IllegalStateException("the evaluator is closed");
        Objects.requireNonNull(images, "images");
        if (count < 1 || count > batch) throw new IllegalArgumentException("count must be in [1, " + batch + "], got " + count);
        if (images.length != count * perImage) {
            throw new IllegalArgumentException("images has " + images.length + " floats, " + count + " images need "
                    + count * perImage);
        }
        if (firstImage < 0 || firstImage + batch > (1L << 31)) {
            throw new IllegalArgumentException("firstImage must be in [0, 2^31 - batch], got " + firstImage);
        }
        float[] host = new float[Math.toIntExact(batch * perImage)];
        for (int r = 0; r < batch; r++) {
            int src = r < count ? r : 0;
            for (int i = 0; i < perImage; i++) host[(int) (r * perImage + i)] = quantize8(images[(int) (src * perImage + i)]);
        }
        x0.copyFrom(host);
        final double toBits = 1.0 / (perImage * Math.log(2.0));
        double[] prior = VlbKernels.prior(nativeSchedule, x0);
        double[][] terms = new double[count][timesteps];
        for (double[] row : terms) Arrays.fill(row, Double.NaN);
        for (int i = 0; i < schedule.length; i++) {
            int t = schedule[i];
            int[] one = {t};
            for (int r = 0; r < batch; r++) {
                long g = firstImage + r;
                DiffusionKernels.addNoise(nativeSchedule, x0Rows.get(r), one, seed, (g << 32) | t, xtRows.get(r),
                        epsRows.get(r));
                tModel[r] = t;
                tAll[r] = t;
            }
            Tensor out = model.forward(xt, tModel);
            double[] nats = VlbKernels.terms(nativeSchedule, options.prediction(), options.variance(),
                    options.clipDenoised(), options.clipRange(), x0, xt, out, tAll);
            for (int r = 0; r < count; r++) terms[r][t] = nats[r] * toBits;
            if (progress != null) progress.step(i + 1, schedule.length);
        }
        int klCount = schedule.length - 1;
        double klScale = (double) (timesteps - 1) / klCount;
        List<ImageResult> results = new ArrayList<>(count);
        for (int r = 0; r < count; r++) {
            double kl = 0;
            for (int i = 0; i < klCount; i++) kl += terms[r][schedule[i]];
            kl *= klScale;
            double dec = terms[r][0];
            double p = prior[r] * toBits;
            results.add(new ImageResult(p + dec + kl, p, dec + kl, dec, kl, terms[r]));
        }
        return results;
    }

    /** Mean and standard error (sample standard deviation / sqrt(n); 0 for one value) of a quantity over images. */
    public record Estimate(double mean, double standardError) {
        public static Estimate of(double[] v) {
            if (v.length == 0) throw new IllegalArgumentException("no values");
            double m = 0;
            for (double x : v) m += x;
            m /= v.length;
            if (v.length == 1) return new Estimate(m, 0);
            double ss = 0;
            for (double x : v) ss += (x - m) * (x - m);
            return new Estimate(m, Math.sqrt(ss / (v.length - 1) / v.length));
        }
    }

    /** The summary the command prints: mean ± standard error over images of each quantity (bits/dim). */
    public record Summary(int images, Estimate total, Estimate prior, Estimate vb, Estimate decoder, Estimate kl) {
        public static Summary of(List<ImageResult> r) {
            int n = r.size();
            double[] tot = new double[n], pri = new double[n], vb = new double[n], dec = new double[n], kl = new double[n];
            for (int i = 0; i < n; i++) {
                tot[i] = r.get(i).totalBpd();
                pri[i] = r.get(i).priorBpd();
                vb[i] = r.get(i).vbBpd();
                dec[i] = r.get(i).decoderBpd();
                kl[i] = r.get(i).klBpd();
            }
            return new Summary(n, Estimate.of(tot), Estimate.of(pri), Estimate.of(vb), Estimate.of(dec), Estimate.of(kl));
        }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        RuntimeException first = null;
        List<AutoCloseable> all = new ArrayList<>();
        all.addAll(x0Rows);
        all.addAll(xtRows);
        all.addAll(epsRows);
        all.addAll(List.of(x0, xt, eps, nativeSchedule, model));
        for (AutoCloseable c : all) {
            try {
                c.close();
            } catch (Exception e) {
                if (first == null) first = e instanceof RuntimeException re ? re : new RuntimeException(e);
            }
        }
        if (first != null) throw first;
    }
}
