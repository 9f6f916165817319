package io.diffusion4j;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.backend.NativeLibraries;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;

/**
 * The entry point of the Java API: an open device (CPU, CUDA GPU or the CUDA simulator) from which pipelines
 * are loaded and training runs started. Everything it opens is released by {@link #close()}, deterministically;
 * use try-with-resources:
 *
 * <pre>{@code
 * try (Diffusion4j d4j = Diffusion4j.open();
 *      DiffusionPipeline pipe = d4j.loadPipeline(Path.of("checkpoints/train"))) {
 *     pipe.sample(SamplerConfig.ddim(50), 4).writePngs(Path.of("out"));
 * }
 * }</pre>
 *
 * <p>The API is this package, {@code io.diffusion4j}; every other package of the jar is internal and may change
 * without notice. Thread-safe: pipelines may be loaded and closed from any thread.
 */
public final class Diffusion4j implements AutoCloseable {
    private final Backend backend;
    private final Device device;
    private final LinkedHashSet<AutoCloseable> open = new LinkedHashSet<>();
    private boolean closed;

    private Diffusion4j(Backend backend) {
        this.backend = backend;
        this.device = backend.kind();
    }

    /**
     * Opens the best device here: {@link Device#CUDA} when the NVIDIA driver loads (r580 series or newer) and a GPU
     * is visible, else {@link Device#CPU}, logging at INFO (System.Logger {@code io.diffusion4j.backend.Backend})
     * why CUDA was passed over.
     *
     * @return the open instance
     * @throws DeviceUnavailableException if no device can be used here, e.g. the native libraries cannot be loaded
     *     (the message says why)
     */
    public static Diffusion4j open() {
        try {
            return new Diffusion4j(Backend.openBest());
        } catch (D4jException.BackendUnavailableException | NativeLibraries.NativeLibrariesUnavailableException e) {
            throw new DeviceUnavailableException(Device.CPU, e.getMessage(), e);
        }
    }

    /**
     * Opens a given device; never another one in its place.
     *
     * @param device the device
     * @return the open instance
     * @throws DeviceUnavailableException if the device cannot be used here (the message says why)
     */
    public static Diffusion4j open(Device device) {
        Objects.requireNonNull(device, "device");
        try {
            return new Diffusion4j(Backend.open(device));
        } catch (D4jException.BackendUnavailableException | NativeLibraries.NativeLibrariesUnavailableException e) {
            throw new DeviceUnavailableException(device, e.getMessage(), e);
        }
    }

    /**
     * The open device.
     *
     * @return the device
     */
    public Device device() {
        return device;
    }

    /**
     * How the device describes itself, e.g. {@code CPU, 2 threads, widest SIMD path avx512f}.
     *
     * @return the description
     */
    public String description() {
        return backend.description();
    }

    /**
     * Sets the number of CPU worker threads ({@link Device#CPU} only; ignored by the others). Results never
     * depend on it.
     *
     * @param threads at least 1
     * @throws IllegalArgumentException if {@code threads < 1}
     */
    public void setThreads(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        backend.setThreads(threads);
    }

    /**
     * Sets the number format the convolutions, linear layers and attention of everything this instance runs
     * compute in, for later calls (see {@link Precision}): {@link Precision#TF32} and {@link Precision#BF16} use the
     * GPU's tensor cores, rounding the inputs of each product and accumulating in FP32; tensors, weights,
     * optimiser state and checkpoints stay FP32. A device opens at {@link Precision#FP32}; the command line starts
     * from {@link Precision#defaultFor(Device)} (TF32 on a GPU).
     *
     * @param precision the precision
     * @throws UnsupportedOperationException if the device cannot compute in it ({@link Device#CPU} computes FP32
     *     only); the precision is then unchanged
     */
    public void setPrecision(Precision precision) {
        Objects.requireNonNull(precision, "precision");
        if (!precision.supportedOn(device)) {
            throw new UnsupportedOperationException("the " + device.cliName() + " device computes fp32 only; precision "
                    + precision.cliName() + " needs a GPU device");
        }
        backend.setPrecision(precision);
    }

