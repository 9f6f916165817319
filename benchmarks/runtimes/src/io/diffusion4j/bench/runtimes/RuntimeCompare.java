package io.diffusion4j.bench.runtimes;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * diffusion4j's CPU UNet forward against ONNX Runtime and PyTorch (through DJL) in one JVM, on the same weights
 * (benchmarks/runtime-compare.sh drives it; it is not part of the library).
 *
 * <pre>
 *   RuntimeCompare init --model fashion|cifar10 --out DIR [--cifar10-config FILE] [--seed S]
 *       writes a random-initialised model folder (config.json, diffusion_pytorch_model.safetensors)
 *   RuntimeCompare probe --work DIR --model MODEL [--threads T] [--seconds S]
 *       DJL alone: prints the geometric mean of its median seconds per forward at batch 1 and 16 (the script runs
 *       it under different OpenMP settings, which libtorch reads when it loads)
 *   RuntimeCompare run --work DIR [--cases fashion:1,cifar10:8] [--threads T] [--rounds R] [--turn-seconds S]
 *                      [--atol A] [--rtol R] [--markdown FILE]
 *       DIR/models/MODEL is the model folder, DIR/export/MODEL the exporter's unet.onnx, unet.pt, reference.npz
 * </pre>
 *
 * <p>For each case (model, batch) the three runtimes first run the same input: the outputs must agree elementwise
 * within {@code atol + rtol * |diffusion4j|}, and each runtime's output on the exporter's reference input (repeated to
 * the batch) within {@code atol + rtol * |reference|} of PyTorch's; a case that does not is reported and not timed.
 * Then each runtime warms up and the case is timed in rounds: in every round each runtime takes one turn of about
 * {@code --turn-seconds} of back-to-back calls, and the runtime that goes first rotates from round to round, so slow
 * drifts of the machine (other load, clock changes) reach all three alike. A call is what a Java service does: copy
 * the input arrays in, run the network, copy the output into a new Java array.
 *
 * <p>Exit status: 0, or 3 when some case's outputs disagreed (the report is written all the same).
 */
public final class RuntimeCompare {
    private static final long SEED = 1234;

    private record Case(String model, int batch) {
        String label() {
            return model + " b" + batch;
        }
    }

    /** Largest |difference| of one comparison, and whether every element was within the tolerance. */
    private record Diff(double maxAbs, boolean ok) {
        String text() {
            return String.format(Locale.ROOT, "%.2e%s", maxAbs, ok ? "" : " (over)");
        }
    }

    /** The output checks of one case; {@code vsReference} is null where the reference batch does not divide it. */
    private record Check(double maxOut, Diff[] vsD4j, Diff[] vsReference, boolean ok) {}

    /** One runtime's times for one case, in nanoseconds. */
    private record Timing(double median, double minRoundMedian, double maxRoundMedian, int calls, int callsPerTurn) {}

    private record Row(Case c, long params, Check check, Timing[] timings) {}

    private RuntimeCompare() {}

    public static void main(String[] args) throws Exception {
        if (args.length == 0) throw new IllegalArgumentException("usage: RuntimeCompare init|run ... (see the class comment)");
        Map<String, String> o = options(Arrays.copyOfRange(args, 1, args.length));
        switch (args[0]) {
            case "init" -> init(o);
            case "run" -> System.exit(run(o));
            case "probe" -> probe(o);
            default -> throw new IllegalArgumentException("unknown command " + args[0] + " (init or run)");
        }
    }

