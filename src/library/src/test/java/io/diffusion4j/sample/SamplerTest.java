package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.TinyUNet;
import io.diffusion4j.testutil.Tolerance;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The sampling loop on the CPU with a tiny random UNet (2 channels, 8x8): determinism, x_T from --init-noise
 * equal to the drawn one, concurrent requests equal to their single-threaded runs bit for bit, and whole DDIM
 * and DPM-Solver++ runs against a float64 Java loop (the same model calls, float64 scheduler arithmetic).
 */
class SamplerTest {
    static Backend cpu;
    static UNet2DModel model;
    static NoiseSchedule schedule;
    static final int H = 8, W = 8, C = 2;

    static UNet2DConfig tinyConfig() {
        return TinyUNet.config(C);
    }

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        model = new UNet2DModel(cpu, tinyConfig(), TestRandom.fresh().nextLong());
        schedule = NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);
    }

    @AfterAll
    static void close() {
        model.close();
        cpu.close();
    }

    static float[] sample(SamplerScheduler s, int steps, int batch, long seed, int count, float[] init) {
        try (Sampler sm = new Sampler(model, schedule, s, steps, batch, H, W)) {
            return sm.run(seed, 0, count, init, null);
        }
    }

    static List<SamplerScheduler> schedulers() {
        PredictionType e = PredictionType.EPSILON;
        return List.of(
                new DdpmScheduler(e, VarianceType.FIXED_SMALL, true, 1.0, null, TimestepSpacing.LEADING, 0),
                new DdimScheduler(PredictionType.V_PREDICTION, 0f, false, 1.0, new Thresholding(0.9, 1.5f),
                        TimestepSpacing.TRAILING, 0, true, false),
                DdimScheduler.defaults(e, 0.7f),
                DpmSolverScheduler.defaults(e),
                new DpmSolverScheduler(PredictionType.SAMPLE, Thresholding.defaults(), TimestepSpacing.LINSPACE, 0,
                        true, false, DpmSolverScheduler.FinalSigmas.ZERO));
    }

    @Test
    void sameSeedSameImagesAndOtherSeedOtherImages() {
        for (SamplerScheduler s : schedulers()) {
            float[] a = sample(s, 4, 2, 42, 2, null);
            float[] b = sample(s, 4, 2, 42, 2, null);
            Tolerance.assertBitIdentical(s.name() + " repeat", a, b, s.toString());
            float[] c = sample(s, 4, 2, 43, 2, null);
            assertFalse(Arrays.equals(a, c), s.name() + ": another seed gave the same images");
            for (float v : a) assertFalse(Float.isNaN(v), s.name() + " produced NaN");
        }
    }

    @Test
    void imageDependsOnSeedAndIndexNotOnBatch() {
        // images 0, 1 of a sampler of batch 2 equal those of a sampler of batch 3 run for 2 images
        SamplerScheduler s = DdimScheduler.defaults(PredictionType.EPSILON, 1f);
        float[] two = sample(s, 3, 2, 7, 2, null);
        float[] three = sample(s, 3, 3, 7, 2, null);
        Tolerance.assertBitIdentical("ddim eta 1, batch 2 vs 3", two, three, s.toString());
    }

    /** A run of fewer images than the batch works at its real size: the model workspace is that of the count. */
    @Test
    void aPartialBatchRunsAtItsRealSize() {
        SamplerScheduler s = DdpmScheduler.defaults(PredictionType.EPSILON);
        long seed = TestRandom.fresh().nextLong();
        long oneImage;
        try (UNet2DModel m = model.sharingParameters(); Tensor x = Tensor.allocate(cpu, DType.FLOAT32, 1, H, W, C)) {
            x.fill(0f);
            m.forward(x, new float[] {1f});
            oneImage = m.activationBytes();
        }
        try (Sampler sm = new Sampler(model, schedule, s, 2, 4, H, W)) {
            float[] full = sm.run(seed, 0, 4, null, null);
            long fullBytes = sm.workspaceBytes();
            float[] last = sm.run(seed, 3, 1, null, null);
            assertEquals(oneImage, sm.workspaceBytes(), "workspace after a run of 1 image");
            assertTrue(fullBytes > 3 * oneImage, fullBytes + " vs " + oneImage);
            Tolerance.assertBitIdentical("image 3 alone vs in a batch of 4", Arrays.copyOfRange(full, 3 * C * H * W,
                    4 * C * H * W), last, "seed " + seed);
            // and back to the full size
            Tolerance.assertBitIdentical("full batch again", full, sm.run(seed, 0, 4, null, null), "seed " + seed);
        }
    }

    @Test
    void initNoiseEqualToTheDrawnNoiseGivesTheSameImages() {
        long seed = 99;
        int n = 2;
        float[] drawn = new float[n * C * H * W];
        try (Tensor row = Tensor.allocate(cpu, DType.FLOAT32, (long) H * W * C)) {
            for (int g = 0; g < n; g++) {
                DiffusionKernels.randomNormal(cpu, seed, (long) g << 32, row);
                System.arraycopy(row.toFloatArray(), 0, drawn, g * C * H * W, C * H * W);
            }
        }
        float[] nchw = ImageLayout.nhwcToNchw(drawn, n, C, H, W);
        for (SamplerScheduler s : List.of(DdimScheduler.defaults(PredictionType.EPSILON, 0f),
                DpmSolverScheduler.defaults(PredictionType.EPSILON))) {
            Tolerance.assertBitIdentical(s.name() + " init-noise", sample(s, 3, n, seed, n, null),
                    sample(s, 3, n, seed, n, nchw), s.toString());
        }
    }

    @Test
    void concurrentRequestsEqualTheirSingleThreadedRuns() throws Exception {
        List<SamplerScheduler> all = schedulers();
        List<float[]> single = new ArrayList<>();
        for (int k = 0; k < all.size(); k++) single.add(sample(all.get(k), 3, 2, 1000 + k, 2, null));
        ExecutorService pool = Executors.newFixedThreadPool(all.size());
        try {
            for (int round = 0; round < 2; round++) {
                List<Future<float[]>> fs = new ArrayList<>();
                for (int k = 0; k < all.size(); k++) {
                    int kk = k;
                    fs.add(pool.submit(() -> sample(all.get(kk), 3, 2, 1000 + kk, 2, null)));
                }
                for (int k = 0; k < all.size(); k++) {
                    Tolerance.assertBitIdentical("concurrent " + all.get(k).name() + " #" + k, single.get(k),
                            fs.get(k).get(), "round " + round);
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * An inference instance allocates the forward activations only (no input gradients or backward scratch) and
     * computes the same output. Measured on the default 28x28 model at batch 16 (printed).
     */
    @Test
    void inferenceInstancesHoldForwardActivationsOnly() {
        UNet2DConfig cfg = io.diffusion4j.train.TrainingDefaults.config();
        int n = 16, hw = cfg.sampleHeight();
        TestRandom r = TestRandom.fresh();
        try (UNet2DModel m = new UNet2DModel(cpu, cfg, r.nextLong()); UNet2DModel inf = m.sharingParameters();
             Tensor x = Tensor.of(cpu, r.gaussians(n * hw * hw, 1.0), n, hw, hw, cfg.inChannels())) {
            float[] t = new float[n];
            for (int i = 0; i < n; i++) t[i] = r.nextInt(0, 1000);
            float[] a = m.forward(x, t).toFloatArray();
            long training = m.activationBytes();
            float[] b = inf.forward(x, t).toFloatArray();
            long inference = inf.activationBytes();
            System.out.printf(java.util.Locale.ROOT, "activation bytes, default %dx%d model, batch %d: training instance"
                    + " %d (%.1f MiB), inference instance %d (%.1f MiB), %.1f%%%n", hw, hw, n, training,
                    training / 1048576.0, inference, inference / 1048576.0, 100.0 * inference / training);
            Tolerance.assertBitIdentical("inference instance output", a, b, r.describe());
            assertTrue(inference > 0 && inference < 0.55 * training, inference + " of " + training);
        }
    }

    @Test
    void sharedInstancesCannotTrainAndNeedTheirModel() {
        try (UNet2DModel inst = model.sharingParameters()) {
            assertThrows(IllegalStateException.class, inst::gradients);
            assertThrows(IllegalStateException.class, () -> inst.loadFlat(new float[1]));
        }
    }

    /** A float64 reference loop: same model calls (on a float32 copy of the reference state), diffusers' formulas. */
    @Test
    void wholeRunsMatchAFloat64Loop() {
        double[] ac = schedule.alphasCumprod();
        int n = 2, per = C * H * W;
        long seed = 5;
        for (SamplerScheduler s : List.of(
                new DdimScheduler(PredictionType.EPSILON, 0f, true, 1.0, null, TimestepSpacing.TRAILING, 0, true, false),
                new DdimScheduler(PredictionType.V_PREDICTION, 0f, false, 1.0, null, TimestepSpacing.LINSPACE, 0, false, false),
                DpmSolverScheduler.defaults(PredictionType.EPSILON),
                new DpmSolverScheduler(PredictionType.V_PREDICTION, null, TimestepSpacing.LINSPACE, 0, true, false,
                        DpmSolverScheduler.FinalSigmas.SIGMA_MIN))) {
            int steps = 6;
            float[] got = sample(s, steps, n, seed, n, null);
            // x_T as the sampler draws it, NHWC
            double[] x = new double[n * per];
            try (Tensor row = Tensor.allocate(cpu, DType.FLOAT32, per)) {
                for (int g = 0; g < n; g++) {
                    DiffusionKernels.randomNormal(cpu, seed, (long) g << 32, row);
                    float[] v = row.toFloatArray();
                    for (int i = 0; i < per; i++) x[g * per + i] = v[i];
                }
            }
            double[] m1 = null;
            try (UNet2DModel m = model.sharingParameters();
                 Tensor xin = Tensor.allocate(cpu, DType.FLOAT32, n, H, W, C)) {
                for (SamplerStep st : s.plan(1000, steps)) {
                    float[] xf = new float[x.length];
                    for (int i = 0; i < x.length; i++) xf[i] = (float) x[i];
                    xin.copyFrom(xf);
                    float[] tt = new float[n];
                    Arrays.fill(tt, st.timestep());
                    float[] o = m.forward(xin, tt).toFloatArray();
                    double ab = ac[st.timestep()];
                    double[] x0 = new double[x.length];
                    for (int i = 0; i < x.length; i++) {
                        x0[i] = io.diffusion4j.kernels.SamplerReferenceAccess.x0(s.prediction(), ab, x[i], o[i]);
                    }
                    if (s instanceof DdimScheduler d) {
                        double abp = st.prevTimestep() >= 0 ? ac[st.prevTimestep()] : d.finalAlphaCumprod(schedule);
                        for (int i = 0; i < x.length; i++) {
                            double eps = io.diffusion4j.kernels.SamplerReferenceAccess.eps(s.prediction(), ab, x[i], o[i]);
                            double x0c = d.clipSample() ? Math.max(-1, Math.min(1, x0[i])) : x0[i];
                            x[i] = Math.sqrt(abp) * x0c + Math.sqrt(1 - abp) * eps;
                        }
                    } else {
                        double abT = st.prevTimestep() >= 0 ? ac[st.prevTimestep()] : 1.0;
                        double aT = Math.sqrt(abT), sT = Math.sqrt(1 - abT), sS0 = Math.sqrt(1 - ab);
                        double lT = Math.log(aT) - Math.log(sT), lS0 = Math.log(Math.sqrt(ab)) - Math.log(sS0);
                        double h = lT - lS0, em1 = Math.exp(-h) - 1;
                        double r0 = Double.NaN;
                        if (st.lastTimestep() >= 0) {
                            double ab1 = ac[st.lastTimestep()];
                            r0 = (lS0 - (Math.log(Math.sqrt(ab1)) - Math.log(Math.sqrt(1 - ab1)))) / h;
                        }
                        for (int i = 0; i < x.length; i++) {
                            double v = (abT == 1.0 ? 0 : sT / sS0) * x[i] - aT * em1 * x0[i];
                            if (st.lastTimestep() >= 0) v -= 0.5 * aT * em1 * (x0[i] - m1[i]) / r0;
                            x[i] = v;
                        }
                    }
                    m1 = x0;
                }
            }
            float[] refNhwc = new float[x.length];
            double[] ref = new double[x.length];
            for (int i = 0; i < x.length; i++) refNhwc[i] = (float) x[i];
            float[] refNchw = ImageLayout.nhwcToNchw(refNhwc, n, C, H, W);
            double max = 0;
            for (int i = 0; i < x.length; i++) {
                ref[i] = refNchw[i];
                max = Math.max(max, Math.abs(ref[i]));
            }
            // float32 model inputs on both sides; the kernels' float32 step arithmetic compounds over the steps, and
            // each step's difference in x reaches the next model output through the Jacobian of this randomly
            // initialised model (a fresh one every run), so the bound is 1e-4 (~840 u): a run reached 2.35e-5, over
            // the former 2e-5 bound; a wrong formula is off by 1e-2 or more
            Tolerance.log(Tolerance.assertClose(s.name() + " " + s.prediction() + " run vs float64 loop", got, ref,
                    1e-4 * Math.max(1, max), 1e-4, s.toString()));
        }
        assertEquals(2, n);
    }
}
