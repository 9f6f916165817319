package io.diffusion4j.io;

import java.io.PrintStream;
import java.util.List;
import java.util.function.IntPredicate;

/** A plain-text table: a blank line, the header, a rule of dashes and the rows, columns two spaces apart. */
public final class TextTable {
    private TextTable() {}

    /**
     * Prints {@code head} and {@code rows} with every column as wide as its widest cell; the columns
     * {@code rightAligned} accepts are padded on the left (numbers), the others on the right.
     */
    public static void print(String[] head, List<String[]> rows, IntPredicate rightAligned, PrintStream out) {
        int[] w = new int[head.length];
        for (int c = 0; c < head.length; c++) {
            w[c] = head[c].length();
            for (String[] l : rows) w[c] = Math.max(w[c], l[c].length());
        }
        out.println();
        out.println(row(head, w, rightAligned));
        StringBuilder rule = new StringBuilder();
        for (int c = 0; c < w.length; c++) rule.append(c == 0 ? "" : "  ").append("-".repeat(w[c]));
        out.println(rule);
        for (String[] l : rows) out.println(row(l, w, rightAligned));
    }

    private static String row(String[] cells, int[] w, IntPredicate rightAligned) {
        StringBuilder b = new StringBuilder();
        for (int c = 0; c < cells.length; c++) {
            if (c > 0) b.append("  ");
            String pad = " ".repeat(w[c] - cells[c].length());
            b.append(rightAligned.test(c) ? pad + cells[c] : cells[c] + pad);
        }
        return b.toString().stripTrailing();
    }
}
