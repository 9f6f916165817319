package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.sample.DpmSolverScheduler.FinalSigmas;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Timesteps of set_timesteps(n) for every spacing, against values derived by hand from diffusers'
 * definitions (stated next to each case), and the plans built from them.
 */
class SchedulerTimestepsTest {
    static final PredictionType EPS = PredictionType.EPSILON;

    static DdpmScheduler ddpm(TimestepSpacing s, int offset) {
        return new DdpmScheduler(EPS, VarianceType.FIXED_SMALL, true, 1.0, null, s, offset);
    }

    @Test
    void ddpmAndDdimLeading() {
        // leading: r = T // n = 100; (n - 1 - i) * r + steps_offset
        int[] expect = {900, 800, 700, 600, 500, 400, 300, 200, 100, 0};
        assertArrayEquals(expect, ddpm(TimestepSpacing.LEADING, 0).timesteps(1000, 10));
        assertArrayEquals(expect, DdimScheduler.defaults(EPS, 0f).timesteps(1000, 10));
        // steps_offset 1 shifts every timestep up by one
        assertArrayEquals(new int[] {901, 801, 701, 601, 501, 401, 301, 201, 101, 1},
                ddpm(TimestepSpacing.LEADING, 1).timesteps(1000, 10));
        // T = 1000, n = 3: r = 333 -> 666, 333, 0 (the top 334 timesteps are never visited)
        assertArrayEquals(new int[] {666, 333, 0}, ddpm(TimestepSpacing.LEADING, 0).timesteps(1000, 3));
        // all T steps: r = 1, T-1 .. 0
        int[] all = ddpm(TimestepSpacing.LEADING, 0).timesteps(1000, 1000);
        assertEquals(1000, all.length);
        for (int i = 0; i < 1000; i++) assertEquals(999 - i, all[i]);
    }

