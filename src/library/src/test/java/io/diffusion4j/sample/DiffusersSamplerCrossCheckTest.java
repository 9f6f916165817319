package io.diffusion4j.sample;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.TimestepSpacing;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.Json;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Our sampler against diffusers' real schedulers and denoising loop. The fixture
 * {@code src/test/resources/crosscheck/sampler} was written by
 * {@code benchmarks/crosscheck/diffusers_sampler_reference.py} with diffusers v0.31.0 on PyTorch 1.13 from the
 * committed model fixture {@code one_level_odd} (3 channels, 5x7) and an x_T of 2 images: for every DDIM
 * (eta 0) and DPM-Solver++ (2M, lower_order_final, final sigma zero) case the sample after every step as
 * diffusers computes it in float32 ({@code x32}) and the same loop in float64 ({@code x64}: model.double(),
 * float64 alphas_cumprod and sigmas); for DDPM single steps with the noise given as 0 and as 1 (diffusers'
 * x_{t-1} = mean + std * noise), in float32 and float64.
 *
 * <p>Each case goes through the public paths: the scheduler from diffusers' own scheduler config
 * ({@link SampleCommand#scheduler}, i.e. {@code from_config}), whose timesteps must equal diffusers', and a
 * {@link Sampler} run from the fixture's x_T (as {@code sample --init-noise} does) with the model loaded by
 * {@link Checkpoint#readWeights}; DDPM steps through {@link Sampler#update} (the sampler's own step dispatch)
 * with our Philox noise z, compared with mean + std * z.
 *
 * <p><b>Tolerance.</b> Per step, E32 = max|x32 - x64| is how far diffusers' own float32 run is from the float64
 * one (measured 2e-7 .. 1.1e-4; largest for epsilon prediction without clipping, where the float32
 * alphas_cumprod error is amplified by 1/sqrt(alphas_cumprod) ~ 160 at t = 999). Ours must satisfy, element
 * by element, {@code |ours - x64| <= max(TIMES_E32 * E32, ATOL_OF_MAX * M) + RTOL * |x64|} with M =
 * max|x64| of that step. Ours keeps alphas_cumprod and every step coefficient in float64 (only the sample
 * and model arithmetic are float32), so it lands closer to x64 than diffusers' float32 run does (printed:
 * ratio |ours - x64| / E32). {@link #wrongSchedulerOptionsAreDetected} flips one option at a time and must
 * exceed the tolerance.
 *
 * <p><b>DDPM and diffusers versions.</b> diffusers v0.31's {@code DDPMScheduler.previous_timestep} steps to
 * {@code t - T // n} whatever the spacing; since v0.32 (and in ours, see {@link DdpmScheduler}) it steps to
 * the next timestep of the list. The two agree for leading spacing; the fixture records v0.31's (t, prev_t)
 * and the step comparison uses them, while the plan check asserts agreement only where v0.31 and v0.32+ agree.
 */
class DiffusersSamplerCrossCheckTest {
    static final double TIMES_E32 = 4;
    static final double ATOL_OF_MAX = 2e-6;
    static final double RTOL = 2e-6;

    static Backend cpu;
    static UNet2DModel model;
    static UNet2DConfig config;
    static Map<String, Object> index;
    static Map<String, float[]> f32 = new HashMap<>();
    static Map<String, double[]> f64 = new HashMap<>();
    static float[] xT;
    static int n, c, h, w;

    static Path resource(String name) {
        URL u = DiffusersSamplerCrossCheckTest.class.getResource("/crosscheck/" + name);
        if (u == null) throw new AssertionError("missing test resource crosscheck/" + name);
        try {
            return Path.of(u.toURI());
        } catch (URISyntaxException e) {
            throw new AssertionError(e);
        }
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> cases() {
        try {
            Map<String, Object> m = Json.parseObjectFromPython(Files.readString(resource("sampler/cases.json"), StandardCharsets.UTF_8));
            return (List<Map<String, Object>>) (List<?>) m.get("cases");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Stream<String> loopCases() {
        return cases().stream().filter(m -> !m.get("kind").equals("ddpm")).map(m -> (String) m.get("name"));
    }

    static Stream<String> ddpmCases() {
        return cases().stream().filter(m -> m.get("kind").equals("ddpm")).map(m -> (String) m.get("name"));
    }

    static Map<String, Object> caseNamed(String name) {
        return cases().stream().filter(m -> m.get("name").equals(name)).findFirst().orElseThrow();
    }

    @BeforeAll
    static void open() throws IOException {
        index = Json.parseObjectFromPython(Files.readString(resource("sampler/cases.json"), StandardCharsets.UTF_8));
        byte[] bytes = Files.readAllBytes(resource("sampler/reference.safetensors"));
        ByteBuffer bb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        long dataStart = 8 + bb.getLong(0);
        long[] xShape = null;
        try (SafeTensors.Reader r = SafeTensors.read(bytes)) {
            for (SafeTensors.TensorInfo t : r.tensors()) {
                int cnt = Math.toIntExact(t.elementCount());
                int base = Math.toIntExact(dataStart + t.begin());
                switch (t.dtype()) {
                    case F32 -> {
                        float[] v = new float[cnt];
                        for (int i = 0; i < cnt; i++) v[i] = bb.getFloat(base + 4 * i);
                        f32.put(t.name(), v);
                    }
                    case F64 -> {
                        double[] v = new double[cnt];
                        for (int i = 0; i < cnt; i++) v[i] = bb.getDouble(base + 8 * i);
                        f64.put(t.name(), v);
                    }
                    default -> throw new AssertionError("unexpected dtype " + t.dtype() + " of " + t.name());
                }
                if (t.name().equals("x_T")) xShape = t.shapeArray();
            }
        }
        xT = f32.get("x_T");
        n = (int) xShape[0];
        c = (int) xShape[1];
        h = (int) xShape[2];
        w = (int) xShape[3];
        Path modelDir = resource((String) index.get("model"));
        config = Checkpoint.readConfig(modelDir);
        float[] weights = Checkpoint.readWeights(modelDir.resolve(Checkpoint.WEIGHTS), UNet2DLayout.of(config));
        cpu = Backend.open(Device.CPU);
        model = new UNet2DModel(cpu, config, 0L);
        model.loadFlat(weights);
        assertEquals(c, config.inChannels());
    }

    @AfterAll
    static void close() {
        if (model != null) model.close();
        if (cpu != null) cpu.close();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> schedulerConfig(Map<String, Object> cs) {
        return (Map<String, Object>) cs.get("scheduler_config");
    }

    static NoiseSchedule schedule(Map<String, Object> cfg) {
        return NoiseSchedule.of(BetaSchedule.fromConfigName((String) cfg.get("beta_schedule")),
                (int) (long) (Long) cfg.get("num_train_timesteps"), ((Number) cfg.get("beta_start")).doubleValue(),
                ((Number) cfg.get("beta_end")).doubleValue());
    }

    static int[] ints(Object list) {
        return ((List<?>) list).stream().mapToInt(o -> (int) (long) (Long) o).toArray();
    }

    static String cli(String kind) {
        return kind.equals("ddim") ? "ddim" : kind.equals("dpmsolver") ? "dpmsolver++" : "ddpm";
    }

    /** Worst element of |ours - ref| / (max(k * E32, a * M) + r * |ref|); <= 1 passes. */
    record Check(double worst, int at, double e32, double oursErr, double max) {
        String describe() {
            return String.format(Locale.ROOT, "worst %.3g of tolerance at %d, |ours - x64| %.3g, E32 %.3g (ratio %.2f),"
                    + " max|x64| %.4g", worst, at, oursErr, e32, e32 > 0 ? oursErr / e32 : Double.NaN, max);
        }
    }

    static Check check(float[] ours, double[] ref64, float[] ref32) {
        double e32 = 0, max = 0, err = 0;
        for (int i = 0; i < ref64.length; i++) {
            e32 = Math.max(e32, Math.abs(ref32[i] - ref64[i]));
            max = Math.max(max, Math.abs(ref64[i]));
        }
        double atol = Math.max(TIMES_E32 * e32, ATOL_OF_MAX * max);
        double worst = 0;
        int at = -1;
        for (int i = 0; i < ref64.length; i++) {
            double d = Math.abs(ours[i] - ref64[i]);
            err = Math.max(err, d);
            double q = Double.isNaN(ours[i]) ? Double.POSITIVE_INFINITY : d / (atol + RTOL * Math.abs(ref64[i]));
            if (q > worst || at < 0) {
                worst = q;
                at = i;
            }
        }
        return new Check(worst, at, e32, err, max);
    }

    /** Runs our sampler for a scheduler on the fixture's x_T; per step the worst check. */
    static List<Check> runAndCheck(String name, SamplerScheduler s, Map<String, Object> cs) {
        NoiseSchedule sched = schedule(schedulerConfig(cs));
        int steps = (int) (long) (Long) cs.get("num_inference_steps");
        List<Check> checks = new ArrayList<>();
        float[][] last = new float[1][];
        try (Sampler sm = new Sampler(model, sched, s, steps, n, h, w)) {
            float[] fin = sm.runObserved(12345L, 0, n, xT, null, (i, x) -> {
                checks.add(check(x, f64.get(name + ".x64." + i), f32.get(name + ".x32." + i)));
                last[0] = x;
            });
            assertEquals(steps, checks.size());
            assertArrayEquals(last[0], fin, 0f, "the observer's last step is what run returns");
        }
        return checks;
    }

    @ParameterizedTest
    @MethodSource("loopCases")
    void wholeRunsMatchDiffusers(String name) {
        Map<String, Object> cs = caseNamed(name);
        Map<String, Object> cfg = schedulerConfig(cs);
        SamplerScheduler s = SamplerScheduler.fromConfig(cli((String) cs.get("kind")), 0f, cfg);
        int T = (int) (long) (Long) cfg.get("num_train_timesteps");
        int steps = (int) (long) (Long) cs.get("num_inference_steps");
        assertArrayEquals(ints(cs.get("timesteps")), s.timesteps(T, steps), name + ": set_timesteps differs from diffusers'");
        List<Check> checks = runAndCheck(name, s, cs);
        for (int i = 0; i < checks.size(); i++) {
            Check ch = checks.get(i);
            System.out.printf(Locale.ROOT, "diffusers crosscheck %s step %d (t=%d): %s%n", name, i,
                    ints(cs.get("timesteps"))[i], ch.describe());
            assertTrue(ch.worst() <= 1, name + " step " + i + " (" + s + "): " + ch.describe());
        }
    }

    /** Single DDPM steps with our Philox noise z against diffusers' mean + std * z. */
    @ParameterizedTest
    @MethodSource("ddpmCases")
    void ddpmStepsMatchDiffusers(String name) {
        Map<String, Object> cs = caseNamed(name);
        Map<String, Object> cfg = schedulerConfig(cs);
        DdpmScheduler s = (DdpmScheduler) SamplerScheduler.fromConfig("ddpm", 0f, cfg);
        int T = (int) (long) (Long) cfg.get("num_train_timesteps");
        int steps = (int) (long) (Long) cs.get("num_inference_steps");
        int[] ts = ints(cs.get("timesteps"));
        assertArrayEquals(ts, s.timesteps(T, steps), name + ": set_timesteps differs from diffusers'");
        NoiseSchedule sched = schedule(cfg);
        TestRandom r = TestRandom.fresh();
        int per = c * h * w;
        List<?> recs = (List<?>) cs.get("steps");
        for (int j = 0; j < recs.size(); j++) {
            Map<?, ?> rec = (Map<?, ?>) recs.get(j);
            int t = (int) (long) (Long) rec.get("t"), prevT = (int) (long) (Long) rec.get("prev_t");
            int stepIndex = indexOf(ts, t);
            SamplerStep planned = s.plan(T, steps).get(stepIndex);
            if (s.spacing() == TimestepSpacing.LEADING && s.stepsOffset() == 0) {
                assertEquals(Math.max(prevT, -1), planned.prevTimestep(), name + ": plan's prev timestep of t=" + t);
            }
            SamplerStep st = new SamplerStep(t, Math.max(prevT, -1), -1); // diffusers v0.31's target
            String p = name + "." + j + ".";
            long[] seeds = {r.nextLong(), r.nextLong()}, offsets = {r.nextLong(), r.nextLong()};
            float[] z = new float[n * per];
            float[] ours;
            try (NativeSchedule ns = NativeSchedule.of(sched); Tensor x = Tensor.of(cpu, f32.get(p + "xt"), n, per);
                 Tensor mo = Tensor.of(cpu, f32.get(p + "model_output"), n, per);
                 Tensor th = Tensor.allocate(cpu, DType.FLOAT32, n); Tensor row = Tensor.allocate(cpu, DType.FLOAT32, per)) {
                th.fill(Float.NaN);
                int[] tt = {t, t}, pp = {st.prevTimestep(), st.prevTimestep()}, ll = {-1, -1};
                Sampler.update(ns, sched, s, st, x, mo, null, th, tt, pp, ll, new SampleNoise(seeds, offsets));
                ours = x.toFloatArray();
                for (int b = 0; b < n; b++) {
                    DiffusionKernels.randomNormal(cpu, seeds[b], offsets[b], row);
                    System.arraycopy(row.toFloatArray(), 0, z, b * per, per);
                }
            }
            double[] mean64 = f64.get(p + "mean64"), std64 = f64.get(p + "std64");
            float[] mean32 = f32.get(p + "mean32"), std32 = f32.get(p + "std32");
            double[] ref64 = new double[z.length];
            float[] ref32 = new float[z.length];
            for (int i = 0; i < z.length; i++) {
                ref64[i] = mean64[i] + std64[i] * z[i];
                ref32[i] = mean32[i] + std32[i] * z[i];
            }
            Check ch = check(ours, ref64, ref32);
            System.out.printf(Locale.ROOT, "diffusers crosscheck %s step t=%d->%d: %s%n", name, t, prevT, ch.describe());
            assertTrue(ch.worst() <= 1, name + " t=" + t + " (" + s + ", " + r.describe() + "): " + ch.describe());
        }
    }

    static int indexOf(int[] a, int v) {
        for (int i = 0; i < a.length; i++) if (a[i] == v) return i;
        throw new AssertionError(v + " is not among the timesteps");
    }

    /** The tolerance has teeth: one option changed at a time must fail the comparison. */
    @Test
    void wrongSchedulerOptionsAreDetected() {
        Map<String, SamplerScheduler> wrong = new LinkedHashMap<>();
        DdimScheduler d1 = (DdimScheduler) SamplerScheduler.fromConfig("ddim", 0f, schedulerConfig(caseNamed("ddim_linspace_sample_noalpha1")));
        wrong.put("ddim_linspace_sample_noalpha1", new DdimScheduler(d1.prediction(), 0f, d1.clipSample(),
                d1.clipSampleRange(), d1.thresholding(), d1.spacing(), d1.stepsOffset(), !d1.setAlphaToOne(), false));
        DdimScheduler d2 = (DdimScheduler) SamplerScheduler.fromConfig("ddim", 0f, schedulerConfig(caseNamed("ddim_trailing_eps_threshold")));
        wrong.put("ddim_trailing_eps_threshold", new DdimScheduler(d2.prediction(), 0f, d2.clipSample(),
                d2.clipSampleRange(), new Thresholding(0.95, d2.thresholding().sampleMaxValue()), d2.spacing(),
                d2.stepsOffset(), d2.setAlphaToOne(), false));
        DdimScheduler d3 = (DdimScheduler) SamplerScheduler.fromConfig("ddim", 0f, schedulerConfig(caseNamed("ddim_linspace_v_clip15")));
        wrong.put("ddim_linspace_v_clip15", new DdimScheduler(d3.prediction(), 0f, true, 1.4, null, d3.spacing(),
                d3.stepsOffset(), d3.setAlphaToOne(), false));
        DdimScheduler d4 = (DdimScheduler) SamplerScheduler.fromConfig("ddim", 0f, schedulerConfig(caseNamed("ddim_trailing_v")));
        wrong.put("ddim_trailing_v", d4.withEta(0.05f));
        DpmSolverScheduler p1 = (DpmSolverScheduler) SamplerScheduler.fromConfig("dpmsolver++", 0f, schedulerConfig(caseNamed("dpm_leading_v")));
        // first order everywhere would differ from the second-order middle steps: lower_order_final alone
        // cannot express it, so use euler_at_final off but final sigma_min (a different last step)
        wrong.put("dpm_leading_v", new DpmSolverScheduler(p1.prediction(), p1.thresholding(), p1.spacing(),
                p1.stepsOffset(), p1.lowerOrderFinal(), p1.eulerAtFinal(), DpmSolverScheduler.FinalSigmas.SIGMA_MIN));
        for (Map.Entry<String, SamplerScheduler> e : wrong.entrySet()) {
            List<Check> checks = runAndCheck(e.getKey(), e.getValue(), caseNamed(e.getKey()));
            double worst = checks.stream().mapToDouble(Check::worst).max().orElseThrow();
            System.out.printf(Locale.ROOT, "diffusers crosscheck teeth %s with %s: worst %.3g of tolerance%n", e.getKey(),
                    e.getValue(), worst);
            assertTrue(worst > 1, e.getKey() + " with " + e.getValue() + " was not detected (worst " + worst + ")");
        }
    }
}
