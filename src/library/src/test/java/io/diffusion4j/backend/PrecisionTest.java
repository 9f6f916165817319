package io.diffusion4j.backend;

import io.diffusion4j.Precision;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.bindings.d4j_h;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * The precision of the matrix kernel families: its names, defaults, and the native setting on cuda-sim (every
 * precision) and cpu (fp32 only), through {@link Backend} and through the raw binding.
 */
class PrecisionTest {

    @Test
    void parsesTheThreeNamesCaseInsensitively() {
        for (Precision p : Precision.values()) {
            assertEquals(p, Precision.parse(p.cliName()));
            assertEquals(p, Precision.parse(" " + p.cliName().toUpperCase() + " "));
        }
        assertEquals(Precision.TF32, Precision.parse("Tf32"));
        assertEquals("fp32", Precision.FP32.cliName());
        assertEquals("tf32", Precision.TF32.cliName());
        assertEquals("bf16", Precision.BF16.cliName());
    }

    @Test
    void refusesOtherNamesListingTheValidOnes() {
        for (String bad : new String[] {"fp16", "float32", "", " ", "tf-32", "bfloat16", "32"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Precision.parse(bad));
            assertTrue(e.getMessage().contains("'" + bad + "'") && e.getMessage().contains("fp32, tf32 or bf16"),
                    e.getMessage());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Precision.parse(null));
        assertTrue(e.getMessage().contains("fp32, tf32 or bf16"), e.getMessage());
    }

    @Test
    void defaultsAreTf32OnGpuBackendsAndFp32OnCpu() {
        assertEquals(Precision.FP32, Precision.defaultFor(Device.CPU));
        assertEquals(Precision.TF32, Precision.defaultFor(Device.CUDA));
        assertEquals(Precision.TF32, Precision.defaultFor(Device.CUDA_SIM));
        for (Precision p : Precision.values()) {
            assertEquals(p == Precision.FP32, p.supportedOn(Device.CPU), p.toString());
            assertTrue(p.supportedOn(Device.CUDA) && p.supportedOn(Device.CUDA_SIM), p.toString());
        }
    }

    @Test
    void theJavaEnumMatchesTheCEnum() {
        assertEquals(d4j_h.D4J_PRECISION_FP32(), Precision.FP32.ordinal());
        assertEquals(d4j_h.D4J_PRECISION_TF32(), Precision.TF32.ordinal());
        assertEquals(d4j_h.D4J_PRECISION_BF16(), Precision.BF16.ordinal());
    }

    @Test
    void cudaSimOpensAtFp32AndKeepsWhatIsSet() {
        try (Backend sim = Backend.open(Device.CUDA_SIM)) {
            assertEquals(Precision.FP32, sim.precision(), "a backend opens at fp32");
            for (Precision p : new Precision[] {Precision.TF32, Precision.BF16, Precision.FP32, Precision.BF16,
                Precision.TF32, Precision.TF32, Precision.FP32}) {
                sim.setPrecision(p);
                assertEquals(p, sim.precision());
            }
        }
        try (Backend again = Backend.open(Device.CUDA_SIM)) {
            assertEquals(Precision.FP32, again.precision(), "a new backend opens at fp32 whatever another had");
        }
    }

    @Test
    void cpuRefusesTf32AndBf16WithAMessageAndStaysAtFp32() {
        try (Backend cpu = Backend.open(Device.CPU)) {
            assertEquals(Precision.FP32, cpu.precision());
            for (Precision p : new Precision[] {Precision.TF32, Precision.BF16}) {
                D4jException e = assertThrows(D4jException.class, () -> cpu.setPrecision(p));
                assertEquals(Status.UNSUPPORTED, e.status());
                assertTrue(e.getMessage().contains("cpu backend computes fp32 only")
                        && e.getMessage().contains(p.cliName()), e.getMessage());
                assertEquals(Precision.FP32, cpu.precision(), "the refused setting was kept");
            }
            cpu.setPrecision(Precision.FP32);
            assertEquals(Precision.FP32, cpu.precision());
        }
    }

    /** The Java enum cannot hold another value; the C front refuses one passed through the raw binding. */
    @Test
    void theFrontRefusesAnIntOutsideTheEnum() {
        for (Device d : new Device[] {Device.CPU, Device.CUDA_SIM}) {
            try (Backend be = Backend.open(d); Arena arena = Arena.ofConfined()) {
                if (d == Device.CUDA_SIM) be.setPrecision(Precision.BF16);
                Precision before = be.precision();
                for (int bad : new int[] {3, -1, 42, Integer.MIN_VALUE, Integer.MAX_VALUE}) {
                    int st = d4j_h.d4j_backend_set_precision(be.handle(), bad);
                    assertEquals(Status.INVALID_ARGUMENT, Status.of(st), "status of " + bad);
                    String msg = d4j_h.d4j_last_error().reinterpret(4096).getString(0);
                    assertEquals("precision " + bad + " is not fp32(0), tf32(1) or bf16(2)", msg);
                    assertEquals(before, be.precision(), "a refused value changed the precision");
                }
                assertEquals(Status.INVALID_ARGUMENT, Status.of(d4j_h.d4j_backend_precision(be.handle(), MemorySegment.NULL)));
                assertEquals("out is null", d4j_h.d4j_last_error().reinterpret(4096).getString(0));
                MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
                assertEquals(0, d4j_h.d4j_backend_precision(be.handle(), out));
                assertEquals(before.ordinal(), out.get(ValueLayout.JAVA_INT, 0));
            }
        }
        assertEquals(Status.INVALID_ARGUMENT,
                Status.of(d4j_h.d4j_backend_set_precision(MemorySegment.NULL, d4j_h.D4J_PRECISION_FP32())));
        assertFalse(d4j_h.d4j_last_error().reinterpret(4096).getString(0).isEmpty());
    }
}
