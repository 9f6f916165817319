package io.diffusion4j.model;

import static io.diffusion4j.testutil.Tolerance.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.io.Json;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.DeviceBackends;
import io.diffusion4j.testutil.OnDevicesExtension;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Our UNet2DModel against the real diffusers UNet2DModel. The fixtures under
 * {@code src/test/resources/crosscheck} were written by {@code benchmarks/crosscheck/diffusers_unet_reference.py}
 * with diffusers v0.31.0 on PyTorch 1.13 (see its header): per configuration diffusers' own config.json,
 * its float32 weights under diffusers' state-dict names, an input batch with (partly fractional)
 * timesteps, diffusers' float32 output, the float64 output of {@code model.double()} (time projection in
 * float64 too) and, for two of them, the float64 gradients of {@code sum(out * r)} with respect to the input
 * and a parameter of every kind.
 *
 * <p>Each fixture goes through the public loading path ({@link Checkpoint#readConfig},
 * {@link Checkpoint#readWeights} mapping names and OIHW to HWIO, {@link UNet2DModel#loadFlat}); forward
 * (and backward) run in float32 on the CPU backend and, for the smaller fixtures, on cuda-sim.
 *
 * <p>Tolerances against the float64 reference, element-wise, per tensor with M = max|ref| and
 * E32 = max|diffusers32 - ref| (how far diffusers' own float32 computation lands, which measures the
 * tensor's conditioning): output {@code |ours - ref| <= max(1e-6 * M, 4 * E32) + 1e-5 * |ref|}; gradients
 * {@code <= max(2e-6 * M, 4 * E32) + 1e-4 * |ref|}. Measured (printed): ours is within 0.8x..2.3x of E32,
 * E32 itself is 6e-7..2.3e-6 for outputs of magnitude 0.9..1.8. The tolerance is far below what a wrong layer gives:
 * {@link #aPerturbedWeightIsDetected} changes one randomly chosen parameter by 0.05 and must fail it.
 */
@ExtendWith(OnDevicesExtension.class)
class DiffusersCrossCheckTest {
    static final double OUT_ATOL_OF_MAX = 1e-6;
    static final double OUT_RTOL = 1e-5;
    static final double GRAD_ATOL_OF_MAX = 2e-6;
    static final double GRAD_RTOL = 1e-4;
    /** How many times diffusers' own float32 error (per tensor, max norm) ours may reach. */
    static final double TIMES_DIFFUSERS32 = 4;
    static final List<String> FIXTURES = List.of("two_level_pad0", "three_level_heads", "one_level_odd");

    static Backend cpu;

    @BeforeAll
    static void open() {
        cpu = Backend.open(Device.CPU);
    }

    @AfterAll
    static void close() {
        if (cpu != null) cpu.close();
    }

    // ---------------------------------------------------------------------------------------------
    // fixtures

    static Path resource(String name) {
        URL u = DiffusersCrossCheckTest.class.getResource("/crosscheck/" + name);
        if (u == null) throw new AssertionError("missing test resource crosscheck/" + name);
        try {
            return Path.of(u.toURI());
        } catch (URISyntaxException e) {
            throw new AssertionError(e);
        }
    }

    /** The reference tensors of a fixture: float32 ones widened, float64 ones exact. */
    record Reference(Map<String, long[]> shapes, Map<String, double[]> values, Map<String, String> metadata) {
        double[] get(String name) {
            double[] v = values.get(name);
            if (v == null) throw new AssertionError("reference has no tensor " + name);
            return v;
        }

        float[] getFloat(String name) {
            double[] v = get(name);
            float[] f = new float[v.length];
            for (int i = 0; i < v.length; i++) f[i] = (float) v[i];
            return f;
        }

        long[] shape(String name) {
            return shapes.get(name);
        }
    }

    static Reference reference(String fixture) throws IOException {
        Path p = resource(fixture + "/reference.safetensors");
        byte[] bytes = Files.readAllBytes(p);
        ByteBuffer bb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        long dataStart = 8 + bb.getLong(0);
        Map<String, long[]> shapes = new LinkedHashMap<>();
        Map<String, double[]> values = new LinkedHashMap<>();
        Map<String, String> meta;
        try (SafeTensors.Reader r = SafeTensors.read(bytes)) {
            meta = r.metadata();
            for (SafeTensors.TensorInfo t : r.tensors()) {
                int n = Math.toIntExact(t.elementCount());
                double[] v = new double[n];
                int base = Math.toIntExact(dataStart + t.begin());
                switch (t.dtype()) {
                    case F64 -> {
                        for (int i = 0; i < n; i++) v[i] = bb.getDouble(base + 8 * i);
                    }
                    case F32 -> {
                        for (int i = 0; i < n; i++) v[i] = bb.getFloat(base + 4 * i);
                    }
                    default -> throw new AssertionError("unexpected dtype " + t.dtype() + " of " + t.name());
                }
                shapes.put(t.name(), t.shapeArray());
                values.put(t.name(), v);
            }
        }
        return new Reference(shapes, values, meta);
    }

    /** A fixture loaded the way a user loads a diffusers UNet2DModel folder. */
    record Loaded(UNet2DConfig config, UNet2DLayout layout, float[] flat) {}

    static Loaded load(String dir) throws IOException {
        Path d = resource(dir);
        UNet2DConfig config = Checkpoint.readConfig(d);
        UNet2DLayout layout = UNet2DLayout.of(config);
        float[] flat = Checkpoint.readWeights(d.resolve(Checkpoint.WEIGHTS), layout);
        return new Loaded(config, layout, flat);
    }

    /** NCHW (diffusers) to NHWC (ours) and back. */
    static float[] nchwToNhwc(float[] v, long[] s) {
        int n = (int) s[0], c = (int) s[1], h = (int) s[2], w = (int) s[3];
        float[] o = new float[v.length];
        for (int b = 0; b < n; b++)
            for (int k = 0; k < c; k++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) o[((b * h + y) * w + x) * c + k] = v[((b * c + k) * h + y) * w + x];
        return o;
    }

    static double[] nchwToNhwc(double[] v, long[] s) {
        int n = (int) s[0], c = (int) s[1], h = (int) s[2], w = (int) s[3];
        double[] o = new double[v.length];
        for (int b = 0; b < n; b++)
            for (int k = 0; k < c; k++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) o[((b * h + y) * w + x) * c + k] = v[((b * c + k) * h + y) * w + x];
        return o;
    }

    record Run(float[] out, float[] dx, float[] grads) {}

    /** Forward (and, with r, backward of sum(out * r)) of the loaded weights on a backend; NHWC in and out. */
    static Run run(Backend be, Loaded f, Reference ref, float[] flat, boolean backward) {
        long[] xs = ref.shape("x");
        long[] ys = ref.shape("out64");
        try (UNet2DModel m = new UNet2DModel(be, f.config(), 0);
             Tensor x = Tensor.of(be, nchwToNhwc(ref.getFloat("x"), xs), xs[0], xs[2], xs[3], xs[1])) {
            m.loadFlat(flat);
            m.zeroGradients();
            float[] out = m.forward(x, ref.getFloat("timesteps")).toFloatArray();
            if (!backward) return new Run(out, null, null);
            try (Tensor r = Tensor.of(be, nchwToNhwc(ref.getFloat("r"), ys), ys[0], ys[2], ys[3], ys[1])) {
                float[] dx = m.backward(r).toFloatArray();
                return new Run(out, dx, m.flatGradients());
            }
        }
    }

    static double maxAbs(double[] v) {
        double m = 0;
        for (double x : v) m = Math.max(m, Math.abs(x));
        return m;
    }

    static double maxAbsDiff(float[] a, double[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }

    static Tolerance.Report checkOutput(String what, float[] ours, double[] ref64, float[] diffusers32, String ctx) {
        double atol = Math.max(OUT_ATOL_OF_MAX * maxAbs(ref64), TIMES_DIFFUSERS32 * maxAbsDiff(diffusers32, ref64));
        return Tolerance.assertClose(what, ours, ref64, atol, OUT_RTOL, ctx);
    }

    static Tolerance.Report checkOutput(String what, float[] ours, Reference ref, String ctx) {
        long[] ys = ref.shape("out64");
        return checkOutput(what, ours, nchwToNhwc(ref.get("out64"), ys), nchwToNhwc(ref.getFloat("out32"), ys), ctx);
    }

    // ---------------------------------------------------------------------------------------------
    // tests

    @ParameterizedTest
    @ValueSource(strings = {"two_level_pad0", "three_level_heads", "one_level_odd"})
    void forwardMatchesDiffusersOnCpu(String fixture) throws IOException {
        Reference ref = reference(fixture);
        Loaded f = load(fixture);
        Run ours = run(cpu, f, ref, f.flat(), false);
        long[] ys = ref.shape("out64");
        double[] out64 = nchwToNhwc(ref.get("out64"), ys);
        float[] out32 = nchwToNhwc(ref.getFloat("out32"), ys);
        String ctx = fixture + " (diffusers " + ref.metadata().get("diffusers_version") + ", cpu)";
        Tolerance.Report rep = checkOutput("forward vs diffusers float64", ours.out(), out64, out32, ctx);
        Tolerance.log(rep);
        double diffusers32 = maxAbsDiff(out32, out64);
        System.out.printf(Locale.ROOT, "%s: max|ours - diffusers64| = %.3g, max|diffusers32 - diffusers64| = %.3g, "
                + "max|ours - diffusers32| = %.3g, max|out| = %.3g%n", fixture, rep.maxAbsError(), diffusers32,
                maxAbsDiff(ours.out(), toDouble(out32)), maxAbs(out64));
    }

    @ParameterizedTest
    @ValueSource(strings = {"two_level_pad0", "three_level_heads"})
    void backwardMatchesDiffusersOnCpu(String fixture) throws IOException {
        Reference ref = reference(fixture);
        Loaded f = load(fixture);
        Run ours = run(cpu, f, ref, f.flat(), true);
        String ctx = fixture + " (diffusers " + ref.metadata().get("diffusers_version") + ", cpu)";
        checkGradients(f, ref, ours, ctx);
    }

    static void checkGradients(Loaded f, Reference ref, Run ours, String ctx) {
        long[] xs = ref.shape("x");
        List<String> names = new ArrayList<>(List.of(ref.metadata().get("grad_params").split(",")));
        assertTrue(names.size() >= 15, "the fixture should hold a gradient of every parameter kind: " + names.size());
        names.add(0, "x");
        String worst = "";
        double worstFraction = -1, worstVsDiffusers = 0;
        for (String name : names) {
            float[] g;
            double[] g64, d32;
            if (name.equals("x")) {
                g = ours.dx();
                g64 = nchwToNhwc(ref.get("grad64.x"), xs);
                d32 = nchwToNhwc(ref.get("grad32.x"), xs);
            } else {
                UNet2DLayout.Param p = f.layout().param(name);
                assertEquals(Arrays.toString(p.shapeLong()), Arrays.toString(ref.shape("grad64." + name)), name);
                g = Arrays.copyOfRange(ours.grads(), (int) p.offset(), (int) (p.offset() + p.size()));
                g64 = ref.get("grad64." + name);
                d32 = ref.get("grad32." + name);
            }
            double m = maxAbs(g64);
            if (name.endsWith(".to_k.bias")) {
                // softmax is invariant to a per-query constant: this gradient is zero up to rounding
                assertTrue(maxAbs(toDouble(g)) <= 1e-5, name + " should vanish, got " + maxAbs(toDouble(g)) + "; " + ctx);
                continue;
            }
            String what = (name.equals("x") ? "input gradient" : "gradient of " + name) + " vs diffusers float64";
            double e32 = 0;
            for (int i = 0; i < d32.length; i++) e32 = Math.max(e32, Math.abs(d32[i] - g64[i]));
            Tolerance.Report r = Tolerance.assertClose(what, g, g64,
                    Math.max(GRAD_ATOL_OF_MAX * m, TIMES_DIFFUSERS32 * e32), GRAD_RTOL, ctx);
            worstVsDiffusers = Math.max(worstVsDiffusers, r.maxAbsError() / Math.max(e32, 1e-30));
            if (r.worstFractionOfTolerance() > worstFraction) {
                worstFraction = r.worstFractionOfTolerance();
                worst = r.toString() + " (diffusers float32: " + String.format(Locale.ROOT, "%.3g", e32) + ")";
            }
        }
        System.out.printf(Locale.ROOT, "%s: %d gradients within tolerance; worst %s; max over tensors of "
                + "max|ours - ref| / max|diffusers32 - ref| = %.2f%n", ctx, names.size(), worst, worstVsDiffusers);
    }

    /** The smaller fixtures on cuda-sim (a few seconds), forward and backward, against the same reference. */
    @ParameterizedTest
    @ValueSource(strings = {"one_level_odd", "two_level_pad0"})
    void matchesDiffusersOnCudaSim(String fixture, DeviceBackends devices) throws IOException {
        Backend sim = devices.get(Device.CUDA_SIM);
        Reference ref = reference(fixture);
        Loaded f = load(fixture);
        boolean grads = ref.values().containsKey("grad64.x");
        Run ours = run(sim, f, ref, f.flat(), grads);
        String ctx = fixture + " (diffusers " + ref.metadata().get("diffusers_version") + ", cuda-sim)";
        Tolerance.log(checkOutput("forward vs diffusers float64", ours.out(), ref, ctx));
        if (grads) checkGradients(f, ref, ours, ctx);
    }

    /** The pre-0.14 names query/key/value/proj_attn load to the very same parameters and output. */
    @Test
    void legacyAttentionNamesLoadToTheSameModel() throws IOException {
        String fixture = "one_level_odd";
        Path legacyWeights = resource("legacy_" + fixture + "/" + Checkpoint.WEIGHTS);
        try (SafeTensors.Reader r = SafeTensors.open(legacyWeights)) {
            List<String> names = r.tensors().stream().map(SafeTensors.TensorInfo::name).toList();
            assertTrue(names.stream().anyMatch(n -> n.endsWith(".query.weight")), "fixture has legacy names");
            assertTrue(names.stream().anyMatch(n -> n.endsWith(".proj_attn.bias")), "fixture has legacy names");
            assertFalse(names.stream().anyMatch(n -> n.contains(".to_q.") || n.contains(".to_out.")),
                    "fixture has no current attention names");
        }
        Loaded current = load(fixture);
        Loaded legacy = load("legacy_" + fixture);
        assertEquals(current.config(), legacy.config());
        assertTrue(Arrays.equals(current.flat(), legacy.flat()), "legacy names must load to the same parameters");
        Reference ref = reference(fixture);
        Run a = run(cpu, legacy, ref, legacy.flat(), false);
        Run b = run(cpu, current, ref, current.flat(), false);
        assertTrue(Arrays.equals(a.out(), b.out()), "same parameters, same output");
        Tolerance.log(checkOutput("legacy-named forward vs diffusers float64", a.out(), ref, fixture + " legacy"));
    }

    /** A checkpoint naming an attention projection both ways is refused. */
    @Test
    void legacyAndCurrentNameOfTheSameTensorIsRefused(@org.junit.jupiter.api.io.TempDir Path tmp) throws IOException {
        Path legacyWeights = resource("legacy_one_level_odd/" + Checkpoint.WEIGHTS);
        LinkedHashMap<String, SafeTensors.Entry> all = SafeTensors.readAll(legacyWeights);
        SafeTensors.Entry q = all.get("mid_block.attentions.0.query.weight");
        all.put("mid_block.attentions.0.to_q.weight",
                new SafeTensors.Entry("mid_block.attentions.0.to_q.weight", q.shape(), q.data()));
        Path file = tmp.resolve(Checkpoint.WEIGHTS);
        Files.write(file, SafeTensors.toBytes(new ArrayList<>(all.values()), null));
        UNet2DLayout layout = load("one_level_odd").layout();
        IOException e = assertThrows(IOException.class, () -> Checkpoint.readWeights(file, layout));
        assertTrue(e.getMessage().contains("mid_block.attentions.0.to_q.weight"), e.getMessage());
    }

    /**
     * The comparison has teeth: one randomly chosen parameter tensor (fresh seed) perturbed by independent
     * +-0.05 per element makes the forward check fail. Excluded: to_k biases (softmax cancels them exactly).
     */
    @Test
    void aPerturbedWeightIsDetected() throws IOException {
        TestRandom rnd = TestRandom.fresh();
        String fixture = "two_level_pad0";
        Reference ref = reference(fixture);
        Loaded f = load(fixture);
        List<UNet2DLayout.Param> candidates = f.layout().params().stream()
                .filter(p -> !p.name().endsWith(".to_k.bias")).toList();
        UNet2DLayout.Param p = candidates.get(rnd.nextInt(candidates.size()));
        float[] flat = f.flat().clone();
        for (long i = p.offset(); i < p.offset() + p.size(); i++) flat[(int) i] += rnd.nextInt(2) == 0 ? 0.05f : -0.05f;
        Run ours = run(cpu, f, ref, flat, false);
        String ctx = "perturbed " + p.name() + "; " + rnd.describe();
        AssertionError e = assertThrows(AssertionError.class, () -> checkOutput("perturbed forward", ours.out(), ref, ctx),
                () -> "perturbing " + p.name() + " went unnoticed; " + rnd.describe());
        System.out.println("perturbed " + p.name() + ": detected (" + e.getMessage().split(";")[0] + ")");
    }

    /**
     * google/ddpm-cifar10-32: the configuration as diffusers writes it, built in diffusers, has 35,746,307
     * parameters and exactly our layout's tensor names and shapes, in the same order.
     */
    @Test
    void ddpmCifar10MatchesDiffusers() throws IOException {
        Map<String, Object> doc = Json.parseObject(Files.readString(resource("ddpm-cifar10-32.json")));
        @SuppressWarnings("unchecked")
        Map<String, Object> cfgMap = (Map<String, Object>) doc.get("config");
        UNet2DConfig fromDiffusers = UNet2DConfig.fromMap(cfgMap);
        UNet2DConfig ours = UNet2DConfig.fromJson(UNet2DConfigTest.DDPM_CIFAR10_32);
        assertEquals(ours, withoutVersion(fromDiffusers, ours), "our ddpm-cifar10-32 config differs from diffusers'");
        UNet2DLayout layout = UNet2DLayout.of(fromDiffusers);
        assertEquals(35_746_307L, ((Number) doc.get("parameter_count")).longValue(), "diffusers' count");
        assertEquals(35_746_307L, layout.parameterCount(), "our count");
        @SuppressWarnings("unchecked")
        Map<String, Object> shapes = (Map<String, Object>) doc.get("state_dict_shapes");
        Map<String, long[]> sd = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : shapes.entrySet()) {
            sd.put(e.getKey(), ((List<?>) e.getValue()).stream().mapToLong(v -> ((Number) v).longValue()).toArray());
        }
        assertEquals(layout.params().size(), sd.size(), "tensor count");
        layout.checkCheckpoint(sd);
        // and in diffusers' state_dict() order, as UNet2DLayout documents (mid block after the up blocks)
        assertEquals(new ArrayList<>(sd.keySet()), layout.params().stream().map(UNet2DLayout.Param::name).toList());
    }

    /** diffusers' config with our fixture's informational keys, so equality compares the network only. */
    static UNet2DConfig withoutVersion(UNet2DConfig c, UNet2DConfig like) {
        LinkedHashMap<String, Object> m = c.toMap();
        m.keySet().removeIf(k -> k.startsWith("_"));
        m.putAll(like.informational());
        return UNet2DConfig.fromMap(m);
    }
}
