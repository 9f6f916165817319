package io.diffusion4j.sample;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.Graph;
import io.diffusion4j.backend.Unwinding;
import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DropoutKernels;
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
 * depends on (seed, g) only, not on the batch it was drawn in. Runs with {@link Inputs} (class labels and
 * guidance, image-to-image, inpainting) execute a {@link RunPlan}: op k draws its step's noise from offset
 * {@code (g << 32) | (k + 1)} and its merge or jump-back noise from {@code (g << 32) | 2^31 | (k + 1)}; with
 * guidance the model is called once per step over the rows and their copies labelled with the null class, and
 * an image still depends on (seed, g, its label and image inputs) only.
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

    /**
     * What steers one run besides the seed: class labels and classifier-free guidance for a class-conditional
     * model, and an image for image-to-image (with {@code strength}) or inpainting (with a mask and RePaint's
     * resampling). Arrays are per image of the run (the run's {@code count} images, in order).
     *
     * @param classLabels one label per image, or null: every image gets the null class (unconditional sampling of a
     *     class-conditional model); must be null for an unconditional model
     * @param nullClass the model's null class (the unconditional prediction), or -1 when it has none
     * @param guidanceScale classifier-free guidance scale: 1 is the conditional prediction alone (one model call per
     *     image), any other finite value >= 0 mixes it with the unconditional one computed in the same batched call
     * @param image the init image, float32 NCHW {@code [count, C, H, W]} in [-1, 1], or null
     * @param mask with an image: inpainting's mask of the same shape (1 keeps the image's pixel, 0 generates it;
     *     diffusers' RePaintPipeline convention), or null for image-to-image
     * @param strength image-to-image's strength in (0, 1] (ignored otherwise)
     * @param jumpLength inpainting's jump length, >= 1
     * @param jumpNSample inpainting's jump_n_sample, >= 1 (1: no resampling)
     */
    public record Inputs(int[] classLabels, int nullClass, float guidanceScale, float[] image, float[] mask,
                         double strength, int jumpLength, int jumpNSample) {
        /** No labels, no guidance, no image. */
        public static final Inputs NONE = new Inputs(null, -1, 1f, null, null, 1.0, 1, 1);

        public Inputs {
            if (!(Float.isFinite(guidanceScale) && guidanceScale >= 0)) {
                throw new IllegalArgumentException("guidance scale must be finite and >= 0, got " + guidanceScale);
            }
            if (mask != null && image == null) throw new IllegalArgumentException("a mask needs an image to inpaint");
        }

        /** Whether the run mixes conditional and unconditional predictions. */
        public boolean guided() {
            return guidanceScale != 1f;
        }

        /**
         * The inputs of images {@code first .. first + n - 1} of these (which hold one label and one image per image of
         * a whole call, {@code perImage} floats each): what a call split into batches passes to each run.
         */
        public Inputs slice(int first, int n, int perImage) {
            return new Inputs(classLabels == null ? null : java.util.Arrays.copyOfRange(classLabels, first, first + n),
                    nullClass, guidanceScale, part(image, first, n, perImage), part(mask, first, n, perImage), strength,
                    jumpLength, jumpNSample);
        }

        private static float[] part(float[] v, int first, int n, int per) {
            return v == null ? null : java.util.Arrays.copyOfRange(v, Math.multiplyExact(first, per),
                    Math.multiplyExact(first + n, per));
        }
    }

    private final UNet2DModel model;
    private final NativeSchedule nativeSchedule;
    private final NoiseSchedule schedule;
    private final SamplerScheduler scheduler;
    private final List<SamplerStep> plan;
    private final int batch, height, width, channels;
    private final long perImage;
    private final boolean conditional;
    /** x in rows [0, batch); a class-conditional model's guided runs put the unconditional copies after the run's rows. */
    private final Tensor all, x, x0, threshold;
    private final List<Tensor> rows = new ArrayList<>();
    private Tensor known, mask; // inpainting and image-to-image, made on first use
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
        this.conditional = cfg.isClassConditional();
        Backend be = shared.backend();
        List<AutoCloseable> made = new ArrayList<>();
        try {
            UNet2DModel m = shared.sharingParameters();
            made.add(m);
            NativeSchedule ns = NativeSchedule.of(schedule);
            made.add(ns);
            Tensor xa = Tensor.allocate(be, DType.FLOAT32, conditional ? 2L * batch : batch, height, width, channels);
            made.add(xa);
            Tensor xx = xa.view(0, batch, height, width, channels);
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
                Tensor row = xa.view(b * perImage, perImage);
                made.add(row);
                rows.add(row);
            }
            this.model = m;
            this.nativeSchedule = ns;
            this.all = xa;
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

    /** The ops a run with these inputs performs (its steps, with image-to-image's start or inpainting's jumps). */
    public RunPlan runPlan(Inputs in) {
        return runPlan(plan, in);
    }

    /**
     * The ops of a run of {@code plan} with these inputs: plain sampling, image-to-image from {@code strength}, or
     * inpainting with RePaint's jumps (the sampling server builds its requests' plans here too, so that both run
     * the same ops).
     */
    public static RunPlan runPlan(List<SamplerStep> plan, Inputs in) {
        if (in.image() == null) return RunPlan.of(plan);
        if (in.mask() == null) return RunPlan.imageToImage(plan, in.strength());
        return RunPlan.inpainting(plan, in.jumpLength(), in.jumpNSample());
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
        return run(seed, firstImage, count, initNoise, Inputs.NONE, progress, null);
    }

    /**
     * As {@link #run(long, long, int, float[], Progress)} with class labels, guidance and image inputs; progress counts
     * the run's ops ({@link #runPlan}).
     */
    public float[] run(long seed, long firstImage, int count, float[] initNoise, Inputs inputs, Progress progress) {
        return run(seed, firstImage, count, initNoise, inputs, progress, null);
    }

    /** Sees the sample after every step (test hook: one device read per step). */
    interface StepObserver {
        /** @param x the sample after step {@code step} (0-based), float32 NCHW [count, C, H, W] */
        void after(int step, float[] x);
    }

    float[] runObserved(long seed, long firstImage, int count, float[] initNoise, Progress progress, StepObserver observer) {
        return run(seed, firstImage, count, initNoise, Inputs.NONE, progress, observer);
    }

    float[] run(long seed, long firstImage, int count, float[] initNoise, Inputs inputs, Progress progress,
                StepObserver observer) {
        checkOpen();
        Objects.requireNonNull(inputs, "inputs");
        if (count < 1 || count > batch) throw new IllegalArgumentException("count must be in [1, " + batch + "], got " + count);
        if (firstImage < 0 || firstImage + count > (1L << 31)) {
            throw new IllegalArgumentException("firstImage must be in [0, 2^31 - count], got " + firstImage);
        }
        if (initNoise != null && initNoise.length != count * perImage) {
            throw new IllegalArgumentException("initNoise has " + initNoise.length + " floats, [" + count + ", "
                    + channels + ", " + height + ", " + width + "] needs " + count * perImage);
        }
        int[] labels = rowLabels(inputs, count);
        checkImage("image", inputs.image(), count);
        checkImage("mask", inputs.mask(), count);
        RunPlan rp = runPlan(inputs);
        if (initNoise != null && rp.startTimestep() >= 0) {
            throw new IllegalArgumentException("initNoise and image-to-image exclude each other (the image is noised)");
        }
        if (inputs.image() != null && known == null) known = Tensor.allocate(x.backend(), DType.FLOAT32, batch, height, width, channels);
        if (inputs.mask() != null && mask == null) mask = Tensor.allocate(x.backend(), DType.FLOAT32, batch, height, width, channels);
        List<Tensor> views = new ArrayList<>(6);
        try {
            Run r = new Run(seed, firstImage, count, labels, inputs.nullClass(), inputs.guided() ? inputs.guidanceScale() : 1f, rp);
            r.x = count == batch ? x : track(views, x.view(0, count, height, width, channels));
            if (x0 != null) r.x0 = count == batch ? x0 : track(views, x0.view(0, count, height, width, channels));
            if (threshold != null) r.threshold = count == batch ? threshold : track(views, threshold.view(0, count));
            if (inputs.image() != null) r.known = track(views, known.view(0, count, height, width, channels));
            if (inputs.mask() != null) r.mask = track(views, mask.view(0, count, height, width, channels)); // inpainting only
            if (r.guided()) {
                r.modelInput = track(views, all.view(0, 2L * count, height, width, channels));
                r.copies = track(views, all.view(count * perImage, count, height, width, channels));
                model.reserve(2 * count, height, width);
                Tensor out = model.output();
                r.cond = track(views, out.view(0, count, height, width, channels));
                r.uncond = track(views, out.view(count * perImage, count, height, width, channels));
            }
            if (inputs.image() != null) r.known.copyFrom(ImageLayout.nchwToNhwc(inputs.image(), count, channels, height, width));
            if (inputs.mask() != null) r.mask.copyFrom(ImageLayout.nchwToNhwc(inputs.mask(), count, channels, height, width));
            return loop(r, initNoise, progress, observer);
        } finally {
            for (int i = views.size() - 1; i >= 0; i--) views.get(i).close();
        }
    }

    private static Tensor track(List<Tensor> views, Tensor v) {
        views.add(v);
        return v;
    }

    /** The label of every row: the given ones (checked), the null class when none are given, null for an unconditional model. */
    private int[] rowLabels(Inputs in, int count) {
        Integer classes = model.config().numClassEmbeds();
        if (classes == null) {
            if (in.classLabels() != null) {
                throw new IllegalArgumentException("class labels given, but the model is unconditional (no"
                        + " num_class_embeds)");
            }
            if (in.guided()) {
                throw new IllegalArgumentException("guidance scale " + in.guidanceScale() + " needs a class-conditional"
                        + " model; this one is unconditional (use 1)");
            }
            return null;
        }
        if (in.nullClass() >= classes) {
            throw new IllegalArgumentException("null class " + in.nullClass() + " is outside [0, " + classes + ")");
        }
        if (in.classLabels() == null || in.guided()) {
            if (in.nullClass() < 0) {
                throw new IllegalArgumentException(in.classLabels() == null
                        ? "the model is class-conditional and has no null class: give a class label per image"
                        : "guidance needs the model's null class (the unconditional prediction); this model has none"
                                + " (use guidance scale 1)");
            }
        }
        int[] l = new int[count];
        if (in.classLabels() == null) {
            java.util.Arrays.fill(l, in.nullClass());
            return l;
        }
        if (in.classLabels().length != count) {
            throw new IllegalArgumentException("class labels has " + in.classLabels().length + " entries for " + count
                    + " images");
        }
        for (int i = 0; i < count; i++) {
            int v = in.classLabels()[i];
            if (v < 0 || v >= classes) {
                throw new IllegalArgumentException("class label " + v + " (image " + i + ") is outside [0, " + classes
                        + ") (num_class_embeds)");
            }
            l[i] = v;
        }
        return l;
    }

    private void checkImage(String what, float[] v, int count) {
        if (v == null) return;
        if (v.length != count * perImage) {
            throw new IllegalArgumentException(what + " has " + v.length + " floats, [" + count + ", " + channels + ", "
                    + height + ", " + width + "] needs " + count * perImage);
        }
        for (int i = 0; i < v.length; i++) {
            if (!Float.isFinite(v[i])) throw new IllegalArgumentException(what + "[" + i + "] = " + v[i] + " is not finite");
        }
    }

    /** One run's settings, its tensors (views of this sampler's buffers) and its per-row host arrays. */
    private final class Run {
        final long seed, firstImage;
        final int count;
        final int[] labels; // per row, or null (unconditional model)
        final int[] labels2; // guided: the rows' labels, then the null class for their copies
        final float scale;
        final RunPlan plan;
        Tensor x, x0, threshold, known, mask, modelInput, copies;
        Tensor cond, uncond; // guided: views of the model output's halves, made before any capture
        final int[] t, prev, last, renoiseT;
        final float[] tModel, tModel2;
        final SampleNoise noise, renoise;

        Run(long seed, long firstImage, int count, int[] labels, int nullClass, float scale, RunPlan plan) {
            this.seed = seed;
            this.firstImage = firstImage;
            this.count = count;
            this.labels = labels;
            this.scale = scale;
            this.plan = plan;
            boolean reuse = count == batch;
            t = reuse ? Sampler.this.t : new int[count];
            prev = reuse ? Sampler.this.prev : new int[count];
            last = reuse ? Sampler.this.last : new int[count];
            tModel = reuse ? Sampler.this.tModel : new float[count];
            noise = new SampleNoise(reuse ? seeds : new long[count], reuse ? offsets : new long[count]);
            renoiseT = new int[count];
            renoise = new SampleNoise(new long[count], new long[count]);
            tModel2 = scale != 1f ? new float[2 * count] : null;
            if (scale != 1f) {
                labels2 = new int[2 * count];
                for (int b = 0; b < count; b++) {
                    labels2[b] = labels[b];
                    labels2[count + b] = nullClass;
                }
            } else {
                labels2 = null;
            }
        }

        boolean guided() {
            return scale != 1f;
        }
    }

    private float[] loop(Run r, float[] initNoise, Progress progress, StepObserver observer) {
        Backend be = r.x.backend();
        int count = r.count;
        // x at the start: the image noised to the first timestep (image-to-image), the given x_T, or drawn noise
        if (r.plan.startTimestep() >= 0) {
            int[] from = new int[count], to = new int[count];
            long[] s = new long[count], o = new long[count];
            for (int b = 0; b < count; b++) {
                from[b] = -1;
                to[b] = r.plan.startTimestep();
                s[b] = r.seed;
                o[b] = (r.firstImage + b) << 32; // the stream x_T would have come from
            }
            ConditioningKernels.noiseToTimestep(nativeSchedule, r.known, from, to, new SampleNoise(s, o), r.x);
        } else if (initNoise != null) {
            r.x.copyFrom(ImageLayout.nchwToNhwc(initNoise, count, channels, height, width));
        } else {
            for (int b = 0; b < count; b++) DiffusionKernels.randomNormal(be, r.seed, (r.firstImage + b) << 32, rows.get(b));
        }
        List<RunPlan.Op> ops = r.plan.ops();
        lastGraph = null;
        if (observer == null && capturesGraphs()) {
            // The whole loop as one graph: the workspace is sized first (a capture refuses allocation); the
            // host arrays are rewritten every step, which is fine because each recorded call keeps a snapshot.
            model.reserve(r.guided() ? 2 * count : count, height, width);
            float[] result;
            try (Graph g = Graph.capture(be, () -> {
                for (int k = 0; k < ops.size(); k++) op(r, k);
            })) {
                g.launch();
                lastGraph = new GraphStats(g.nodes(), g.deviceBytes(), g.hostBytes());
                result = ImageLayout.nhwcToNchw(r.x.toFloatArray(), count, channels, height, width);
            }
            if (progress != null) for (int k = 0; k < ops.size(); k++) progress.step(k + 1, ops.size());
            return result;
        }
        for (int k = 0; k < ops.size(); k++) {
            op(r, k);
            if (observer != null) observer.after(k, ImageLayout.nhwcToNchw(r.x.toFloatArray(), count, channels, height, width));
            if (progress != null) progress.step(k + 1, ops.size());
        }
        return ImageLayout.nhwcToNchw(r.x.toFloatArray(), count, channels, height, width);
    }

    /** Op k of the run: a denoising step (model call, update, inpainting's merge) or a jump back. */
    private void op(Run r, int k) {
        RunPlan.Op op = r.plan.ops().get(k);
        SamplerStep s = op.step();
        for (int b = 0; b < r.count; b++) {
            long g = r.firstImage + b;
            r.noise.seeds()[b] = r.seed;
            r.noise.offsets()[b] = RunPlan.stepOffset(g, k);
            r.renoise.seeds()[b] = r.seed;
            r.renoise.offsets()[b] = RunPlan.renoiseOffset(g, k);
        }
        if (op.kind() == RunPlan.Kind.UNDO) {
            for (int b = 0; b < r.count; b++) {
                r.prev[b] = s.prevTimestep();
                r.t[b] = s.timestep();
            }
            ConditioningKernels.noiseToTimestep(nativeSchedule, r.x, r.prev, r.t, r.renoise, r.x);
            return;
        }
        for (int b = 0; b < r.count; b++) {
            r.t[b] = s.timestep();
            r.prev[b] = s.prevTimestep();
            r.last[b] = s.lastTimestep();
            r.tModel[b] = s.timestep();
        }
        Tensor out = predict(r);
        update(nativeSchedule, schedule, scheduler, s, r.x, out, r.x0, r.threshold, r.t, r.prev, r.last, r.noise);
        if (r.plan.inpaint()) {
            for (int b = 0; b < r.count; b++) r.renoiseT[b] = s.prevTimestep();
            ConditioningKernels.inpaintMerge(nativeSchedule, r.known, r.mask, r.renoiseT, r.renoise, r.x);
        }
    }

    /**
     * The model's prediction for the run's rows: one call; guided, one call over the rows and their copies
     * (labelled with the null class), mixed by classifier-free guidance into the conditional half.
     */
    private Tensor predict(Run r) {
        if (!r.guided()) return model.forward(r.x, r.tModel, r.labels);
        DropoutKernels.copy(r.x, r.copies); // the rows to be labelled with the null class
        for (int b = 0; b < r.count; b++) {
            r.tModel2[b] = r.tModel[b];
            r.tModel2[r.count + b] = r.tModel[b];
        }
        Tensor out = model.forward(r.modelInput, r.tModel2, r.labels2);
        if (out != model.output()) throw new IllegalStateException("the model's output moved"); // a bug
        ConditioningKernels.classifierFreeGuidance(r.cond, r.uncond, r.scale, r.cond);
        return r.cond;
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
        if (mask != null) mask.close();
        if (known != null) known.close();
        if (threshold != null) threshold.close();
        if (x0 != null) x0.close();
        x.close();
        all.close();
        nativeSchedule.close();
        model.close();
    }
}
