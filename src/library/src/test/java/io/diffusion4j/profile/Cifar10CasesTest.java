package io.diffusion4j.profile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The per-family calls at google/ddpm-cifar10-32's dimensions: every family the profiling backend lists has
 * some, and a few cheap families counted with one block per launch give rows of their own kernels.
 */
class Cifar10CasesTest {
    static Backend prof;

    @BeforeAll
    static void open() {
        prof = Backend.openProfiling();
    }

    @AfterAll
    static void close() {
        prof.close();
    }

    @Test
    void everyFamilyTheProfilingBackendListsHasACifar10CaseAndNoCaseNamesAnother() {
        Set<String> covered = Cifar10Cases.all().stream().map(Cifar10Cases.Case::family).collect(Collectors.toSet());
        for (String family : prof.kernelFamilies()) {
            assertFalse(Cifar10Cases.of(family).isEmpty(), "no cifar10 case for kernel family " + family);
        }
        assertTrue(prof.kernelFamilies().containsAll(covered), "cases of unknown families: " + covered);
        assertEquals(35_746_307L, Cifar10Cases.PARAMETERS, "google/ddpm-cifar10-32's parameter count (diffusers')");
    }

    @Test
    void cheapFamiliesGiveRowsOfTheirOwnKernels() {
        List<String> cheap = List.of("rng", "timestep_embedding", "reverse_step", "x0_threshold", "add_noise");
        try (NativeSchedule schedule = NativeSchedule.of(NoiseSchedule.defaults())) {
            for (String family : cheap) {
                for (Cifar10Cases.Case c : Cifar10Cases.of(family)) {
                    ProfiledCase row = Cifar10Cases.run(prof, schedule, c, 1);
                    String what = family + " " + c.call();
                    assertEquals(family, row.family(), what);
                    assertEquals(prof.selectedKernel(family), row.variant(), what);
                    assertEquals(c.shape(), row.shape(), what);
                    assertFalse(row.launches().isEmpty(), what + " launched nothing");
                    for (KernelProfile k : row.launches()) {
                        String f = KernelFamilies.of(k.kernel());
                        assertTrue(f.equals(family) || f.equals("fill"), k.kernel() + " of " + what + " is listed under " + f);
                        assertTrue(k.blocks() > 0 && k.blocksCounted() >= 1 && k.blocksCounted() <= k.blocks(),
                                what + ": " + k.blocksCounted() + " of " + k.blocks() + " blocks");
                    }
                }
            }
        }
    }

    @Test
    void everyVariantIsCountedAndTheSelectionRestored() {
        // diffusion_loss has two variants on every CUDA build; select the second to see it come back
        List<String> variants = prof.kernelVariants("diffusion_loss");
        assertTrue(variants.size() >= 2, variants.toString());
        String before = prof.selectedKernel("diffusion_loss");
        prof.selectKernel("diffusion_loss", variants.get(1));
        try {
            List<String> started = new ArrayList<>();
            List<ProfiledCase> rows = Cifar10Cases.profile(prof, true, 1, "diffusion_loss"::equals,
                    (f, v) -> started.add(f + " " + v));
            assertEquals(variants.stream().map(v -> "diffusion_loss " + v).toList(), started);
            assertEquals(variants, rows.stream().map(ProfiledCase::variant).distinct().toList());
            assertTrue(rows.stream().allMatch(r -> !r.launches().isEmpty()), "every row has launches");
            assertEquals(variants.get(1), prof.selectedKernel("diffusion_loss"), "the selection is restored");
            List<ProfiledCase> defaults = Cifar10Cases.profile(prof, false, 1, "diffusion_loss"::equals, (f, v) -> {});
            assertEquals(List.of(variants.get(0)), defaults.stream().map(ProfiledCase::variant).distinct().toList());
        } finally {
            prof.selectKernel("diffusion_loss", before);
        }
    }
}
