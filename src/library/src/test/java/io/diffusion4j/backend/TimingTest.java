package io.diffusion4j.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The timing entry points the self-test uses, on the backends that run here. */
class TimingTest {
    @ParameterizedTest
    @EnumSource(value = Device.class, names = {"CPU", "CUDA_SIM"})
    void timerBracketsTheWorkBetweenItsMarks(Device kind) {
        try (Backend b = Backend.open(kind); Tensor t = Tensor.allocate(b, DType.FLOAT32, 1 << 20)) {
            b.flushCache();
            b.timerBegin();
            double emptyMs = b.timerEnd();
            long wall0 = System.nanoTime();
            b.timerBegin();
            for (int i = 0; i < 20; i++) DiffusionKernels.randomNormal(b, 1, i, t);
            double ms = b.timerEnd();
            double wallMs = (System.nanoTime() - wall0) / 1e6;
            assertTrue(emptyMs >= 0 && emptyMs < ms, "empty region " + emptyMs + " ms, busy region " + ms + " ms");
            assertTrue(ms > 0 && ms <= wallMs * 1.01 + 0.01, "timed " + ms + " ms within " + wallMs + " ms of wall time");
            Backend.Peak peak = b.devicePeak();
            assertEquals(0.0, peak.bytesPerSecond(), kind + " has no device attributes to derive a peak from");
            assertEquals(0.0, peak.flops());
        }
    }
}
