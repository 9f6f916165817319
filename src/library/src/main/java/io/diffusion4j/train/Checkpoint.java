package io.diffusion4j.train;

import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.io.Json;
import io.diffusion4j.io.JsonFields;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.io.SmallFiles;
import io.diffusion4j.kernels.EmaSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.ModelLimits;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Training checkpoints in the diffusers folder layout:
 * <pre>
 *   DIR/config.json                           UNet2DConfig.toJson()
 *   DIR/diffusion_pytorch_model.safetensors   the parameters, diffusers names, on-disk (OIHW) shapes
 *   DIR/ema/config.json                       the same config (ema/ loads as a model folder itself)
 *   DIR/ema/diffusion_pytorch_model.safetensors  the EMA parameters
 *   DIR/scheduler_config.json                 DDPMScheduler: T, betas, prediction/variance type, clip
 *   DIR/training_state.safetensors            AdamW exp_avg / exp_avg_sq (flat, in the model's device
 *                                             buffer layout), the per-step history (history.loss,
 *                                             history.lr, history.grad_norm, float32 [k], steps
 *                                             history_first_step .. step) and, as metadata, step, noise
 *                                             seed and offset, sampler state, every option resume must
 *                                             match (batch size, lr, warmup, AdamW, clipping, EMA
 *                                             schedule, flips, min-SNR gamma), the precision of the
 *                                             matrix kernels at the save (fp32, tf32 or bf16) and the
 *                                             caller's run metadata (the train command's data source)
 * </pre>
 * The history lives in the training state, not only in the {@code loss.csv} the train command writes
 * beside it, because that file is written atomically together with the step count it must agree with:
 * a resumed run continues a history that ends exactly at the checkpoint's step, whatever happened to
 * the human-facing CSV and PNG (they are regenerated from it on every save).
 * The files of one save are replaced together ({@link AtomicFiles.Group}: each staged and forced to disk,
 * a journal as the commit point, then renamed): a save killed at any moment leaves every file of the
 * previous step or every file of the new one, and the next save or {@link #load} finishes or undoes it and
 * removes the killed process's temporary files.
 *
 * <p>Loading validates everything before touching the trainer: the config must equal the model's, each
 * safetensors file must hold exactly the layout's tensors with their shapes (and is itself validated
 * by {@link SafeTensors}), the scheduler and the training-state metadata must match the trainer's
 * schedule and options; anything else is refused with an {@link IOException} naming file and problem.
 */
public final class Checkpoint {
    public static final String CONFIG = "config.json";
    public static final String WEIGHTS = "diffusion_pytorch_model.safetensors";
    public static final String EMA_DIR = "ema";
    public static final String SCHEDULER = "scheduler_config.json";
    public static final String TRAINING_STATE = "training_state.safetensors";
    /** The PyTorch pickle weights file of older diffusers folders (refused: unpickling can run code). */
    public static final String WEIGHTS_BIN = "diffusion_pytorch_model.bin";
    private static final String STATE_FORMAT = "diffusion4j-training-state-1";
    private static final String M = "adamw.exp_avg", V = "adamw.exp_avg_sq";
    private static final String H_LOSS = "history.loss", H_LR = "history.lr", H_NORM = "history.grad_norm";
    /** Metadata keys this class writes; run metadata must use others. */
    private static final java.util.Set<String> RESERVED = java.util.Set.of("format", "step", "noise_seed", "noise_offset",
            "sampler_state", "batch_size", "prediction_type", "buffer_floats", "history_first_step", "learning_rate",
            "warmup_steps", "adam_beta1", "adam_beta2", "adam_eps", "weight_decay", "max_grad_norm", "ema_warmup",
            "ema_max_decay", "ema_min_decay", "ema_update_after_step", "ema_inv_gamma", "ema_power", "flips",
            "min_snr_gamma", "precision");

    private Checkpoint() {}

    /** Writes the trainer's model, EMA, scheduler and optimiser state to {@code dir} (created if needed), no history. */
    public static void save(Path dir, Trainer trainer) throws IOException {
        save(dir, trainer, null, Map.of());
    }

