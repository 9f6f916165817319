package io.diffusion4j.serve;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.train.CheckpointFiles;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Map;
import java.util.Objects;

/**
 * A model the server samples from: its name, its weights on the device (loaded once), its noise schedule and
 * its scheduler_config.json (from which each request's scheduler is built as {@code sample} builds it) and, for
 * a class-conditional model, its classes (class_labels.json, read as {@code sample} reads it).
 * Closed by the server after the worker has released every workspace over it.
 */
public final class ServedModel implements AutoCloseable {
    private final String name;
    private final UNet2DModel model;
    private final NoiseSchedule schedule;
    private final Map<String, Object> schedulerConfig;
    private final ClassLabels classes;

    /** Takes ownership of {@code model}; a class-conditional model gets unnamed classes without a null class. */
    public ServedModel(String name, UNet2DModel model, NoiseSchedule schedule, Map<String, Object> schedulerConfig) {
        this(name, model, schedule, schedulerConfig, null);
    }

    /**
     * Takes ownership of {@code model}.
     *
     * @param classes a class-conditional model's classes (null: {@link ClassLabels#unnamed}, no null class); must be
     *     null for an unconditional model
     */
    public ServedModel(String name, UNet2DModel model, NoiseSchedule schedule, Map<String, Object> schedulerConfig,
                       ClassLabels classes) {
        this.name = Objects.requireNonNull(name, "name");
        this.model = Objects.requireNonNull(model, "model");
        this.schedule = Objects.requireNonNull(schedule, "schedule");
        this.schedulerConfig = Collections.unmodifiableMap(Objects.requireNonNull(schedulerConfig, "schedulerConfig"));
        UNet2DConfig c = model.config();
        if (c.inChannels() != c.outChannels()) {
            throw new IllegalArgumentException("model '" + name + "' maps " + c.inChannels() + " to " + c.outChannels()
                    + " channels; sampling needs equal counts");
        }
        if (c.inChannels() != 1 && c.inChannels() != 3) {
            throw new IllegalArgumentException("model '" + name + "' has " + c.inChannels()
                    + " channels; the server returns PNGs, which need 1 or 3");
        }
        if (!c.isClassConditional() && classes != null) {
            throw new IllegalArgumentException("model '" + name + "' is unconditional; it has no classes");
        }
        // the prepared convolution weights made now: the memory a served model holds is there from the start
        model.prepareWeights(c.sampleHeight(), c.sampleWidth());
        if (c.isClassConditional() && classes == null) classes = ClassLabels.unnamed(c.numClassEmbeds());
        if (classes != null) {
            int rows = classes.names().size() + (classes.hasNullClass() ? 1 : 0);
            if (rows != c.numClassEmbeds() || (classes.hasNullClass() && classes.nullClass() != classes.names().size())) {
                throw new IllegalArgumentException("model '" + name + "': " + classes.names().size() + " classes"
                        + (classes.hasNullClass() ? " and null class " + classes.nullClass() : "")
                        + " do not match num_class_embeds " + c.numClassEmbeds());
            }
        }
        this.classes = classes;
    }

    /**
     * Loads a checkpoint folder (ours or diffusers', as {@code sample --checkpoint} accepts; EMA weights when
     * present unless {@code noEma}) onto {@code backend}.
     */
    public static ServedModel load(String name, Path dir, boolean noEma, Backend backend) throws IOException {
        CheckpointFiles loc = CheckpointFiles.locate(dir, noEma);
        UNet2DConfig config = Checkpoint.readConfig(loc.modelDir());
        NoiseSchedule schedule = Checkpoint.readSchedule(loc.schedulerConfig());
        Map<String, Object> cfg = loc.readSchedulerConfig();
        ClassLabels classes = ClassLabels.forModel(config, loc.modelDir()); // as sample reads them
        float[] weights = Checkpoint.readWeights(loc.weights(), UNet2DLayout.of(config));
        UNet2DModel m = UNet2DModel.forInference(backend, config); // the weights alone: no gradient buffer
        try {
            m.loadFlat(weights);
            return new ServedModel(name, m, schedule, cfg, classes);
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    public String name() {
        return name;
    }

    /** The model holding the weights (read only; inference instances are made from it). */
    public UNet2DModel model() {
        return model;
    }

    public NoiseSchedule schedule() {
        return schedule;
    }

    /** The parsed scheduler_config.json (unmodifiable). */
    public Map<String, Object> schedulerConfig() {
        return schedulerConfig;
    }

    /** A class-conditional model's classes (names and null class), or null for an unconditional model. */
    public ClassLabels classes() {
        return classes;
    }

    /** Whether requests may use classifier-free guidance: the model is class-conditional with a null class. */
    public boolean guidable() {
        return classes != null && classes.hasNullClass();
    }

    public int channels() {
        return model.config().inChannels();
    }

    public int height() {
        return model.config().sampleHeight();
    }

    public int width() {
        return model.config().sampleWidth();
    }

    /** Floats of one image. */
    public long imageFloats() {
        return (long) channels() * height() * width();
    }

    @Override
    public void close() {
        model.close();
    }
}
