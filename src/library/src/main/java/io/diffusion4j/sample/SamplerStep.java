package io.diffusion4j.sample;

/**
 * One step of a sampling plan: the model is evaluated at {@code timestep}, the update goes to
 * {@code prevTimestep} (-1: past the first training timestep, i.e. alphas_cumprod 1 or the scheduler's final
 * value), and a second-order DPM-Solver++ step also uses the x0 prediction made at {@code lastTimestep}
 * (-1: first order, and always -1 for DDPM and DDIM).
 */
public record SamplerStep(int timestep, int prevTimestep, int lastTimestep) {}
