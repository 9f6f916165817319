package io.diffusion4j.serve;

import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.sample.DpmSolverScheduler;
import io.diffusion4j.sample.RunPlan;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.sample.SamplerStep;
import io.diffusion4j.tensor.Tensor;
import java.util.List;

/**
 * One request in a model's batch: its rows, where it is in its run's ops, its views of the batch buffers and its
 * per-row host arrays. Op k of image g (row {@code first + g}) uses exactly the timesteps, Philox seeds and stream
 * offsets that {@link Sampler} gives op k of image g of {@code sample} with the same seed and settings.
 */
final class InFlight {
    final BatchEngine.Job job;
    final SampleRequest request;
    final int n;
    final List<RunPlan.Op> ops;
    /** Image-to-image or inpainting: the request has known rows; inpainting: mask rows too. */
    final boolean image, inpaint;
    final boolean dpm, thresholded;
    /** Classifier-free guidance: each model call also computes the unconditional copies of the rows. */
    final boolean guided;
    final float scale;
    final int nullClass;
    /** The label of every row, or null for an unconditional model. */
    final int[] labels;
    /** The first row of the request in the batch. */
    int first;
    /** Guided: the first row of this step's unconditional copies (after every row in flight). */
    int copyFirst;
    /** The next op. */
    int op;
    Tensor xv, x0v, thv, knownv, maskv;
    final int[] t, prev, last, renoiseT;
    final SampleNoise noise, renoise;

    InFlight(BatchEngine.Job job) {
        this.job = job;
        this.request = job.request;
        this.n = request.n();
        this.ops = request.runPlan().ops();
        Sampler.Inputs in = request.inputs();
        this.image = in.image() != null;
        this.inpaint = request.runPlan().inpaint();
        this.dpm = request.scheduler() instanceof DpmSolverScheduler;
        this.thresholded = request.scheduler().thresholding() != null;
        this.guided = in.guided();
        this.scale = in.guidanceScale();
        this.nullClass = in.nullClass();
        this.labels = request.conditioning().rowLabels();
        t = new int[n];
        prev = new int[n];
        last = new int[n];
        renoiseT = new int[n];
        noise = new SampleNoise(new long[n], new long[n]);
        renoise = new SampleNoise(new long[n], new long[n]);
    }

    boolean done() {
        return op >= ops.size();
    }

    /** The step of the current op. */
    SamplerStep step() {
        return ops.get(op).step();
    }

    /**
     * Runs the request's jumps back (RePaint's UNDO ops: x renoised from a step's target timestep to its timestep)
     * up to its next denoising step; they need no model call.
     */
    void undoToDenoise(NativeSchedule schedule) {
        long seed = request.seed();
        while (op < ops.size() && ops.get(op).kind() == RunPlan.Kind.UNDO) {
            SamplerStep s = ops.get(op).step();
            for (int g = 0; g < n; g++) {
                prev[g] = s.prevTimestep();
                t[g] = s.timestep();
                renoise.seeds()[g] = seed;
                renoise.offsets()[g] = RunPlan.renoiseOffset(g, op);
            }
            ConditioningKernels.noiseToTimestep(schedule, xv, prev, t, renoise, xv);
            op++;
        }
    }

    /** Fills the per-row arrays of the current (denoising) op. */
    void prepareDenoise() {
        SamplerStep s = step();
        long seed = request.seed();
        for (int g = 0; g < n; g++) {
            t[g] = s.timestep();
            prev[g] = s.prevTimestep();
            last[g] = s.lastTimestep();
            renoiseT[g] = s.prevTimestep();
            noise.seeds()[g] = seed;
            noise.offsets()[g] = RunPlan.stepOffset(g, op);
            renoise.seeds()[g] = seed;
            renoise.offsets()[g] = RunPlan.renoiseOffset(g, op);
        }
    }

    /**
     * Finishes the current denoising op from the batch's model output: guidance into the conditional rows, the
     * scheduler's update of the request's rows, inpainting's merge of the known region; then moves to the next op.
     */
    void finishDenoise(NativeSchedule nativeSchedule, ServedModel served, Tensor out, long per, int h, int w, int c) {
        try (Tensor ov = out.view(first * per, n, h, w, c)) {
            if (guided) {
                try (Tensor uv = out.view(copyFirst * per, n, h, w, c)) {
                    ConditioningKernels.classifierFreeGuidance(ov, uv, scale, ov);
                }
            }
            Sampler.update(nativeSchedule, served.schedule(), request.scheduler(), step(), xv, ov, x0v, thv, t, prev, last,
                    noise);
        }
        if (inpaint) ConditioningKernels.inpaintMerge(nativeSchedule, knownv, maskv, renoiseT, renoise, xv);
        op++;
    }

    void closeViews() {
        for (Tensor v : new Tensor[] {maskv, knownv, thv, x0v, xv}) {
            if (v != null) v.close();
        }
        maskv = knownv = thv = x0v = xv = null;
    }
}
