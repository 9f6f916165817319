package io.diffusion4j.sample;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.cli.ProgressBar;
import io.diffusion4j.eval.NllEvaluator;
import io.diffusion4j.eval.NllEvaluator.Estimate;
import io.diffusion4j.eval.NllEvaluator.ImageResult;
import io.diffusion4j.io.Json;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.Dataset;
import io.diffusion4j.train.FashionMnist;
import io.diffusion4j.train.ProceduralDataset;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The {@code eval-nll} command: the negative log-likelihood of a test set in bits/dim by the variational bound
 * ({@link NllEvaluator}), from a checkpoint (ours or a diffusers folder) and its scheduler_config.json
 * (prediction_type, variance_type, clip_sample, clip_sample_range).
 */
public final class EvalNllCommand {
    private EvalNllCommand() {}

    /** Seed of the procedural test images: not a seed the train command's procedural data uses by default. */
    static final long PROCEDURAL_TEST_SEED = 0x7E57_DA7AL;
    static final int PROCEDURAL_TEST_IMAGES = 10000;

    static final String USAGE = "usage: eval-nll --checkpoint DIR [--data fashion-mnist|procedural] [--data-dir DIR]\n"
            + "                [--n N] [--batch-size N] [--seed N] [--timestep-stride K] [--no-ema] [--no-clip]\n"
            + "                [--backend cpu|cuda|cuda-sim] [--threads N]";

    record Options(Path checkpoint, String data, Path dataDir, int n, int batchSize, long seed, int stride,
                   boolean noEma, boolean noClip, String backend, int threads) {}

