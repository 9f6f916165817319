package io.diffusion4j.fuzz;

import com.code_intelligence.jazzer.junit.DictionaryEntries;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.diffusion4j.io.Npy;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;

/**
 * {@link Npy#read} on arbitrary file contents: a float32 array whose length matches its shape, or an
 * {@link IOException}; nothing else, and no allocation beyond a small multiple of the file.
 *
 * <p>{@link #PENDING} lists the undocumented exceptions the reader is known to throw and that this target
 * tolerates until the reader is fixed (the inputs are under src/test/fuzz-pending/npy/).
 */
class NpyJazzerTest {
    static final String TARGET = "npy";
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(4 << 20, 64);
    /** Known, not yet fixed: a shape whose element count overflows a long (Math.multiplyExact). */
    static final Class<?>[] PENDING = {ArithmeticException.class};

    @FuzzTest(maxDuration = "30s")
    @DictionaryEntries({"\u0093NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (", "), }", "'<f4'", "True",
            "False", "4294967296", "9223372036854775807", ", "})
    void read(byte[] file) throws IOException {
        Path p = FuzzChecks.scratch(TARGET, "input.npy");
        Files.write(p, file);
        FuzzChecks.check(TARGET, file.length, BUDGET, t -> t instanceof IOException || pending(t), () -> {
            Npy.Array a = Npy.read(p);
            long n = 1;
            for (long d : a.shape()) n *= d;
            if (n != a.data().length) throw new AssertionError("shape of " + n + " elements, " + a.data().length + " values");
        });
    }

    static boolean pending(Throwable t) {
        if (FuzzChecks.strict()) return false;
        for (Class<?> c : PENDING) if (c.isInstance(t)) return true;
        return false;
    }

    @AfterAll
    static void report() {
        FuzzChecks.report(TARGET);
    }
}
