package io.diffusion4j.sample;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The operations of one sampling run, from a scheduler's plan and the run's image inputs:
 * <ul>
 *   <li>plain sampling: one {@link Kind#DENOISE} per plan step;</li>
 *   <li>image-to-image (SDEdit, Meng et al. 2022) with strength s: as diffusers' img2img pipelines, the last
 *       {@code min(floor(n s), n)} steps of the plan, starting from the image noised to the first of them
 *       ({@link #startTimestep}); a DPM-Solver++ plan restarts at first order;</li>
 *   <li>inpainting (RePaint, Lugmayr et al. 2022): every DENOISE is followed by the merge of the known region at
 *       the step's target timestep, and with resampling the run jumps back: after the denoising step at
 *       timestep index j (counted from the end of the plan, n - 1 first) for every j in 0, L, 2L, ... below
 *       n - L, it renoises L times one step up ({@link Kind#UNDO}) and denoises again, jump_n_sample - 1 times
 *       per such j; the same walk as diffusers' RePaintScheduler.set_timesteps with jump_length L. The first
 *       DENOISE after a jump is first order (DPM-Solver++'s history ended there).</li>
 * </ul>
 * Op k of a run draws the noise of a scheduler step from the stream offset {@code (g << 32) | (k + 1)} of image g
 * and the noise of a merge or jump from {@code (g << 32) | 2^31 | (k + 1)}: for plain sampling op k is plan step
 * k, so the streams are those of a run without these inputs.
 */
public final class RunPlan {
    /** What an op does. */
    public enum Kind {
        /** The model call and the scheduler's update of plan step {@link Op#planIndex()}. */
        DENOISE,
        /** The jump back over plan step {@link Op#planIndex()}: x from its target timestep to its timestep. */
        UNDO
    }

    /** One op: its kind, the plan index and the step (DENOISE: with the order the run allows). */
    public record Op(Kind kind, int planIndex, SamplerStep step) {}

    /** The offset bit that separates merge and jump noise from the scheduler steps' noise. */
    public static final long RENOISE_STREAM = 1L << 31;

    private final List<Op> ops;
    private final int startTimestep;
    private final boolean inpaint;

    private RunPlan(List<Op> ops, int startTimestep, boolean inpaint) {
        this.ops = List.copyOf(ops);
        this.startTimestep = startTimestep;
        this.inpaint = inpaint;
    }

    /** Plain sampling: every step of the plan, from noise. */
    public static RunPlan of(List<SamplerStep> plan) {
        List<Op> ops = new ArrayList<>();
        for (int i = 0; i < plan.size(); i++) ops.add(new Op(Kind.DENOISE, i, plan.get(i)));
        return new RunPlan(ops, -1, false);
    }

    /**
     * Image-to-image with strength s in (0, 1]: the last {@code floor(n s)} steps (at least one), from the image
     * noised to the first of them.
     *
     * @throws IllegalArgumentException if s is outside (0, 1] or so small that no step would run
     */
    public static RunPlan imageToImage(List<SamplerStep> plan, double strength) {
        if (!(strength > 0 && strength <= 1)) {
            throw new IllegalArgumentException("strength must be in (0, 1], got " + strength);
        }
        int n = plan.size();
        int init = Math.min((int) (n * strength), n); // diffusers: int(num_inference_steps * strength)
        if (init < 1) {
            throw new IllegalArgumentException("strength " + strength + " of " + n + " steps runs no step (needs"
                    + " strength >= " + (1.0 / n) + ")");
        }
        List<Op> ops = new ArrayList<>();
        for (int i = n - init; i < n; i++) {
            SamplerStep s = plan.get(i);
            if (i == n - init) s = new SamplerStep(s.timestep(), s.prevTimestep(), -1);
            ops.add(new Op(Kind.DENOISE, i, s));
        }
        return new RunPlan(ops, plan.get(n - init).timestep(), false);
    }

    /**
     * Inpainting with RePaint's resampling: jump length {@code jumpLength} >= 1, each jump point visited
     * {@code jumpNSample} >= 1 times (1: no resampling, the merge only).
     */
    public static RunPlan inpainting(List<SamplerStep> plan, int jumpLength, int jumpNSample) {
        if (jumpLength < 1) throw new IllegalArgumentException("jump_length must be >= 1, got " + jumpLength);
        if (jumpNSample < 1) throw new IllegalArgumentException("jump_n_sample must be >= 1, got " + jumpNSample);
        int n = plan.size();
        // diffusers RePaintScheduler.set_timesteps over timestep indices v = n - 1 - plan index
        Map<Integer, Integer> jumps = new HashMap<>();
        for (int j = 0; j < n - jumpLength; j += jumpLength) jumps.put(j, jumpNSample - 1);
        List<Integer> walk = new ArrayList<>();
        int t = n;
        while (t >= 1) {
            t--;
            walk.add(t);
            int left = jumps.getOrDefault(t, 0);
            if (left > 0) {
                jumps.put(t, left - 1);
                for (int k = 0; k < jumpLength; k++) walk.add(++t);
            }
            if (walk.size() > 50_000_000) throw new IllegalArgumentException("the resampling plan is too long");
        }
        List<Op> ops = new ArrayList<>(walk.size());
        int last = walk.get(0) + 1;
        boolean afterJump = false;
        for (int v : walk) {
            if (v < last) {
                int i = n - 1 - v;
                SamplerStep s = plan.get(i);
                if (afterJump) s = new SamplerStep(s.timestep(), s.prevTimestep(), -1);
                ops.add(new Op(Kind.DENOISE, i, s));
                afterJump = false;
            } else {
                int i = n - 1 - last;
                ops.add(new Op(Kind.UNDO, i, plan.get(i)));
                afterJump = true;
            }
            last = v;
        }
        return new RunPlan(ops, -1, true);
    }

    /**
     * The model calls of {@link #inpainting} over a plan of {@code steps} steps, computed without building the
     * plan (a caller bounding a request's work checks this first): every step once, plus {@code jumpLength} more
     * for each of the {@code jumpNSample - 1} revisits of each jump point.
     */
    public static long inpaintingModelCalls(int steps, int jumpLength, int jumpNSample) {
        if (steps < 1 || jumpLength < 1 || jumpNSample < 1) {
            throw new IllegalArgumentException("steps, jump_length and jump_n_sample must be >= 1");
        }
        long points = steps > jumpLength ? (steps - 1L) / jumpLength : 0; // j = 0, L, 2L, ... below steps - L
        return steps + points * (jumpNSample - 1L) * jumpLength;
    }

    /** The ops in order. */
    public List<Op> ops() {
        return ops;
    }

    /** The timestep the image is noised to before the first op (image-to-image), or -1 (start from noise). */
    public int startTimestep() {
        return startTimestep;
    }

    /** Whether every DENOISE is followed by the merge of the known region. */
    public boolean inpaint() {
        return inpaint;
    }

    /** Model calls of the run. */
    public int modelCalls() {
        int c = 0;
        for (Op o : ops) if (o.kind() == Kind.DENOISE) c++;
        return c;
    }

    /** The noise-stream offset of op k's scheduler step for image g. */
    public static long stepOffset(long g, int k) {
        return (g << 32) | (k + 1);
    }

    /** The noise-stream offset of op k's merge or jump for image g. */
    public static long renoiseOffset(long g, int k) {
        return (g << 32) | RENOISE_STREAM | (k + 1);
    }

    @Override
    public String toString() {
        return "RunPlan[" + ops.size() + " ops, " + modelCalls() + " model calls" + (startTimestep >= 0
                ? ", from the image at t = " + startTimestep : "") + (inpaint ? ", inpainting" : "") + "]";
    }
}
