package io.diffusion4j.profile;

import io.diffusion4j.Precision;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.sample.DdimScheduler;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The launches of whole steps of a model, counted on the profiling simulator: one training step
 * (noising, the training forward, the loss, the backward, the gradient norm, AdamW, EMA) and one DDIM
 * sampling step (the model forward and the fused step kernel). With {@code maxBlocks > 0} only a sample
 * of each launch's blocks runs, so the values computed are not results (they are left as the NaN
 * poison where blocks did not run); only the counts matter.
 */
public final class StepProfiles {
    private StepProfiles() {}

    /** The UNet2DModel of google/ddpm-cifar10-32 (35.7 M parameters), as its config.json gives it. */
    public static UNet2DConfig cifar10() {
        return UNet2DConfig.builder().sampleSize(32).inChannels(3).outChannels(3).blockOutChannels(128, 256, 256, 256)
                .layersPerBlock(2).downBlockTypes(List.of("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"))
                .upBlockTypes(List.of("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")).downsamplePadding(0)
                .freqShift(1).flipSinToCos(false).normNumGroups(32).normEps(1e-6).dropout(0.0).build();
    }

    /**
     * The launches of one training step at {@code batch}, in the order Trainer.step makes them (epsilon
     * prediction, no gradient clipping: with a sampled run the gradient norm is not a number).
     */
    public static List<KernelProfile> trainingStep(Backend profiling, UNet2DConfig config, int batch, long maxBlocks) {
        NoiseSchedule schedule = NoiseSchedule.defaults();
        int h = config.sampleHeight(), w = config.sampleWidth(), c = config.inChannels();
        long[] shape = {batch, h, w, c};
        List<Tensor> owned = new ArrayList<>();
        try (UNet2DModel model = new UNet2DModel(profiling, config, 1L); NativeSchedule ns = NativeSchedule.of(schedule)) {
            long p = model.parameters().elementCount();
            Tensor m = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, p));
            Tensor v = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, p));
            Tensor ema = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, p));
            Tensor x0 = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, shape));
            Tensor xT = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, shape));
            Tensor eps = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, shape));
            Tensor dOut = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, shape));
            Tensor loss = keep(owned, Tensor.allocate(profiling, DType.FLOAT32, batch));
            model.reserve(batch, h, w);
            int[] t = new int[batch];
            float[] tf = new float[batch];
            for (int b = 0; b < batch; b++) {
                t[b] = (b * 997) % schedule.numTrainTimesteps();
                tf[b] = t[b];
            }
            OptimKernels.AdamW hp = OptimKernels.AdamW.defaults(1e-4);
            return KernelCounters.count(profiling, maxBlocks, be -> {
                DiffusionKernels.addNoise(ns, x0, t, 7L, 0L, xT, eps);
                Tensor out = model.forwardTraining(xT, tf, 11L, 0L);
                DiffusionKernels.diffusionLoss(ns, PredictionType.EPSILON, out, x0, eps, t, null, loss, dOut);
                model.zeroGradients();
                model.backwardParameters(dOut);
                OptimKernels.gradNorm(model.gradients());
                OptimKernels.adamw(model.parameters(), model.gradients(), m, v, hp, 1L, 1.0);
                OptimKernels.ema(ema, model.parameters(), 0.9999);
            });
        } finally {
            for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
        }
    }

    /** The launches of one DDIM step (eta = 0) at {@code batch}: the model forward and the step kernel. */
    public static List<KernelProfile> ddimStep(Backend profiling, UNet2DConfig config, int batch, long maxBlocks) {
        NoiseSchedule schedule = NoiseSchedule.defaults();
        int h = config.sampleHeight(), w = config.sampleWidth();
        try (UNet2DModel model = UNet2DModel.forInference(profiling, config);
             Sampler sampler = new Sampler(model, schedule, DdimScheduler.defaults(PredictionType.EPSILON, 0f), 1, batch,
                     h, w)) {
            sampler.useGraphs(false);
            float[] init = new float[(int) (batch * sampler.imageFloats())];
            model.reserve(batch, h, w);
            return KernelCounters.count(profiling, maxBlocks, be -> sampler.run(1L, 0L, batch, init, null));
        }
    }

    /** The launches of one 3x3 convolution forward of an NHWC [n, h, w, cIn] input to cOut channels. */
    public static List<KernelProfile> convForward(Backend profiling, int n, int h, int w, int cIn, int cOut,
                                                  long maxBlocks) {
        try (Tensor x = Tensor.allocate(profiling, DType.FLOAT32, n, h, w, cIn);
             Tensor weight = Tensor.allocate(profiling, DType.FLOAT32, 3, 3, cIn, cOut);
             Tensor bias = Tensor.allocate(profiling, DType.FLOAT32, cOut);
             Tensor y = Tensor.allocate(profiling, DType.FLOAT32, n, h, w, cOut)) {
            x.fill(0.5f);
            weight.fill(0.25f);
            bias.fill(0f);
            return KernelCounters.count(profiling, maxBlocks,
                    be -> ConvKernels.forward(ConvKernels.Conv2dSpec.same3x3(), x, weight, bias, y));
        }
    }

    /** The steps {@link #cifar10Steps} counts, in order (each at every precision, {@link #stepName}). */
    public static final List<String> CIFAR10_STEPS = List.of("DDIM step, batch 1", "DDIM step, batch 64",
            "training step, batch 128");

    /** A step's name at a precision, as {@link ProfiledCase#call()} gives it: "DDIM step, batch 1, tf32". */
    public static String stepName(String step, Precision precision) {
        return step + ", " + precision.cliName();
    }

    /**
     * One DDIM step at batch 1 and at batch 64 and one training step at batch 128 of {@link #cifar10()}, at each
     * precision (FP32 on the SIMT kernels, then TF32 and BF16, which select the tensor-core variants), each launch as
     * a {@link ProfiledCase} whose call names its step ({@link #stepName}); {@code started} hears each step's
     * name before it runs. The backend's precision and selections are put back afterwards.
     */
    public static List<ProfiledCase> cifar10Steps(Backend profiling, long maxBlocks, Consumer<String> started) {
        UNet2DConfig config = cifar10();
        List<ProfiledCase> out = new ArrayList<>();
        for (Precision precision : Precision.values()) {
            try (Backend.Selection before = profiling.use(precision)) {
                for (String base : CIFAR10_STEPS) {
                    String step = stepName(base, precision);
                    started.accept(step);
                    int batch = Integer.parseInt(base.substring(base.lastIndexOf(' ') + 1));
                    List<KernelProfile> launches = base.startsWith("DDIM") ? ddimStep(profiling, config, batch, maxBlocks)
                            : trainingStep(profiling, config, batch, maxBlocks);
                    String shape = batch + "x32x32x3";
                    for (KernelProfile k : launches) {
                        String family = KernelFamilies.of(k.kernel());
                        String variant = profiling.kernelFamilies().contains(family)
                                ? Cifar10Cases.selectedLabel(profiling, family) : "-";
                        out.add(new ProfiledCase(family, variant, step, shape, List.of(k), Double.NaN, ""));
                    }
                }
            }
        }
        return out;
    }

    /**
     * Prints each step's projected totals and slowest kernels ({@link StepSummary}), then each step's projected
     * time (through a stream) at every precision and its speedup over FP32.
     */
    public static void printSummaries(List<ProfiledCase> cases, PtxasReport report, PrintStream out) {
        Map<String, List<KernelProfile>> byStep = new LinkedHashMap<>();
        for (ProfiledCase c : cases) byStep.computeIfAbsent(c.call(), s -> new ArrayList<>()).addAll(c.launches());
        for (Map.Entry<String, List<KernelProfile>> e : byStep.entrySet()) {
            StepSummary.print(e.getKey(), e.getValue(), report, 8, out);
        }
        out.println();
        out.println("Projected step times through a stream (ms) and speedup over fp32 (PROJECTION, not a measurement):");
        for (GpuModel gpu : GpuModel.ALL) {
            for (String base : CIFAR10_STEPS) {
                StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "  %-14s %-26s", gpu.name(), base));
                double fp32 = Double.NaN;
                for (Precision p : Precision.values()) {
                    List<KernelProfile> launches = byStep.get(stepName(base, p));
                    if (launches == null) continue;
                    double s = StepSummary.of(base, launches, gpu, report).streamSeconds();
                    if (p == Precision.FP32) fp32 = s;
                    line.append(String.format(Locale.ROOT, "  %s %9.3f", p.cliName(), s * 1e3));
                    if (p != Precision.FP32 && !Double.isNaN(fp32)) line.append(String.format(Locale.ROOT, " (%.2fx)", fp32 / s));
                }
                out.println(line);
            }
        }
        out.println();
        out.println("Model and sources: docs/profiling.md. Launches a sample of whose blocks ran are scaled to the grid.");
    }

    private static Tensor keep(List<Tensor> owned, Tensor t) {
        owned.add(t);
        return t;
    }
}
