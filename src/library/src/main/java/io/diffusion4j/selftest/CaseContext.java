package io.diffusion4j.selftest;

import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;

/** What the schedule-dependent families share: the noise schedule and its native handle. */
record CaseContext(NoiseSchedule schedule, NativeSchedule handle) {
    int steps() {
        return schedule.numTrainTimesteps();
    }
}
