package io.diffusion4j.cli;

import io.diffusion4j.Device;
import io.diffusion4j.Diffusion4j;
import io.diffusion4j.DiffusionPipeline;
import io.diffusion4j.SamplerConfig;
import io.diffusion4j.Samples;
import io.diffusion4j.TrainingRun;
import io.diffusion4j.TrainingStep;
import io.diffusion4j.Precision;
import io.diffusion4j.sample.Images;
import io.diffusion4j.train.ProceduralDataset;
import io.diffusion4j.train.TrainingDefaults;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The {@code demo} command: on a machine with no data, trains the default small UNet on the built-in procedural
 * shapes for a few minutes, saves the checkpoint, loads it back as a pipeline and samples a DDIM-50 grid of 16
 * images, printing where everything went and how long each phase took. Training and sampling go through the
 * public API ({@code io.diffusion4j}), as a user of the jar would write them; the pictures are enlarged so a
 * person can judge them, with training examples beside the samples.
 */
@Command(name = "demo", mixinStandardHelpOptions = true, synopsisHeading = "usage: ",
        versionProvider = Main.Version.class,
        description = {"Train a small UNet on built-in shapes for a few minutes, then sample a grid (no data needed).", "",
            "Trains the default 28x28 UNet (block_out_channels 32/64/64) on the built-in procedural shapes "
            + "(no download) for --steps steps of batch 16 (a few minutes on a CPU), writes the checkpoint to "
            + "DIR/checkpoint, loads it back and samples --samples images with DDIM into DIR/grid.png and "
            + "DIR/samples/; DIR/compare.png shows training examples (left) beside the samples (right)."})
final class DemoCommand implements Callable<Integer> {
    /** Default training steps: about 3 minutes on 2 idle x86-64 cores (CPU backend). */
    static final int DEFAULT_STEPS = 1200;

    @Option(names = "--out", paramLabel = "DIR", description = "output folder (default: ${DEFAULT-VALUE})")
    Path out = Path.of("demo-output");

    @Option(names = "--steps", paramLabel = "N", description = "training steps (default: ${DEFAULT-VALUE})")
    int steps = DEFAULT_STEPS;

    @Option(names = "--samples", paramLabel = "N", description = "images to sample (default: ${DEFAULT-VALUE})")
    int samples = 16;

    @Option(names = "--sampling-steps", paramLabel = "N", description = "DDIM steps (default: ${DEFAULT-VALUE})")
    int samplingSteps = 50;

    @Option(names = "--grid-scale", paramLabel = "K",
            description = "enlarge grid.png and compare.png K times, nearest neighbour (default: ${DEFAULT-VALUE})")
    int gridScale = 4;

    @Option(names = "--seed", paramLabel = "N", description = "seed of training and sampling (default: ${DEFAULT-VALUE})")
    long seed;

    @Mixin
    DeviceOptions device;

    @Spec
    CommandSpec spec;

    private final PrintStream stdout;

    DemoCommand(Main.Io io) {
        this.stdout = io.out();
    }

    @Override
    public Integer call() throws IOException {
        Main.atLeast(spec, "--steps", steps, 1);
        Main.atLeast(spec, "--samples", samples, 1);
        Main.atLeast(spec, "--sampling-steps", samplingSteps, 1);
        Main.atLeast(spec, "--grid-scale", gridScale, 1);
        if (gridScale > 16) throw Main.bad(spec, "--grid-scale must be <= 16, got " + gridScale);
        return demo(out, steps, samples, samplingSteps, gridScale, seed, device.backend, device.threads(spec),
                device.precision(spec), stdout);
    }

    static int demo(Path outDir, int steps, int n, int samplingSteps, int gridScale, long seed, String backend, int threads,
                    Precision asked, PrintStream out) throws IOException {
        long t0 = System.nanoTime();
        Path checkpoint = outDir.resolve("checkpoint");
        try (Diffusion4j d4j = backend == null ? Diffusion4j.open() : Diffusion4j.open(Device.fromName(backend))) {
            if (threads > 0) d4j.setThreads(threads);
            Precision precision = asked != null ? asked : Precision.defaultFor(d4j.device());
            if (!precision.supportedOn(d4j.device())) {
                throw new IllegalArgumentException(DeviceOptions.unsupported(precision, d4j.device()));
            }
            d4j.setPrecision(precision);
            long tOpen = System.nanoTime();
            out.printf(Locale.ROOT, "demo: device %s (%s), precision %s%n", d4j.device().cliName(), d4j.description(),
                    precision.cliName());

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
            Images.writePng(grid, Images.scaled(samples.grid(), gridScale));
            samples.writePngs(outDir.resolve("samples"));
            Path compare = outDir.resolve("compare.png");
            Images.writePng(compare, Images.scaled(sideBySide(trainingExamples(n, seed), samples.grid()), gridScale));
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
            out.println("  " + grid.toAbsolutePath() + "   the sample grid (enlarged " + gridScale + "x)");
            out.println("  " + compare.toAbsolutePath() + "   training examples (left) beside the samples (right)");
            out.println("  " + outDir.resolve("samples").toAbsolutePath() + "/sample_*.png   each sample");
            out.println("  " + checkpoint.toAbsolutePath() + "/   the checkpoint (loss.csv, loss_curve.png beside it)");
            out.println("next: java -jar src/cli/target/diffusion4j.jar sample --checkpoint " + checkpoint
                    + " --sampler dpmsolver++ --steps 20");
        }
        return 0;
    }

    private static String seconds(double s) {
        if (!Double.isFinite(s)) return "?";
        long r = Math.round(s);
        return r >= 60 ? String.format(Locale.ROOT, "%dm%02ds", r / 60, r % 60) : String.format(Locale.ROOT, "%.1f s", s);
    }

    /** A grid of the first n images the run trained from (the procedural shapes of the same seed). */
    private static BufferedImage trainingExamples(int n, long seed) {
        ProceduralDataset data = ProceduralDataset.forModel(TrainingDefaults.config(), seed);
        int pixels = data.channels() * data.height() * data.width();
        float[] nchw = new float[n * pixels];
        for (int i = 0; i < n; i++) data.image(i, nchw, i * pixels);
        return Images.grid(nchw, n, data.channels(), data.height(), data.width());
    }

    /** Two images of the same type next to each other, with a white 4-pixel band between them. */
    private static BufferedImage sideBySide(BufferedImage left, BufferedImage right) {
        int gap = 4;
        BufferedImage both = new BufferedImage(left.getWidth() + gap + right.getWidth(),
                Math.max(left.getHeight(), right.getHeight()), left.getType());
        var g = both.createGraphics();
        g.setColor(java.awt.Color.WHITE);
        g.fillRect(left.getWidth(), 0, gap, both.getHeight());
        g.dispose();
        both.getRaster().setRect(0, 0, left.getRaster());
        both.getRaster().setRect(left.getWidth() + gap, 0, right.getRaster());
        return both;
    }
}
