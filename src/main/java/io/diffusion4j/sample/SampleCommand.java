package io.diffusion4j.sample;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.cli.ProgressBar;
import io.diffusion4j.io.Json;
import io.diffusion4j.io.Npy;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;

/**
 * The {@code sample} command: loads a checkpoint (ours or a diffusers UNet2DModel folder, or a pipeline folder
 * with unet/ and scheduler/), samples n images and writes one PNG per image, a grid PNG and optionally the
 * float32 samples as .npy, all atomically.
 */
public final class SampleCommand {
    private SampleCommand() {}

    static final String USAGE = "usage: sample --checkpoint DIR [--sampler ddpm|ddim|dpmsolver++] [--steps N] [--eta X]\n"
            + "              [--n N] [--batch-size N] [--seed N] [--out DIR] [--no-ema] [--init-noise FILE.npy]\n"
            + "              [--save-npy] [--grid-scale K] [--backend cpu|cuda|cuda-sim] [--threads N]";

    /** Parsed options. */
    record Options(Path checkpoint, String sampler, int steps, float eta, int n, int batchSize, long seed, Path out,
                   boolean noEma, Path initNoise, boolean saveNpy, String backend, int threads, int gridScale) {}

    public static int run(String[] args, PrintStream out, PrintStream err) {
        Options o = parse(args, out);
        if (o == null) return 0;
        try {
            return sample(o, out, err);
        } catch (IOException e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
    }

    static Options parse(String[] args, PrintStream out) {
        Path checkpoint = null, outDir = Path.of("samples"), initNoise = null;
        String sampler = "ddim", backend = null;
        int steps = -1, n = 16, batch = 16, threads = 0, gridScale = 1;
        float eta = 0f;
        long seed = 0;
        boolean noEma = false, saveNpy = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--help", "-h" -> {
                    out.println(USAGE);
                    out.println("defaults: --sampler ddim --steps 50 (ddpm: all training timesteps, dpmsolver++: 20)"
                            + " --eta 0 --n 16 --batch-size 16 --seed 0 --out samples; EMA weights when the checkpoint"
                            + " has ema/; --grid-scale 1 (the grid's pixels enlarged K times, nearest neighbour)");
                    return null;
                }
                case "--no-ema" -> noEma = true;
                case "--save-npy" -> saveNpy = true;
                default -> {
                    if (i + 1 >= args.length) throw new IllegalArgumentException("sample: " + a + " needs a value\n" + USAGE);
                    String v = args[++i];
                    switch (a) {
                        case "--checkpoint" -> checkpoint = Path.of(v);
                        case "--sampler" -> sampler = v;
                        case "--steps" -> steps = parseInt(a, v, 1);
                        case "--eta" -> eta = parseFloat(a, v);
                        case "--n" -> n = parseInt(a, v, 1);
                        case "--batch-size" -> batch = parseInt(a, v, 1);
                        case "--seed" -> seed = parseLong(a, v);
                        case "--out" -> outDir = Path.of(v);
                        case "--init-noise" -> initNoise = Path.of(v);
                        case "--backend" -> backend = v;
                        case "--threads" -> threads = parseInt(a, v, 1);
                        case "--grid-scale" -> {
                            gridScale = parseInt(a, v, 1);
                            if (gridScale > 16) throw new IllegalArgumentException("sample: --grid-scale must be <= 16, got " + v);
                        }
                        default -> throw new IllegalArgumentException("sample: unknown option '" + a + "'\n" + USAGE);
                    }
                }
            }
        }
        if (checkpoint == null) throw new IllegalArgumentException("sample: --checkpoint DIR is required\n" + USAGE);
        if (!sampler.equals("ddpm") && !sampler.equals("ddim") && !sampler.equals("dpmsolver++")) {
            throw new IllegalArgumentException("sample: --sampler must be ddpm, ddim or dpmsolver++, got '" + sampler + "'");
        }
        if (!(eta >= 0 && Float.isFinite(eta))) throw new IllegalArgumentException("sample: --eta must be finite and >= 0");
        if (eta != 0 && !sampler.equals("ddim")) throw new IllegalArgumentException("sample: --eta applies to ddim only");
        return new Options(checkpoint, sampler, steps, eta, n, batch, seed, outDir, noEma, initNoise, saveNpy, backend,
                threads, gridScale);
    }

    private static int parseInt(String opt, String v, int min) {
        try {
            int x = Integer.parseInt(v);
            if (x < min) throw new IllegalArgumentException("sample: " + opt + " must be >= " + min + ", got " + v);
            return x;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("sample: " + opt + " needs an integer, got '" + v + "'");
        }
    }

    private static long parseLong(String opt, String v) {
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("sample: " + opt + " needs an integer, got '" + v + "'");
        }
    }

    private static float parseFloat(String opt, String v) {
        try {
            return Float.parseFloat(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("sample: " + opt + " needs a number, got '" + v + "'");
        }
    }

    /** Where the model and scheduler files of a checkpoint are (also used by the {@code serve} command). */
    public record Located(Path modelDir, Path weights, Path schedulerConfig, boolean ema) {
        /**
         * The parsed scheduler_config.json (Python's NaN and Infinity accepted, as diffusers writes them); a
         * malformed file is an IOException naming it.
         */
        public Map<String, Object> readSchedulerConfig() throws IOException {
            try {
                return Json.parseObjectFromPython(Files.readString(schedulerConfig, StandardCharsets.UTF_8));
            } catch (RuntimeException e) {
                throw new IOException(schedulerConfig + ": " + e.getMessage(), e);
            }
        }
    }

    public static Located locate(Path dir, boolean noEma) throws IOException {
        if (!Files.isDirectory(dir)) throw new IOException(dir + ": no such checkpoint directory");
        Path modelDir = dir, sched = dir.resolve(Checkpoint.SCHEDULER);
        if (!Files.exists(dir.resolve(Checkpoint.CONFIG)) && Files.exists(dir.resolve("unet").resolve(Checkpoint.CONFIG))) {
            modelDir = dir.resolve("unet"); // a diffusers pipeline folder
            sched = dir.resolve("scheduler").resolve(Checkpoint.SCHEDULER);
        }
        if (!Files.exists(modelDir.resolve(Checkpoint.CONFIG))) {
            throw new IOException(dir + ": no " + Checkpoint.CONFIG + " (expected a diffusion4j checkpoint or a diffusers"
                    + " UNet2DModel folder)");
        }
        if (!Files.exists(sched)) throw new IOException(dir + ": no " + Checkpoint.SCHEDULER);
        Path emaWeights = modelDir.resolve(Checkpoint.EMA_DIR).resolve(Checkpoint.WEIGHTS);
        boolean ema = !noEma && Files.exists(emaWeights);
        Path weights = ema ? emaWeights : modelDir.resolve(Checkpoint.WEIGHTS);
        if (!Files.exists(weights)) throw new IOException(dir + ": no " + weights.getFileName());
        return new Located(modelDir, weights, sched, ema);
    }

    /** The scheduler the options and scheduler_config.json describe. */
    public static SamplerScheduler scheduler(String sampler, float eta, Map<String, Object> cfg) {
        return switch (sampler) {
            case "ddpm" -> DdpmScheduler.fromConfig(cfg);
            case "ddim" -> DdimScheduler.fromConfig(cfg, eta);
            default -> DpmSolverScheduler.fromConfig(cfg);
        };
    }

    static int sample(Options o, PrintStream out, PrintStream err) throws IOException {
        long t0 = System.nanoTime();
        Located loc = locate(o.checkpoint(), o.noEma());
        UNet2DConfig config = Checkpoint.readConfig(loc.modelDir());
        NoiseSchedule schedule = Checkpoint.readSchedule(loc.schedulerConfig());
        Map<String, Object> schedCfg = loc.readSchedulerConfig();
        SamplerScheduler scheduler;
        try {
            scheduler = scheduler(o.sampler(), o.eta(), schedCfg);
        } catch (IllegalArgumentException e) {
            throw new IOException(loc.schedulerConfig() + ": " + e.getMessage(), e);
        }
        int T = schedule.numTrainTimesteps();
        int steps = o.steps() > 0 ? o.steps() : switch (o.sampler()) {
            case "ddpm" -> T;
            case "ddim" -> Math.min(50, T);
            default -> Math.min(20, T);
        };
        int h = config.sampleHeight(), w = config.sampleWidth(), c = config.inChannels();
        int n = o.n();
        float[] init = null;
        if (o.initNoise() != null) {
            Npy.Array a = Npy.read(o.initNoise());
            long[] s = a.shape();
            if (s.length != 4 || s[1] != c || s[2] != h || s[3] != w || s[0] < 1) {
                throw new IOException(o.initNoise() + ": shape " + java.util.Arrays.toString(s) + " is not [n, " + c + ", "
                        + h + ", " + w + "]");
            }
            n = Math.toIntExact(s[0]);
            init = a.data();
        }
        int batch = Math.min(o.batchSize(), n);
        Files.createDirectories(o.out());
        try (Backend backend = Backend.open(o.backend())) {
            if (o.threads() > 0) backend.setThreads(o.threads());
            float[] weights = Checkpoint.readWeights(loc.weights(), io.diffusion4j.model.UNet2DLayout.of(config));
            long tLoad = System.nanoTime();
            out.printf(Locale.ROOT, "sample: %s-%d (%s) of %d images %dx%dx%d, batch %d, seed %d, %s weights, on %s (%s)%n",
                    scheduler.name(), steps, describe(scheduler), n, c, h, w, batch, o.seed(), loc.ema() ? "EMA" : "raw",
                    backend.kind().cliName(), backend.description());
            float[] all = new float[Math.toIntExact((long) n * c * h * w)];
            try (UNet2DModel model = new UNet2DModel(backend, config, 0L)) {
                model.loadFlat(weights);
                try (Sampler sampler = new Sampler(model, schedule, scheduler, steps, batch, h, w)) {
                    int per = c * h * w;
                    int batches = (n + batch - 1) / batch;
                    ProgressBar bar = ProgressBar.on(err, batches * sampler.plan().size(), "sampling", "steps");
                    for (int k = 0; k < batches; k++) {
                        int first = k * batch;
                        int count = Math.min(batch, n - first);
                        float[] x0 = init == null ? null : java.util.Arrays.copyOfRange(init, first * per, (first + count) * per);
                        int done = k * sampler.plan().size();
                        float[] r = sampler.run(o.seed(), first, count, x0, (d, tot) -> bar.update(done + d));
                        System.arraycopy(r, 0, all, first * per, count * per);
                    }
                    bar.finish();
                }
            }
            long tSample = System.nanoTime();
            if (c == 1 || c == 3) {
                for (int i = 0; i < n; i++) {
                    Images.writePng(o.out().resolve(String.format(Locale.ROOT, "sample_%05d.png", i)), Images.image(all, i, c, h, w));
                }
                Images.writePng(o.out().resolve("grid.png"), Images.scaled(Images.grid(all, n, c, h, w), o.gridScale()));
            } else {
                out.println("sample: " + c + " channels: no PNG written (only 1 or 3 channels)");
            }
            if (o.saveNpy()) Npy.write(o.out().resolve("samples.npy"), new long[] {n, c, h, w}, all);
            long tEnd = System.nanoTime();
            out.printf(Locale.ROOT, "sample: load %.2f s, sampling %.2f s (%.1f ms per step per batch), writing %.2f s; wrote %s%n",
                    (tLoad - t0) / 1e9, (tSample - tLoad) / 1e9,
                    (tSample - tLoad) / 1e6 / Math.max(1, ((n + batch - 1) / batch) * steps), (tEnd - tSample) / 1e9,
                    o.out().resolve(c == 1 || c == 3 ? "grid.png" : "").toAbsolutePath());
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
        return 0;
    }

    private static String describe(SamplerScheduler s) {
        return switch (s) {
            case DdpmScheduler d -> d.prediction().configName() + ", " + d.variance().configName() + ", "
                    + d.spacing().configName() + (d.thresholding() != null ? ", thresholding" : d.clipSample() ? ", clip "
                    + d.clipSampleRange() : "");
            case DdimScheduler d -> d.prediction().configName() + ", eta " + d.eta() + ", " + d.spacing().configName()
                    + (d.thresholding() != null ? ", thresholding" : d.clipSample() ? ", clip " + d.clipSampleRange() : "");
            case DpmSolverScheduler d -> d.prediction().configName() + ", 2M, " + d.spacing().configName()
                    + ", final sigma " + d.finalSigmas().configName() + (d.thresholding() != null ? ", thresholding" : "");
        };
    }
}
