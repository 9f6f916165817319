package io.diffusion4j.cli;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.eval.NllEvaluator;
import io.diffusion4j.eval.NllEvaluator.Estimate;
import io.diffusion4j.eval.NllEvaluator.ImageResult;
import io.diffusion4j.io.Json;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.sample.DdpmScheduler;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.CheckpointFiles;
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
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The {@code eval-nll} command: the negative log-likelihood of a test set in bits/dim by the variational bound
 * ({@link NllEvaluator}), from a checkpoint (ours or a diffusers folder) and its scheduler_config.json
 * (prediction_type, variance_type, clip_sample, clip_sample_range).
 */
@Command(name = "eval-nll", mixinStandardHelpOptions = true, synopsisHeading = "usage: ",
        versionProvider = Main.Version.class,
        description = {"Negative log-likelihood in bits/dim of a test set by the variational bound.", "",
            "Negative log-likelihood in bits/dim on a test set by the variational bound of Ho et al., as "
            + "improved-diffusion's calc_bpd_loop computes it: prior KL + the Gaussian KL terms of every timestep + the "
            + "discretized Gaussian decoder for 8-bit data; mean \u00b1 standard error over the images.",
            "",
            "Cost: the exact bound needs T model calls (T = num_train_timesteps, usually 1000) per batch of "
            + "--batch-size images. For the default 28x28 model (1.1M parameters) on 2 busy CPU cores that was "
            + "~27 ms per image per timestep at batch 16, i.e. ~27 s per image for T = 1000: the default 8 images "
            + "take a few minutes and the 10000-image test set days on a CPU; use a GPU, a smaller --n, or "
            + "--timestep-stride for a quick estimate.", ""})
public final class EvalNllCommand implements Callable<Integer> {
    /** Seed of the procedural test images: not a seed the train command's procedural data uses by default. */
    static final long PROCEDURAL_TEST_SEED = 0x7E57_DA7AL;
    static final int PROCEDURAL_TEST_IMAGES = 10000;

    @Option(names = "--checkpoint", required = true, paramLabel = "DIR", description = "a checkpoint (ours or a diffusers folder)")
    Path checkpoint;

    @Option(names = "--data", paramLabel = "NAME", description = "fashion-mnist: the t10k test split in --data-dir; "
            + "procedural: built-in shapes of a test seed the train command does not use (default: ${DEFAULT-VALUE})")
    String data = "fashion-mnist";

    @Option(names = "--data-dir", paramLabel = "DIR", description = "Fashion-MNIST's IDX files (default: "
            + "/usr/share/datasets/fashion-mnist)")
    Path dataDir;

    @Option(names = "--n", paramLabel = "N", description = "images, the first N of the test set (default: ${DEFAULT-VALUE})")
    int n = 8;

    @Option(names = "--batch-size", paramLabel = "N", description = "images per model call (default: ${DEFAULT-VALUE})")
    int batchSize = 16;

    @Option(names = "--seed", paramLabel = "N", description = "seed of the noise (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--timestep-stride", paramLabel = "K", description = "evaluate every K-th KL term and scale their "
            + "sum: an ESTIMATE, not the bound (default: ${DEFAULT-VALUE} = the exact bound)")
    int stride = 1;

    @Option(names = "--no-ema", description = "the raw weights instead of ema/ (the default when present)")
    boolean noEma;

    @Option(names = "--no-clip", description = "do not clip the x0 prediction (default: clip_sample of the scheduler "
            + "config, improved-diffusion's clip_denoised=True)")
    boolean noClip;

    @Mixin
    DeviceOptions device;

    @Spec
    CommandSpec spec;

    private final PrintStream stdout, stderr;

    EvalNllCommand(Main.Io io) {
        this.stdout = io.out();
        this.stderr = io.err();
    }

    record Options(Path checkpoint, String data, Path dataDir, int n, int batchSize, long seed, int stride,
                   boolean noEma, boolean noClip, String backend, int threads, Precision precision) {}

    @Override
    public Integer call() {
        Main.atLeast(spec, "--n", n, 1);
        Main.atLeast(spec, "--batch-size", batchSize, 1);
        Main.atLeast(spec, "--timestep-stride", stride, 1);
        if (!data.equals("fashion-mnist") && !data.equals("procedural")) {
            throw Main.bad(spec, "--data must be fashion-mnist or procedural, got '" + data + "'");
        }
        if (data.equals("procedural") && dataDir != null) throw Main.bad(spec, "--data-dir applies to --data fashion-mnist only");
        Options o = new Options(checkpoint, data, dataDir, n, batchSize, seed, stride, noEma, noClip, device.backend,
                device.threads(spec), device.precision(spec));
        try {
            return evaluate(o, stdout, stderr);
        } catch (IOException e) {
            stderr.println("error: " + Main.describe(e));
            return Main.FAILED;
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
        CheckpointFiles loc = CheckpointFiles.locate(o.checkpoint(), o.noEma());
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
            Precision precision = DeviceOptions.apply(backend, o.precision());
            float[] weights = Checkpoint.readWeights(loc.weights(), UNet2DLayout.of(config));
            long tLoad = System.nanoTime();
            int calls = NllEvaluator.evaluatedTimesteps(T, o.stride()).length;
            out.printf(Locale.ROOT, "eval-nll: %d images of %s, %s weights, %s, %s, %s, T = %d, %s, batch %d, seed %d, on %s (%s), precision %s%n",
                    n, data.describe(), loc.ema() ? "EMA" : "raw", sched.prediction().configName(),
                    sched.variance().configName(), clip ? "clip_denoised " + sched.clipSampleRange() : "no clipping", T,
                    o.stride() == 1 ? "exact bound (all " + T + " terms)"
                            : "ESTIMATE: " + (calls - 1) + " of " + (T - 1) + " KL terms (stride " + o.stride() + ") scaled",
                    batch, o.seed(), backend.kind().cliName(), backend.description(), precision.cliName());
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
