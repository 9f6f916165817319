package io.diffusion4j.selftest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.backend.VariantRun;
import io.diffusion4j.Device;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.selftest.ParityEngine.FamilyPlan;
import io.diffusion4j.testutil.DeviceBackends;
import io.diffusion4j.testutil.OnDevicesExtension;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Every case of the self-test's parity engine as its own JUnit test: device (cuda, cuda-sim) x kernel
 * family x variant x case, each against the CPU backend with the engine's tolerances ({@link SelfTest}).
 * A device that cannot run here gives one skipped test with its reason. Named *ParityTest so the ASan
 * execution of the simulator runs it too. Inputs are fresh on every run; the seed is in every container
 * name and failure message, so a failure can be replayed with {@code Options.withSeed}.
 */
@ExtendWith(OnDevicesExtension.class)
class KernelParityTest {
    static Backend cpu;
    static NativeSchedule schedule;
    static CaseContext ctx;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
        NoiseSchedule s = NoiseSchedule.defaults();
        schedule = NativeSchedule.of(s);
        ctx = new CaseContext(s, schedule);
    }

    @AfterAll
    static void close() {
        if (schedule != null) schedule.close();
        if (cpu != null) cpu.close();
    }

    @TestFactory
    List<DynamicNode> everyCaseOfEveryFamilyMatchesCpu(DeviceBackends devices) {
        List<DynamicNode> perDevice = new ArrayList<>();
        for (Device kind : List.of(Device.CUDA, Device.CUDA_SIM)) {
            Backend device = devices.tryGet(kind);
            if (device == null) { // one skipped test carrying the backend's reason
                perDevice.add(DynamicTest.dynamicTest(kind.cliName(), () -> devices.get(kind)));
                continue;
            }
            long seed = SelfTest.freshSeed();
            SelfTest.Options options = SelfTest.Options.defaults().withRepeats(0).withSeed(seed);
            List<DynamicNode> families = new ArrayList<>();
            for (FamilyPlan plan : ParityEngine.plan(device, options, ctx)) families.add(family(device, plan, seed));
            perDevice.add(DynamicContainer.dynamicContainer(
                    String.format(Locale.ROOT, "%s seed 0x%016x", kind.cliName(), seed), families));
        }
        return perDevice;
    }

    private static DynamicNode family(Backend device, FamilyPlan plan, long seed) {
        String family = plan.family();
        if (plan.cases() == null) {
            return DynamicTest.dynamicTest(family, () -> assertNotNull(plan.cases(),
                    ParityEngine.unknownFamily(family, plan.runs().get(0).label()).detail()));
        }
        // the CPU reference of each case once, shared by the variants
        List<Supplier<List<Output>>> reference = new ArrayList<>();
        for (ParityCase c : plan.cases()) reference.add(memo(() -> ParityEngine.reference(cpu, c)));
        List<DynamicNode> variants = new ArrayList<>();
        for (VariantRun run : plan.runs()) {
            List<DynamicNode> cases = new ArrayList<>();
            for (int i = 0; i < plan.cases().size(); i++) {
                ParityCase c = plan.cases().get(i);
                Supplier<List<Output>> ref = reference.get(i);
                cases.add(DynamicTest.dynamicTest(c.kernel() + " [" + c.shape() + "]", () -> {
                    String before = device.selectedKernel(family);
                    Precision precision = device.precision();
                    SelfTest.Row row = ParityEngine.runCase(device, run, c, ref.get(), 0);
                    String what = String.format(Locale.ROOT, "%s %s %s %s [%s], seed 0x%016x: %s (tol %s)",
                            device.kind().cliName(), family, run.label(), c.kernel(), c.shape(), seed, row.error(),
                            row.toleranceText());
                    assertTrue(row.passed(), what + ": " + row.detail());
                    if (row.rtol() == 0) assertTrue(row.bitExact(), "a bits-only case that is not bit-exact: " + what);
                    assertEquals(before, device.selectedKernel(family), "the variant selected before is restored");
                    assertEquals(precision, device.precision(), "the precision from before is restored");
                }));
            }
            variants.add(DynamicContainer.dynamicContainer(run.label(), cases));
        }
        return DynamicContainer.dynamicContainer(family, variants);
    }

    private static <T> Supplier<T> memo(Supplier<T> s) {
        return new Supplier<>() {
            private T value;

            @Override
            public T get() {
                if (value == null) value = s.get();
                return value;
            }
        };
    }
}
