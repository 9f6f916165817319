package io.diffusion4j.cli;

import java.io.Console;
import java.io.PrintStream;
import java.util.Locale;

/**
 * The progress of a long command (sample, eval-nll): "label [====      ] 40% 12/30 unit 1.2 s". On a terminal
 * it is one line redrawn with carriage returns; anywhere else (a file, a pipe, a CI log) it prints a plain line
 * at every tenth of the work and at the end, so logs hold no {@code \r}.
 */
public final class ProgressBar {
    private static final int WIDTH = 30;

    private final PrintStream err;
    private final boolean redraw;
    private final int total;
    private final String label, unit;
    private final long start = System.nanoTime();
    private int shown = -1; // redrawn: the last percentage drawn
    private int tenths; // plain lines: the last tenth of the work printed

    /**
     * A progress display on {@code err}: redrawn in place when {@code err} is this process's standard error and
     * that is a terminal, plain lines otherwise.
     */
    public static ProgressBar on(PrintStream err, int total, String label, String unit) {
        return new ProgressBar(err, err == System.err && isTerminal(), total, label, unit);
    }

    ProgressBar(PrintStream err, boolean redraw, int total, String label, String unit) {
        this.err = err;
        this.redraw = redraw;
        this.total = total;
        this.label = label;
        this.unit = unit;
    }

    private static boolean isTerminal() {
        Console c = System.console();
        return c != null && c.isTerminal();
    }

    /** Reports {@code done} of the total units finished. */
    public void update(int done) {
        int pct = (int) (100L * done / total);
        if (redraw) {
            if (pct == shown && done != total) return;
            shown = pct;
            int fill = (int) ((long) WIDTH * done / total);
            err.printf(Locale.ROOT, "\r%s [%s%s] %3d%% %d/%d %s %.1f s", label, "=".repeat(fill),
                    " ".repeat(WIDTH - fill), pct, done, total, unit, seconds());
        } else {
            int tenth = done == total ? 10 : pct / 10;
            if (tenth <= tenths) return;
            tenths = tenth;
            err.printf(Locale.ROOT, "%s %3d%% %d/%d %s %.1f s%n", label, pct, done, total, unit, seconds());
        }
        err.flush();
    }

    /** Ends the display (the redrawn line gets its line break). */
    public void finish() {
        if (redraw) err.println();
    }

    private double seconds() {
        return (System.nanoTime() - start) / 1e9;
    }
}
