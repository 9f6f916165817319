package io.diffusion4j.train;

import io.diffusion4j.io.Json;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
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
    static final long COMMIT_WAIT_MILLIS = 2000;

    /**
     * The parsed scheduler_config.json (Python's NaN and Infinity accepted, as diffusers writes them); a
     * malformed file is an IOException naming it.
     */
    public Map<String, Object> readSchedulerConfig() throws IOException {
        try {
            return Json.parseObjectFromPython(Files.readString(schedulerConfig, StandardCharsets.UTF_8));
        } catch (RuntimeException e) {
            throw new IOException(schedulerConfig + ": " + e.getMessage(), e);
        }
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
        Path emaWeights = modelDir.resolve(Checkpoint.EMA_DIR).resolve(Checkpoint.WEIGHTS);
        boolean ema = !noEma && Files.exists(emaWeights);
        Path weights = ema ? emaWeights : modelDir.resolve(Checkpoint.WEIGHTS);
        if (!Files.exists(weights)) throw new IOException(dir + ": no " + weights.getFileName());
        return new CheckpointFiles(modelDir, weights, sched, ema);
    }
}
