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
 */
class NpyJazzerTest {
    static final String TARGET = "npy";
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(4 << 20, 64);

    @FuzzTest(maxDuration = "30s")
    @DictionaryEntries({"\u0093NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (", "), }", "'<f4'", "True",
            "False", "4294967296", "9223372036854775807", ", "})
    void read(byte[] file) throws IOException {
        Path p = FuzzChecks.scratch(TARGET, "input.npy");
        Files.write(p, file);
        FuzzChecks.check(TARGET, file.length, BUDGET, t -> t instanceof IOException, () -> {
            Npy.Array a = Npy.read(p);
            long n = 1;
            for (long d : a.shape()) n *= d;
            if (n != a.data().length) throw new AssertionError("shape of " + n + " elements, " + a.data().length + " values");
        });
    }

    @AfterAll
    static void report() {
        FuzzChecks.report(TARGET);
    }
}
