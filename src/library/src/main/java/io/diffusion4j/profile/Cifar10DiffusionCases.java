package io.diffusion4j.profile;

import static io.diffusion4j.profile.Cifar10Cases.PARAMETERS;
import static io.diffusion4j.profile.Cifar10Cases.SAMPLE_BATCH;
import static io.diffusion4j.profile.Cifar10Cases.TRAIN_BATCH;
import static io.diffusion4j.profile.Cifar10LayerCases.dims;

import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.kernels.SamplerKernels;
import io.diffusion4j.kernels.VlbKernels;
import io.diffusion4j.profile.Cifar10Cases.Case;
import io.diffusion4j.profile.Cifar10Cases.Inputs;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * The diffusion, optimiser and sampler families on google/ddpm-cifar10-32's images (32x32x3, NHWC) and
 * parameters: rng, add_noise, diffusion_loss and vlb at batch {@value Cifar10Cases#TRAIN_BATCH};
 * reverse_step, sampler_step and x0_threshold at batch {@value Cifar10Cases#SAMPLE_BATCH};
 * timestep_embedding and class_embedding (a class-conditional variant: 10 classes and the null class) for a
 * training batch; guidance and renoise (inpainting's merge and jump back) at batch
 * {@value Cifar10Cases#SAMPLE_BATCH}; grad_norm, adamw and ema over every parameter. The model's
 * scheduler settings: epsilon prediction, fixed_large variance, samples clipped to [-1, 1].
 */
final class Cifar10DiffusionCases {
    private Cifar10DiffusionCases() {}

    static final int T = 1000; // NoiseSchedule.defaults()

    static List<Case> cases() {
        List<Case> out = new ArrayList<>();
        training(out);
        sampling(out);
        optimiser(out);
        return out;
    }

    private static long[] images(int batch) {
        return new long[] {batch, 32, 32, 3};
    }

    /** Spread over the schedule, t = 0 (the VLB's decoder term) included. */
    static int[] trainTimesteps() {
        int[] t = new int[TRAIN_BATCH];
        for (int b = 0; b < TRAIN_BATCH; b++) t[b] = (b * 997) % T;
        return t;
    }

    /** Mid-schedule timesteps of a 50-step sampler, with {@code offset} added (-20: the next, +20: the last). */
    static int[] sampleTimesteps(int offset) {
        int[] t = new int[SAMPLE_BATCH];
        for (int b = 0; b < SAMPLE_BATCH; b++) t[b] = 500 + b + offset;
        return t;
    }

    static SampleNoise sampleNoise() {
        long[] seeds = new long[SAMPLE_BATCH], offsets = new long[SAMPLE_BATCH];
        for (int b = 0; b < SAMPLE_BATCH; b++) {
            seeds[b] = 0x5EED + b;
            offsets[b] = 3L * b;
        }
        return new SampleNoise(seeds, offsets);
    }

    private static void training(List<Case> out) {
        long[] xs = images(TRAIN_BATCH);
        long count = TRAIN_BATCH * 32L * 32 * 3;
        String shape = dims(xs);
        int[] t = trainTimesteps();
        out.add(new Case("rng", "uint32", shape, in -> {
            Tensor w = in.words(count);
            return () -> DiffusionKernels.randomBits(in.backend(), 7L, 0L, w);
        }));
        out.add(new Case("rng", "normal", shape, in -> {
            Tensor n = in.floats(count);
            return () -> DiffusionKernels.randomNormal(in.backend(), 7L, 0L, n);
        }));
        out.add(new Case("add_noise", "add_noise", shape, in -> {
            Tensor x0 = in.floats(xs), xt = in.floats(xs), eps = in.floats(xs);
            return () -> DiffusionKernels.addNoise(in.schedule(), x0, t, 7L, 0L, xt, eps);
        }));
        out.add(new Case("diffusion_loss", "epsilon", shape, in -> {
            Tensor o = in.floats(xs), x0 = in.floats(xs), eps = in.floats(xs), loss = in.floats(TRAIN_BATCH);
            Tensor grad = in.floats(xs);
            return () -> DiffusionKernels.diffusionLoss(in.schedule(), PredictionType.EPSILON, o, x0, eps, t, null, loss,
                    grad);
        }));
        // the model's time embedding: 128 sinusoid channels, sin first (flip_sin_to_cos false), freq_shift 1
        float[] tf = new float[TRAIN_BATCH];
        for (int b = 0; b < TRAIN_BATCH; b++) tf[b] = t[b];
        out.add(new Case("timestep_embedding", "dim=128 shift=1", TRAIN_BATCH + " timesteps x 128", in -> {
            Tensor e = in.floats(TRAIN_BATCH, 128);
            return () -> DiffusionKernels.timestepEmbedding(in.backend(), tf, 128, false, 1f, 1f, 10000f, e);
        }));
        // a class-conditional variant's class embedding: 11 x 512 table (10 classes and the null class)
        int[] labels = new int[TRAIN_BATCH];
        for (int b = 0; b < TRAIN_BATCH; b++) labels[b] = (b * 7) % 11;
        out.add(new Case("class_embedding", "forward + backward 11 classes", TRAIN_BATCH + " labels x 512", in -> {
            Tensor table = in.floats(11, 512), emb = in.floats(TRAIN_BATCH, 512), dTable = in.floats(11, 512);
            return () -> {
                ConditioningKernels.classEmbeddingForward(table, labels, emb);
                ConditioningKernels.classEmbeddingBackward(emb, labels, dTable);
            };
        }));
        // the VLB's return values are per-sample host sums: not results in a sampled run, so dropped
        out.add(new Case("vlb", "terms epsilon fixed_large clip", shape, in -> {
            Tensor x0 = in.floats(xs), xt = in.floats(xs), o = in.floats(xs);
            return () -> VlbKernels.terms(in.schedule(), PredictionType.EPSILON, VarianceType.FIXED_LARGE, true, 1f, x0,
                    xt, o, t);
        }));
        out.add(new Case("vlb", "prior", shape, in -> {
            Tensor x0 = in.floats(xs);
            return () -> VlbKernels.prior(in.schedule(), x0);
        }));
    }

    private static void sampling(List<Case> out) {
        long[] xs = images(SAMPLE_BATCH);
        String shape = dims(xs);
        int[] t = sampleTimesteps(0), next = sampleTimesteps(-20), last = sampleTimesteps(20), prev1 = sampleTimesteps(-1);
        SampleNoise noise = sampleNoise();
        PredictionType eps = PredictionType.EPSILON;
        out.add(stepCase("reverse_step", "ddpm epsilon fixed_large clip", shape, (in, s) ->
                () -> DiffusionKernels.ddpmStep(in.schedule(), eps, VarianceType.FIXED_LARGE, true, 1f, s.x(), s.o(), t,
                        prev1, noise, s.prev())));
        out.add(stepCase("reverse_step", "ddim epsilon eta=0", shape, (in, s) ->
                () -> DiffusionKernels.ddimStep(in.schedule(), eps, 0f, false, 1f, false, 1.0, s.x(), s.o(), t, next,
                        noise, s.prev())));
        out.add(stepCase("sampler_step", "dpmsolver++ 2M epsilon threshold", shape, (in, s) -> {
            Tensor m1 = in.floats(xs);
            return () -> SamplerKernels.dpmSolverStep(in.schedule(), eps, s.threshold(), s.x(), s.o(), m1, t, next,
                    last, m1, s.prev());
        }));
        out.add(stepCase("sampler_step", "ddpm epsilon threshold", shape, (in, s) ->
                () -> SamplerKernels.ddpmStepThresholded(in.schedule(), eps, VarianceType.FIXED_LARGE, s.threshold(),
                        s.x(), s.o(), t, prev1, noise, s.prev())));
        out.add(stepCase("sampler_step", "ddim epsilon eta=0 threshold", shape, (in, s) ->
                () -> SamplerKernels.ddimStepThresholded(in.schedule(), eps, 0f, true, 1.0, s.threshold(), s.x(),
                        s.o(), t, next, noise, s.prev())));
        // classifier-free guidance at scale 3 over the conditional and unconditional predictions
        out.add(stepCase("guidance", "scale=3", shape, (in, s) ->
                () -> ConditioningKernels.classifierFreeGuidance(s.x(), s.o(), 3f, s.prev())));
        // RePaint: the known region merged at the next timestep, and a jump back to this one
        out.add(stepCase("renoise", "inpaint_merge", shape, (in, s) -> {
            Tensor mask = in.floats(xs);
            return () -> ConditioningKernels.inpaintMerge(in.schedule(), s.x(), mask, next, noise, s.prev());
        }));
        out.add(stepCase("renoise", "noise_to_timestep jump back", shape, (in, s) ->
                () -> ConditioningKernels.noiseToTimestep(in.schedule(), s.x(), next, t, noise, s.prev())));
        // Imagen's ratio and diffusers' default sample_max_value
        out.add(stepCase("x0_threshold", "quantile epsilon ratio=0.995", shape, (in, s) ->
                () -> SamplerKernels.x0Threshold(in.schedule(), eps, s.x(), s.o(), t, 0.995, 1f, s.threshold())));
    }

    /** The tensors every sampler-side call takes: x_t, the model output, x_prev and the per-sample threshold. */
    private record StepTensors(Tensor x, Tensor o, Tensor prev, Tensor threshold) {}

    private interface StepSetup {
        Runnable prepare(Inputs in, StepTensors s);
    }

    private static Case stepCase(String family, String call, String shape, StepSetup setup) {
        long[] xs = images(SAMPLE_BATCH);
        return new Case(family, call, shape, in -> setup.prepare(in, new StepTensors(in.floats(xs), in.floats(xs),
                in.floats(xs), in.constant(1.5f, SAMPLE_BATCH))));
    }

    private static void optimiser(List<Case> out) {
        out.add(vectorCase("grad_norm", "norm", 1, v -> () -> OptimKernels.gradNorm(v[0])));
        OptimKernels.AdamW hp = OptimKernels.AdamW.defaults(2e-4);
        out.add(vectorCase("adamw", "step 1 lr=2e-4", 4, v -> () -> OptimKernels.adamw(v[0], v[1], v[2], v[3], hp, 1L,
                1.0)));
        out.add(vectorCase("ema", "decay 0.9999", 2, v -> () -> OptimKernels.ema(v[0], v[1], 0.9999)));
    }

    /** A call on {@code count} parameter-sized vectors. */
    private static Case vectorCase(String family, String call, int count, Function<Tensor[], Runnable> body) {
        return new Case(family, call, PARAMETERS + " parameters", in -> {
            Tensor[] v = new Tensor[count];
            for (int i = 0; i < count; i++) v[i] = in.floats(PARAMETERS);
            return body.apply(v);
        });
    }
}
