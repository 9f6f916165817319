package io.diffusion4j.profile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.Device;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.selftest.SelfTest;
import io.diffusion4j.train.ProceduralDataset;
import io.diffusion4j.train.Trainer;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Assertions;

/** Whole-step profiles, the kernel-to-family table and the counters' API on the profiling simulator. */
class StepProfilesTest {
    static Backend prof;
    /** Relative difference allowed between a sampled and a full count of a launch with edge blocks. */
    static final double TOLERANCE = 0.05;

    @BeforeAll
    static void open() {
        prof = Backend.openProfiling();
    }

    @AfterAll
    static void close() {
        prof.close();
    }

    /** A small UNet with every layer kind: resnets, attention, down- and upsampling. */
    static UNet2DConfig tiny() {
        return UNet2DConfig.builder().sampleSize(8).inChannels(3).outChannels(3).blockOutChannels(16, 32)
                .layersPerBlock(1).downBlockTypes(List.of("DownBlock2D", "AttnDownBlock2D"))
                .upBlockTypes(List.of("AttnUpBlock2D", "UpBlock2D")).normNumGroups(8).build();
    }

    @Test
    void trainingStepProfileLaunchesWhatTrainerStepLaunches() {
        UNet2DConfig cfg = tiny();
        int batch = 3;
        List<String> profiled = StepProfiles.trainingStep(prof, cfg, batch, 0).stream().map(KernelProfile::kernel).toList();
        List<String> trained;
        try (UNet2DModel model = new UNet2DModel(prof, cfg, 5L);
             Trainer t = new Trainer(model, NoiseSchedule.defaults(), ProceduralDataset.forModel(cfg, 3L),
                     Trainer.Options.defaults(batch, 9L))) {
            trained = KernelCounters.count(prof, 0, b -> t.step()).stream().map(KernelProfile::kernel).toList();
        }
        assertEquals(trained, profiled);
        assertTrue(profiled.contains("attn_bwd_rows_kernel") && profiled.contains("adamw_kernel"), profiled.toString());
    }

    @Test
    void ddimStepIsTheModelForwardAndOneStepKernel() {
        List<KernelProfile> launches = StepProfiles.ddimStep(prof, tiny(), 2, 0);
        // plain DDIM (no thresholding) is the reverse_step family's fused step
        assertEquals("reverse_step_kernel", launches.get(launches.size() - 1).kernel());
        assertEquals(1, launches.stream().filter(k -> k.kernel().equals("reverse_step_kernel")).count());
        assertTrue(launches.stream().anyMatch(k -> k.kernel().equals("conv_fwd_kernel")));
        assertTrue(launches.stream().noneMatch(k -> k.kernel().startsWith("rng_")), "no noise drawn: eta = 0, initial noise given");
    }

    @Test
    void everyLaunchedKernelIsListedUnderTheFamilyThatLaunchedIt() {
        List<ProfiledCase> cases = SelfTest.profile(prof, null, SelfTest.Options.defaults().withRepeats(0), 0);
        assertTrue(cases.size() > 50, "cases: " + cases.size());
        for (ProfiledCase c : cases) {
            assertNotEquals(0, c.launches().size(), c.family() + " " + c.call() + " launched nothing");
            for (KernelProfile k : c.launches()) {
                String f = KernelFamilies.of(k.kernel());
                // fill is the utility every family may use to clear an accumulator
                assertTrue(f.equals(c.family()) || f.equals("fill"), k.kernel() + " of " + c.family() + " is listed under " + f);
            }
        }
    }

    @Test
    void sampledCountsStayCloseToTheFullCountOnAMidSizeConvolution() {
        // a 3x3 convolution of 4x16x16x32 -> 32: edge blocks see more padding than interior ones, so the
        // sample (every k-th block) is close to, not equal to, the full count (equality on a uniform grid
        // is ProfileCountersTest's); the printed lines show how close
        List<KernelProfile> full = StepProfiles.convForward(prof, 4, 16, 16, 32, 32, 0);
        List<KernelProfile> sampled = StepProfiles.convForward(prof, 4, 16, 16, 32, 32, 4);
        assertEquals(1, full.size());
        KernelProfile f = full.get(0), s = sampled.get(0);
        assertTrue(s.blocksCounted() < s.blocks(), "the sample is a sample: " + s.blocksCounted() + " of " + s.blocks());
        assertTrue(f.complete());
        String[] names = {"gld requests", "gld sectors", "fp32 FMAs", "smem wavefronts", "unique bytes"};
        double[][] pairs = {{f.gldRequests(), s.gldRequests()}, {f.gldSectors(), s.gldSectors()},
            {f.fp32Fma(), s.fp32Fma()}, {f.smemWavefronts(), s.smemWavefronts()}, {f.uniqueBytes(), s.uniqueBytes()}};
        for (int i = 0; i < names.length; i++) {
            System.out.printf(java.util.Locale.ROOT, "conv 4x16x16x32 %s: full %.0f, sampled (%d of %d blocks) %.0f%n",
                    names[i], pairs[i][0], s.blocksCounted(), s.blocks(), pairs[i][1]);
            assertEquals(pairs[i][0], pairs[i][1], TOLERANCE * pairs[i][0], "full vs sampled " + names[i]);
        }
    }

    @Test
    void otherBackendsHaveNoCounters() {
        try (Backend cpu = Backend.open(Device.CPU)) {
            D4jException e = Assertions.assertThrows(D4jException.class, () -> KernelCounters.count(cpu, 0, b -> {}));
            assertTrue(e.getMessage().contains("no kernel counters"), e.getMessage());
        }
    }
}
