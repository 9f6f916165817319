package io.diffusion4j.profile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.selftest.SelfTest;
import io.diffusion4j.testutil.RepoPaths;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * CI's guard on the CUDA kernels' memory efficiency: every family and variant at the self-test's shapes,
 * counted on the profiling simulator (every block), against native/cuda/profile_baseline.csv. A kernel
 * whose global load or store efficiency drops, or whose shared-memory bank conflicts per request rise,
 * fails the build. The inputs use a fixed seed so that a kernel whose accesses depend on the data
 * (x0_threshold's selection) compares like with like. The current values are written to
 * target/profile-baseline.csv: copy it over the checked-in file when a change is intended (an
 * improvement, a new kernel or case).
 */
class ProfileBaselineTest {
    static final long SEED = 0x5eed_0f_d4_15a11L;
    static final String HEADER = "family,variant,call,shape,launch,kernel,gld_efficiency,gst_efficiency,"
            + "smem_conflicts_per_request";
    static final double SLACK = 1e-6; // the file keeps 9 decimals

    record Row(String key, double gld, double gst, double conflicts) {}

    @Test
    void efficiencyAndBankConflictsNoWorseThanTheBaseline() throws IOException {
        List<ProfiledCase> cases;
        try (Backend prof = Backend.openProfiling()) {
            cases = SelfTest.profile(prof, null, SelfTest.Options.defaults().withSeed(SEED).withRepeats(0), 0);
        }
        List<Row> now = new ArrayList<>();
        StringBuilder csv = new StringBuilder(HEADER).append('\n');
        for (ProfiledCase c : cases) {
            for (int i = 0; i < c.launches().size(); i++) {
                KernelProfile k = c.launches().get(i);
                assertTrue(k.complete(), "every block is counted");
                String key = String.join(",", c.family(), c.variant(), ProfileReport.quote(c.call()), ProfileReport.quote(c.shape()),
                        Integer.toString(i), k.kernel());
                Row r = new Row(key, k.gldEfficiency(), k.gstEfficiency(), k.smemConflictsPerRequest());
                now.add(r);
                csv.append(key).append(',').append(text(r.gld())).append(',').append(text(r.gst())).append(',')
                        .append(text(r.conflicts())).append('\n');
            }
        }
        Path target = Path.of("target", "profile-baseline.csv").toAbsolutePath();
        AtomicFiles.writeString(target, csv.toString());
        Map<String, Row> base = read(RepoPaths.root().resolve("native/cuda/profile_baseline.csv"));
        List<String> worse = new ArrayList<>(), missing = new ArrayList<>();
        for (Row r : now) {
            Row b = base.remove(r.key());
            if (b == null) {
                missing.add(r.key());
                continue;
            }
            if (lower(r.gld(), b.gld())) worse.add(r.key() + ": load efficiency " + text(b.gld()) + " -> " + text(r.gld()));
            if (lower(r.gst(), b.gst())) worse.add(r.key() + ": store efficiency " + text(b.gst()) + " -> " + text(r.gst()));
            if (higher(r.conflicts(), b.conflicts())) {
                worse.add(r.key() + ": bank conflicts per request " + text(b.conflicts()) + " -> " + text(r.conflicts()));
            }
        }
        String advice = "; the current values are in " + target + " (copy it over native/cuda/profile_baseline.csv "
                + "if the change is intended)";
        if (!worse.isEmpty()) fail(worse.size() + " kernel launches got worse:\n  " + String.join("\n  ", worse) + advice);
        if (!missing.isEmpty() || !base.isEmpty()) {
            fail("the baseline does not match the launches: not in the baseline " + missing + ", no longer launched "
                    + base.keySet() + advice);
        }
        assertEquals(now.size(), now.stream().map(Row::key).distinct().count(), "launch keys are unique");
    }

    // NaN (no such access) compares equal to NaN; a NaN against a number is a change of the kernel's accesses
    private static boolean lower(double now, double base) {
        if (Double.isNaN(now) || Double.isNaN(base)) return Double.isNaN(now) != Double.isNaN(base);
        return now < base - SLACK;
    }

    private static boolean higher(double now, double base) {
        if (Double.isNaN(now) || Double.isNaN(base)) return Double.isNaN(now) != Double.isNaN(base);
        return now > base + SLACK;
    }

    private static Map<String, Row> read(Path file) throws IOException {
        Map<String, Row> rows = new LinkedHashMap<>();
        if (!Files.exists(file)) return rows;
        List<String> lines = Files.readAllLines(file);
        assertEquals(HEADER, lines.get(0), file + " header");
        for (String line : lines.subList(1, lines.size())) {
            if (line.isBlank()) continue;
            int c3 = line.lastIndexOf(','), c2 = line.lastIndexOf(',', c3 - 1), c1 = line.lastIndexOf(',', c2 - 1);
            rows.put(line.substring(0, c1), new Row(line.substring(0, c1), value(line.substring(c1 + 1, c2)),
                    value(line.substring(c2 + 1, c3)), value(line.substring(c3 + 1))));
        }
        return rows;
    }

    private static String text(double v) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%.9f", v);
    }

    private static double value(String s) {
        return s.isEmpty() ? Double.NaN : Double.parseDouble(s);
    }
}
