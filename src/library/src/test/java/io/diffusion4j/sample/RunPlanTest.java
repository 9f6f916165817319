package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The count of model calls a caller checks before building an inpainting plan is the built plan's. */
class RunPlanTest {
    @Test
    void inpaintingModelCallsMatchTheBuiltPlan() {
        for (int n = 1; n <= 40; n++) {
            List<SamplerStep> plan = new ArrayList<>();
            for (int i = 0; i < n; i++) plan.add(new SamplerStep(10 * (n - i), i == n - 1 ? -1 : 10 * (n - i - 1), -1));
            for (int jl = 1; jl <= n + 2; jl++) {
                for (int jn = 1; jn <= 4; jn++) {
                    RunPlan p = RunPlan.inpainting(plan, jl, jn);
                    assertEquals(p.modelCalls(), RunPlan.inpaintingModelCalls(n, jl, jn), "n " + n + " jl " + jl + " jn " + jn);
                    assertEquals(2 * p.modelCalls() - n, p.ops().size(), "every extra model call follows one jump step");
                }
            }
        }
    }
}