    /**
     * Writes the trainer's model, EMA, scheduler and optimiser state to {@code dir} (created if needed).
     *
     * @param history the per-step history, which must end at the trainer's step (or be empty); null: none
     * @param runMetadata extra string metadata for the training state (keys other than this class's own),
     *     read back by {@link #readStateMetadata}
     */
    public static void save(Path dir, Trainer trainer, LossHistory history, Map<String, String> runMetadata)
            throws IOException {
        save(dir, trainer, history, runMetadata, Map.of());
    }

    /**
     * {@link #save(Path, Trainer, LossHistory, Map)} plus files of the caller's (a loss curve, say), replaced in
     * the same group as the checkpoint: after a kill they too belong to the checkpoint's step.
     *
     * @param extraFiles file names (directly in {@code dir}, not the checkpoint's own) and their bytes
     */
    public static void save(Path dir, Trainer trainer, LossHistory history, Map<String, String> runMetadata,
                            Map<String, byte[]> extraFiles) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(extraFiles, "extraFiles");
        for (String f : extraFiles.keySet()) {
            if (f.isEmpty() || f.startsWith(".") || f.contains("/") || f.contains("\\")
                    || java.util.Set.of(CONFIG, WEIGHTS, EMA_DIR, SCHEDULER, TRAINING_STATE).contains(f)) {
                throw new IllegalArgumentException("extra file name '" + f + "' is not a plain name of its own");
            }
        }
        Objects.requireNonNull(trainer, "trainer");
        Objects.requireNonNull(runMetadata, "runMetadata");
        for (String k : runMetadata.keySet()) {
            if (RESERVED.contains(k)) throw new IllegalArgumentException("run metadata key '" + k + "' is reserved");
        }
        if (history != null && history.size() > 0 && history.lastStep() != trainer.stepCount()) {
            throw new IllegalArgumentException("the history ends at step " + history.lastStep() + ", the trainer is at step "
                    + trainer.stepCount());
        }
        UNet2DLayout layout = trainer.model().layout();
        try (AtomicFiles.Group g = AtomicFiles.begin(dir, EMA_DIR)) {
            Files.createDirectories(dir.resolve(EMA_DIR));
            writeFiles(g, dir, trainer, history, runMetadata, layout);
            for (Map.Entry<String, byte[]> e : extraFiles.entrySet()) {
                byte[] b = e.getValue();
                g.write(dir.resolve(e.getKey()), ch -> AtomicFiles.writeFully(ch, java.nio.ByteBuffer.wrap(b)));
            }
            g.commit();
        }
    }

    // every file of the checkpoint, staged in one group: a kill at any moment leaves the folder at one step
    private static void writeFiles(AtomicFiles.Group g, Path dir, Trainer trainer, LossHistory history,
                                   Map<String, String> runMetadata, UNet2DLayout layout) throws IOException {
        String config = trainer.model().config().toJson();
        Map<String, String> meta = Map.of("format", "pt");
        g.writeString(dir.resolve(CONFIG), config);
        g.write(dir.resolve(WEIGHTS), SafeTensors.content(entries(layout, trainer.model().flatParameters()), meta));
        g.writeString(dir.resolve(EMA_DIR).resolve(CONFIG), config);
        g.write(dir.resolve(EMA_DIR).resolve(WEIGHTS),
                SafeTensors.content(entries(layout, layout.deviceToDisk(trainer.emaParameters().toFloatArray())), meta));
        g.writeString(dir.resolve(SCHEDULER), Json.write(schedulerConfig(trainer.schedule(), trainer.options().prediction())));
        if (trainer.model().config().isClassConditional()) {
            io.diffusion4j.model.ClassLabels classes = new io.diffusion4j.model.ClassLabels(trainer.classNames(),
                    trainer.nullClass());
            g.writeString(dir.resolve(io.diffusion4j.model.ClassLabels.FILE), classes.toJson());
            // beside ema/config.json, which samplers may load alone
            g.writeString(dir.resolve(EMA_DIR).resolve(io.diffusion4j.model.ClassLabels.FILE), classes.toJson());
        }

        Trainer.State s = trainer.state();
        Trainer.Options o = trainer.options();
        LinkedHashMap<String, String> sm = new LinkedHashMap<>();
        sm.put("format", STATE_FORMAT);
        sm.put("step", Long.toString(s.step()));
        sm.put("noise_seed", Long.toString(s.noiseSeed()));
        sm.put("noise_offset", Long.toString(s.noiseOffset()));
        sm.put("sampler_state", Long.toString(s.samplerState()));
        sm.put("batch_size", Integer.toString(o.batchSize()));
        sm.put("prediction_type", o.prediction().configName());
        sm.put("buffer_floats", Long.toString(layout.bufferFloats()));
        // the number format the matrix kernels computed in (the tensors are float32 whatever it is)
        sm.put("precision", trainer.model().backend().precision().cliName());
        sm.putAll(optionsMetadata(o));
        sm.putAll(new java.util.TreeMap<>(runMetadata));
        long n = layout.bufferFloats();
        List<SafeTensors.Entry> tensors = new ArrayList<>(List.of(
                new SafeTensors.Entry(M, new long[] {n}, trainer.adamM().toFloatArray()),
                new SafeTensors.Entry(V, new long[] {n}, trainer.adamV().toFloatArray())));
        if (history != null && history.size() > 0) {
            sm.put("history_first_step", Long.toString(history.firstStep()));
            long k = history.size();
            tensors.add(new SafeTensors.Entry(H_LOSS, new long[] {k}, history.losses()));
            tensors.add(new SafeTensors.Entry(H_LR, new long[] {k}, history.learningRates()));
            tensors.add(new SafeTensors.Entry(H_NORM, new long[] {k}, history.gradNorms()));
        }
        g.write(dir.resolve(TRAINING_STATE), SafeTensors.content(tensors, sm));
    }

    /** The options as training-state metadata (doubles in Java's round-trip form). */
    static LinkedHashMap<String, String> optionsMetadata(Trainer.Options o) {
        LinkedHashMap<String, String> m = new LinkedHashMap<>();
        m.put("learning_rate", Double.toString(o.learningRate()));
        m.put("warmup_steps", Integer.toString(o.warmupSteps()));
        m.put("adam_beta1", Double.toString(o.adamw().beta1()));
        m.put("adam_beta2", Double.toString(o.adamw().beta2()));
        m.put("adam_eps", Double.toString(o.adamw().eps()));
        m.put("weight_decay", Double.toString(o.adamw().weightDecay()));
        m.put("max_grad_norm", Double.toString(o.maxGradNorm()));
        EmaSchedule e = o.ema();
        m.put("ema_warmup", e.warmup().name());
        m.put("ema_max_decay", Double.toString(e.maxDecay()));
        m.put("ema_min_decay", Double.toString(e.minDecay()));
        m.put("ema_update_after_step", Long.toString(e.updateAfterStep()));
        m.put("ema_inv_gamma", Double.toString(e.invGamma()));
        m.put("ema_power", Double.toString(e.power()));
        m.put("flips", Boolean.toString(o.flips()));
        m.put("min_snr_gamma", Double.toString(o.minSnrGamma()));
        m.put("cond_drop_prob", Double.toString(o.condDropProb()));
        return m;
    }

    /** The training-state metadata of a checkpoint folder (validated as a safetensors file, format checked). */
    public static Map<String, String> readStateMetadata(Path dir) throws IOException {
        Path statePath = dir.resolve(TRAINING_STATE);
        try (SafeTensors.Reader r = SafeTensors.open(statePath)) {
            Map<String, String> md = r.metadata();
            if (!STATE_FORMAT.equals(md.get("format"))) {
                throw new IOException(statePath + ": format '" + md.get("format") + "' is not " + STATE_FORMAT);
            }
            return Map.copyOf(md);
        } catch (RuntimeException e) {
            throw new IOException(statePath + ": " + e.getMessage(), e);
        }
    }

    /**
     * The trainer options a checkpoint was trained with: its training-state metadata and the prediction type
     * of its scheduler_config.json. A resumed run uses exactly these.
     */
    public static Trainer.Options readOptions(Path dir) throws IOException {
        Path statePath = dir.resolve(TRAINING_STATE);
        Map<String, String> md = readStateMetadata(dir);
        Map<String, Object> sched;
        try {
            sched = Json.parseObject(SmallFiles.readText(dir.resolve(SCHEDULER)));
        } catch (RuntimeException e) {
            throw new IOException(dir.resolve(SCHEDULER) + ": " + e.getMessage(), e);
        }
        try {
            PredictionType p = PredictionType.fromConfigName(String.valueOf(sched.get("prediction_type")));
            if (!p.configName().equals(md.get("prediction_type"))) {
                throw new IOException(statePath + ": prediction_type " + md.get("prediction_type") + " but "
                        + dir.resolve(SCHEDULER) + " says " + p.configName());
            }
            long warmup = metaLong(md, "warmup_steps", statePath);
            long batch = metaLong(md, "batch_size", statePath);
            if (warmup < 0 || warmup > Integer.MAX_VALUE || batch < 1 || batch > Integer.MAX_VALUE) {
                throw new IOException(statePath + ": bad warmup_steps or batch_size");
            }
            double lr = metaDouble(md, "learning_rate", statePath);
            OptimKernels.AdamW adamw = new OptimKernels.AdamW(lr, metaDouble(md, "adam_beta1", statePath),
                    metaDouble(md, "adam_beta2", statePath), metaDouble(md, "adam_eps", statePath),
                    metaDouble(md, "weight_decay", statePath));
            String warm = metaString(md, "ema_warmup", statePath);
            double maxD = metaDouble(md, "ema_max_decay", statePath), minD = metaDouble(md, "ema_min_decay", statePath);
            long after = metaLong(md, "ema_update_after_step", statePath);
            EmaSchedule ema = switch (warm) {
                case "POWER" -> EmaSchedule.power(maxD, minD, after, metaDouble(md, "ema_inv_gamma", statePath),
                        metaDouble(md, "ema_power", statePath));
                case "RATIO" -> EmaSchedule.ratio(maxD, minD, after);
                case "NONE" -> EmaSchedule.constant(maxD, minD, after);
                default -> throw new IOException(statePath + ": unknown ema_warmup '" + warm + "'");
            };
            String flips = metaString(md, "flips", statePath);
            if (!flips.equals("true") && !flips.equals("false")) throw new IOException(statePath + ": flips '" + flips + "'");
            return new Trainer.Options((int) batch, lr, (int) warmup, adamw, metaDouble(md, "max_grad_norm", statePath),
                    ema, p, metaLong(md, "noise_seed", statePath), flips.equals("true"),
                    metaDouble(md, "min_snr_gamma", statePath),
                    md.containsKey("cond_drop_prob") ? metaDouble(md, "cond_drop_prob", statePath)
                            : Trainer.Options.DEFAULT_COND_DROP_PROB);
        } catch (IllegalArgumentException e) {
            throw new IOException(statePath + ": " + e.getMessage(), e);
        }
    }

    /**
     * Restores a checkpoint written by {@link #save} into a trainer built with the same config, schedule and
     * options (the model's initial parameters are overwritten). Nothing is changed if validation fails.
     *
     * @return the per-step history stored with the checkpoint (ending at its step), or an empty history
     *     starting after its step when none was stored
     */
    public static LossHistory load(Path dir, Trainer trainer) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(trainer, "trainer");
        AtomicFiles.recover(dir, EMA_DIR); // a save killed after its commit point is finished, one before it undone
        UNet2DLayout layout = trainer.model().layout();
        UNet2DConfig config = readConfig(dir);
        if (!config.equals(trainer.model().config())) {
            throw new IOException(dir.resolve(CONFIG) + ": the checkpoint's model config differs from the trainer's model");
        }
        checkScheduler(dir.resolve(SCHEDULER), trainer);
        float[] weights = readWeights(dir.resolve(WEIGHTS), layout);
        float[] emaWeights = readWeights(dir.resolve(EMA_DIR).resolve(WEIGHTS), layout);

        Path statePath = dir.resolve(TRAINING_STATE);
        float[] m, v;
        Trainer.State state;
        LossHistory history;
        try (SafeTensors.Reader r = SafeTensors.open(statePath)) {
            Map<String, String> md = r.metadata();
            if (!STATE_FORMAT.equals(md.get("format"))) {
                throw new IOException(statePath + ": format '" + md.get("format") + "' is not " + STATE_FORMAT);
            }
            long n = layout.bufferFloats();
            if (metaLong(md, "buffer_floats", statePath) != n) {
                throw new IOException(statePath + ": buffer_floats " + md.get("buffer_floats") + ", the model has " + n);
            }
            if (metaLong(md, "batch_size", statePath) != trainer.options().batchSize()) {
                throw new IOException(statePath + ": trained with batch size " + md.get("batch_size")
                        + ", the trainer has " + trainer.options().batchSize() + " (resume would not be exact)");
            }
            if (!trainer.options().prediction().configName().equals(md.get("prediction_type"))) {
                throw new IOException(statePath + ": prediction_type " + md.get("prediction_type") + ", the trainer has "
                        + trainer.options().prediction().configName());
            }
            checkOptions(md, trainer.options(), statePath);
            java.util.Set<String> known = java.util.Set.of(M, V, H_LOSS, H_LR, H_NORM);
            for (SafeTensors.TensorInfo t : r.tensors()) {
                if (!known.contains(t.name())) throw new IOException(statePath + ": unexpected tensor '" + t.name() + "'");
            }
            m = readFlat(r, M, n, statePath);
            v = readFlat(r, V, n, statePath);
            state = new Trainer.State(metaLong(md, "step", statePath), metaLong(md, "noise_seed", statePath),
                    metaLong(md, "noise_offset", statePath), metaLong(md, "sampler_state", statePath));
            history = readHistory(r, md, state.step(), statePath);
        } catch (RuntimeException e) {
            throw new IOException(statePath + ": " + e.getMessage(), e);
        }
        if (state.noiseSeed() != trainer.options().seed()) {
            throw new IOException(statePath + ": trained with seed " + state.noiseSeed() + ", the trainer has seed "
                    + trainer.options().seed());
        }
        if (state.step() < 0 || state.noiseOffset() < 0) throw new IOException(statePath + ": negative step or noise offset");
        for (float[] a : List.of(m, v)) {
            for (float x : a) {
                if (!Float.isFinite(x)) throw new IOException(statePath + ": non-finite optimiser state");
            }
        }
        // validated: now apply
        trainer.model().loadFlat(weights);
        trainer.emaParameters().copyFrom(layout.diskToDevice(emaWeights));
        trainer.adamM().copyFrom(m);
        trainer.adamV().copyFrom(v);
        trainer.restoreState(state);
        return history;
    }

    private static LossHistory readHistory(SafeTensors.Reader r, Map<String, String> md, long step, Path file)
            throws IOException {
        int present = (r.contains(H_LOSS) ? 1 : 0) + (r.contains(H_LR) ? 1 : 0) + (r.contains(H_NORM) ? 1 : 0);
        if (present == 0) {
            if (md.containsKey("history_first_step")) throw new IOException(file + ": history_first_step without history tensors");
            return new LossHistory(step + 1);
        }
        if (present != 3) throw new IOException(file + ": the history needs all of " + H_LOSS + ", " + H_LR + " and " + H_NORM);
        long k = r.info(H_LOSS).elementCount();
        long first = metaLong(md, "history_first_step", file);
        if (k < 1 || first < 1 || first + k - 1 != step) {
            throw new IOException(file + ": the history covers steps " + first + ".." + (first + k - 1)
                    + ", it must end at the checkpoint's step " + step);
        }
        float[] loss = readFlat(r, H_LOSS, k, file), lr = readFlat(r, H_LR, k, file), norm = readFlat(r, H_NORM, k, file);
        return LossHistory.of(first, loss, lr, norm);
    }

    /** Every stored option must equal the trainer's: otherwise the resumed run would not be the same run. */
    private static void checkOptions(Map<String, String> md, Trainer.Options o, Path file) throws IOException {
        for (Map.Entry<String, String> e : optionsMetadata(o).entrySet()) {
            String stored = md.get(e.getKey());
            // written since class-conditional training exists; older checkpoints trained with the default
            if (stored == null && e.getKey().equals("cond_drop_prob")) {
                stored = Double.toString(Trainer.Options.DEFAULT_COND_DROP_PROB);
            }
            if (stored == null) throw new IOException(file + ": metadata '" + e.getKey() + "' is missing");
            boolean same;
            try {
                same = stored.equals(e.getValue()) || (!e.getKey().equals("ema_warmup") && !e.getKey().equals("flips")
                        && Double.parseDouble(stored) == Double.parseDouble(e.getValue()));
            } catch (NumberFormatException x) {
                same = false;
            }
            if (!same) {
                throw new IOException(file + ": trained with " + e.getKey() + " " + stored + ", the trainer has "
                        + e.getValue() + " (resume would not be exact)");
            }
        }
    }

    /** The model configuration of a checkpoint (or any diffusers UNet2DModel folder). */
    public static UNet2DConfig readConfig(Path dir) throws IOException {
        Path p = dir.resolve(CONFIG);
        try {
            return UNet2DConfig.fromJson(SmallFiles.readText(p));
        } catch (RuntimeException e) {
            throw new IOException(p + ": " + e.getMessage(), e);
        }
    }

    /**
     * The parameters of a diffusers {@code diffusion_pytorch_model.safetensors} as the host array
     * {@link io.diffusion4j.model.UNet2DModel#loadFlat} takes (on-disk shapes); every layout tensor must be
     * present once with its shape and no other tensor may be. Checkpoints written before diffusers 0.14 name
     * the attention projections {@code query, key, value, proj_attn}: they are accepted and mapped
     * ({@link UNet2DLayout#currentName}). float16, bfloat16 and float64 tensors are converted to float32.
     */
    public static float[] readWeights(Path file, UNet2DLayout layout) throws IOException {
        float[] flat;
        try (SafeTensors.Reader r = SafeTensors.open(file)) {
            // the config's size and the file's header first: the array is allocated only for a model within the
            // limit whose every tensor the file really holds (the reader checked the offsets against its size)
            ModelLimits.checkParameters(layout);
            Map<String, long[]> shapes = new LinkedHashMap<>();
            for (SafeTensors.TensorInfo t : r.tensors()) shapes.put(t.name(), t.shapeArray());
            layout.checkCheckpoint(shapes); // missing, unexpected, doubly named and mis-shaped tensors, all listed
            flat = new float[Math.toIntExact(layout.bufferFloats())];
            for (SafeTensors.TensorInfo t : r.tensors()) {
                UNet2DLayout.Param p = layout.resolve(t.name());
                r.readFloat32(t.name(), flat, Math.toIntExact(p.offset()));
            }
        } catch (RuntimeException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        } catch (IOException e) {
            throw SmallFiles.withPath(file, e);
        }
        for (int i = 0; i < flat.length; i++) {
            if (!Float.isFinite(flat[i])) throw new IOException(file + ": non-finite parameter value at flat index " + i);
        }
        return flat;
    }

    /** A diffusers UNet2DModel folder read by {@link #readModelFolder}: its config and on-disk flat weights. */
    public record ModelFolder(Path dir, UNet2DConfig config, float[] weights) {}

    /**
     * Reads any diffusers {@code UNet2DModel} folder ({@code config.json} and
     * {@code diffusion_pytorch_model.safetensors}), e.g. a {@code save_pretrained} output, a checkpoint
     * of the train command or its {@code ema/} subfolder. A pipeline folder whose model is in
     * {@code unet/} (with {@code model_index.json}) is accepted too. Weights only in PyTorch's pickle
     * format ({@value #WEIGHTS_BIN}) are refused with a message saying how to convert them.
     */
    public static ModelFolder readModelFolder(Path dir) throws IOException {
        Objects.requireNonNull(dir, "dir");
        if (!Files.isDirectory(dir)) throw new IOException(dir + ": not a directory");
        Path d = dir;
        if (!Files.exists(d.resolve(CONFIG)) && Files.isRegularFile(d.resolve("unet").resolve(CONFIG))) d = d.resolve("unet");
        if (!Files.isRegularFile(d.resolve(CONFIG))) {
            throw new IOException(dir + ": no " + CONFIG + " (expected a diffusers UNet2DModel folder)");
        }
        UNet2DConfig config = readConfig(d);
        Path w = d.resolve(WEIGHTS);
        if (!Files.isRegularFile(w)) {
            if (Files.isRegularFile(d.resolve(WEIGHTS_BIN))) {
                throw new IOException(d.resolve(WEIGHTS_BIN) + ": PyTorch pickle weights are not supported (loading a "
                        + "pickle can run arbitrary code); convert the folder to safetensors first, e.g. in Python: "
                        + "UNet2DModel.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)");
            }
            throw new IOException(d + ": no " + WEIGHTS);
        }
        return new ModelFolder(d, config, readWeights(w, UNet2DLayout.of(config)));
    }

    /** diffusers' DDPMScheduler config for the schedule the model was trained with. */
    public static LinkedHashMap<String, Object> schedulerConfig(NoiseSchedule schedule, PredictionType prediction) {
        if (schedule.betaSchedule() == null) {
            throw new IllegalArgumentException("a schedule from explicit betas has no diffusers beta_schedule name");
        }
        LinkedHashMap<String, Object> m = new LinkedHashMap<>();
        m.put("_class_name", "DDPMScheduler");
        m.put("num_train_timesteps", (long) schedule.numTrainTimesteps());
        m.put("beta_start", schedule.betaStart());
        m.put("beta_end", schedule.betaEnd());
        m.put("beta_schedule", schedule.betaSchedule().configName());
        m.put("trained_betas", null);
        m.put("variance_type", "fixed_small");
        m.put("clip_sample", true);
        m.put("clip_sample_range", 1.0);
        m.put("prediction_type", prediction.configName());
        m.put("thresholding", false);
        m.put("timestep_spacing", "leading");
        m.put("steps_offset", 0L);
        return m;
    }

    /** The noise schedule a scheduler_config.json describes (DDPMScheduler keys). */
    public static NoiseSchedule readSchedule(Path file) throws IOException {
        try {
            String text = SmallFiles.readText(file);
            JsonFields f = JsonFields.of(Json.parseObjectFromPython(text), null); // the catch below names the file
            return NoiseSchedule.of(BetaSchedule.fromConfigName(f.optString("beta_schedule", "linear")),
                    f.isAbsent("num_train_timesteps") ? 1000 : f.requireInt("num_train_timesteps", 1, 100_000),
                    f.optDouble("beta_start", 0.0001), f.optDouble("beta_end", 0.02));
        } catch (RuntimeException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
    }

    private static void checkScheduler(Path file, Trainer trainer) throws IOException {
        NoiseSchedule s = readSchedule(file);
        if (!Arrays.equals(s.alphasCumprod(), trainer.schedule().alphasCumprod())) {
            throw new IOException(file + ": the checkpoint's noise schedule (" + s + ") differs from the trainer's ("
                    + trainer.schedule() + ")");
        }
        Map<String, Object> m;
        try {
            m = Json.parseObject(SmallFiles.readText(file));
        } catch (RuntimeException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
        if (!trainer.options().prediction().configName().equals(m.get("prediction_type"))) {
            throw new IOException(file + ": prediction_type " + m.get("prediction_type") + ", the trainer has "
                    + trainer.options().prediction().configName());
        }
    }

    private static String metaString(Map<String, String> md, String key, Path file) throws IOException {
        String s = md.get(key);
        if (s == null) throw new IOException(file + ": metadata '" + key + "' is missing");
        return s;
    }

    private static double metaDouble(Map<String, String> md, String key, Path file) throws IOException {
        String s = metaString(md, key, file);
        try {
            return Double.parseDouble(s);
        } catch (NumberFormatException e) {
            throw new IOException(file + ": metadata '" + key + "' = '" + s + "' is not a number", e);
        }
    }

    public static long metaLong(Map<String, String> md, String key, Path file) throws IOException {
        String s = md.get(key);
        if (s == null) throw new IOException(file + ": metadata '" + key + "' is missing");
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new IOException(file + ": metadata '" + key + "' = '" + s + "' is not an integer", e);
        }
    }

    private static float[] readFlat(SafeTensors.Reader r, String name, long n, Path file) throws IOException {
        if (!r.contains(name)) throw new IOException(file + ": missing tensor '" + name + "'");
        if (!Arrays.equals(r.info(name).shapeArray(), new long[] {n})) {
            throw new IOException(file + ": tensor '" + name + "' has shape " + r.info(name).shape() + ", expected [" + n + "]");
        }
        return r.readFloat32(name);
    }

    private static List<SafeTensors.Entry> entries(UNet2DLayout layout, float[] diskFlat) {
        List<SafeTensors.Entry> out = new ArrayList<>();
        for (UNet2DLayout.Param p : layout.params()) {
            int off = Math.toIntExact(p.offset());
            out.add(new SafeTensors.Entry(p.name(), p.shapeLong(),
                    Arrays.copyOfRange(diskFlat, off, off + Math.toIntExact(p.size()))));
        }
        return out;
    }

    /** Writes UTF-8 text atomically: temporary file in the same directory, fsync, rename, directory fsync. */
    static void writeTextAtomic(Path path, String text) throws IOException {
        AtomicFiles.writeString(path, text);
    }
}
