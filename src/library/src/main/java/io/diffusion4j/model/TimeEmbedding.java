package io.diffusion4j.model;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.NormKernels;
import io.diffusion4j.tensor.Tensor;

/**
 * diffusers' Timesteps + TimestepEmbedding: {@code emb = linear_2(silu(linear_1(sinusoidal(t))))}, and
 * {@code silu(emb)}, which every ResnetBlock2D projects with its own {@code time_emb_proj}: computed once here
 * ({@link #project}). The resnets' backward passes accumulate the gradient of {@code silu(emb)}
 * ({@link #projectBackward}), which {@link #backward} then carries to the two linear layers.
 *
 * <p>A class-conditional model (num_class_embeds) adds {@code class_embedding(class_labels)}, a row of its
 * embedding table per sample, to {@code emb} before the SiLU, as diffusers' UNet2DModel does; the backward adds
 * the rows' gradients back into the table.
 */
final class TimeEmbedding {
    /** diffusers' get_timestep_embedding defaults used by UNet2DModel's Timesteps module. */
    private static final float TIME_SCALE = 1f;
    private static final float TIME_MAX_PERIOD = 10000f;

    private final UNet2DConfig config;
    private final ParameterStore.WeightBias lin1, lin2;
    private final Tensor classTable, classTableGrad; // null for an unconditional model
    private int[] labels; // the last forward's, for the backward
    private Tensor tproj, e1, e1s, emb, embS;
    private Tensor dEmbS, dEmbTmp, dEmb, de1s, de1;

    TimeEmbedding(ParameterStore ps, UNet2DConfig config) {
        this.config = config;
        lin1 = ps.weightBias("time_embedding.linear_1");
        lin2 = ps.weightBias("time_embedding.linear_2");
        classTable = config.isClassConditional() ? ps.param("class_embedding.weight") : null;
        classTableGrad = config.isClassConditional() ? ps.grad("class_embedding.weight") : null;
    }

    void alloc(ActivationArena arena, int n) {
        int c0 = config.timestepInputDim();
        int t = config.timeEmbedDim();
        tproj = arena.act(n, c0);
        e1 = arena.act(n, t);
        e1s = arena.act(n, t);
        emb = arena.act(n, t);
        embS = arena.act(n, t);
        dEmbS = arena.bwd(n, t);
        dEmbTmp = arena.bwd(n, t);
        dEmb = arena.bwd(n, t);
        de1s = arena.bwd(n, t);
        de1 = arena.bwd(n, t);
    }

    /** The embedding of one timestep (and, for a class-conditional model, one class label) per sample. */
    void forward(Backend backend, float[] timesteps, int[] classLabels) {
        DiffusionKernels.timestepEmbedding(backend, timesteps, config.timestepInputDim(), config.flipSinToCos(),
                (float) config.freqShift(), TIME_SCALE, TIME_MAX_PERIOD, tproj);
        LinearKernels.linear(tproj, lin1.w(), lin1.b(), e1);
        NormKernels.silu(e1, e1s);
        LinearKernels.linear(e1s, lin2.w(), lin2.b(), emb);
        if (classTable != null) {
            labels = classLabels.clone();
            ConditioningKernels.classEmbeddingForward(classTable, labels, emb);
        }
        NormKernels.silu(emb, embS);
    }

    /** {@code out = linear(silu(emb), w, b)}: a resnet's time_emb_proj. */
    void project(Tensor w, Tensor b, Tensor out) {
        LinearKernels.linear(embS, w, b, out);
    }

    /** Clears the gradient the resnets accumulate; before they run backward. */
    void zeroGradient() {
        dEmbS.fill(0f);
    }

    /** The backward of {@link #project}: accumulates dw, db and the gradient of silu(emb). */
    void projectBackward(Tensor w, Tensor dOut, Tensor dw, Tensor db) {
        LinearKernels.linearBackward(embS, w, dOut, dEmbTmp, dw, db);
        NormKernels.residualAdd(dEmbS, dEmbTmp, 1f, dEmbS);
    }

    /** Accumulates the gradients of linear_1 and linear_2 (after every resnet's backward). */
    void backward() {
        NormKernels.siluBackward(dEmbS, emb, dEmb);
        if (classTable != null) ConditioningKernels.classEmbeddingBackward(dEmb, labels, classTableGrad);
        LinearKernels.linearBackward(e1s, lin2.w(), dEmb, de1s, lin2.dw(), lin2.db());
        NormKernels.siluBackward(de1s, e1, de1);
        LinearKernels.linearBackward(tproj, lin1.w(), de1, null, lin1.dw(), lin1.db());
    }
}
