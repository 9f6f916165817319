package io.diffusion4j.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.io.SafeTensorsException;
import org.junit.jupiter.api.AfterAll;

/**
 * {@link SafeTensors#read(byte[])} on arbitrary bytes: a {@link SafeTensorsException} or a validated reader, never
 * another throwable, and no allocation beyond a small multiple of the file. On an accepted file every tensor is
 * then loaded as float32: a dtype that cannot be converted, or an F64 value outside the float32 range, is an
 * {@link IllegalArgumentException} (as documented on {@link SafeTensors.Reader#readFloat32(String)}); nothing else.
 */
class SafeTensorsJazzerTest {
    static final String TARGET = "safetensors";
    /** Header JSON to Java values and the tensor data as float[]: a few dozen bytes per input byte. */
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(4 << 20, 128);

    @FuzzTest(maxDuration = "30s")
    void read(byte[] file) {
        FuzzChecks.check(TARGET, file.length, BUDGET, FuzzChecks.oneOf(SafeTensorsException.class), () -> {
            try (SafeTensors.Reader r = SafeTensors.read(file)) {
                for (SafeTensors.TensorInfo t : r.tensors()) {
                    try {
                        float[] v = r.readFloat32(t.name());
                        if (v.length != t.elementCount()) {
                            throw new AssertionError(t.name() + ": " + v.length + " values for " + t.elementCount() + " elements");
                        }
                    } catch (IllegalArgumentException e) {
                        if (t.dtype().toFloat32() && t.dtype() != SafeTensors.DType.F64) throw e; // F32/F16/BF16 always load
                    }
                }
            }
        });
    }

    @AfterAll
    static void report() {
        FuzzChecks.report(TARGET);
    }
}
