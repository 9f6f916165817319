package io.diffusion4j;

/** The reverse-process samplers, with diffusers' semantics and the names of its scheduler classes. */
public enum SamplerType {
    /** {@code DDPMScheduler}: ancestral sampling over all training timesteps or a respaced subset. */
    DDPM("ddpm"),
    /** {@code DDIMScheduler}: deterministic with eta 0, ancestral-like noise with eta &gt; 0. */
    DDIM("ddim"),
    /** {@code DPMSolverMultistepScheduler} with algorithm {@code dpmsolver++}, order 2 (DPM-Solver++ 2M). */
    DPM_SOLVER_PLUS_PLUS("dpmsolver++");

    private final String cliName;

    SamplerType(String cliName) {
        this.cliName = cliName;
    }

    /**
     * The name the {@code sample} command's {@code --sampler} option uses.
     *
     * @return {@code "ddpm"}, {@code "ddim"} or {@code "dpmsolver++"}
     */
    public String cliName() {
        return cliName;
    }
}
