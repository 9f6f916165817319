package io.diffusion4j.bench.runtimes;

import ai.djl.Device;
import ai.djl.MalformedModelException;
import ai.djl.Model;
import ai.djl.engine.Engine;
import ai.djl.inference.Predictor;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.translate.NoopTranslator;
import ai.djl.translate.TranslateException;
import java.io.IOException;
import java.nio.file.Path;

/**
 * PyTorch through DJL: the TorchScript {@code unet.pt} loaded as a DJL {@link Model} on the CPU and called through a
 * {@link Predictor} with DJL's {@link NoopTranslator} (NDList in, NDList out). Per call the input arrays are copied
 * into tensors of a per-call NDManager and the output copied out by {@code toFloatArray}.
 *
 * <p>The thread counts must be set before the engine starts: {@link #configure} sets DJL's system properties for
 * them, and must run before anything touches DJL.
 */
final class DjlForward implements Forward {
    private final Model model;
    private final Predictor<NDList, NDList> predictor;
    private final int c, h, w;

    /** DJL's PyTorch engine reads these when it starts (intra-op threads, inter-op threads). */
    static void configure(int threads) {
        System.setProperty("ai.djl.pytorch.num_threads", Integer.toString(threads));
        System.setProperty("ai.djl.pytorch.num_interop_threads", "1");
    }

    DjlForward(Path exportDir, int c, int h, int w) throws IOException, MalformedModelException {
        this.c = c;
        this.h = h;
        this.w = w;
        model = Model.newInstance("unet", Device.cpu(), "PyTorch");
        model.load(exportDir, "unet"); // unet.pt
        predictor = model.newPredictor(new NoopTranslator());
    }

    @Override
    public String name() {
        return "DJL";
    }

    @Override
    public String describe() {
        Engine e = Engine.getEngine("PyTorch");
        return "PyTorch " + e.getVersion() + " (TorchScript) through DJL " + Engine.getDjlVersion() + ", "
                + JniUtils.getNumThreads() + " intra-op threads, " + JniUtils.getNumInteropThreads() + " inter-op, graph executor "
                + "optimisation " + (Boolean.parseBoolean(System.getProperty("ai.djl.pytorch.graph_optimizer", "true")) ? "on" : "off")
                + ", autograd " + (JniUtils.isGradMode() ? "on" : "off");
    }

    @Override
    public boolean nhwc() {
        return false;
    }

    @Override
    public float[] run(float[] sample, float[] timesteps) {
        int n = timesteps.length;
        try (NDManager m = model.getNDManager().newSubManager()) {
            NDList in = new NDList(m.create(sample, new Shape(n, c, h, w)), m.create(timesteps));
            NDList out = predictor.predict(in);
            try {
                return out.get(0).toFloatArray();
            } finally {
                out.close();
            }
        } catch (TranslateException e) {
            throw new IllegalStateException("DJL: " + e.getMessage(), e);
        }
    }

    @Override
    public void close() {
        predictor.close();
        model.close();
    }
}
