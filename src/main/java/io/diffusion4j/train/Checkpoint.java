package io.diffusion4j.train;

import io.diffusion4j.io.Json;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.kernels.ConvKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Training checkpoints in the diffusers folder layout:
 * <pre>
 *   DIR/config.json                           UNet2DConfig.toJson()
 *   DIR/diffusion_pytorch_model.safetensors   the parameters, diffusers names, on-disk (OIHW) shapes
 *   DIR/ema/config.json                       the same config (ema/ loads as a model folder itself)
 *   DIR/ema/diffusion_pytorch_model.safetensors  the EMA parameters
 *   DIR/scheduler_config.json                 DDPMScheduler: T, betas, prediction/variance type, clip
 *   DIR/training_state.safetensors            AdamW exp_avg / exp_avg_sq (flat, in the model's device
 *                                             buffer layout) and, as metadata, step, noise seed and
 *                                             offset, sampler state and the options resume must match
 * </pre>
 * Every file is written atomically (temporary file, fsync, rename, directory fsync): an interrupted
 * save leaves each file either old or new. The training state is written last, so a complete new
 * training state implies complete new weights.
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
    private static final String STATE_FORMAT = "diffusion4j-training-state-1";

    private Checkpoint() {}

    /** Writes the trainer's model, EMA, scheduler and optimiser state to {@code dir} (created if needed). */
    public static void save(Path dir, Trainer trainer) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(trainer, "trainer");
        UNet2DLayout layout = trainer.model().layout();
        Files.createDirectories(dir.resolve(EMA_DIR));
        String config = trainer.model().config().toJson();
        Map<String, String> meta = Map.of("format", "pt");
        writeTextAtomic(dir.resolve(CONFIG), config);
        SafeTensors.write(dir.resolve(WEIGHTS), entries(layout, trainer.model().flatParameters()), meta);
        writeTextAtomic(dir.resolve(EMA_DIR).resolve(CONFIG), config);
        SafeTensors.write(dir.resolve(EMA_DIR).resolve(WEIGHTS),
                entries(layout, convert(layout, trainer.emaParameters().toFloatArray(), false)), meta);
        writeTextAtomic(dir.resolve(SCHEDULER), Json.write(schedulerConfig(trainer.schedule(), trainer.options().prediction())));

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
        long n = layout.bufferFloats();
        SafeTensors.write(dir.resolve(TRAINING_STATE), List.of(
                new SafeTensors.Entry("adamw.exp_avg", new long[] {n}, trainer.adamM().toFloatArray()),
                new SafeTensors.Entry("adamw.exp_avg_sq", new long[] {n}, trainer.adamV().toFloatArray())), sm);
    }

    /**
     * Restores a checkpoint written by {@link #save} into a trainer built with the same config, schedule and
     * options (the model's initial parameters are overwritten). Nothing is changed if validation fails.
     */
    public static void load(Path dir, Trainer trainer) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(trainer, "trainer");
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
            if (r.tensors().size() != 2) throw new IOException(statePath + ": expected exactly adamw.exp_avg and adamw.exp_avg_sq");
            m = readFlat(r, "adamw.exp_avg", n, statePath);
            v = readFlat(r, "adamw.exp_avg_sq", n, statePath);
            state = new Trainer.State(metaLong(md, "step", statePath), metaLong(md, "noise_seed", statePath),
                    metaLong(md, "noise_offset", statePath), metaLong(md, "sampler_state", statePath));
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
        trainer.emaParameters().copyFrom(convert(layout, emaWeights, true));
        trainer.adamM().copyFrom(m);
        trainer.adamV().copyFrom(v);
        trainer.restoreState(state);
    }

    /** The model configuration of a checkpoint (or any diffusers UNet2DModel folder). */
    public static UNet2DConfig readConfig(Path dir) throws IOException {
        Path p = dir.resolve(CONFIG);
        try {
            return UNet2DConfig.fromJson(Files.readString(p, StandardCharsets.UTF_8));
        } catch (RuntimeException e) {
            throw new IOException(p + ": " + e.getMessage(), e);
        }
    }

    /**
     * The parameters of a diffusers {@code diffusion_pytorch_model.safetensors} as the host array
     * {@link io.diffusion4j.model.UNet2DModel#loadFlat} takes; every layout tensor must be present with its
     * shape and no other tensor may be. Attention projections may carry the names diffusers wrote before
     * 0.14 ({@code query, key, value, proj_attn}; see {@link UNet2DLayout#currentName}), as diffusers itself
     * accepts them; a tensor present under both its legacy and its current name is refused.
     */
    public static float[] readWeights(Path file, UNet2DLayout layout) throws IOException {
        float[] flat = new float[Math.toIntExact(layout.bufferFloats())];
        try (SafeTensors.Reader r = SafeTensors.open(file)) {
            Map<String, long[]> shapes = new LinkedHashMap<>();
            for (SafeTensors.TensorInfo t : r.tensors()) shapes.put(t.name(), t.shapeArray());
            layout.checkCheckpoint(shapes); // missing, unexpected, doubly named, mis-shaped: all listed
            for (SafeTensors.TensorInfo t : r.tensors()) {
                UNet2DLayout.Param p = layout.resolve(t.name());
                r.readFloat32(t.name(), flat, Math.toIntExact(p.offset()));
            }
        } catch (RuntimeException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
        for (int i = 0; i < flat.length; i++) {
            if (!Float.isFinite(flat[i])) throw new IOException(file + ": non-finite parameter value at flat index " + i);
        }
        return flat;
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
            Map<String, Object> m = Json.parseObject(Files.readString(file, StandardCharsets.UTF_8));
            Object t = m.getOrDefault("num_train_timesteps", 1000L);
            Object bs = m.getOrDefault("beta_schedule", "linear");
            if (!(t instanceof Long tl) || tl < 1 || tl > 100_000) throw new IOException(file + ": bad num_train_timesteps " + t);
            if (!(bs instanceof String bss)) throw new IOException(file + ": beta_schedule must be a string");
            return NoiseSchedule.of(BetaSchedule.fromConfigName(bss), (int) (long) tl,
                    number(m.getOrDefault("beta_start", 0.0001), "beta_start", file),
                    number(m.getOrDefault("beta_end", 0.02), "beta_end", file));
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
            m = Json.parseObject(Files.readString(file, StandardCharsets.UTF_8));
        } catch (RuntimeException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
        if (!trainer.options().prediction().configName().equals(m.get("prediction_type"))) {
            throw new IOException(file + ": prediction_type " + m.get("prediction_type") + ", the trainer has "
                    + trainer.options().prediction().configName());
        }
    }

    private static double number(Object v, String key, Path file) throws IOException {
        if (v instanceof Number n) return n.doubleValue();
        throw new IOException(file + ": " + key + " must be a number, got " + v);
    }

    private static long metaLong(Map<String, String> md, String key, Path file) throws IOException {
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

    /**
     * Converts a flat parameter array between the model's device layout (HWIO convolutions) and the
     * on-disk layout (OIHW), as UNet2DModel does for its own parameters; the EMA lives in a device buffer.
     */
    static float[] convert(UNet2DLayout layout, float[] src, boolean toDevice) {
        float[] out = new float[src.length];
        for (UNet2DLayout.Param p : layout.params()) {
            int off = Math.toIntExact(p.offset());
            int size = Math.toIntExact(p.size());
            int[] s = p.shape();
            if (p.kind() == UNet2DLayout.Kind.CONV3X3 || p.kind() == UNet2DLayout.Kind.CONV1X1) {
                float[] w = Arrays.copyOfRange(src, off, off + size);
                float[] c = toDevice ? ConvKernels.oihwToHwio(w, s[0], s[1], s[2], s[3])
                        : ConvKernels.hwioToOihw(w, s[2], s[3], s[1], s[0]);
                System.arraycopy(c, 0, out, off, size);
            } else {
                System.arraycopy(src, off, out, off, size);
            }
        }
        return out;
    }

    /** Writes UTF-8 text atomically: temporary file in the same directory, fsync, rename, directory fsync. */
    static void writeTextAtomic(Path path, String text) throws IOException {
        Path target = path.toAbsolutePath();
        Path dir = target.getParent();
        Path tmp = dir.resolve("." + target.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        boolean moved = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                ByteBuffer b = ByteBuffer.wrap(text.getBytes(StandardCharsets.UTF_8));
                while (b.hasRemaining()) ch.write(b);
                ch.force(true);
            }
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            moved = true;
            try (FileChannel dc = FileChannel.open(dir, StandardOpenOption.READ)) {
                dc.force(true);
            } catch (IOException | UnsupportedOperationException e) {
                // platforms that cannot sync a directory (the rename is durable there once it returns)
            }
        } finally {
            if (!moved) Files.deleteIfExists(tmp);
        }
    }
}
