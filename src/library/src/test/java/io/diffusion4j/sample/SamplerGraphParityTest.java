package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A sampling run captured as one graph equals the same run executed step by step, bit for bit (cuda-sim is
 * deterministic; on a GPU the two run the same kernels with the same arguments), for DDPM (with noise and
 * clipping), DDIM (eta > 0, dynamic thresholding) and DPM-Solver++ (second order, thresholding), on full and
 * partial batches; the captured run allocates nothing per step (the capture refuses allocation: a run that
 * did would fail), frees its graph (live bytes and buffers unchanged by a run) and reports every step's
 * progress. The CPU backend runs the loop directly. Tiny: the 8x8 test model on 4x4 images, batch 2, 2-3 steps.
 */
class SamplerGraphParityTest {
    static final NoiseSchedule SCHEDULE = NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);

    static List<SamplerScheduler> schedulers() {
        return List.of(
                new DdpmScheduler(PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1.0, null,
                        TimestepSpacing.LEADING, 1),
                new DdimScheduler(PredictionType.V_PREDICTION, 0.7f, false, 1.0, new Thresholding(0.9, 2f),
                        TimestepSpacing.TRAILING, 0, true, false),
                new DpmSolverScheduler(PredictionType.EPSILON, Thresholding.defaults(), TimestepSpacing.LINSPACE, 0,
                        true, false, DpmSolverScheduler.FinalSigmas.ZERO));
    }

    @OnDevices
    void capturedRunEqualsStepByStepRun(Backend be, Device kind) {
        long seed = TestRandom.fresh().nextLong();
        try (UNet2DModel m = new UNet2DModel(be, SamplerTest.tinyConfig(), seed)) {
            for (SamplerScheduler s : schedulers()) {
                int steps = s instanceof DpmSolverScheduler ? 3 : 2;
                String ctx = kind + " " + s.name() + ", seed " + seed;
                try (Sampler sm = new Sampler(m, SCHEDULE, s, steps, 2, 4, 4)) {
                    assertTrue(sm.capturesGraphs(), ctx);
                    float[] noise = s instanceof DdpmScheduler ? null : TestRandom.fresh().gaussians((int) (2 * sm.imageFloats()), 1.0);
                    // the first run sizes nothing new afterwards: compare live memory around later runs
                    List<Integer> progress = new ArrayList<>();
                    float[] captured = sm.run(seed, 3, 2, noise, (done, total) -> {
                        assertEquals(steps, total);
                        progress.add(done);
                    });
                    Sampler.GraphStats g = sm.lastGraph();
                    assertNotNull(g, "the run was not captured: " + ctx);
                    assertTrue(g.nodes() > 10 * steps && g.hostBytes() > 0 && g.deviceBytes() > 0, g + " " + ctx);
                    assertEquals(List.of(1, 2, 3).subList(0, steps), progress, ctx);
                    long bytes = be.liveBytes(), buffers = be.liveBuffers();
                    float[] again = sm.run(seed, 3, 2, noise, null);
                    assertEquals(bytes, be.liveBytes(), "live bytes after a captured run " + ctx);
                    assertEquals(buffers, be.liveBuffers(), "live buffers after a captured run " + ctx);
                    Tolerance.assertBitIdentical(s.name() + " captured twice", captured, again, ctx);

                    sm.useGraphs(false);
                    assertFalse(sm.capturesGraphs());
                    float[] direct = sm.run(seed, 3, 2, noise, null);
                    assertNull(sm.lastGraph(), ctx);
                    Tolerance.assertBitIdentical(s.name() + " captured vs direct", direct, captured, ctx);
                    for (float v : captured) assertTrue(Float.isFinite(v), ctx);

                    // a partial batch (views of the buffers; the workspace resized before the capture)
                    float[] noise1 = noise == null ? null : java.util.Arrays.copyOf(noise, (int) sm.imageFloats());
                    float[] partDirect = sm.run(seed, 3, 1, noise1, null);
                    sm.useGraphs(true);
                    float[] partCaptured = sm.run(seed, 3, 1, noise1, null);
                    assertNotNull(sm.lastGraph(), ctx);
                    Tolerance.assertBitIdentical(s.name() + " partial batch captured vs direct", partDirect, partCaptured, ctx);
                    // image 3 of the partial run is image 3 of the full run
                    Tolerance.assertBitIdentical(s.name() + " partial vs full", java.util.Arrays.copyOf(captured,
                            partCaptured.length), partCaptured, ctx);
                }
            }
        }
    }

    @Test
    void cpuRunsTheLoopDirectly() {
        try (Backend cpu = Backend.open(Device.CPU);
             UNet2DModel m = new UNet2DModel(cpu, SamplerTest.tinyConfig(), 1);
             Sampler sm = new Sampler(m, SCHEDULE, schedulers().get(1), 2, 1, 4, 4)) {
            assertFalse(sm.capturesGraphs());
            float[] out = sm.run(5, 0, 1, null, null);
            assertNull(sm.lastGraph());
            for (float v : out) assertTrue(Float.isFinite(v));
        }
    }
}
