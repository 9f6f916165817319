package io.diffusion4j.schedule;

/** Package-private argument validation shared by the schedule classes. */
final class Checks {
    /** Largest accepted number of training timesteps. */
    static final int MAX_TIMESTEPS = 100_000;

    private Checks() {}

    static void timesteps(int numTrainTimesteps) {
        if (numTrainTimesteps < 1 || numTrainTimesteps > MAX_TIMESTEPS) {
            throw new IllegalArgumentException("numTrainTimesteps must be in [1, " + MAX_TIMESTEPS
                    + "], got " + numTrainTimesteps);
        }
    }

    /** Requires {@code value} finite and in the open interval (0, 1). */
    static void openUnit(String name, double value) {
        if (!(value > 0.0 && value < 1.0)) { // also rejects NaN
            throw new IllegalArgumentException(
                    name + " must be finite and in (0, 1), got " + value);
        }
    }
}