    private static Map<String, String> options(String[] a) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < a.length; i++) {
            if (!a[i].startsWith("--") || i + 1 >= a.length) throw new IllegalArgumentException("expected --option value at " + a[i]);
            m.put(a[i].substring(2), a[++i]);
        }
        return m;
    }

    private static String need(Map<String, String> o, String key) {
        String v = o.get(key);
        if (v == null) throw new IllegalArgumentException("--" + key + " is required");
        return v;
    }

    private static void init(Map<String, String> o) throws IOException {
        String cifar = o.get("cifar10-config");
        UNet2DConfig config = ModelFiles.config(need(o, "model"), cifar == null ? null : Path.of(cifar));
        long seed = Long.parseLong(o.getOrDefault("seed", Long.toString(SEED)));
        Path out = Path.of(need(o, "out"));
        try (Backend be = Backend.open(Device.CPU)) {
            ModelFiles.writeRandomModel(be, config, seed, out);
        }
        System.err.println("init: " + out + " (" + need(o, "model") + ", seed " + seed + ")");
    }

    private static void probe(Map<String, String> o) throws Exception {
        Path work = Path.of(need(o, "work"));
        String model = need(o, "model");
        int threads = Integer.parseInt(o.getOrDefault("threads", "2"));
        double seconds = Double.parseDouble(o.getOrDefault("seconds", "1.5"));
        DjlForward.configure(threads);
        UNet2DConfig cfg = Checkpoint.readConfig(work.resolve("models").resolve(model));
        int c = cfg.inChannels(), h = cfg.sampleHeight(), w = cfg.sampleWidth();
        double logSum = 0;
        int[] batches = {1, 16};
        try (Forward djl = new DjlForward(work.resolve("export").resolve(model), c, h, w)) {
            for (int n : batches) {
                float[] x = new float[n * c * h * w];
                float[] t = new float[n];
                Arrays.fill(t, 500f);
                for (int i = 0; i < 3; i++) call(djl, x, t); // the profiling executor's first runs
                List<Long> times = new ArrayList<>();
                long start = System.nanoTime();
                while (times.size() < 3 || System.nanoTime() - start < seconds * 1e9) times.add(call(djl, x, t));
                logSum += Math.log(median(times) / 1e9);
            }
        }
        System.out.printf(Locale.ROOT, "%.6f%n", Math.exp(logSum / batches.length));
    }

    private static int run(Map<String, String> o) throws Exception {
        Path work = Path.of(need(o, "work"));
        int threads = Integer.parseInt(o.getOrDefault("threads", "2"));
        int rounds = Integer.parseInt(o.getOrDefault("rounds", "6"));
        double turnSeconds = Double.parseDouble(o.getOrDefault("turn-seconds", "3"));
        double atol = Double.parseDouble(o.getOrDefault("atol", "1e-4"));
        double rtol = Double.parseDouble(o.getOrDefault("rtol", "1e-4"));
        List<Case> cases = parseCases(o.getOrDefault("cases", "fashion:1,fashion:16,fashion:64,cifar10:1,cifar10:8"));
        if (threads < 1 || rounds < 1 || !(turnSeconds > 0)) throw new IllegalArgumentException("threads, rounds, turn-seconds > 0");

        DjlForward.configure(threads); // before anything starts DJL's engine
        List<Row> rows = new ArrayList<>();
        String[] described = new String[3];
        try (Backend be = Backend.open(Device.CPU)) {
            be.setThreads(threads);
            // one load per model: the batches of a model share the three runtimes
            Map<String, List<Case>> byModel = new LinkedHashMap<>();
            for (Case c : cases) byModel.computeIfAbsent(c.model(), k -> new ArrayList<>()).add(c);
            for (var e : byModel.entrySet()) {
                Path modelDir = work.resolve("models").resolve(e.getKey());
                Path exportDir = work.resolve("export").resolve(e.getKey());
                UNet2DConfig cfg = Checkpoint.readConfig(modelDir);
                long params = io.diffusion4j.model.UNet2DLayout.of(cfg).parameterCount();
                int c = cfg.inChannels(), h = cfg.sampleHeight(), w = cfg.sampleWidth();
                if (cfg.outChannels() != c) throw new IllegalArgumentException(modelDir + ": out_channels != in_channels");
                ModelFiles.Reference ref = ModelFiles.readReference(exportDir.resolve("reference.npz"));
                log("loading %s (%d parameters, %dx%dx%d) in the three runtimes ...", e.getKey(), params, c, h, w);
                try (Forward d4j = new D4jForward(be, modelDir);
                     Forward ort = new OrtForward(exportDir.resolve("unet.onnx"), c, h, w, threads);
                     Forward djl = new DjlForward(exportDir, c, h, w)) {
                    Forward[] fs = {d4j, ort, djl};
                    for (int i = 0; i < 3; i++) described[i] = fs[i].describe();
                    for (Case k : e.getValue()) {
                        Check check = check(fs, k.batch(), c, h, w, ref, atol, rtol);
                        log("%s: max|out| %.3g; vs diffusion4j: ORT %s, DJL %s; vs reference: %s", k.label(), check.maxOut(),
                                check.vsD4j()[1].text(), check.vsD4j()[2].text(), check.vsReference() == null ? "-"
                                        : Arrays.stream(check.vsReference()).map(Diff::text).toList());
                        Timing[] t = null;
                        if (check.ok()) {
                            t = time(fs, k.batch(), c, h, w, rounds, turnSeconds);
                        } else {
                            log("%s: outputs differ by more than %g + %g * |x|: not timed", k.label(), atol, rtol);
                        }
                        rows.add(new Row(k, params, check, t));
                    }
                }
            }
        }
        String md = markdown(rows, described, threads, rounds, turnSeconds, o.getOrDefault("atol", "1e-4"),
                o.getOrDefault("rtol", "1e-4"));
        System.out.print(md);
        if (o.containsKey("markdown")) Files.writeString(Path.of(o.get("markdown")), md, StandardCharsets.UTF_8);
        return rows.stream().allMatch(r -> r.check().ok()) ? 0 : 3;
    }

    private static List<Case> parseCases(String spec) {
        List<Case> out = new ArrayList<>();
        for (String s : spec.split(",")) {
            String[] p = s.strip().split(":");
            if (p.length != 2 || !(p[0].equals("fashion") || p[0].equals("cifar10"))) {
                throw new IllegalArgumentException("a case is MODEL:BATCH with MODEL fashion or cifar10, got '" + s + "'");
            }
            int b = Integer.parseInt(p[1]);
            if (b < 1) throw new IllegalArgumentException("batch must be >= 1 in '" + s + "'");
            out.add(new Case(p[0], b));
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // output agreement

    /** Runs one forward of every runtime on the NCHW input and returns each output as NCHW. */
    private static float[][] outputs(Forward[] fs, float[] nchw, float[] t, int n, int c, int h, int w) {
        float[] nhwc = Forward.toNhwc(nchw, n, c, h, w);
        float[][] out = new float[fs.length][];
        for (int i = 0; i < fs.length; i++) {
            float[] y = fs[i].run(fs[i].nhwc() ? nhwc : nchw, t);
            out[i] = fs[i].nhwc() ? Forward.toNchw(y, n, c, h, w) : y;
        }
        return out;
    }

    private static Diff diff(float[] a, float[] b, double atol, double rtol) {
        if (a.length != b.length) return new Diff(Double.POSITIVE_INFINITY, false);
        double max = 0;
        boolean ok = true;
        for (int i = 0; i < a.length; i++) {
            double d = Math.abs((double) a[i] - b[i]);
            if (!(d <= atol + rtol * Math.abs(b[i]))) ok = false; // NaN fails too
            if (!(d <= max)) max = d;
        }
        return new Diff(max, ok);
    }

    private static Check check(Forward[] fs, int n, int c, int h, int w, ModelFiles.Reference ref, double atol, double rtol) {
        Random rnd = new Random(SEED + n);
        float[] x = new float[n * c * h * w];
        for (int i = 0; i < x.length; i++) x[i] = (float) rnd.nextGaussian();
        float[] t = new float[n];
        for (int i = 0; i < n; i++) t[i] = rnd.nextInt(1000);
        float[][] y = outputs(fs, x, t, n, c, h, w);
        double maxOut = 0;
        for (float v : y[0]) maxOut = Math.max(maxOut, Math.abs(v));
        Diff[] vsD4j = new Diff[fs.length];
        boolean ok = true;
        for (int i = 0; i < fs.length; i++) {
            vsD4j[i] = diff(y[i], y[0], atol, rtol);
            ok &= vsD4j[i].ok();
        }
        Diff[] vsRef = null;
        if (n % ref.batch() == 0) {
            ModelFiles.Reference r = ref.tiled(n);
            float[][] yr = outputs(fs, r.sample(), r.timesteps(), n, c, h, w);
            vsRef = new Diff[fs.length];
            for (int i = 0; i < fs.length; i++) {
                vsRef[i] = diff(yr[i], r.out(), atol, rtol);
                ok &= vsRef[i].ok();
            }
        }
        return new Check(maxOut, vsD4j, vsRef, ok);
    }

    // ---------------------------------------------------------------------------------------------
    // timing

    private static Timing[] time(Forward[] fs, int n, int c, int h, int w, int rounds, double turnSeconds) {
        Random rnd = new Random(SEED ^ n);
        float[] nchw = new float[n * c * h * w];
        for (int i = 0; i < nchw.length; i++) nchw[i] = (float) rnd.nextGaussian();
        float[] t = new float[n];
        for (int i = 0; i < n; i++) t[i] = 999 - i % 1000;
        float[] nhwc = Forward.toNhwc(nchw, n, c, h, w);
        int k = fs.length;
        float[][] in = new float[k][];
        for (int i = 0; i < k; i++) in[i] = fs[i].nhwc() ? nhwc : nchw;

        // warm-up: at least 3 calls and about one turn each (JIT compilation, allocators, PyTorch's profiling
        // executor, which optimises a TorchScript graph after its first runs); its second half sizes the turns
        int[] perTurn = new int[k];
        for (int i = 0; i < k; i++) {
            List<Long> ws = new ArrayList<>();
            long start = System.nanoTime();
            while (ws.size() < 3 || System.nanoTime() - start < turnSeconds * 1e9) ws.add(call(fs[i], in[i], t));
            double est = median(ws.subList(ws.size() / 2, ws.size()));
            perTurn[i] = (int) Math.max(1, Math.min(10_000, Math.round(turnSeconds * 1e9 / est)));
        }
        log("b%d: warmed up; calls per turn: %s", n, Arrays.toString(perTurn));

        List<List<Long>> all = new ArrayList<>();
        List<List<Double>> roundMedians = new ArrayList<>();
        for (int i = 0; i < k; i++) {
            all.add(new ArrayList<>());
            roundMedians.add(new ArrayList<>());
        }
        for (int r = 0; r < rounds; r++) {
            for (int j = 0; j < k; j++) {
                int i = (r + j) % k; // rotate who goes first
                List<Long> turn = new ArrayList<>();
                for (int q = 0; q < perTurn[i]; q++) turn.add(call(fs[i], in[i], t));
                all.get(i).addAll(turn);
                roundMedians.get(i).add(median(turn));
            }
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < k; i++) {
                List<Double> rm = roundMedians.get(i);
                sb.append(String.format(Locale.ROOT, " %s %.2f ms", fs[i].name(), rm.get(rm.size() - 1) / 1e6));
            }
            log("b%d round %d/%d:%s", n, r + 1, rounds, sb);
        }
        Timing[] out = new Timing[k];
        for (int i = 0; i < k; i++) {
            List<Double> rm = roundMedians.get(i);
            out[i] = new Timing(median(all.get(i)), rm.stream().mapToDouble(Double::doubleValue).min().orElseThrow(),
                    rm.stream().mapToDouble(Double::doubleValue).max().orElseThrow(), all.get(i).size(), perTurn[i]);
        }
        return out;
    }

    private static long call(Forward f, float[] x, float[] t) {
        long t0 = System.nanoTime();
        float[] y = f.run(x, t);
        long dt = System.nanoTime() - t0;
        if (y.length != x.length) throw new IllegalStateException(f.name() + " returned " + y.length + " floats, expected " + x.length);
        return dt;
    }

    private static double median(List<? extends Number> xs) {
        double[] a = xs.stream().mapToDouble(Number::doubleValue).sorted().toArray();
        int m = a.length / 2;
        return a.length % 2 == 1 ? a[m] : (a[m - 1] + a[m]) / 2;
    }

    // ---------------------------------------------------------------------------------------------
    // report

    private static String markdown(List<Row> rows, String[] described, int threads, int rounds, double turnSeconds,
            String atol, String rtol) {
        StringBuilder sb = new StringBuilder();
        String[] names = {"diffusion4j", "ONNX Runtime", "DJL"};
        sb.append("Runtimes (").append(threads).append(" threads each, in one JVM, ")
                .append(System.getProperty("java.vm.name")).append(' ').append(System.getProperty("java.version")).append("):\n\n");
        for (int i = 0; i < 3; i++) sb.append("- ").append(names[i]).append(": ").append(described[i]).append('\n');
        sb.append(String.format(Locale.ROOT, """

                ### Output agreement (checked before timing)

                Each runtime ran the same random input (N(0, 1) sample, random timesteps); max |difference| from \
                diffusion4j's output, and on the exporter's reference input (repeated to the batch) from PyTorch's \
                output there (Debian's torch, eager). A case is timed only when every element is within \
                %s + %s * |expected|.

                | case | max \\|output\\| | ONNX Runtime − diffusion4j | DJL − diffusion4j | diffusion4j − reference \
                | ONNX Runtime − reference | DJL − reference |
                |---|---:|---:|---:|---:|---:|---:|
                """, atol, rtol));
        for (Row r : rows) {
            Check k = r.check();
            sb.append(String.format(Locale.ROOT, "| %s | %.3g | %s | %s |", r.c().label(), k.maxOut(), k.vsD4j()[1].text(),
                    k.vsD4j()[2].text()));
            for (int i = 0; i < 3; i++) sb.append(' ').append(k.vsReference() == null ? "–" : k.vsReference()[i].text()).append(" |");
            sb.append('\n');
        }
        sb.append(String.format(Locale.ROOT, """

                ### Time per UNet forward (ms)

                One call: input arrays copied in, one forward, output copied out to a new float[]. Median of all timed \
                calls, in brackets the lowest and highest round median; %d rounds of one ~%.3g s turn per runtime, the \
                first runtime rotating each round, after a warm-up. Ratios are runtime / diffusion4j: above 1, \
                diffusion4j is faster.

                | case | parameters | diffusion4j | ONNX Runtime | DJL (PyTorch) | ONNX Runtime / diffusion4j \
                | DJL / diffusion4j | calls per turn (d4j/ORT/DJL) |
                |---|---:|---:|---:|---:|---:|---:|---|
                """, rounds, turnSeconds));
        for (Row r : rows) {
            Timing[] t = r.timings();
            sb.append("| ").append(r.c().label()).append(String.format(Locale.ROOT, " | %.1fM |", r.params() / 1e6));
            if (t == null) {
                sb.append(" not timed: outputs differ | | | | | |\n");
                continue;
            }
            for (Timing x : t) {
                sb.append(String.format(Locale.ROOT, " %s (%s–%s) |", ms(x.median()), ms(x.minRoundMedian()), ms(x.maxRoundMedian())));
            }
            sb.append(String.format(Locale.ROOT, " %.2f | %.2f | %d/%d/%d |\n", t[1].median() / t[0].median(),
                    t[2].median() / t[0].median(), t[0].callsPerTurn(), t[1].callsPerTurn(), t[2].callsPerTurn()));
        }
        return sb.toString();
    }

    private static String ms(double ns) {
        double m = ns / 1e6;
        return String.format(Locale.ROOT, m >= 100 ? "%.0f" : m >= 10 ? "%.1f" : "%.2f", m);
    }

    private static void log(String fmt, Object... args) {
        System.err.println("[runtime-compare] " + String.format(Locale.ROOT, fmt, args));
    }
}
