package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.schedule.PredictionType;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The ops of a run: plain, image-to-image's slice of the plan, RePaint's walk with jumps. */
class RunPlanTest {
    static List<SamplerStep> ddim(int n) {
        return DdimScheduler.defaults(PredictionType.EPSILON, 0f).plan(1000, n);
    }

    /**
     * diffusers' RePaintScheduler.set_timesteps(6, jump_length=2, jump_n_sample=2) walks the timestep indices
     * 5 4 3 2 | 3 4 | 3 2 1 0 | 1 2 | 1 0 (worked by hand from its loop): jumps at indices 0 and 2, each visited
     * twice; an increase is a jump back (UNDO of the step just above), a decrease a denoising step.
     */
    @Test
    void repaintWalkIsDiffusers() {
        List<SamplerStep> plan = ddim(6);
        RunPlan rp = RunPlan.inpainting(plan, 2, 2);
        int[] walk = {5, 4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0};
        List<String> expected = new ArrayList<>();
        int last = walk[0] + 1;
        for (int v : walk) {
            expected.add(v < last ? "D" + (5 - v) : "U" + (5 - last));
            last = v;
        }
        List<String> got = rp.ops().stream().map(o -> (o.kind() == RunPlan.Kind.DENOISE ? "D" : "U") + o.planIndex()).toList();
        assertEquals(expected, got);
        assertEquals(List.of("D0", "D1", "D2", "D3", "U3", "U2", "D2", "D3", "D4", "D5", "U5", "U4", "D4", "D5"), got);
        assertEquals(10, rp.modelCalls());
        assertTrue(rp.inpaint());
        // the first denoising step after a jump is first order; an UNDO carries its plan step unchanged
        for (int k = 1; k < rp.ops().size(); k++) {
            if (rp.ops().get(k - 1).kind() == RunPlan.Kind.UNDO && rp.ops().get(k).kind() == RunPlan.Kind.DENOISE) {
                assertEquals(-1, rp.ops().get(k).step().lastTimestep());
            }
        }
        assertEquals(plan.get(3), rp.ops().get(4).step());
    }

    @Test
    void noResamplingIsOneDenoiseAndMergePerStep() {
        List<SamplerStep> plan = ddim(7);
        RunPlan rp = RunPlan.inpainting(plan, 10, 1);
        assertEquals(7, rp.ops().size());
        for (int i = 0; i < 7; i++) assertEquals(new RunPlan.Op(RunPlan.Kind.DENOISE, i, plan.get(i)), rp.ops().get(i));
        // diffusers' defaults on 50 steps: 50 + 4 jump points x 9 revisits x 10 steps down
        assertEquals(50 + 4 * 9 * 10, RunPlan.inpainting(ddim(50), 10, 10).modelCalls());
    }

    /** img2img: int(n * strength) last steps, from the image noised to the first of them; first order there. */
    @Test
    void imageToImageRunsTheLastStepsOfThePlan() {
        List<SamplerStep> dpm = new DpmSolverScheduler(PredictionType.EPSILON, null, io.diffusion4j.TimestepSpacing.LINSPACE,
                0, true, false, DpmSolverScheduler.FinalSigmas.ZERO).plan(1000, 20);
        RunPlan rp = RunPlan.imageToImage(dpm, 0.75);
        assertEquals(15, rp.ops().size());
        assertEquals(dpm.get(5).timestep(), rp.startTimestep());
        assertEquals(-1, rp.ops().get(0).step().lastTimestep());
        assertEquals(dpm.get(6), rp.ops().get(1).step());
        assertEquals(20, RunPlan.imageToImage(dpm, 1.0).ops().size());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> RunPlan.imageToImage(dpm, 0.04));
        assertTrue(e.getMessage().contains("runs no step"), e.getMessage());
        for (double bad : new double[] {0, -0.5, 1.01, Double.NaN}) {
            e = assertThrows(IllegalArgumentException.class, () -> RunPlan.imageToImage(dpm, bad));
            assertTrue(e.getMessage().contains("strength must be in (0, 1]"), e.getMessage());
        }
    }

    @Test
    void offsetsSeparateStepAndRenoiseStreams() {
        assertEquals((7L << 32) | 1, RunPlan.stepOffset(7, 0));
        assertEquals((7L << 32) | (1L << 31) | 1, RunPlan.renoiseOffset(7, 0));
        assertEquals(RunPlan.of(ddim(3)).ops().size(), 3);
    }

    /** The count of model calls a caller checks before building an inpainting plan is the built plan's. */
    @Test
    void inpaintingModelCallsMatchTheBuiltPlan() {
        for (int n = 1; n <= 40; n++) {
            List<SamplerStep> plan = new ArrayList<>();
            for (int i = 0; i < n; i++) plan.add(new SamplerStep(10 * (n - i), i == n - 1 ? -1 : 10 * (n - i - 1), -1));
            for (int jl = 1; jl <= n + 2; jl++) {
                for (int jn = 1; jn <= 4; jn++) {
                    RunPlan p = RunPlan.inpainting(plan, jl, jn);
                    assertEquals(p.modelCalls(), RunPlan.inpaintingModelCalls(n, jl, jn), "n " + n + " jl " + jl + " jn " + jn);
                    assertEquals(2 * p.modelCalls() - n, p.ops().size(), "every extra model call follows one jump step");
                }
            }
        }
    }
}
