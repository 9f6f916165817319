package io.diffusion4j.selftest;

import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The cases of one kernel family, drawn from {@code rnd}. {@link #of} maps every family the device
 * backends list (d4j.h's kernel family names) to the class that builds its cases.
 */
@FunctionalInterface
interface FamilyCases {
    List<ParityCase> cases(SplittableRandom rnd, CaseContext ctx);

    Map<String, FamilyCases> FAMILIES = Map.ofEntries(
            Map.entry("rng", (rnd, ctx) -> RngCases.rngCases(rnd)),
            Map.entry("add_noise", DiffusionCases::addNoiseCases),
            Map.entry("diffusion_loss", DiffusionCases::lossCases),
            Map.entry("reverse_step", DiffusionCases::stepCases),
            Map.entry("timestep_embedding", (rnd, ctx) -> EmbeddingCases.embeddingCases(rnd)),
            Map.entry("conv2d", (rnd, ctx) -> ConvCases.convCases(rnd)),
            Map.entry("group_norm", (rnd, ctx) -> NormCases.groupNormCases(rnd)),
            Map.entry("silu", (rnd, ctx) -> NormCases.siluCases(rnd)),
            Map.entry("residual_add", (rnd, ctx) -> NormCases.residualCases(rnd)),
            Map.entry("linear", (rnd, ctx) -> LinearAttentionCases.linearCases(rnd)),
            Map.entry("attention", (rnd, ctx) -> LinearAttentionCases.attentionCases(rnd)),
            Map.entry("grad_norm", (rnd, ctx) -> OptimCases.gradNormCases(rnd)),
            Map.entry("adamw", (rnd, ctx) -> OptimCases.adamwCases(rnd)),
            Map.entry("ema", (rnd, ctx) -> OptimCases.emaCases(rnd)),
            Map.entry("concat", (rnd, ctx) -> ConcatCases.concatCases(rnd)),
            Map.entry("dropout", (rnd, ctx) -> DropoutCases.dropoutCases(rnd)),
            Map.entry("sampler_step", SamplerCases::samplerStepCases),
            Map.entry("x0_threshold", SamplerCases::thresholdCases),
            Map.entry("vlb", VlbCases::vlbCases),
            Map.entry("class_embedding", (rnd, ctx) -> ConditioningCases.classEmbeddingCases(rnd)),
            Map.entry("guidance", (rnd, ctx) -> ConditioningCases.guidanceCases(rnd)),
            Map.entry("renoise", ConditioningCases::renoiseCases));

    /** The cases of {@code family}, or null when the self-test does not know it. */
    static List<ParityCase> of(String family, SplittableRandom rnd, CaseContext ctx) {
        FamilyCases f = FAMILIES.get(family);
        return f == null ? null : f.cases(rnd, ctx);
    }
}
