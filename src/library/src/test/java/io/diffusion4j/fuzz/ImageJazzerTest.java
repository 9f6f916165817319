package io.diffusion4j.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.diffusion4j.sample.ImageInputs;
import java.io.IOException;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;

/**
 * The decoding of PNG and JPEG bytes as the server and {@code sample} decode init images and masks
 * ({@link ImageInputs#readImage(byte[], int, int, int, int, long)}, {@link ImageInputs#readMask(byte[], int, int, int, long)},
 * both through {@code ImageFolderDataset.loadPixels}): the resized pixels, all finite and in range, or an
 * {@link IOException}; nothing else. The size limits are small here ({@value #MAX_SIDE} a side,
 * {@value #MAX_PIXELS} pixels) so that an image declaring more must be refused from its header, before the
 * decoder allocates for it: the allocation budget is fixed plus a multiple of the accepted pixel count.
 *
 * <p>The first input byte picks the reading: grey image, RGB image or mask.
 */
class ImageJazzerTest {
    static final String TARGET = "image";
    static final int MAX_SIDE = 64;
    static final long MAX_PIXELS = 64 * 48;
    static final int H = 8, W = 8;
    /** Fixed part: the decoder's tables and buffers; per input byte: a generous multiple. */
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(16L << 20, 256);

    @FuzzTest(maxDuration = "30s")
    void decode(byte[] input) {
        if (input.length < 1) return;
        int mode = (input[0] & 0xFF) % 3;
        byte[] encoded = Arrays.copyOfRange(input, 1, input.length);
        FuzzChecks.check(TARGET, input.length, BUDGET, FuzzChecks.oneOf(IOException.class), () -> {
            float[] v = switch (mode) {
                case 0 -> ImageInputs.readImage(encoded, H, W, 1, MAX_SIDE, MAX_PIXELS);
                case 1 -> ImageInputs.readImage(encoded, H, W, 3, MAX_SIDE, MAX_PIXELS);
                default -> ImageInputs.readMask(encoded, H, W, MAX_SIDE, MAX_PIXELS);
            };
            int expected = H * W * (mode == 1 ? 3 : 1);
            if (v.length != expected) throw new AssertionError(v.length + " values, expected " + expected);
            for (float x : v) {
                if (!(x >= -1f && x <= 1f)) throw new AssertionError("value " + x + " outside [-1, 1]");
            }
        });
    }

    @AfterAll
    static void report() {
        FuzzChecks.report(TARGET);
    }
}
