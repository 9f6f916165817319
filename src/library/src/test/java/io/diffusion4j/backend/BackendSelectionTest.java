package io.diffusion4j.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.diffusion4j.Device;
import io.diffusion4j.testutil.DeviceBackends;
import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** Which backend is opened, and how an unavailable one is reported. This machine has no GPU. */
class BackendSelectionTest {

    static boolean cudaUsable() {
        return DeviceBackends.usable(Device.CUDA);
    }

    static void assertOneSentence(String s) {
        assertTrue(s != null && !s.isBlank(), "empty message");
        assertFalse(s.contains("\n") || s.contains("\r"), "several lines: " + s);
        assertFalse(Pattern.compile("[.!?]\\s+\\S").matcher(s).find(), "more than one sentence: " + s);
        assertFalse(s.contains("UnsatisfiedLinkError"), "raw linker error: " + s);
        assertFalse(s.contains("Exception") || s.contains("\tat ") || s.matches("(?s).*\\bat [\\w.$]+\\(.*"),
                "stack-trace-like text: " + s);
        assertTrue(s.length() < 300, "too long for one sentence: " + s);
    }

    @Test
    void cudaIsUnavailableHereWithAOneSentenceReason() {
        assumeFalse(cudaUsable(), "a CUDA device is usable on this machine");
        for (int i = 0; i < 3; i++) { // the same clean answer every time, not only on the first attempt
            D4jException.BackendUnavailableException e =
                    assertThrows(D4jException.BackendUnavailableException.class, () -> Backend.open(Device.CUDA));
            assertEquals(Status.UNAVAILABLE, e.status());
            assertOneSentence(e.getMessage());
            assertTrue(e.getMessage().toLowerCase().contains("cuda"), e.getMessage());
            assertTrue(e.getCause() == null, "no wrapped linker error expected: " + e.getCause());
        }
        assertThrows(D4jException.BackendUnavailableException.class, () -> Backend.open("cuda"));
    }

    @Test
    void openBestPicksCpuHere() {
        assumeFalse(cudaUsable(), "a CUDA device is usable on this machine");
        try (Backend b = Backend.openBest()) {
            assertEquals(Device.CPU, b.kind());
            assertFalse(b.isClosed());
            assertTrue(b.description().startsWith("CPU"), b.description());
        }
        try (Backend b = Backend.open("auto")) {
            assertEquals(Device.CPU, b.kind());
        }
        try (Backend b = Backend.open((String) null)) {
            assertEquals(Device.CPU, b.kind());
        }
    }

    /** The automatic choice says why it passed over cuda; an explicit request for cuda never falls back. */
    @Test
    void openBestLogsWhyItFallsBackToCpu() {
        assumeFalse(cudaUsable(), "a CUDA device is usable on this machine");
        String reason = assertThrows(D4jException.BackendUnavailableException.class, () -> Backend.open(Device.CUDA))
                .getMessage();
        java.util.logging.Logger jul = java.util.logging.Logger.getLogger(Backend.class.getName());
        List<java.util.logging.LogRecord> records = new java.util.concurrent.CopyOnWriteArrayList<>();
        java.util.logging.Handler handler = new java.util.logging.Handler() {
            @Override
            public void publish(java.util.logging.LogRecord r) {
                records.add(r);
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        jul.addHandler(handler);
        try (Backend b = Backend.openBest()) {
            assertEquals(Device.CPU, b.kind());
        } finally {
            jul.removeHandler(handler);
        }
        String expected = Backend.fallbackMessage(reason);
        assertTrue(records.stream().anyMatch(r -> r.getLevel() == java.util.logging.Level.INFO
                        && expected.equals(r.getMessage())),
                "no INFO record '" + expected + "' among " + records.stream().map(r -> r.getLevel() + " " + r.getMessage())
                        .toList());
        assertTrue(expected.contains(reason) && expected.contains("cpu"), expected);
        assertThrows(D4jException.BackendUnavailableException.class, () -> Backend.open("cuda"));
    }

    @Test
    void cpuByNameIsCaseAndSpaceTolerant() {
        for (String n : List.of("cpu", "CPU", " Cpu ")) {
            try (Backend b = Backend.open(n)) {
                assertEquals(Device.CPU, b.kind());
                assertTrue(b.library().getFileName().toString().equals("libd4j_cpu.so"), b.library().toString());
            }
        }
    }

    @Test
    void cudaSimIsBuiltIntoEveryJarAndOpens() {
        NativeLibraries libs = NativeLibraries.load();
        assertTrue(libs.library(Device.CUDA_SIM).isPresent(), "libd4j_cudasim.so is missing from the build");
        try (Backend sim = Backend.open("cuda-sim")) {
            assertTrue(sim.kind() == Device.CUDA_SIM);
            assertTrue(sim.description().contains("cuda-sim"), sim.description());
        }
    }

    @Test
    void missingBackendLibraryIsOneClearSentence() {
        String key = NativeLibraries.LIBRARY_PROPERTY_PREFIX + "cuda-sim";
        String before = System.getProperty(key);
        System.setProperty(key, "/nonexistent/libd4j_cudasim.so");
        try {
            D4jException.BackendUnavailableException e =
                    assertThrows(D4jException.BackendUnavailableException.class, () -> Backend.open("cuda-sim"));
            assertTrue(e.getMessage().contains("cuda-sim backend is not part of this build"), e.getMessage());
            assertTrue(e.getMessage().contains("libd4j_cudasim.so"), e.getMessage());
            assertOneSentence(e.getMessage());
        } finally {
            if (before == null) System.clearProperty(key);
            else System.setProperty(key, before);
        }
    }

    @Test
    void unknownNameIsAnIllegalArgument() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backend.open("metal"));
        assertTrue(e.getMessage().contains("unknown backend 'metal'") && e.getMessage().contains("cpu, cuda or cuda-sim"),
                e.getMessage());
    }

    @Test
    void probeAllReportsEveryKind() {
        List<Backend.Probe> probes = Backend.probeAll();
        assertEquals(Device.values().length, probes.size());
        for (Backend.Probe p : probes) {
            if (p.kind() == Device.CPU) assertTrue(p.available(), p.toString());
            if (!p.available()) assertOneSentence(p.detail());
        }
    }
}
