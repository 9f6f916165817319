package io.diffusion4j.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Proves the CPU backend's sanitized run has teeth. libd4j_cpu_teeth_asan.so (test-only, built with
 * -DD4J_CPU_TEETH; native/cpu/cpu_teeth.h) carries two planted out-of-bounds writes, one selected per child JVM
 * by the environment variable D4J_CPU_TEETH:
 * <ul>
 *   <li>conv_gather: the forward tile's row-pointer fill for windows inside the image writes one entry past its
 *       stack array (and reads one past the tap offsets): the sanitizers report it and the child dies before the
 *       call returns;
 *   <li>dw_accumulate: the weight gradient's accumulation writes one float past the end of dWeight (CPU buffers
 *       are allocated to the exact byte under ASan): a heap-buffer-overflow.
 * </ul>
 * The same child with no tooth selected runs both calls and exits 0. Inside the sanitized execution itself (where
 * the test JVM already runs under ASan) it checks instead that the CPU backend loaded is libd4j_cpu_asan.so.
 */
class CpuSanitizerTeethTest {
    static Path nativeBuild() {
        String lib = System.getProperty("diffusion4j.teeth.library");
        return lib != null ? Path.of(lib).getParent() : Path.of("target", "native-build");
    }

    @Test
    void plantedOutOfBoundsWritesAbortTheSanitizedCpuBackend() throws Exception {
        if (AsanChildJvm.sanitized()) {
            try (Backend cpu = Backend.open(Device.CPU)) {
                assertEquals("libd4j_cpu_asan.so", cpu.library().getFileName().toString(), cpu.library().toString());
            }
            String maps = Files.readString(Path.of("/proc/self/maps"));
            assertTrue(maps.contains("libasan"), "the ASan runtime is not loaded in the sanitized execution");
            assertTrue(maps.contains("libd4j_cpu_asan.so"), "libd4j_cpu_asan.so is not mapped");
            return;
        }
        Path lib = nativeBuild().resolve("libd4j_cpu_teeth_asan.so").toAbsolutePath();
        assertTrue(Files.isRegularFile(lib), lib + " is missing (built by the test-only native target)");

        AsanChildJvm.Child gather = AsanChildJvm.run(Child.class, Map.of("D4J_CPU_TEETH", "conv_gather"), lib.toString());
        assertNotEquals(0, gather.exit(), gather.toString());
        // UBSan sees the index first (the planted iteration also reads tap_off[9]); ASan alone reports the
        // stack-buffer-overflow of rows[]; either stops the child inside the forward
        assertTrue(gather.err().contains("stack-buffer-overflow") || gather.err().contains("out of bounds"),
                gather.toString());
        assertTrue(gather.err().contains("kernels_conv2d_forward.cpp"), gather.toString());
        assertTrue(!gather.out().contains(Child.FORWARD_DONE), "the forward returned: " + gather);

        AsanChildJvm.Child dw = AsanChildJvm.run(Child.class, Map.of("D4J_CPU_TEETH", "dw_accumulate"), lib.toString());
        assertNotEquals(0, dw.exit(), dw.toString());
        assertTrue(dw.err().contains("heap-buffer-overflow"), dw.toString());
        assertTrue(dw.out().contains(Child.FORWARD_DONE) && !dw.out().contains(Child.BACKWARD_DONE), dw.toString());

        AsanChildJvm.Child control = AsanChildJvm.run(Child.class, Map.of(), lib.toString());
        assertEquals(0, control.exit(), control.toString());
        assertTrue(control.out().contains(Child.BACKWARD_DONE), control.toString());
        assertTrue(!control.err().contains("AddressSanitizer"), control.toString());
    }

    /**
     * Child JVM: opens the given CPU library and runs a 3x3 same convolution forward (full tiles whose windows lie
     * inside the image) and its weight gradient at odd sizes.
     */
    public static final class Child {
        static final String FORWARD_DONE = "cpu-teeth-child: forward returned";
        static final String BACKWARD_DONE = "cpu-teeth-child: backward returned";

        public static void main(String[] args) {
            int n = 2, h = 11, w = 13, cIn = 5, cOut = 7;
            SplittableRandom r = new SplittableRandom();
            Conv2dSpec spec = Conv2dSpec.same3x3();
            try (Backend be = Backend.openLibrary(Device.CPU, Path.of(args[0]));
                 Tensor x = Tensor.of(be, random(r, n * h * w * cIn), n, h, w, cIn);
                 Tensor wt = Tensor.of(be, random(r, 9 * cIn * cOut), 3, 3, cIn, cOut);
                 Tensor y = Tensor.allocate(be, DType.FLOAT32, n, h, w, cOut);
                 Tensor dw = Tensor.allocate(be, DType.FLOAT32, 3, 3, cIn, cOut)) {
                ConvKernels.forward(spec, x, wt, null, y);
                System.out.println(FORWARD_DONE);
                System.out.flush();
                dw.fill(0f);
                ConvKernels.backward(spec, x, wt, y, null, dw, null);
                System.out.println(BACKWARD_DONE);
            }
            System.exit(0);
        }

        static float[] random(SplittableRandom r, int count) {
            float[] a = new float[count];
            for (int i = 0; i < count; i++) a[i] = (float) (r.nextDouble() * 2 - 1);
            return a;
        }
    }
}
