package io.diffusion4j.sample;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.Graph;
import io.diffusion4j.backend.Unwinding;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.SamplerKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * One sampling request's state: its plan (timesteps), its device buffers, its RNG streams and its own model
 * workspace ({@link UNet2DModel#sharingParameters()}), over a shared model whose parameters must not change
 * while it runs. Several Samplers over one model may run on different threads at once; a Sampler itself is
 * used by one thread at a time.
 *
 * <p>Buffers are allocated once in the constructor, for a fixed batch, and reused by every step and every
 * {@link #run}: a step is the model's forward pass plus one fused update kernel (and, with dynamic
 * thresholding, the per-sample quantile kernel before it).
 *
 * <p><b>Randomness.</b> Image g of a run with seed s (g = {@code firstImage + b} for batch row b) draws its
 * x_T from the Philox stream (s, offset {@code g << 32}) and the noise of step i (DDPM, DDIM with eta > 0)
 * from (s, {@code (g << 32) | (i + 1)}), element index = position in the image's NHWC layout. An image thus
 * depends on (seed, g) only, not on the batch it was drawn in.
 *
 * <p>Samples are exchanged with callers as float32 NCHW {@code [count, C, H, W]} (diffusers' layout); the
 * device layout is NHWC.
 *
 * <p><b>Graphs.</b> On a backend that can capture ({@link Graph#supported}: CUDA, cuda-sim) a run records its
 * whole loop (every step's model call and update kernels, whose per-step timesteps, seeds and offsets are
 * known up front) once as a graph, launches it, reads the result and frees the graph; on the CPU backend it
 * runs the loop directly. Both give the same bits. {@link #useGraphs(boolean)} or the system property
 * {@code diffusion4j.graphs=false} selects the direct loop everywhere (debugging). With a graph, progress is
 * reported for every step after the graph has run.
 */
public final class Sampler implements AutoCloseable {
    /** Called after every step with the number of steps done and the total. */
    public interface Progress {
        void step(int done, int total);
    }

    private final UNet2DModel model;
    private final NativeSchedule nativeSchedule;
    private final NoiseSchedule schedule;
    private final SamplerScheduler scheduler;
    private final List<SamplerStep> plan;
    private final int batch, height, width, channels;
    private final long perImage;
    private final Tensor x, x0, threshold;
    private final List<Tensor> rows = new ArrayList<>();
    // per-step host arrays, reused
    private final int[] t, prev, last;
    private final float[] tModel;
    private final long[] seeds, offsets;
    private boolean closed;
    private boolean graphs = !"false".equalsIgnoreCase(System.getProperty("diffusion4j.graphs", "true"));
    private GraphStats lastGraph;

    /** Size of the graph of the last run (test hook): nodes, device scratch bytes, host snapshot bytes. */
    record GraphStats(long nodes, long deviceBytes, long hostBytes) {}

    /**
     * @param shared the model (its parameters are read, never written; it must outlive this Sampler)
     * @param schedule the noise schedule the model was trained with
     * @param scheduler the sampler and its options
     * @param numInferenceSteps steps of a run (diffusers' {@code num_inference_steps})
     * @param batch images per model call
     * @param height image height (a multiple of the model's downsampling factor)
     * @param width image width
     */
    public Sampler(UNet2DModel shared, NoiseSchedule schedule, SamplerScheduler scheduler, int numInferenceSteps,
                   int batch, int height, int width) {
        Objects.requireNonNull(shared, "model");
        this.schedule = Objects.requireNonNull(schedule, "schedule");
        this.scheduler = Objects.requireNonNull(scheduler, "scheduler");
        if (batch < 1) throw new IllegalArgumentException("batch must be >= 1, got " + batch);
        if (height < 1 || width < 1) throw new IllegalArgumentException("height and width must be >= 1");
        UNet2DConfig cfg = shared.config();
        if (cfg.inChannels() != cfg.outChannels()) {
            throw new IllegalArgumentException("the model maps " + cfg.inChannels() + " to " + cfg.outChannels()
                    + " channels; sampling needs equal counts (learned variance is not supported)");
        }
        this.plan = scheduler.plan(schedule.numTrainTimesteps(), numInferenceSteps);
        this.batch = batch;
        this.height = height;
        this.width = width;
        this.channels = cfg.inChannels();
        this.perImage = (long) height * width * channels;
        Backend be = shared.backend();
        List<AutoCloseable> made = new ArrayList<>();
        try {
            UNet2DModel m = shared.sharingParameters();
            made.add(m);
            NativeSchedule ns = NativeSchedule.of(schedule);
            made.add(ns);
            Tensor xx = Tensor.allocate(be, DType.FLOAT32, batch, height, width, channels);
            made.add(xx);
            Tensor xx0 = null, thr = null;
            if (scheduler instanceof DpmSolverScheduler) {
                xx0 = Tensor.allocate(be, DType.FLOAT32, batch, height, width, channels);
                made.add(xx0);
            }
            if (scheduler.thresholding() != null) {
                thr = Tensor.allocate(be, DType.FLOAT32, batch);
                made.add(thr);
            }
            for (int b = 0; b < batch; b++) {
                Tensor row = xx.view(b * perImage, perImage);
                made.add(row);
                rows.add(row);
            }
            this.model = m;
            this.nativeSchedule = ns;
            this.x = xx;
            this.x0 = xx0;
            this.threshold = thr;
        } catch (RuntimeException e) {
            rows.clear();
            throw Unwinding.closeAll(made, e);
        }
        t = new int[batch];
        prev = new int[batch];
        last = new int[batch];
        tModel = new float[batch];
        seeds = new long[batch];
        offsets = new long[batch];
    }

    /** The plan of every run. */
    public List<SamplerStep> plan() {
        return plan;
    }

    public int batch() {
        return batch;
    }

    /** Native bytes of the model workspace (activations) as sized by the last run (test hook). */
    long workspaceBytes() {
        return model.activationBytes();
    }

    /**
     * Whether runs capture their loop as a graph where the backend can (default: true unless the system
     * property {@code diffusion4j.graphs} is {@code false}); false runs the steps directly. Returns this.
     */
    public Sampler useGraphs(boolean enabled) {
        this.graphs = enabled;
        return this;
    }

    /** Whether the next run will capture its loop as a graph. */
    public boolean capturesGraphs() {
        return graphs && Graph.supported(x.backend());
    }

    /** The graph of the last run, or null when it ran directly (test hook). */
    GraphStats lastGraph() {
        return lastGraph;
    }

    /** Floats of one image (C * H * W). */
    public long imageFloats() {
        return perImage;
    }

    /**
     * Samples {@code count <= batch} images g = firstImage .. firstImage + count - 1. A run with
     * {@code count < batch} works on the first count rows only (model call and update kernels at the real
     * size; the model workspace is reallocated for that size, and back on the next full run).
     *
     * @param initNoise x_T as float32 NCHW [count, C, H, W], or null to draw it
     * @param progress may be null
     * @return the final samples, float32 NCHW [count, C, H, W], before any quantisation
     */
    public float[] run(long seed, long firstImage, int count, float[] initNoise, Progress progress) {
        return run(seed, firstImage, count, initNoise, progress, null);
    }

    /** Sees the sample after every step (test hook: one device read per step). */
    interface StepObserver {
        /** @param x the sample after step {@code step} (0-based), float32 NCHW [count, C, H, W] */
        void after(int step, float[] x);
    }

    float[] run(long seed, long firstImage, int count, float[] initNoise, Progress progress, StepObserver observer) {
        checkOpen();
        if (count < 1 || count > batch) throw new IllegalArgumentException("count must be in [1, " + batch + "], got " + count);
        if (firstImage < 0 || firstImage + count > (1L << 31)) {
            throw new IllegalArgumentException("firstImage must be in [0, 2^31 - count], got " + firstImage);
        }
        if (initNoise != null && initNoise.length != count * perImage) {
            throw new IllegalArgumentException("initNoise has " + initNoise.length + " floats, [" + count + ", "
                    + channels + ", " + height + ", " + width + "] needs " + count * perImage);
        }
        if (count == batch) return loop(seed, firstImage, count, initNoise, progress, observer, x, x0, threshold);
        // the first count rows of every buffer, as tensors of batch count
        List<Tensor> views = new ArrayList<>(3);
        try {
            Tensor xv = x.view(0, count, height, width, channels);
            views.add(xv);
            Tensor x0v = null, thv = null;
            if (x0 != null) {
                x0v = x0.view(0, count, height, width, channels);
                views.add(x0v);
            }
            if (threshold != null) {
                thv = threshold.view(0, count);
                views.add(thv);
            }
            return loop(seed, firstImage, count, initNoise, progress, observer, xv, x0v, thv);
        } finally {
            for (int i = views.size() - 1; i >= 0; i--) views.get(i).close();
        }
    }

    private float[] loop(long seed, long firstImage, int count, float[] initNoise, Progress progress,
                         StepObserver observer, Tensor x, Tensor x0, Tensor threshold) {
        Backend be = x.backend();
        if (initNoise != null) {
            x.copyFrom(ImageLayout.nchwToNhwc(initNoise, count, channels, height, width));
        } else {
            for (int b = 0; b < count; b++) DiffusionKernels.randomNormal(be, seed, (firstImage + b) << 32, rows.get(b));
        }
        // per-call host arrays of length count (the kernels take one entry per row); reused when count == batch
        int[] t = count == batch ? this.t : new int[count], prev = count == batch ? this.prev : new int[count];
        int[] last = count == batch ? this.last : new int[count];
        float[] tModel = count == batch ? this.tModel : new float[count];
        long[] seeds = count == batch ? this.seeds : new long[count], offsets = count == batch ? this.offsets : new long[count];
        SampleNoise noise = new SampleNoise(seeds, offsets);
        lastGraph = null;
        if (observer == null && capturesGraphs()) {
            // The whole loop as one graph: the workspace is sized first (a capture refuses allocation); the
            // host arrays are rewritten every step, which is fine because each recorded call keeps a snapshot.
            model.reserve(count, height, width);
            float[] result;
            try (Graph g = Graph.capture(be, () -> {
                for (int i = 0; i < plan.size(); i++) step(i, seed, firstImage, count, x, x0, threshold, t, prev, last, tModel, noise);
            })) {
                g.launch();
                lastGraph = new GraphStats(g.nodes(), g.deviceBytes(), g.hostBytes());
                result = ImageLayout.nhwcToNchw(x.toFloatArray(), count, channels, height, width);
            }
            if (progress != null) for (int i = 0; i < plan.size(); i++) progress.step(i + 1, plan.size());
            return result;
        }
        for (int i = 0; i < plan.size(); i++) {
            step(i, seed, firstImage, count, x, x0, threshold, t, prev, last, tModel, noise);
            if (observer != null) observer.after(i, ImageLayout.nhwcToNchw(x.toFloatArray(), count, channels, height, width));
            if (progress != null) progress.step(i + 1, plan.size());
        }
        return ImageLayout.nhwcToNchw(x.toFloatArray(), count, channels, height, width);
    }

    /** Step i of the plan: its per-row host arguments, the model call and the update of x in place. */
    private void step(int i, long seed, long firstImage, int count, Tensor x, Tensor x0, Tensor threshold, int[] t,
                      int[] prev, int[] last, float[] tModel, SampleNoise noise) {
        SamplerStep s = plan.get(i);
        for (int b = 0; b < count; b++) {
            t[b] = s.timestep();
            prev[b] = s.prevTimestep();
            last[b] = s.lastTimestep();
            tModel[b] = s.timestep();
            noise.seeds()[b] = seed;
            noise.offsets()[b] = ((firstImage + b) << 32) | (i + 1);
        }
        Tensor out = model.forward(x, tModel);
        update(nativeSchedule, schedule, scheduler, s, x, out, x0, threshold, t, prev, last, noise);
    }

    /**
     * One step's update of x in place from the model output {@code out}: with dynamic thresholding the per-sample
     * threshold first, then the scheduler's fused step kernel ({@code x0} carries DPM-Solver++'s previous x0
     * prediction; {@code threshold} is float32[rows], only with thresholding). t, prev, last and noise hold one
     * entry per row (the plan step's values). Every kernel here works row by row, so calling it on a row-range view
     * of a larger batch (as the sampling server does, one call per request) gives those rows the same bits as a
     * call over the whole batch.
     */
    public static void update(NativeSchedule nativeSchedule, NoiseSchedule schedule, SamplerScheduler scheduler, SamplerStep s,
                       Tensor x, Tensor out, Tensor x0, Tensor threshold, int[] t, int[] prev, int[] last,
                       SampleNoise noise) {
        PredictionType pred = scheduler.prediction();
        Thresholding th = scheduler.thresholding();
        if (th != null) SamplerKernels.x0Threshold(nativeSchedule, pred, x, out, t, th.ratio(), th.sampleMaxValue(), threshold);
        switch (scheduler) {
            case DdpmScheduler d -> {
                if (th != null) {
                    SamplerKernels.ddpmStepThresholded(nativeSchedule, pred, d.variance(), threshold, x, out, t, prev,
                            noise, x);
                } else {
                    DiffusionKernels.ddpmStep(nativeSchedule, pred, d.variance(), d.clipSample(),
                            (float) d.clipSampleRange(), x, out, t, prev, noise, x);
                }
            }
            case DdimScheduler d -> {
                double fa = d.finalAlphaCumprod(schedule);
                if (th != null) {
                    SamplerKernels.ddimStepThresholded(nativeSchedule, pred, d.eta(), d.useClippedModelOutput(), fa,
                            threshold, x, out, t, prev, noise, x);
                } else {
                    DiffusionKernels.ddimStep(nativeSchedule, pred, d.eta(), d.clipSample(), (float) d.clipSampleRange(),
                            d.useClippedModelOutput(), fa, x, out, t, prev, noise, x);
                }
            }
            case DpmSolverScheduler d -> SamplerKernels.dpmSolverStep(nativeSchedule, pred, th != null ? threshold : null,
                    x, out, s.lastTimestep() >= 0 ? x0 : null, t, prev, last, x0, x);
        }
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("Sampler is closed");
    }

    /** Releases the buffers and the model workspace (not the shared model). Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (int i = rows.size() - 1; i >= 0; i--) rows.get(i).close();
        rows.clear();
        if (threshold != null) threshold.close();
        if (x0 != null) x0.close();
        x.close();
        nativeSchedule.close();
        model.close();
    }
}