    /**
     * The number format the matrix operations compute in (see {@link #setPrecision}).
     *
     * @return the precision
     */
    public Precision precision() {
        return backend.precision();
    }

    /**
     * Loads a pipeline with the EMA weights when the checkpoint has them (see
     * {@link #loadPipeline(Path, boolean)}).
     *
     * @param dir the checkpoint or diffusers folder
     * @return the pipeline, open until closed or until this instance is closed
     * @throws IOException if the folder is not a loadable checkpoint (the message names the file and problem)
     */
    public DiffusionPipeline loadPipeline(Path dir) throws IOException {
        return loadPipeline(dir, true);
    }

    /**
     * Loads a pipeline, diffusers' {@code DDPMPipeline.from_pretrained}: from a checkpoint of the {@code train}
     * command or {@link TrainingRun#save} ({@code config.json}, {@code diffusion_pytorch_model.safetensors},
     * {@code ema/}, {@code scheduler_config.json}), a diffusers {@code UNet2DModel} folder with a
     * {@code scheduler_config.json} beside it, or a diffusers pipeline folder ({@code unet/} and
     * {@code scheduler/}). Weights are safetensors (float32, float16, bfloat16 or float64); checkpoints from
     * diffusers before 0.14 (legacy attention names) load too.
     *
     * @param dir the folder
     * @param useEma true: the EMA weights ({@code ema/}) when present, else the model's; false: the model's
     * @return the pipeline, open until closed or until this instance is closed
     * @throws IOException if the folder is not a loadable checkpoint (the message names the file and problem)
     */
    public DiffusionPipeline loadPipeline(Path dir, boolean useEma) throws IOException {
        Objects.requireNonNull(dir, "dir");
        checkOpen();
        DiffusionPipeline p = DiffusionPipeline.load(this, dir, useEma);
        register(p);
        return p;
    }

    /**
     * Starts describing a training run on this device; {@link TrainingRun.Builder#build()} creates it.
     *
     * @return a builder with the defaults of the {@code train} command
     */
    public TrainingRun.Builder newTrainingRun() {
        checkOpen();
        return new TrainingRun.Builder(this);
    }

    Backend backend() {
        return backend;
    }

    synchronized void register(AutoCloseable child) {
        if (closed) {
            try {
                child.close();
            } catch (Exception e) {
                throw new IllegalStateException("closing after a concurrent close: " + e.getMessage(), e);
            }
            throw new IllegalStateException("Diffusion4j is closed");
        }
        open.add(child);
    }

    synchronized void unregister(AutoCloseable child) {
        open.remove(child);
    }

    synchronized void checkOpen() {
        if (closed) throw new IllegalStateException("Diffusion4j is closed");
    }

    /**
     * Closes every pipeline and training run still open (newest first; a pipeline's close waits for its running
     * sample calls), then releases the device. Idempotent.
     */
    @Override
    public void close() {
        List<AutoCloseable> children;
        synchronized (this) {
            if (closed) return;
            closed = true;
            children = new ArrayList<>(open);
        }
        RuntimeException failure = null;
        for (int i = children.size() - 1; i >= 0; i--) {
            try {
                children.get(i).close();
            } catch (Exception e) {
                if (failure == null) failure = new IllegalStateException("closing " + children.get(i) + ": " + e.getMessage(), e);
                else failure.addSuppressed(e);
            }
        }
        synchronized (this) {
            open.clear();
        }
        try {
            backend.close();
        } catch (RuntimeException e) {
            if (failure == null) failure = e;
            else failure.addSuppressed(e);
        }
        if (failure != null) throw failure;
    }

    /**
     * A one-line description, e.g. {@code Diffusion4j[cpu: CPU, 2 threads, ...]}.
     *
     * @return the description
     */
    @Override
    public String toString() {
        return "Diffusion4j[" + device.cliName() + (backend.isClosed() ? ", closed" : "") + "]";
    }
}
