package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.EmaSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import java.io.File;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.management.ObjectName;
import org.junit.jupiter.api.Test;

/**
 * Native memory stays flat over 1,000 training steps (measured here, not assumed).
 *
 * <p>Two meters, read in a child JVM started with Native Memory Tracking:
 * <ul>
 *   <li>the backend's own count of live device bytes and buffers, which must not move at all after
 *       the first step;
 *   <li>the process's malloc heap that is <em>not</em> the JVM's: glibc's bytes in use
 *       ({@code mallinfo2}: chunks in every arena plus mmapped chunks) minus the JVM's own mallocs as
 *       NMT counts them. What remains is what native code outside the JVM holds: our libraries'
 *       workspaces, thread pool and statics, and the C++ runtime.
 * </ul>
 * Measured first without the subtraction: the raw malloc heap swings between 22 and 43 MiB within
 * 1,000 steps, all of it the JIT compilers' arenas (NMT "Arena Chunk", peaking near 38 MiB), while the
 * non-JVM remainder stayed at 7.5 MiB within +-40 KiB. So the test bounds the remainder's growth from
 * step 200 to step 1,000 by 256 KiB: a leak of 1 KiB per step (800 KiB) fails it. To see the meter
 * catch one, run this test with {@code -Dleak=1024}: the child then mallocs 1 KiB per step and never
 * frees it (seen: growth 960,800 bytes, failure).
 */
class NativeMemoryFlatTest {
    static final int STEPS = 1000;
    static final long CHILD_TIMEOUT_SECONDS = 600;

