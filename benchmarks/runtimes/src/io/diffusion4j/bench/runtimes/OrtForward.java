package io.diffusion4j.bench.runtimes;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import java.nio.FloatBuffer;
import java.nio.file.Path;
import java.util.Map;

/**
 * ONNX Runtime's Java API on its default (CPU) execution provider: one session over {@code unet.onnx}, all graph
 * optimisations, sequential execution, {@code threads} intra-op threads. Per call the input arrays are wrapped and
 * copied in by {@link OnnxTensor#createTensor}, and the output copied out by {@link OnnxTensor#getFloatBuffer}.
 */
final class OrtForward implements Forward {
    private final OrtEnvironment env;
    private final OrtSession session;
    private final int c, h, w;
    private final int threads;

    OrtForward(Path onnx, int c, int h, int w, int threads) throws OrtException {
        this.c = c;
        this.h = h;
        this.w = w;
        this.threads = threads;
        env = OrtEnvironment.getEnvironment();
        try (OrtSession.SessionOptions o = new OrtSession.SessionOptions()) {
            o.setIntraOpNumThreads(threads);
            o.setInterOpNumThreads(1);
            o.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
            o.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            session = env.createSession(onnx.toString(), o);
        }
    }

    @Override
    public String name() {
        return "ONNX Runtime";
    }

    @Override
    public String describe() {
        return "ONNX Runtime " + env.getVersion() + " (Java API, CPU execution provider), " + threads
                + " intra-op threads, 1 inter-op, graph optimisation ALL";
    }

    @Override
    public boolean nhwc() {
        return false;
    }

    @Override
    public float[] run(float[] sample, float[] timesteps) {
        int n = timesteps.length;
        try (OnnxTensor x = OnnxTensor.createTensor(env, FloatBuffer.wrap(sample), new long[] {n, c, h, w});
             OnnxTensor t = OnnxTensor.createTensor(env, FloatBuffer.wrap(timesteps), new long[] {n});
             OrtSession.Result r = session.run(Map.of("sample", x, "timestep", t))) {
            FloatBuffer fb = ((OnnxTensor) r.get(0)).getFloatBuffer();
            // a fresh heap buffer holding the copy: its array is the output, no second copy
            if (fb.hasArray() && fb.arrayOffset() == 0 && fb.position() == 0 && fb.array().length == fb.remaining()) {
                return fb.array();
            }
            float[] out = new float[fb.remaining()];
            fb.get(out);
            return out;
        } catch (OrtException e) {
            throw new IllegalStateException("ONNX Runtime: " + e.getMessage(), e);
        }
    }

    @Override
    public void close() {
        try {
            session.close();
        } catch (OrtException e) {
            throw new IllegalStateException(e);
        }
    }
}
