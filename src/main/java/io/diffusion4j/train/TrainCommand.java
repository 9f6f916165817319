package io.diffusion4j.train;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.EmaSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The {@code train} command: trains a UNet2DModel on the procedural shapes or Fashion-MNIST, prints a
 * progress line (step, loss averaged since the last line, gradient norm, lr, it/s, images/s, ETA) every
 * {@code --log-every} steps, and writes a diffusers checkpoint folder ({@link Checkpoint}) to
 * {@code --out} at the end.
 */
public final class TrainCommand {
    private TrainCommand() {}

    public static final String USAGE = "train [--data procedural|fashion-mnist] [--data-dir DIR] [--steps N] [--batch-size N]\n"
            + "        [--lr X] [--warmup N] [--weight-decay X] [--ema-decay X] [--prediction-type epsilon|sample|v_prediction]\n"
            + "        [--beta-schedule linear|scaled_linear|squaredcos_cap_v2|sigmoid] [--timesteps T] [--config FILE]\n"
            + "        [--out DIR] [--seed N] [--backend cpu|cuda|cuda-sim] [--log-every N] [--threads N]";

    /** The default model: Fashion-MNIST sized (28x28x1), 32/64/64 channels, attention at the lowest level. */
    public static UNet2DConfig defaultConfig() {
        return UNet2DConfig.builder().sampleSize(28).inChannels(1).outChannels(1).blockOutChannels(32, 64, 64)
                .layersPerBlock(1).normNumGroups(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK, UNet2DConfig.UP_BLOCK))
                .build();
    }

    /** Runs the command; returns the exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        String data = "procedural";
        Path dataDir = FashionMnist.DEFAULT_DIRECTORY;
        int steps = 300, batch = 16, warmup = 50, logEvery = 10, timesteps = 1000, threads = 0;
        double lr = 1e-3, emaDecay = 0.999, weightDecay = 1e-6;
        PredictionType prediction = PredictionType.EPSILON;
        BetaSchedule betas = BetaSchedule.LINEAR;
        Path configFile = null;
        Path outDir = Path.of("checkpoints/train");
        long seed = 0;
        String backendName = null;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--help") || a.equals("-h")) {
                out.println("usage: java -jar target/diffusion4j.jar " + USAGE);
                out.println("defaults: procedural data, the 28x28 32/64/64 model, 300 steps of batch 16, lr 1e-3 with 50 warmup");
                out.println("steps, weight decay 1e-6, EMA decay 0.999 (with warmup), epsilon, linear betas, T 1000, seed 0,");
                out.println("--out checkpoints/train, the best backend (cuda if usable, else cpu); --data-dir defaults to "
                        + FashionMnist.DEFAULT_DIRECTORY);
                return 0;
            }
            if (!a.startsWith("--")) throw new IllegalArgumentException("train: unexpected argument '" + a + "'");
            if (i + 1 >= args.length) throw new IllegalArgumentException("train: " + a + " needs a value");
            String val = args[++i];
            switch (a) {
                case "--data" -> {
                    if (!val.equals("procedural") && !val.equals("fashion-mnist")) {
                        throw new IllegalArgumentException("train: --data must be procedural or fashion-mnist, got '" + val + "'");
                    }
                    data = val;
                }
                case "--data-dir" -> dataDir = Path.of(val);
                case "--steps" -> steps = intArg(a, val, 1);
                case "--batch-size" -> batch = intArg(a, val, 1);
                case "--warmup" -> warmup = intArg(a, val, 0);
                case "--log-every" -> logEvery = intArg(a, val, 1);
                case "--timesteps" -> timesteps = intArg(a, val, 1);
                case "--threads" -> threads = intArg(a, val, 1);
                case "--lr" -> lr = doubleArg(a, val, 0, Double.MAX_VALUE);
                case "--weight-decay" -> weightDecay = doubleArg(a, val, 0, Double.MAX_VALUE);
                case "--ema-decay" -> emaDecay = doubleArg(a, val, 0, 1);
                case "--prediction-type" -> prediction = PredictionType.fromConfigName(val);
                case "--beta-schedule" -> betas = BetaSchedule.fromConfigName(val);
                case "--config" -> configFile = Path.of(val);
                case "--out" -> outDir = Path.of(val);
                case "--seed" -> {
                    try {
                        seed = Long.parseLong(val);
                    } catch (NumberFormatException e) {
                        throw new IllegalArgumentException("train: --seed must be an integer, got '" + val + "'");
                    }
                }
                case "--backend" -> backendName = val;
                default -> throw new IllegalArgumentException("train: unknown option '" + a + "'");
            }
        }

        UNet2DConfig config;
        if (configFile == null) {
            config = defaultConfig();
        } else {
            try {
                config = UNet2DConfig.fromJson(Files.readString(configFile, StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new IllegalArgumentException("train: cannot read --config " + configFile + ": " + e.getMessage());
            } catch (RuntimeException e) {
                throw new IllegalArgumentException("train: --config " + configFile + ": " + e.getMessage());
            }
        }
        Dataset dataset;
        if (data.equals("procedural")) {
            // sample_size null in a config: the Fashion-MNIST size
            int h = config.sampleHeight() < 0 ? 28 : config.sampleHeight();
            int w = config.sampleWidth() < 0 ? 28 : config.sampleWidth();
            dataset = new ProceduralDataset(60000, h, w, config.inChannels(), seed);
        } else {
            try {
                dataset = FashionMnist.load(dataDir, true);
            } catch (IOException e) {
                err.println("train: " + e.getMessage());
                return 1;
            }
        }
        NoiseSchedule schedule = NoiseSchedule.of(betas, timesteps, 0.0001, 0.02);
        Trainer.Options options = new Trainer.Options(batch, lr, warmup,
                new OptimKernels.AdamW(lr, 0.95, 0.999, 1e-8, weightDecay), 1.0,
                EmaSchedule.power(emaDecay, 0.0, 0, 1.0, 0.75), prediction, seed, true);

        try (Backend backend = Backend.open(backendName)) {
            if (threads > 0) backend.setThreads(threads);
            try (UNet2DModel model = new UNet2DModel(backend, config, seed);
                    Trainer trainer = new Trainer(model, schedule, dataset, options)) {
                out.printf(Locale.ROOT, "train: %s on %s (%s)%n", dataset.describe(), backend.kind().cliName(),
                        backend.description());
                out.printf(Locale.ROOT, "model: %d parameters, block_out_channels %s; %d steps of batch %d, lr %.3g "
                                + "(warmup %d), %s, %s betas, T %d, seed %d%n",
                        model.layout().params().stream().mapToLong(p -> p.size()).sum(),
                        java.util.Arrays.toString(config.blockOutChannels()), steps, batch, lr, warmup,
                        prediction.configName(), betas.configName(), timesteps, seed);
                out.flush();
                long start = System.nanoTime(), last = start;
                double lossSum = 0;
                int lossCount = 0, lastStep = 0;
                double firstLoss = Double.NaN, lastLoss = Double.NaN;
                for (int s = 1; s <= steps; s++) {
                    Trainer.StepResult r = trainer.step();
                    lossSum += r.loss();
                    lossCount++;
                    if (s == 1) firstLoss = r.loss();
                    if (s % logEvery == 0 || s == steps) {
                        long now = System.nanoTime();
                        double its = (s - lastStep) / ((now - last) * 1e-9);
                        double eta = (steps - s) / its;
                        lastLoss = lossSum / lossCount;
                        out.printf(Locale.ROOT, "step %6d/%d  loss %.5f  grad-norm %.3f  lr %.3g  %.2f it/s  %.1f img/s  ETA %s%n",
                                s, steps, lastLoss, r.gradNorm(), r.learningRate(), its, its * batch, duration(eta));
                        out.flush();
                        last = now;
                        lastStep = s;
                        lossSum = 0;
                        lossCount = 0;
                    }
                }
                double secs = (System.nanoTime() - start) * 1e-9;
                try {
                    Checkpoint.save(outDir, trainer);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
                out.printf(Locale.ROOT, "done: %d steps in %s (%.1f img/s), loss %.5f (first step) -> %.5f (last %d steps); "
                                + "checkpoint written to %s%n",
                        steps, duration(secs), steps * (double) batch / secs, firstLoss, lastLoss, Math.min(logEvery, steps),
                        outDir.toAbsolutePath());
            }
        } catch (UncheckedIOException e) {
            err.println("train: cannot write the checkpoint: " + e.getCause().getMessage());
            return 1;
        }
        return 0;
    }

    private static String duration(double seconds) {
        if (!Double.isFinite(seconds)) return "?";
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60)
                : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : s + "s";
    }

    private static int intArg(String name, String v, int min) {
        try {
            int x = Integer.parseInt(v);
            if (x < min) throw new IllegalArgumentException("train: " + name + " must be >= " + min + ", got " + x);
            return x;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("train: " + name + " must be an integer, got '" + v + "'");
        }
    }

    private static double doubleArg(String name, String v, double min, double max) {
        try {
            double x = Double.parseDouble(v);
            if (!(x >= min && x <= max)) {
                throw new IllegalArgumentException("train: " + name + " must be in [" + min + ", " + max + "], got " + v);
            }
            return x;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("train: " + name + " must be a number, got '" + v + "'");
        }
    }
}
