package io.diffusion4j.bench.runtimes;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.nio.file.Path;

/**
 * diffusion4j on its CPU backend: the model folder read as a service reads it ({@link Checkpoint#readModelFolder},
 * {@link UNet2DModel#forInference}, {@link UNet2DModel#loadFlat}); per call the sample is copied into a device tensor
 * the instance keeps (re-allocated when the batch changes) and the output copied out.
 */
final class D4jForward implements Forward {
    private final Backend backend;
    private final UNet2DModel model;
    private final int c, h, w;
    private Tensor x;
    private int xBatch = -1;

    D4jForward(Backend backend, Path modelDir) throws IOException {
        this.backend = backend;
        Checkpoint.ModelFolder folder = Checkpoint.readModelFolder(modelDir);
        model = UNet2DModel.forInference(backend, folder.config());
        model.loadFlat(folder.weights());
        c = folder.config().inChannels();
        h = folder.config().sampleHeight();
        w = folder.config().sampleWidth();
    }

    @Override
    public String name() {
        return "diffusion4j";
    }

    @Override
    public String describe() {
        return backend.description() + ", precision " + backend.precision().cliName();
    }

    @Override
    public boolean nhwc() {
        return true;
    }

    @Override
    public float[] run(float[] sample, float[] timesteps) {
        int n = timesteps.length;
        if (n != xBatch) {
            if (x != null) x.close();
            x = Tensor.allocate(backend, DType.FLOAT32, n, h, w, c);
            xBatch = n;
        }
        x.copyFrom(sample);
        return model.forward(x, timesteps).toFloatArray();
    }

    @Override
    public void close() {
        if (x != null) x.close();
        model.close();
    }
}
