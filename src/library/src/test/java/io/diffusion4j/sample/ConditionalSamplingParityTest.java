package io.diffusion4j.sample;

import static io.diffusion4j.testutil.Tolerance.maxAbs;
import static io.diffusion4j.testutil.Tolerance.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.testutil.OnDevices;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * Guided, image-to-image and inpainting runs on a device backend (CUDA, cuda-sim; skipped with the backend's reason
 * when unavailable) against the CPU backend, within 1e-4 of max|cpu| (the UNet sums in another order per backend, see
 * SamplerParityTest); on the device, the run captured as a graph equals the direct run bit for bit, known pixels
 * included.
 */
class ConditionalSamplingParityTest {
    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    @OnDevices
    void guidedInpaintingAndImageToImageMatchCpu(Backend dev, Device kind) {
        TestRandom r = TestRandom.fresh();
        long seed = r.nextLong();
        float[] params;
        try (UNet2DModel m = new UNet2DModel(cpu, ConditionalSamplingTest.conditional(), seed)) {
            params = m.flatParameters();
        }
        int per = ConditionalSamplingTest.C * 8 * 8;
        float[] image = r.uniforms(2 * per, -1, 1), mask = new float[2 * per];
        for (int i = 0; i < mask.length; i++) mask[i] = (i % 8) < 3 ? 1f : 0f; // the left three columns known
        int nul = ConditionalSamplingTest.NULL;
        Sampler.Inputs[] inputs = {
            new Sampler.Inputs(new int[] {1, 3}, nul, 3f, null, null, 1.0, 1, 1),
            new Sampler.Inputs(new int[] {0, 2}, nul, 2f, image, mask, 1.0, 2, 2),
            new Sampler.Inputs(null, nul, 1f, image, null, 0.6, 1, 1)};
        SamplerScheduler[] scheds = {DdimScheduler.defaults(PredictionType.EPSILON, 0.5f),
            DdpmScheduler.defaults(PredictionType.EPSILON), DdimScheduler.defaults(PredictionType.EPSILON, 0f)};
        for (int k = 0; k < inputs.length; k++) {
            String ctx = kind + " case " + k + " " + r.describe();
            float[] c = run(cpu, params, scheds[k], inputs[k], seed, true);
            float[] direct = run(dev, params, scheds[k], inputs[k], seed, false);
            float[] captured = run(dev, params, scheds[k], inputs[k], seed, true);
            Tolerance.assertBitIdentical("captured vs direct", direct, captured, ctx);
            Tolerance.log(Tolerance.assertClose(ctx, captured, toDouble(c), 1e-4 * maxAbs(c), 1e-4, ctx));
            if (inputs[k].mask() != null) {
                for (int i = 0; i < mask.length; i++) {
                    if (mask[i] == 1f) assertEquals(Float.floatToRawIntBits(image[i]), Float.floatToRawIntBits(captured[i]), ctx);
                }
            }
        }
    }

    static float[] run(Backend be, float[] params, SamplerScheduler s, Sampler.Inputs in, long seed, boolean graphs) {
        try (UNet2DModel m = new UNet2DModel(be, ConditionalSamplingTest.conditional(), 0)) {
            m.loadFlat(params);
            try (Sampler sm = new Sampler(m, io.diffusion4j.schedule.NoiseSchedule.defaults(), s, 4, 2, 8, 8)) {
                sm.useGraphs(graphs);
                float[] out = sm.run(seed, 0, 2, null, in, null);
                if (graphs && sm.capturesGraphs()) assertNotNull(sm.lastGraph());
                return out;
            }
        }
    }
}