    @Test
    void ddpmTrailing() {
        // trailing: round(arange(T, 0, -T/n)) - 1; T/n = 100 -> 1000, 900, ..., 100 -> minus 1
        assertArrayEquals(new int[] {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
                ddpm(TimestepSpacing.TRAILING, 0).timesteps(1000, 10));
        // T/n = 333.33..: 1000, 666.67, 333.33 -> round 1000, 667, 333 -> 999, 666, 332
        assertArrayEquals(new int[] {999, 666, 332}, ddpm(TimestepSpacing.TRAILING, 0).timesteps(1000, 3));
        // T/n = 142.857..: 1000, 857.14, 714.29, 571.43, 428.57, 285.71, 142.86 -> 999, 856, 713, 570, 428, 285, 142
        assertArrayEquals(new int[] {999, 856, 713, 570, 428, 285, 142},
                ddpm(TimestepSpacing.TRAILING, 0).timesteps(1000, 7));
    }

    @Test
    void ddpmLinspaceRoundsHalfToEven() {
        // linspace(0, 999, 10) = 0, 111, ..., 999 (step 111), reversed
        assertArrayEquals(new int[] {999, 888, 777, 666, 555, 444, 333, 222, 111, 0},
                ddpm(TimestepSpacing.LINSPACE, 0).timesteps(1000, 10));
        // linspace(0, 999, 7): step 166.5 -> 0, 166.5, 333, 499.5, 666, 832.5, 999; np.round is half-to-even:
        // 166.5 -> 166, 499.5 -> 500, 832.5 -> 832
        assertArrayEquals(new int[] {999, 832, 666, 500, 333, 166, 0},
                ddpm(TimestepSpacing.LINSPACE, 0).timesteps(1000, 7));
        // T = 98: linspace(0, 97, 3) = 0, 48.5, 97 -> 48.5 rounds to 48 (Math.round would give 49)
        assertArrayEquals(new int[] {97, 48, 0}, ddpm(TimestepSpacing.LINSPACE, 0).timesteps(98, 3));
    }

    @Test
    void ddpmPlanGoesToTheNextTimestepAndDdimToTMinusStride() {
        List<SamplerStep> p = ddpm(TimestepSpacing.TRAILING, 0).plan(1000, 3);
        assertEquals(List.of(new SamplerStep(999, 666, -1), new SamplerStep(666, 332, -1), new SamplerStep(332, -1, -1)), p);
        // DDIM: prev = t - T // n = t - 333 whatever the spacing: 999 -> 666, 666 -> 333 (not 332), 332 -> -1
        DdimScheduler d = new DdimScheduler(EPS, 0f, true, 1.0, null, TimestepSpacing.TRAILING, 0, true, false);
        assertEquals(List.of(new SamplerStep(999, 666, -1), new SamplerStep(666, 333, -1), new SamplerStep(332, -1, -1)),
                d.plan(1000, 3));
    }

    @Test
    void dpmSolverTimesteps() {
        DpmSolverScheduler lin = DpmSolverScheduler.defaults(EPS);
        // linspace(0, 999, 21) (step 49.95), rounded half-to-even, reversed, last (0) dropped:
        // 999, 949.05, 899.1, ..., 499.5 (-> 500), ..., 49.95
        assertArrayEquals(new int[] {999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250,
            200, 150, 100, 50}, lin.timesteps(1000, 20));
        // leading: r = T // (n + 1) = 90; (n - i) * r
        DpmSolverScheduler lead = new DpmSolverScheduler(EPS, null, TimestepSpacing.LEADING, 0, true, false, FinalSigmas.ZERO);
        assertArrayEquals(new int[] {900, 810, 720, 630, 540, 450, 360, 270, 180, 90}, lead.timesteps(1000, 10));
        // trailing: as DDPM's
        DpmSolverScheduler trail = new DpmSolverScheduler(EPS, null, TimestepSpacing.TRAILING, 0, true, false, FinalSigmas.ZERO);
        assertArrayEquals(new int[] {999, 666, 332}, trail.timesteps(1000, 3));
    }

    @Test
    void dpmSolverOrders() {
        // zero final sigma: the first and the last step are first order, the rest second order
        List<SamplerStep> p = DpmSolverScheduler.defaults(EPS).plan(1000, 5);
        // linspace(0, 999, 6) = 0, 199.8, 399.6, 599.4, 799.2, 999 -> 999, 799, 599, 400, 200
        assertEquals(List.of(new SamplerStep(999, 799, -1), new SamplerStep(799, 599, 999), new SamplerStep(599, 400, 799),
                new SamplerStep(400, 200, 599), new SamplerStep(200, -1, -1)), p);
        // sigma_min: the final target is timestep 0; the last step is second order with >= 15 steps
        DpmSolverScheduler sm = new DpmSolverScheduler(EPS, null, TimestepSpacing.LINSPACE, 0, true, false,
                FinalSigmas.SIGMA_MIN);
        List<SamplerStep> p20 = sm.plan(1000, 20);
        assertEquals(new SamplerStep(50, 0, 100), p20.get(19));
        assertEquals(new SamplerStep(100, 0, -1), sm.plan(1000, 10).get(9)); // < 15 steps: lower_order_final
        DpmSolverScheduler euler = new DpmSolverScheduler(EPS, null, TimestepSpacing.LINSPACE, 0, true, true,
                FinalSigmas.SIGMA_MIN);
        assertEquals(-1, euler.plan(1000, 20).get(19).lastTimestep());
    }

    @Test
    void badStepCountsAndConfigsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> ddpm(TimestepSpacing.LEADING, 0).timesteps(1000, 0));
        assertThrows(IllegalArgumentException.class, () -> ddpm(TimestepSpacing.LEADING, 0).timesteps(1000, 1001));
        // steps_offset pushing the first timestep to T
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ddpm(TimestepSpacing.LEADING, 1).timesteps(1000, 1000));
        assertTrue(e.getMessage().contains("outside"), e.getMessage());
        // DPM leading with n + 1 > T repeats timestep 0
        assertThrows(IllegalArgumentException.class, () -> new DpmSolverScheduler(EPS, null, TimestepSpacing.LEADING, 0,
                true, false, FinalSigmas.ZERO).timesteps(10, 10));
        assertThrows(IllegalArgumentException.class, () -> DpmSolverScheduler.fromConfig(Map.of("solver_order", 3L)));
        assertThrows(IllegalArgumentException.class, () -> DpmSolverScheduler.fromConfig(Map.of("use_karras_sigmas", true)));
    }

    @Test
    void fromConfigUsesDiffusersDefaultsAndKeys() {
        Map<String, Object> cfg = Map.of("prediction_type", "v_prediction", "timestep_spacing", "trailing",
                "clip_sample", false, "thresholding", true, "sample_max_value", 2.5, "set_alpha_to_one", false);
        DdimScheduler d = DdimScheduler.fromConfig(cfg, 0.5f);
        assertEquals(PredictionType.V_PREDICTION, d.prediction());
        assertEquals(TimestepSpacing.TRAILING, d.spacing());
        assertEquals(new Thresholding(0.995, 2.5f), d.thresholding());
        assertEquals(false, d.setAlphaToOne());
        assertEquals(0.5f, d.eta());
        DpmSolverScheduler p = DpmSolverScheduler.fromConfig(Map.of());
        assertEquals(TimestepSpacing.LINSPACE, p.spacing());
        assertEquals(FinalSigmas.ZERO, p.finalSigmas());
        DdpmScheduler q = DdpmScheduler.fromConfig(Map.of("variance_type", "fixed_large"));
        assertEquals(VarianceType.FIXED_LARGE, q.variance());
        assertTrue(q.clipSample());
    }
}
