package io.diffusion4j.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.diffusion4j.train.FashionMnist;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.AfterAll;

/**
 * The gzipped IDX readers of {@link FashionMnist} on arbitrary contents: {@link FashionMnist#readImages} and
 * {@link FashionMnist#readLabels} return a dataset (labels) matching the header or throw an {@link IOException};
 * nothing else, and a header announcing huge sizes over a small file must not make them allocate for it.
 *
 * <p>The first input byte picks the reader (bit 0: labels) and whether the rest is the file as is (bit 1; the gzip
 * layer is fuzzed) or the IDX bytes that the test gzips (so mutations reach the IDX header and payload).
 */
class IdxJazzerTest {
    static final String TARGET = "idx";
    /** The payload buffer starts at up to 1 MiB; gzip can expand a raw file about a thousand times. */
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(8 << 20, 2048);

    @FuzzTest(maxDuration = "30s")
    void read(byte[] input) throws IOException {
        if (input.length < 1) return;
        boolean labels = (input[0] & 1) != 0, raw = (input[0] & 2) != 0;
        byte[] body = Arrays.copyOfRange(input, 1, input.length);
        Path p = FuzzChecks.scratch(TARGET, "input.gz");
        Files.write(p, raw ? body : gzip(body));
        FuzzChecks.check(TARGET, input.length, BUDGET, FuzzChecks.oneOf(IOException.class), () -> {
            if (labels) {
                int[] l = FashionMnist.readLabels(p);
                if (l.length < 1) throw new AssertionError("no labels accepted");
            } else {
                FashionMnist d = FashionMnist.readImages(p);
                float[] img = new float[d.height() * d.width()];
                d.image(d.size() - 1, img, 0);
            }
        });
    }

    static byte[] gzip(byte[] b) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
            gz.write(b);
        }
        return out.toByteArray();
    }

    @AfterAll
    static void report() {
        FuzzChecks.report(TARGET);
    }
}
