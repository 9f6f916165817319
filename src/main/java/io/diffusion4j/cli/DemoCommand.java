package io.diffusion4j.cli;

import io.diffusion4j.Device;
import io.diffusion4j.Diffusion4j;
import io.diffusion4j.DiffusionPipeline;
import io.diffusion4j.SamplerConfig;
import io.diffusion4j.Samples;
import io.diffusion4j.TrainingRun;
import io.diffusion4j.TrainingStep;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The {@code demo} command: on a machine with no data, trains the default small UNet on the built-in procedural
 * shapes for a few minutes, saves the checkpoint, loads it back as a pipeline and samples a DDIM-50 grid of 16
 * images, printing where everything went and how long each phase took. Written only against the public API
 * ({@code io.diffusion4j}), as a user of the jar would write it.
 */
final class DemoCommand {
    private DemoCommand() {}

    /** Default training steps: about 3 minutes on 2 idle x86-64 cores (CPU backend). */
    static final int DEFAULT_STEPS = 1200;

    static final String USAGE = "demo [--out DIR] [--steps N] [--samples N] [--sampling-steps N] [--seed N]\n"
            + "     [--backend cpu|cuda|cuda-sim] [--threads N]";

    static int run(String[] args, PrintStream out, PrintStream err) {
        Map<String, String> given = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--help") || a.equals("-h")) {
                out.println("usage: java -jar target/diffusion4j.jar " + USAGE);
                out.println();
                out.println("Trains the default 28x28 UNet (block_out_channels 32/64/64) on the built-in procedural");
                out.println("shapes (no download) for --steps steps of batch 16 (default " + DEFAULT_STEPS + ", a few");
                out.println("minutes on a CPU), writes the checkpoint to DIR/checkpoint, loads it back and samples");
                out.println("--samples images (default 16) with DDIM (--sampling-steps, default 50) into DIR/grid.png");
                out.println("and DIR/samples/. Defaults: --out demo-output, --seed 0, the best backend.");
                return 0;
            }
            if (!Map.of("--out", 0, "--steps", 0, "--samples", 0, "--sampling-steps", 0, "--seed", 0, "--backend", 0,
                    "--threads", 0).containsKey(a)) {
                throw new IllegalArgumentException("demo: unknown option '" + a + "'\nusage: " + USAGE);
            }
            if (i + 1 >= args.length) throw new IllegalArgumentException("demo: " + a + " needs a value");
            if (given.put(a, args[++i]) != null) throw new IllegalArgumentException("demo: " + a + " given twice");
        }
        Path outDir = Path.of(given.getOrDefault("--out", "demo-output"));
        int steps = intArg(given, "--steps", DEFAULT_STEPS);
        int n = intArg(given, "--samples", 16);
        int samplingSteps = intArg(given, "--sampling-steps", 50);
        long seed;
        try {
            seed = Long.parseLong(given.getOrDefault("--seed", "0"));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("demo: --seed needs an integer, got '" + given.get("--seed") + "'");
        }
        int threads = given.containsKey("--threads") ? intArg(given, "--threads", 0) : 0;
        String backend = given.get("--backend");
        try {
            return demo(outDir, steps, n, samplingSteps, seed, backend, threads, out);
        } catch (IOException e) {
            err.println("demo: " + e.getMessage());
            return 1;
        }
    }

    private static int intArg(Map<String, String> given, String name, int def) {
        String v = given.get(name);
        if (v == null) return def;
        try {
            int x = Integer.parseInt(v);
            if (x < 1) throw new IllegalArgumentException("demo: " + name + " must be >= 1, got " + x);
            return x;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("demo: " + name + " needs an integer, got '" + v + "'");
        }
    }

    static int demo(Path outDir, int steps, int n, int samplingSteps, long seed, String backend, int threads,
                    PrintStream out) throws IOException {
        long t0 = System.nanoTime();
        Path checkpoint = outDir.resolve("checkpoint");
        try (Diffusion4j d4j = backend == null ? Diffusion4j.open() : Diffusion4j.open(Device.fromName(backend))) {
            if (threads > 0) d4j.setThreads(threads);
            long tOpen = System.nanoTime();
            out.printf(Locale.ROOT, "demo: device %s (%s)%n", d4j.device().cliName(), d4j.description());

            // 1. train
            int every = Math.max(1, steps / 10);
            long tTrain, tSave;
            TrainingStep last;
            try (TrainingRun run = d4j.newTrainingRun().steps(steps).seed(seed).progress(s -> {
                if (s.step() % every == 0 || s.step() == s.totalSteps()) {
                    double left = s.elapsedSeconds() / s.step() * (s.totalSteps() - s.step());
                    out.printf(Locale.ROOT, "train: step %5d/%d  loss %.4f  %.1f img/s  %s left%n", s.step(), s.totalSteps(),
                            s.loss(), s.step() * 16 / s.elapsedSeconds(), seconds(left));
                    out.flush();
                }
            }).build()) {
                out.printf(Locale.ROOT, "train: %s; UNet2DModel of %,d parameters, %d steps of batch 16%n",
                        run.dataDescription(), run.parameterCount(), steps);
                out.flush();
                long start = System.nanoTime();
                last = run.train();
                tTrain = System.nanoTime() - start;
                long s0 = System.nanoTime();
                run.save(checkpoint);
                tSave = System.nanoTime() - s0;
            }

            // 2. sample from the saved checkpoint, as a user of the API would
            long tLoad0 = System.nanoTime();
            Samples samples;
            long tSample, tLoad;
            boolean ema;
            SamplerConfig ddim = SamplerConfig.ddim(samplingSteps).withSeed(seed);
            try (DiffusionPipeline pipe = d4j.loadPipeline(checkpoint)) {
                long s0 = System.nanoTime();
                tLoad = s0 - tLoad0;
                ema = pipe.usesEmaWeights();
                samples = pipe.sample(ddim, n);
                tSample = System.nanoTime() - s0;
            }
            long tW0 = System.nanoTime();
            Path grid = outDir.resolve("grid.png");
            samples.writeGridPng(grid);
            samples.writePngs(outDir.resolve("samples"));
            long tEnd = System.nanoTime();

            out.println();
            out.printf(Locale.ROOT, "demo: done in %s (device %s)%n", seconds((tEnd - t0) / 1e9), d4j.device().cliName());
            out.printf(Locale.ROOT, "  startup    %7.2f s%n", (tOpen - t0) / 1e9);
            out.printf(Locale.ROOT, "  training   %7.2f s  %d steps, %.1f img/s, final loss %.4f%n", tTrain / 1e9, steps,
                    steps * 16 / (tTrain / 1e9), last.loss());
            out.printf(Locale.ROOT, "  saving     %7.2f s%n", tSave / 1e9);
            out.printf(Locale.ROOT, "  loading    %7.2f s  (%s weights)%n", tLoad / 1e9, ema ? "EMA" : "model");
            out.printf(Locale.ROOT, "  sampling   %7.2f s  %d images, %s%n", tSample / 1e9, n, ddim);
            out.printf(Locale.ROOT, "  writing    %7.2f s%n", (tEnd - tW0) / 1e9);
            out.println("wrote:");
            out.println("  " + grid.toAbsolutePath() + "   the sample grid");
            out.println("  " + outDir.resolve("samples").toAbsolutePath() + "/sample_*.png   each sample");
            out.println("  " + checkpoint.toAbsolutePath() + "/   the checkpoint (loss.csv, loss_curve.png beside it)");
            out.println("next: java -jar target/diffusion4j.jar sample --checkpoint " + checkpoint
                    + " --sampler dpmsolver++ --steps 20");
        }
        return 0;
    }

    private static String seconds(double s) {
        if (!Double.isFinite(s)) return "?";
        long r = Math.round(s);
        return r >= 60 ? String.format(Locale.ROOT, "%dm%02ds", r / 60, r % 60) : String.format(Locale.ROOT, "%.1f s", s);
    }
}