    @Test
    void nativeMemoryIsFlatOverAThousandSteps() throws Exception {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> cmd = new ArrayList<>(List.of(java.toString(), "--enable-native-access=ALL-UNNAMED", "-Xss4m",
                "-XX:NativeMemoryTracking=summary", "-Dleak=" + Long.getLong("leak", 0)));
        for (String p : List.of("diffusion4j.cache.dir", "diffusion4j.native.dir")) {
            String v = System.getProperty(p);
            if (v != null) cmd.add("-D" + p + "=" + v);
        }
        cmd.addAll(List.of("-cp", classPath(), Child.class.getName()));
        Path out = Files.createTempFile("d4j-memory-child", ".out"), err = Files.createTempFile("d4j-memory-child", ".err");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile());
        // the ASan execution of the suite preloads libasan, whose malloc mallinfo2 does not see: meter glibc's
        pb.environment().remove("LD_PRELOAD");
        Process p = pb.start();
        String stdout, stderr;
        try {
            if (!p.waitFor(CHILD_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                fail("the child JVM did not finish in " + CHILD_TIMEOUT_SECONDS + " s: " + Files.readString(err));
            }
            stdout = Files.readString(out);
            stderr = Files.readString(err);
        } finally {
            if (p.isAlive()) p.destroyForcibly();
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
        assertEquals(0, p.exitValue(), "child JVM failed:\n" + stdout + "\n" + stderr);

        // lines "step S live_bytes B live_buffers N glibc G nmt M"
        Pattern line = Pattern.compile("^step (\\d+) live_bytes (\\d+) live_buffers (\\d+) glibc (\\d+) nmt (\\d+)$", Pattern.MULTILINE);
        Matcher m = line.matcher(stdout);
        long bytes1 = -1, buffers1 = -1, rest200 = -1, restLast = -1, restMin = Long.MAX_VALUE, restMax = Long.MIN_VALUE;
        int rows = 0, lastStep = 0;
        StringBuilder trace = new StringBuilder();
        while (m.find()) {
            int step = Integer.parseInt(m.group(1));
            long bytes = Long.parseLong(m.group(2)), buffers = Long.parseLong(m.group(3));
            long rest = Long.parseLong(m.group(4)) - Long.parseLong(m.group(5));
            if (step == 1) {
                bytes1 = bytes;
                buffers1 = buffers;
            }
            assertEquals(bytes1, bytes, "live device bytes at step " + step + " differ from step 1");
            assertEquals(buffers1, buffers, "live device buffers at step " + step + " differ from step 1");
            if (step == 200) rest200 = rest;
            if (step >= 200) {
                restMin = Math.min(restMin, rest);
                restMax = Math.max(restMax, rest);
            }
            if (step % 100 == 0) trace.append(String.format(Locale.ROOT, " %d:%.3f", step, rest / 1048576.0));
            restLast = rest;
            lastStep = step;
            rows++;
        }
        assertEquals(STEPS, lastStep, "the child did not report every step:\n" + stdout);
        assertTrue(rows >= 20, "too few measurements:\n" + stdout);
        long growth = restLast - rest200;
        System.out.printf(Locale.ROOT, "NativeMemoryFlatTest: %s; device bytes %d in %d buffers from step 1 to %d; non-JVM malloc "
                        + "heap (MiB, step:size)%s; growth step 200 -> %d: %d bytes, range %d bytes%n",
                lastLine(stdout), bytes1, buffers1, STEPS, trace, STEPS, growth, restMax - restMin);
        assertTrue(growth < 256 * 1024, "the non-JVM native heap grew by " + growth + " bytes from step 200 to " + STEPS + ":" + trace);
        assertTrue(restMax - restMin < 1024 * 1024, "the non-JVM native heap moved by " + (restMax - restMin) + " bytes:" + trace);
    }

    static String lastLine(String s) {
        return s.lines().filter(l -> l.startsWith("done")).findFirst().orElse("");
    }

    static String classPath() throws Exception {
        Set<String> cp = new LinkedHashSet<>();
        cp.add(Path.of(Backend.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString());
        cp.add(Path.of(Child.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toString());
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            if (e.endsWith("classes") || e.endsWith("test-classes")) cp.add(e);
        }
        return String.join(File.pathSeparator, cp);
    }

    /** The measured run: a tiny UNet trained for 1,000 steps on 2 threads, metered every 50 steps. */
    public static final class Child {
        static final StructLayout MALLINFO2 = MemoryLayout.structLayout(
                ValueLayout.JAVA_LONG.withName("arena"), ValueLayout.JAVA_LONG.withName("ordblks"),
                ValueLayout.JAVA_LONG.withName("smblks"), ValueLayout.JAVA_LONG.withName("hblks"),
                ValueLayout.JAVA_LONG.withName("hblkhd"), ValueLayout.JAVA_LONG.withName("usmblks"),
                ValueLayout.JAVA_LONG.withName("fsmblks"), ValueLayout.JAVA_LONG.withName("uordblks"),
                ValueLayout.JAVA_LONG.withName("fordblks"), ValueLayout.JAVA_LONG.withName("keepcost"));
        static final MethodHandle MALLINFO2_FN = Linker.nativeLinker().defaultLookup().find("mallinfo2")
                .map(a -> Linker.nativeLinker().downcallHandle(a, FunctionDescriptor.of(MALLINFO2)))
                .orElseThrow(() -> new IllegalStateException("mallinfo2 (glibc >= 2.33) is not available"));
        static final long LEAK = Long.getLong("leak", 0); // bytes leaked per step on purpose (teeth check)
        static final MethodHandle LEAKER = Linker.nativeLinker().downcallHandle(Linker.nativeLinker().defaultLookup().find("malloc").orElseThrow(), FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
        static final Pattern NMT_MALLOC = Pattern.compile("malloc: (\\d+)KB");

        /** glibc heap bytes in use: allocated chunks in all arenas plus mmapped chunks. */
        static long glibcInUse() throws Throwable {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment s = (MemorySegment) MALLINFO2_FN.invokeExact((SegmentAllocator) arena);
                return s.get(ValueLayout.JAVA_LONG, MALLINFO2.byteOffset(MemoryLayout.PathElement.groupElement("uordblks")))
                        + s.get(ValueLayout.JAVA_LONG, MALLINFO2.byteOffset(MemoryLayout.PathElement.groupElement("hblkhd")));
            }
        }

        /** The JVM's own malloc total from Native Memory Tracking (the first "malloc: NKB" is the total). */
        static long nmtMalloc() throws Exception {
            String summary = (String) ManagementFactory.getPlatformMBeanServer().invoke(
                    new ObjectName("com.sun.management:type=DiagnosticCommand"), "vmNativeMemory",
                    new Object[] {new String[] {"summary"}}, new String[] {String[].class.getName()});
            Matcher m = NMT_MALLOC.matcher(summary);
            if (!m.find()) throw new IllegalStateException("no malloc total in the NMT summary:\n" + summary);
            return Long.parseLong(m.group(1)) * 1024;
        }

        /**
         * {glibc in use, NMT malloc}: of three readings taken back to back, the one whose difference is the median.
         * The two meters are read one after the other while the JIT's threads keep allocating, so a single pair
         * can be off by what was allocated in between (seen: a one-reading dip of about 1 MB on a loaded machine);
         * a leak moves all three.
         */
        static long[] heapReading() throws Throwable {
            long[][] r = new long[3][];
            for (int i = 0; i < 3; i++) r[i] = new long[] {glibcInUse(), nmtMalloc()};
            java.util.Arrays.sort(r, java.util.Comparator.comparingLong(p -> p[0] - p[1]));
            return r[1];
        }

        public static void main(String[] args) throws Throwable {
            UNet2DConfig config = UNet2DConfig.builder().sampleSize(12).inChannels(1).outChannels(1).blockOutChannels(8, 16)
                    .layersPerBlock(1).normNumGroups(4).attentionHeadDim(8)
                    .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                    .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).build();
            Trainer.Options options = new Trainer.Options(8, 1e-3, 10, new OptimKernels.AdamW(1e-3, 0.9, 0.999, 1e-8, 1e-4),
                    1.0, EmaSchedule.power(0.999, 0.0, 0, 1.0, 0.75), PredictionType.EPSILON, 7, true);
            try (Backend cpu = Backend.open(Device.CPU)) {
                cpu.setThreads(2); // the thread pool's task path, not only the serial one
                try (UNet2DModel model = new UNet2DModel(cpu, config, 7);
                        Trainer t = new Trainer(model, NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02),
                                new ProceduralDataset(512, 12, 12, 1, 7), options)) {
                    long start = System.nanoTime();
                    for (int s = 1; s <= STEPS; s++) {
                        t.step();
                        if (LEAK > 0) { MemorySegment unused = (MemorySegment) LEAKER.invokeExact(LEAK); }
                        if (s == 1 || s % 50 == 0) {
                            long[] heap = heapReading();
                            System.out.printf(Locale.ROOT, "step %d live_bytes %d live_buffers %d glibc %d nmt %d%n", s,
                                    cpu.liveBytes(), cpu.liveBuffers(), heap[0], heap[1]);
                        }
                    }
                    System.out.printf(Locale.ROOT, "done: %d steps of batch 8 in %.1f s%n", STEPS, (System.nanoTime() - start) * 1e-9);
                }
            }
        }
    }
}
