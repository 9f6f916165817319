package io.diffusion4j.selftest;

import static io.diffusion4j.selftest.SelfTest.U;

import io.diffusion4j.Precision;
import java.util.List;
import java.util.Locale;

/**
 * The verdict on one case: whether it passed, the error column ("bit-exact", the max relative error,
 * "bits differ", "non-finite"), the max relative error and what failed.
 */
record Comparison(boolean passed, String error, double maxRel, String detail) {
    /** Compares the device outputs {@code got} with the CPU reference {@code ref}, output by output. */
    static Comparison compare(List<Output> ref, List<Output> got) {
        return compare(ref, got, Precision.FP32);
    }

    /**
     * {@link #compare(List, List)} for a device that computed at {@code precision}: the bounds of the
     * outputs that are sums of products widen by the rounding of their inputs ({@link Output.Close}).
     */
    static Comparison compare(List<Output> ref, List<Output> got, Precision precision) {
        boolean passed = true, allBits = true, bitsFailed = false;
        double maxRel = 0;
        boolean anyClose = false;
        StringBuilder detail = new StringBuilder();
        for (int k = 0; k < ref.size(); k++) {
            Output r = ref.get(k), g = got.get(k);
            int bitDiffs = bitDifferences(r, g);
            if (bitDiffs != 0) allBits = false;
            switch (r.check()) {
                case Output.BitExact b -> {
                    if (bitDiffs != 0) {
                        passed = false;
                        bitsFailed = true;
                        int first = firstBitDifference(r, g);
                        append(detail, String.format(Locale.ROOT, "%s: %d of %d elements differ in bits (first at %d: cpu %s, device %s)",
                                r.name(), bitDiffs, length(r), first, show(r, first), show(g, first)));
                    }
                }
                case Output.Close c -> {
                    anyClose = true;
                    double rtol = c.rtol(precision);
                    int bad = 0, worst = -1;
                    double worstRel = -1;
                    for (int i = 0; i < length(r); i++) {
                        double cv = r.value(i), dv = g.value(i);
                        double diff = Math.abs(dv - cv);
                        double rel = Double.isFinite(dv) && Double.isFinite(cv) ? diff / (Math.abs(cv) + c.magnitude())
                                : Double.POSITIVE_INFINITY;
                        if (Double.isNaN(rel)) rel = diff == 0 ? 0 : Double.POSITIVE_INFINITY; // 0/0
                        if (!(rel <= rtol)) bad++;
                        if (rel > worstRel) {
                            worstRel = rel;
                            worst = i;
                        }
                    }
                    maxRel = Math.max(maxRel, worstRel < 0 ? 0 : worstRel);
                    if (bad > 0) {
                        passed = false;
                        append(detail, String.format(Locale.ROOT,
                                "%s: %d of %d elements violate |dev - cpu| <= atol + rtol*|cpu| (rtol = %.0fu, atol = %.3g); "
                                        + "worst at %d: cpu %s, device %s",
                                r.name(), bad, length(r), rtol / U, rtol * c.magnitude(), worst,
                                show(r, worst), show(g, worst)));
                    }
                }
            }
        }
        String error;
        if (allBits) {
            maxRel = 0;
            error = "bit-exact";
        } else if (bitsFailed) {
            error = "bits differ";
        } else if (!anyClose || !Double.isFinite(maxRel)) {
            maxRel = Double.NaN;
            error = "non-finite";
        } else {
            error = String.format(Locale.ROOT, "%.2e", maxRel);
        }
        return new Comparison(passed, error, maxRel, detail.toString());
    }

    private static void append(StringBuilder b, String s) {
        if (!b.isEmpty()) b.append("; ");
        b.append(s);
    }

    private static int length(Output o) {
        return o.f() != null ? o.f().length : o.d() != null ? o.d().length : o.i().length;
    }

    private static int bitDifferences(Output r, Output g) {
        int n = 0;
        for (int i = 0; i < length(r); i++) if (bitsAt(r, i) != bitsAt(g, i)) n++;
        return n;
    }

    private static int firstBitDifference(Output r, Output g) {
        for (int i = 0; i < length(r); i++) if (bitsAt(r, i) != bitsAt(g, i)) return i;
        return -1;
    }

    private static long bitsAt(Output o, int i) {
        if (o.f() != null) return Float.floatToRawIntBits(o.f()[i]);
        if (o.d() != null) return Double.doubleToRawLongBits(o.d()[i]);
        return o.i()[i];
    }

    private static String show(Output o, int i) {
        if (o.f() != null) return Float.toString(o.f()[i]);
        if (o.d() != null) return Double.toString(o.d()[i]);
        return String.format(Locale.ROOT, "0x%08x", o.i()[i]);
    }
}
