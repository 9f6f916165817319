package io.diffusion4j.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.CheckpointFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;

/**
 * A diffusers model folder read as the server and {@code sample} read one ({@code ServedModel.load} without the
 * device): {@link CheckpointFiles#locate}, {@link Checkpoint#readConfig}, {@link Checkpoint#readSchedule},
 * {@link CheckpointFiles#readSchedulerConfig}, {@link ClassLabels#forModel} and {@link Checkpoint#readWeights}.
 * Every step returns or throws an {@link IOException}; nothing else, and the folder's declared sizes (a config
 * announcing a huge model next to a small weights file) must not make the reader allocate beyond a small multiple
 * of the folder's bytes.
 *
 * <p>The input is a folder image: a byte of flags (bit 0: ignore ema/), then entries of [file id, 16-bit big-endian
 * length, contents]; the id picks one of {@link #FILES} (modulo their count), the last entry takes what is left.
 */
class ModelFolderJazzerTest {
    static final String TARGET = "model-folder";
    static final List<String> FILES = List.of(Checkpoint.CONFIG, Checkpoint.WEIGHTS, Checkpoint.SCHEDULER,
            Checkpoint.EMA_DIR + "/" + Checkpoint.WEIGHTS, ClassLabels.FILE);
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(4 << 20, 256);

    @FuzzTest(maxDuration = "30s")
    void load(byte[] input) throws IOException {
        if (input.length < 1) return;
        boolean noEma = (input[0] & 1) != 0;
        Path dir = FuzzChecks.scratch(TARGET, "folder");
        writeFolder(dir, input);
        FuzzChecks.check(TARGET, input.length, BUDGET, t -> t instanceof IOException, () -> {
            CheckpointFiles loc = CheckpointFiles.locate(dir, noEma);
            UNet2DConfig config = Checkpoint.readConfig(loc.modelDir());
            Checkpoint.readSchedule(loc.schedulerConfig());
            loc.readSchedulerConfig();
            ClassLabels.forModel(config, loc.modelDir());
            float[] w = Checkpoint.readWeights(loc.weights(), UNet2DLayout.of(config));
            for (float x : w) if (!Float.isFinite(x)) throw new AssertionError("non-finite weight accepted");
        });
    }

    /** Replaces the folder's files by the ones the input describes. */
    static void writeFolder(Path dir, byte[] input) throws IOException {
        for (String f : FILES) Files.deleteIfExists(dir.resolve(f));
        Files.createDirectories(dir.resolve(Checkpoint.EMA_DIR));
        int pos = 1;
        while (pos < input.length) {
            String name = FILES.get((input[pos] & 0xFF) % FILES.size());
            int len = pos + 2 < input.length ? ((input[pos + 1] & 0xFF) << 8) | (input[pos + 2] & 0xFF) : 0;
            int start = Math.min(pos + 3, input.length);
            int end = Math.min(start + len, input.length);
            Files.write(dir.resolve(name), Arrays.copyOfRange(input, start, end));
            pos = end;
        }
    }

    @AfterAll
    static void report() {
        FuzzChecks.report(TARGET);
    }
}