    public static int run(String[] args, PrintStream out, PrintStream err) {
        Options o = parse(args, out);
        if (o == null) return 0;
        try {
            return evaluate(o, out, err);
        } catch (IOException e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
    }

    static Options parse(String[] args, PrintStream out) {
        Path checkpoint = null, dataDir = null;
        String data = "fashion-mnist", backend = null;
        int n = 8, batch = 16, stride = 1, threads = 0;
        long seed = 0;
        boolean noEma = false, noClip = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--help", "-h" -> {
                    out.println(USAGE);
                    out.println("Negative log-likelihood in bits/dim on a test set by the variational bound of Ho et al.,");
                    out.println("as improved-diffusion's calc_bpd_loop computes it: prior KL + the Gaussian KL terms of");
                    out.println("every timestep + the discretized Gaussian decoder for 8-bit data; mean ± standard error");
                    out.println("over the images.");
                    out.println("  --data fashion-mnist   the t10k test split in --data-dir (default "
                            + FashionMnist.DEFAULT_DIRECTORY + ")");
                    out.println("  --data procedural      built-in shapes (a test seed the train command does not use)");
                    out.println("  --n N                  images, the first N of the test set (default 8)");
                    out.println("  --timestep-stride K    evaluate every K-th KL term and scale their sum: an ESTIMATE,");
                    out.println("                         not the bound (default 1 = the exact bound)");
                    out.println("  --no-ema               the raw weights instead of ema/ (the default when present)");
                    out.println("  --no-clip              do not clip the x0 prediction (default: clip_sample of the");
                    out.println("                         scheduler config, improved-diffusion's clip_denoised=True)");
                    out.println("Cost: the exact bound needs T model calls (T = num_train_timesteps, usually 1000) per");
                    out.println("batch of --batch-size images. Measured for the default 28x28 model (1.1M parameters)");
                    out.println("on 2 busy CPU cores: ~27 ms per image per timestep at batch 16, i.e. ~27 s per image");
                    out.println("for T = 1000, so the default 8 images take a few minutes and the 10000-image test set");
                    out.println("days on a CPU; use a GPU, a smaller --n, or --timestep-stride for a quick estimate.");
                    return null;
                }
                case "--no-ema" -> noEma = true;
                case "--no-clip" -> noClip = true;
                default -> {
                    if (i + 1 >= args.length) throw new IllegalArgumentException("eval-nll: " + a + " needs a value\n" + USAGE);
                    String v = args[++i];
                    switch (a) {
                        case "--checkpoint" -> checkpoint = Path.of(v);
                        case "--data" -> data = v;
                        case "--data-dir" -> dataDir = Path.of(v);
                        case "--n" -> n = parseInt(a, v, 1);
                        case "--batch-size" -> batch = parseInt(a, v, 1);
                        case "--seed" -> seed = parseLong(a, v);
                        case "--timestep-stride" -> stride = parseInt(a, v, 1);
                        case "--backend" -> backend = v;
                        case "--threads" -> threads = parseInt(a, v, 1);
                        default -> throw new IllegalArgumentException("eval-nll: unknown option '" + a + "'\n" + USAGE);
                    }
                }
            }
        }
        if (checkpoint == null) throw new IllegalArgumentException("eval-nll: --checkpoint DIR is required\n" + USAGE);
        if (!data.equals("fashion-mnist") && !data.equals("procedural")) {
            throw new IllegalArgumentException("eval-nll: --data must be fashion-mnist or procedural, got '" + data + "'");
        }
        if (data.equals("procedural") && dataDir != null) {
            throw new IllegalArgumentException("eval-nll: --data-dir applies to --data fashion-mnist only");
        }
        return new Options(checkpoint, data, dataDir, n, batch, seed, stride, noEma, noClip, backend, threads);
    }

    private static int parseInt(String opt, String v, int min) {
        try {
            int x = Integer.parseInt(v);
            if (x < min) throw new IllegalArgumentException("eval-nll: " + opt + " must be >= " + min + ", got " + v);
            return x;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("eval-nll: " + opt + " needs an integer, got '" + v + "'");
        }
    }

    private static long parseLong(String opt, String v) {
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("eval-nll: " + opt + " needs an integer, got '" + v + "'");
        }
    }

    static Dataset dataset(Options o, UNet2DConfig config) throws IOException {
        int h = config.sampleHeight() < 0 ? 28 : config.sampleHeight(), w = config.sampleWidth() < 0 ? 28 : config.sampleWidth();
        Dataset d = o.data().equals("procedural")
                ? new ProceduralDataset(PROCEDURAL_TEST_IMAGES, h, w, config.inChannels(), PROCEDURAL_TEST_SEED)
                : FashionMnist.load(o.dataDir() == null ? FashionMnist.DEFAULT_DIRECTORY : o.dataDir(), false);
        if (d.channels() != config.inChannels() || (config.sampleHeight() >= 0 && d.height() != config.sampleHeight())
                || (config.sampleWidth() >= 0 && d.width() != config.sampleWidth())) {
            throw new IOException(d.describe() + ": images of " + d.channels() + "x" + d.height() + "x" + d.width()
                    + " do not fit the model (" + config.inChannels() + " channels, sample_size "
                    + config.sampleHeight() + "x" + config.sampleWidth() + ")");
        }
        return d;
    }

    static int evaluate(Options o, PrintStream out, PrintStream err) throws IOException {
        long t0 = System.nanoTime();
        SampleCommand.Located loc = SampleCommand.locate(o.checkpoint(), o.noEma());
        UNet2DConfig config = Checkpoint.readConfig(loc.modelDir());
        NoiseSchedule schedule = Checkpoint.readSchedule(loc.schedulerConfig());
        DdpmScheduler sched;
        try {
            Map<String, Object> cfg = Json.parseObject(Files.readString(loc.schedulerConfig(), StandardCharsets.UTF_8));
            sched = DdpmScheduler.fromConfig(cfg);
        } catch (RuntimeException e) {
            throw new IOException(loc.schedulerConfig() + ": " + e.getMessage(), e);
        }
        Dataset data = dataset(o, config);
        int n = Math.min(o.n(), data.size());
        int batch = Math.min(o.batchSize(), n);
        int T = schedule.numTrainTimesteps();
        boolean clip = sched.clipSample() && !o.noClip();
        NllEvaluator.Options eo = new NllEvaluator.Options(sched.prediction(), sched.variance(), clip,
                (float) sched.clipSampleRange(), o.stride());
        try (Backend backend = Backend.open(o.backend())) {
            if (o.threads() > 0) backend.setThreads(o.threads());
            float[] weights = Checkpoint.readWeights(loc.weights(), UNet2DLayout.of(config));
            long tLoad = System.nanoTime();
            int calls = NllEvaluator.evaluatedTimesteps(T, o.stride()).length;
            out.printf(Locale.ROOT, "eval-nll: %d images of %s, %s weights, %s, %s, %s, T = %d, %s, batch %d, seed %d, on %s (%s)%n",
                    n, data.describe(), loc.ema() ? "EMA" : "raw", sched.prediction().configName(),
                    sched.variance().configName(), clip ? "clip_denoised " + sched.clipSampleRange() : "no clipping", T,
                    o.stride() == 1 ? "exact bound (all " + T + " terms)"
                            : "ESTIMATE: " + (calls - 1) + " of " + (T - 1) + " KL terms (stride " + o.stride() + ") scaled",
                    batch, o.seed(), backend.kind().cliName(), backend.description());
            List<ImageResult> results = new ArrayList<>(n);
            try (UNet2DModel model = new UNet2DModel(backend, config, 0L)) {
                model.loadFlat(weights);
                try (NllEvaluator ev = new NllEvaluator(model, schedule, eo, batch, data.height(), data.width())) {
                    int batches = (n + batch - 1) / batch;
                    ProgressBar bar = ProgressBar.on(err, batches * calls, "eval-nll", "model calls");
                    int per = data.imageFloats();
                    for (int k = 0; k < batches; k++) {
                        int first = k * batch, count = Math.min(batch, n - first);
                        float[] imgs = new float[count * per];
                        for (int i = 0; i < count; i++) data.image(first + i, imgs, i * per);
                        int done = k * calls;
                        results.addAll(ev.evaluate(imgs, count, o.seed(), first, (d, tot) -> bar.update(done + d)));
                    }
                    bar.finish();
                }
            }
            long tEnd = System.nanoTime();
            NllEvaluator.Summary s = NllEvaluator.Summary.of(results);
            String label = o.stride() == 1 ? "" : " (estimate, stride " + o.stride() + ")";
            out.printf(Locale.ROOT, "eval-nll: total %s bits/dim%s  (mean ± standard error over %d images)%n",
                    pm(s.total()), label, n);
            out.printf(Locale.ROOT, "  prior L_T            %s%n", pm(s.prior()));
            out.printf(Locale.ROOT, "  vb (sum of terms)    %s%s%n", pm(s.vb()), label);
            out.printf(Locale.ROOT, "    decoder L_0        %s%n", pm(s.decoder()));
            out.printf(Locale.ROOT, "    KL L_1..L_{T-1}    %s%s%n", pm(s.kl()), label);
            out.printf(Locale.ROOT, "eval-nll: load %.2f s, evaluation %.2f s (%.2f s per image, %d model calls per batch)%n",
                    (tLoad - t0) / 1e9, (tEnd - tLoad) / 1e9, (tEnd - tLoad) / 1e9 / n, calls);
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
        return 0;
    }

    private static String pm(Estimate e) {
        return String.format(Locale.ROOT, "%.4f ± %.4f", e.mean(), e.standardError());
    }
}
