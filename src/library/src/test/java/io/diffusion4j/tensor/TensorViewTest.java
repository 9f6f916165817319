package io.diffusion4j.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Views: slices of a flat buffer that read and write its memory and keep it alive. */
class TensorViewTest {
    @Test
    void viewsReadAndWriteTheirSliceOfTheParent() {
        try (Backend cpu = Backend.open(Device.CPU)) {
            long seed = System.nanoTime();
            SplittableRandom r = new SplittableRandom(seed);
            float[] data = new float[1237];
            for (int i = 0; i < data.length; i++) data[i] = (float) r.nextGaussian();
            long liveBefore = cpu.liveBytes();
            try (Tensor flat = Tensor.of(cpu, data, data.length)) {
                int off = 1 + r.nextInt(500), len = 1 + r.nextInt(600);
                try (Tensor v = flat.view(off, 1, len)) {
                    assertArrayEquals(Arrays.copyOfRange(data, off, off + len), v.toFloatArray(), "seed " + seed);
                    float[] fresh = new float[len];
                    Arrays.fill(fresh, 7.5f);
                    v.copyFrom(fresh);
                    float[] after = flat.toFloatArray();
                    for (int i = 0; i < data.length; i++) {
                        float expect = i >= off && i < off + len ? 7.5f : data[i];
                        assertEquals(expect, after[i], "element " + i + ", seed " + seed);
                    }
                    assertEquals(liveBefore + 4L * data.length, cpu.liveBytes(), "a view allocates nothing");
                    D4jException busy = assertThrows(D4jException.class, flat::close);
                    assertTrue(busy.getMessage().contains("live views"), busy.getMessage());
                }
                assertThrows(IllegalArgumentException.class, () -> flat.view(1200, 100));
                assertThrows(IllegalArgumentException.class, () -> flat.view(-1, 10));
            }
            assertEquals(liveBefore, cpu.liveBytes());
        }
    }
}
