package io.diffusion4j.train;

import io.diffusion4j.io.Json;
import io.diffusion4j.io.SmallFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Map;

/**
 * Where the model and scheduler files of a checkpoint folder are: a checkpoint of the train command, a diffusers
 * UNet2DModel folder, or a diffusers pipeline folder with {@code unet/} and {@code scheduler/}. Used by every
 * reader of a checkpoint (sampling, evaluation, the server).
 *
 * @param modelDir the folder holding config.json
 * @param weights the safetensors file to load (the EMA weights when present and wanted)
 * @param schedulerConfig the scheduler_config.json
 * @param ema whether {@code weights} are the EMA weights
 */
public record CheckpointFiles(Path modelDir, Path weights, Path schedulerConfig, boolean ema) {
    /** How long a reader waits for a save being committed in the folder (a commit renames a few files). */
    public static final long COMMIT_WAIT_MILLIS = 2000;

    /**
     * The parsed scheduler_config.json (Python's NaN and Infinity accepted, as diffusers writes them); a
     * malformed file is an IOException naming it.
     */
    public Map<String, Object> readSchedulerConfig() throws IOException {
        try {
            return Json.parseObjectFromPython(SmallFiles.readText(schedulerConfig));
        } catch (RuntimeException e) {
            throw new IOException(schedulerConfig + ": " + e.getMessage(), e);
        }
    }

    /**
     * The EMA weights of a model folder: {@code ema/diffusion_pytorch_model.safetensors}, or null when the folder has
     * no {@code ema} entry at all (EMA weights are optional: a diffusers folder usually has none). An {@code ema}
     * entry that is there but unusable (a plain file, an empty folder, a folder without the weights file, a broken
     * or looping symbolic link) is an error rather than a silent fall-back to the raw weights: sampling would
     * otherwise quietly use other weights than the checkpoint's best ones.
     *
     * @throws IOException naming the entry and what is wrong with it, and the way out (--no-ema or removing it)
     */
    public static Path emaWeights(Path modelDir) throws IOException {
        Path dir = modelDir.resolve(Checkpoint.EMA_DIR);
        if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) return null;
        String problem;
        if (Files.isSymbolicLink(dir) && !Files.exists(dir)) {
            problem = "a symbolic link that leads nowhere (broken or looping)";
        } else if (!Files.isDirectory(dir)) {
            problem = "not a directory";
        } else {
            Path w = dir.resolve(Checkpoint.WEIGHTS);
            if (Files.isRegularFile(w)) return w;
            problem = Files.exists(w, LinkOption.NOFOLLOW_LINKS) ? Checkpoint.WEIGHTS + " is not a readable regular file"
                    : "no " + Checkpoint.WEIGHTS + " in it";
        }
        throw new IOException(dir + ": the EMA weights folder is unusable: " + problem
                + " (remove it, or use the raw weights with --no-ema)");
    }

    /** The files of the checkpoint in {@code dir}; {@code noEma} picks the raw weights even when ema/ exists. */
    public static CheckpointFiles locate(Path dir, boolean noEma) throws IOException {
        if (!Files.isDirectory(dir)) throw new IOException(dir + ": no such checkpoint directory");
        // a training run may be committing a save there: read the files of one step
        io.diffusion4j.io.AtomicFiles.awaitCommitted(dir, COMMIT_WAIT_MILLIS);
        Path modelDir = dir, sched = dir.resolve(Checkpoint.SCHEDULER);
        if (!Files.exists(dir.resolve(Checkpoint.CONFIG)) && Files.exists(dir.resolve("unet").resolve(Checkpoint.CONFIG))) {
            modelDir = dir.resolve("unet"); // a diffusers pipeline folder
            sched = dir.resolve("scheduler").resolve(Checkpoint.SCHEDULER);
        }
        if (!Files.exists(modelDir.resolve(Checkpoint.CONFIG))) {
            throw new IOException(dir + ": no " + Checkpoint.CONFIG + " (expected a diffusion4j checkpoint or a diffusers"
                    + " UNet2DModel folder)");
        }
        if (!Files.exists(sched)) throw new IOException(dir + ": no " + Checkpoint.SCHEDULER);
        Path emaWeights = noEma ? null : emaWeights(modelDir);
        boolean ema = emaWeights != null;
        Path weights = ema ? emaWeights : modelDir.resolve(Checkpoint.WEIGHTS);
        if (!Files.exists(weights)) throw new IOException(dir + ": no " + weights.getFileName());
        return new CheckpointFiles(modelDir, weights, sched, ema);
    }
}
