package io.diffusion4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** The progress display: redrawn with carriage returns on a terminal, plain periodic lines elsewhere. */
class ProgressBarTest {
    private static String run(boolean redraw, int total) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PrintStream err = new PrintStream(bytes, true, StandardCharsets.UTF_8);
        ProgressBar bar = new ProgressBar(err, redraw, total, "sampling", "steps");
        for (int i = 1; i <= total; i++) bar.update(i);
        bar.finish();
        return bytes.toString(StandardCharsets.UTF_8);
    }

    @Test
    void plainLinesAtEveryTenthWithoutCarriageReturns() {
        String s = run(false, 200);
        assertFalse(s.contains("\r"), s);
        String[] lines = s.split("\n");
        assertEquals(10, lines.length, s);
        assertTrue(lines[0].startsWith("sampling  10% 20/200 steps"), lines[0]);
        assertTrue(lines[9].startsWith("sampling 100% 200/200 steps"), lines[9]);
    }

    @Test
    void fewerUnitsThanTenthsStillEndWithTheTotal() {
        String s = run(false, 3);
        assertFalse(s.contains("\r"), s);
        assertEquals(3, s.split("\n").length, s);
        assertTrue(s.split("\n")[2].startsWith("sampling 100% 3/3 steps"), s);
    }

    @Test
    void aTerminalGetsOneRedrawnLine() {
        String s = run(true, 50);
        assertTrue(s.startsWith("\rsampling [") && s.endsWith("\n"), s);
        assertEquals(1, s.split("\n").length, s);
        assertTrue(s.contains("100% 50/50 steps"), s);
    }

    @Test
    void aStreamOtherThanStandardErrorIsNeverRedrawn() {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        ProgressBar bar = ProgressBar.on(new PrintStream(bytes, true, StandardCharsets.UTF_8), 4, "eval-nll", "calls");
        for (int i = 1; i <= 4; i++) bar.update(i);
        bar.finish();
        assertFalse(bytes.toString(StandardCharsets.UTF_8).contains("\r"));
    }
}
