package io.diffusion4j.profile;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The ptxas resource report of the CUDA kernels (registers and static shared memory per kernel and
 * architecture), which the build writes when nvcc compiles the CUDA backend and packs into the jar.
 * Empty when this build had no nvcc.
 */
public final class PtxasReport {
    /** Registers per thread and static shared bytes of one kernel on one architecture. */
    public record Usage(int registers, long sharedBytes) {}

    private static final String RESOURCE = "/io/diffusion4j/profile/ptxas-report.tsv";
    private static volatile PtxasReport packed;

    private final Map<String, Usage> usage;

    private PtxasReport(Map<String, Usage> usage) {
        this.usage = Map.copyOf(usage);
    }

    /** The report packed in the jar (empty when the build had no nvcc). */
    public static PtxasReport packed() {
        PtxasReport r = packed;
        if (r == null) {
            try (InputStream in = PtxasReport.class.getResourceAsStream(RESOURCE)) {
                r = in == null ? new PtxasReport(Map.of()) : parse(in);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + RESOURCE, e);
            }
            packed = r;
        }
        return r;
    }

    /** Parses the tab-separated report: kernel, arch, registers, shared_bytes, ... with a header line. */
    static PtxasReport parse(InputStream in) throws IOException {
        Map<String, Usage> map = new HashMap<>();
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        String line = r.readLine(); // header
        while ((line = r.readLine()) != null) {
            String[] f = line.split("\t");
            if (f.length < 4) continue;
            // several instantiations of one kernel: the largest need decides
            map.merge(f[0] + "@" + f[1], new Usage(Integer.parseInt(f[2]), Long.parseLong(f[3])),
                    (a, b) -> new Usage(Math.max(a.registers(), b.registers()),
                            Math.max(a.sharedBytes(), b.sharedBytes())));
        }
        return new PtxasReport(map);
    }

    /** The usage of a kernel (its name in the .cu source) on an architecture such as {@code sm_90}. */
    public Optional<Usage> usage(String kernel, String arch) {
        return Optional.ofNullable(usage.get(kernel + "@" + arch));
    }

    public boolean isEmpty() {
        return usage.isEmpty();
    }
}
