package io.diffusion4j.cli;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.io.Npy;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.RunMemory;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.sample.DdimScheduler;
import io.diffusion4j.sample.DdpmScheduler;
import io.diffusion4j.sample.DpmSolverScheduler;
import io.diffusion4j.sample.ImageInputs;
import io.diffusion4j.sample.Images;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.sample.SamplerScheduler;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.CheckpointFiles;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The {@code sample} command: loads a checkpoint (ours or a diffusers UNet2DModel folder, or a pipeline folder
 * with unet/ and scheduler/), samples n images and writes one PNG per image, a grid PNG and optionally the
 * float32 samples as .npy, all atomically.
 */
@Command(name = "sample", mixinStandardHelpOptions = true, synopsisHeading = "usage: ",
        versionProvider = Main.Version.class,
        description = {"Sample images from a checkpoint (ours or diffusers) into PNG files.", "",
            "Writes one PNG per image into --out, a grid PNG and optionally the float32 samples as .npy."})
public final class SampleCommand implements Callable<Integer> {
    @Option(names = "--checkpoint", required = true, paramLabel = "DIR",
            description = "a checkpoint of the train command, a diffusers UNet2DModel folder, or a pipeline folder with unet/ and scheduler/")
    Path checkpoint;

    @Option(names = "--sampler", paramLabel = "NAME", description = "ddpm, ddim or dpmsolver++ (default: ${DEFAULT-VALUE})")
    String sampler = "ddim";

    @Option(names = "--steps", paramLabel = "N",
            description = "inference steps (default: 50 for ddim, 20 for dpmsolver++, every training timestep for ddpm)")
    int steps = -1;

    @Option(names = "--eta", paramLabel = "X", description = "DDIM's eta, >= 0 (default: ${DEFAULT-VALUE})")
    float eta;

    @Option(names = "--n", paramLabel = "N", description = "images (default: ${DEFAULT-VALUE})")
    int n = 16;

    @Option(names = "--batch-size", paramLabel = "N", description = "images per model call (default: ${DEFAULT-VALUE})")
    int batchSize = 16;

    @Option(names = "--seed", paramLabel = "N", description = "seed of the initial noise (default: ${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--out", paramLabel = "DIR", description = "output folder (default: ${DEFAULT-VALUE})")
    Path out = Path.of("samples");

    @Option(names = "--no-ema", description = "the raw weights instead of ema/ (used by default when the checkpoint has it)")
    boolean noEma;

    @Option(names = "--init-noise", paramLabel = "FILE.npy", description = "the initial noise, float32 [n, c, h, w]")
    Path initNoise;

    @Option(names = "--save-npy", description = "also write the samples as float32 samples.npy")
    boolean saveNpy;

    @Option(names = "--grid-scale", paramLabel = "K",
            description = "the grid's pixels enlarged K times, nearest neighbour, 1 to 16 (default: ${DEFAULT-VALUE})")
    int gridScale = 1;

    @Option(names = "--class-labels", paramLabel = "L,L,...", description = "a class-conditional model: one class per "
            + "image, one for all, or k classes for --n a multiple of k (each for n/k consecutive images: one grid row "
            + "per class when n = k^2), by number or name (the names of class_labels.json); without it the model's "
            + "null class (unconditional)")
    String classLabels;

    @Option(names = "--guidance-scale", paramLabel = "S", description = "classifier-free guidance: 1 = the conditional "
            + "model alone, S > 1 = uncond + S (cond - uncond), both predictions in one batched model call "
            + "(default: ${DEFAULT-VALUE})")
    float guidanceScale = 1f;

    @Option(names = "--init-image", paramLabel = "FILE", description = "a PNG or JPEG (resized to the model's size): "
            + "image-to-image with --strength, or inpainting with --mask-image")
    Path initImage;

    @Option(names = "--mask-image", paramLabel = "FILE", description = "inpainting (RePaint) mask, diffusers' "
            + "RePaintPipeline convention: white (>= 128) keeps the init image's pixel, black is generated")
    Path maskImage;

    @Option(names = "--strength", paramLabel = "S", description = "image-to-image (SDEdit): noise the init image to "
            + "S of the way up the schedule and run the last S x steps, 0 < S <= 1 (default: ${DEFAULT-VALUE})")
    double strength = io.diffusion4j.SamplerConfig.DEFAULT_STRENGTH;

    @Option(names = "--jump-length", paramLabel = "N", description = "inpainting: RePaint's jump length (default: "
            + "${DEFAULT-VALUE})")
    int jumpLength = io.diffusion4j.SamplerConfig.DEFAULT_JUMP_LENGTH;

    @Option(names = "--jump-n-sample", paramLabel = "N", description = "inpainting: RePaint's resampling count, 1 = none "
            + "(default: ${DEFAULT-VALUE}; the run makes about N times the steps' model calls)")
    int jumpNSample = io.diffusion4j.SamplerConfig.DEFAULT_JUMP_N_SAMPLE;

    @Option(names = "--use-clipped-model-output", description = "ddim: re-derive the noise from the clipped x0 "
            + "prediction (diffusers' use_clipped_model_output)")
    boolean useClippedModelOutput;

    @Mixin
    DeviceOptions device;

    @Mixin
    MemoryOptions memory;

    @Spec
    CommandSpec spec;

    private final PrintStream stdout, stderr;

    SampleCommand(Main.Io io) {
        this.stdout = io.out();
        this.stderr = io.err();
    }

    /** Parsed options. */
    record Options(Path checkpoint, String sampler, int steps, float eta, int n, int batchSize, long seed, Path out,
                   boolean noEma, Path initNoise, boolean saveNpy, String backend, int threads, Precision precision,
                   int gridScale, String classLabels, float guidanceScale, Path initImage, Path maskImage, double strength,
                   int jumpLength, int jumpNSample, boolean useClippedModelOutput, long maxMemory) {}

    @Override
    public Integer call() {
        Options o = options();
        try {
            return sample(o, stdout, stderr);
        } catch (IOException e) {
            stderr.println("error: " + Main.describe(e));
            return Main.FAILED;
        }
    }

    private Options options() {
        var given = spec.commandLine().getParseResult();
        if (given.hasMatchedOption("--steps")) Main.atLeast(spec, "--steps", steps, 1);
        Main.atLeast(spec, "--n", n, 1);
        Main.atLeast(spec, "--batch-size", batchSize, 1);
        Main.atLeast(spec, "--grid-scale", gridScale, 1);
        if (gridScale > 16) throw Main.bad(spec, "--grid-scale must be <= 16, got " + gridScale);
        if (!sampler.equals("ddpm") && !sampler.equals("ddim") && !sampler.equals("dpmsolver++")) {
            throw Main.bad(spec, "--sampler must be ddpm, ddim or dpmsolver++, got '" + sampler + "'");
        }
        if (!(eta >= 0 && Float.isFinite(eta))) throw Main.bad(spec, "--eta must be finite and >= 0");
        if (eta != 0 && !sampler.equals("ddim")) throw Main.bad(spec, "--eta applies to ddim only");
        if (!(Float.isFinite(guidanceScale) && guidanceScale >= 0)) {
            throw Main.bad(spec, "--guidance-scale must be finite and >= 0, got " + guidanceScale);
        }
        if (!(strength > 0 && strength <= 1)) throw Main.bad(spec, "--strength must be in (0, 1], got " + strength);
        Main.atLeast(spec, "--jump-length", jumpLength, 1);
        Main.atLeast(spec, "--jump-n-sample", jumpNSample, 1);
        if (maskImage != null && initImage == null) throw Main.bad(spec, "--mask-image needs --init-image (the image to inpaint)");
        if (given.hasMatchedOption("--strength") && (initImage == null || maskImage != null)) {
            throw Main.bad(spec, "--strength applies to image-to-image: --init-image without --mask-image");
        }
        if ((given.hasMatchedOption("--jump-length") || given.hasMatchedOption("--jump-n-sample")) && maskImage == null) {
            throw Main.bad(spec, "--jump-length and --jump-n-sample apply to inpainting (--mask-image)");
        }
        if (useClippedModelOutput && !sampler.equals("ddim")) throw Main.bad(spec, "--use-clipped-model-output applies to ddim only");
        if (initImage != null && initNoise != null) throw Main.bad(spec, "--init-image and --init-noise exclude each other");
        return new Options(checkpoint, sampler, steps, eta, n, batchSize, seed, out, noEma, initNoise, saveNpy,
                device.backend, device.threads(spec), device.precision(spec), gridScale, classLabels, guidanceScale,
                initImage, maskImage, strength, jumpLength, jumpNSample, useClippedModelOutput, memory.limitBytes(spec));
    }

    static int sample(Options o, PrintStream out, PrintStream err) throws IOException {
        long t0 = System.nanoTime();
        CheckpointFiles loc = CheckpointFiles.locate(o.checkpoint(), o.noEma());
        UNet2DConfig config = Checkpoint.readConfig(loc.modelDir());
        NoiseSchedule schedule = Checkpoint.readSchedule(loc.schedulerConfig());
        Map<String, Object> schedCfg = loc.readSchedulerConfig();
        SamplerScheduler scheduler;
        try {
            scheduler = SamplerScheduler.fromConfig(o.sampler(), o.eta(), schedCfg);
        } catch (IllegalArgumentException e) {
            throw new IOException(loc.schedulerConfig() + ": " + e.getMessage(), e);
        }
        if (o.useClippedModelOutput() && scheduler instanceof DdimScheduler d) scheduler = d.withUseClippedModelOutput(true);
        int T = schedule.numTrainTimesteps();
        int steps = o.steps() > 0 ? o.steps() : switch (o.sampler()) {
            case "ddpm" -> T;
            case "ddim" -> Math.min(50, T);
            default -> Math.min(20, T);
        };
        int h = config.sampleHeight(), w = config.sampleWidth(), c = config.inChannels();
        int n = o.n();
        float[] init = null;
        if (h < 1 || w < 1) {
            throw new IOException(loc.modelDir().resolve(Checkpoint.CONFIG) + ": no sample_size (the image size to sample)");
        }
        if (o.initNoise() != null) {
            // the header first: the shape must be the model's before a byte of data is read
            long[] s = Npy.header(o.initNoise()).shape();
            if (s.length != 4 || s[1] != c || s[2] != h || s[3] != w || s[0] < 1 || s[0] > Integer.MAX_VALUE) {
                throw new IOException(o.initNoise() + ": shape " + java.util.Arrays.toString(s) + " is not [n, " + c + ", "
                        + h + ", " + w + "]");
            }
            n = (int) s[0];
        }
        int batch = Math.min(o.batchSize(), n);
        MemoryOptions.check(String.format(Locale.ROOT, "sample: %d images of %dx%dx%d at batch %d", n, c, h, w, batch),
                RunMemory.sampling(config, batch, h, w, (long) n * (o.initNoise() != null ? 2 : 1)), o.maxMemory(),
                "lower --batch-size or --n");
        if (o.initNoise() != null) {
            Npy.Array a = Npy.read(o.initNoise());
            long bad = Npy.firstNonFinite(a.data());
            if (bad >= 0) {
                throw new IOException(o.initNoise() + ": element " + Npy.indexIn(a.shape(), bad) + " is "
                        + a.data()[(int) bad] + "; the initial noise must be finite");
            }
            init = a.data();
        }
        ClassLabels classes = ClassLabels.forModel(config, loc.modelDir());
        int[] labels = classLabels(o, classes, loc, n);
        if (o.guidanceScale() != 1f && (classes == null || !classes.hasNullClass())) {
            throw new IOException(classes == null
                    ? "--guidance-scale " + o.guidanceScale() + " needs a class-conditional model; " + loc.modelDir() + " is unconditional"
                    : loc.modelDir() + " has no null class (its " + ClassLabels.FILE + " says null_class -1): guidance needs one");
        }
        if (classes != null && labels == null && !classes.hasNullClass()) {
            throw new IOException(loc.modelDir() + " is class-conditional without a null class: give --class-labels");
        }
        float[] image = null, mask = null;
        if (o.initImage() != null) {
            if (c != 1 && c != 3) throw new IOException("--init-image: the model has " + c + " channels (images give 1 or 3)");
            image = ImageInputs.perImage("--init-image", ImageInputs.readImage(o.initImage(), h, w, c), n, h, w, c, false);
        }
        if (o.maskImage() != null) mask = ImageInputs.perImage("--mask-image", ImageInputs.readMask(o.maskImage(), h, w), n, h, w, c, true);
        if (o.guidanceScale() > 1 && scheduler instanceof DdimScheduler d && d.clipSample() && !d.useClippedModelOutput()) {
            err.println("note: guided DDIM with clip_sample keeps the model's noise beside the clipped x0 (diffusers'"
                    + " default), which degrades guided samples; --use-clipped-model-output re-derives it (docs/conditional.md)");
        }
        Files.createDirectories(o.out());
        try (Backend backend = Backend.open(o.backend())) {
            if (o.threads() > 0) backend.setThreads(o.threads());
            Precision precision = DeviceOptions.apply(backend, o.precision());
            float[] weights = Checkpoint.readWeights(loc.weights(), io.diffusion4j.model.UNet2DLayout.of(config));
            long tLoad = System.nanoTime();
            out.printf(Locale.ROOT, "sample: %s-%d (%s) of %d images %dx%dx%d, batch %d, seed %d, %s weights, on %s (%s), precision %s%n",
                    scheduler.name(), steps, describe(scheduler), n, c, h, w, batch, o.seed(), loc.ema() ? "EMA" : "raw",
                    backend.kind().cliName(), backend.description(), precision.cliName());
            float[] all = new float[Math.toIntExact((long) n * c * h * w)];
            try (UNet2DModel model = new UNet2DModel(backend, config, 0L)) {
                model.loadFlat(weights);
                try (Sampler sampler = new Sampler(model, schedule, scheduler, steps, batch, h, w)) {
                    int per = c * h * w;
                    int batches = (n + batch - 1) / batch;
                    Sampler.Inputs every = new Sampler.Inputs(labels, classes == null ? -1 : classes.nullClass(),
                            o.guidanceScale(), image, mask, o.strength(), o.jumpLength(), o.jumpNSample());
                    int opsPerBatch = sampler.runPlan(every).ops().size();
                    ProgressBar bar = ProgressBar.on(err, batches * opsPerBatch, "sampling", "steps");
                    for (int k = 0; k < batches; k++) {
                        int first = k * batch;
                        int count = Math.min(batch, n - first);
                        float[] x0 = init == null ? null : java.util.Arrays.copyOfRange(init, first * per, (first + count) * per);
                        int done = k * opsPerBatch;
                        float[] r = sampler.run(o.seed(), first, count, x0, every.slice(first, count, per),
                                (d, tot) -> bar.update(done + d));
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

    /** --class-labels as one label per image (numbers or class names), or null. */
    private static int[] classLabels(Options o, ClassLabels classes, CheckpointFiles loc, int n) throws IOException {
        if (o.classLabels() == null) return null;
        if (classes == null) {
            throw new IOException("--class-labels: " + loc.modelDir() + " is an unconditional model (its config has no"
                    + " num_class_embeds)");
        }
        String[] parts = o.classLabels().split(",", -1);
        if (n % parts.length != 0) {
            throw new IOException("--class-labels: give one class, one per image, or a list whose length divides --n ("
                    + n + "), got " + parts.length);
        }
        int run = n / parts.length; // each listed class for this many consecutive images
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            String p = parts[i / run];
            int v = classes.parse(p);
            if (v < 0) {
                throw new IOException("--class-labels: '" + p.trim() + "' is not a class of this model (0 to "
                        + (classes.names().size() - 1) + ", or a name: " + String.join(", ", classes.names()) + ")");
            }
            out[i] = v;
        }
        return out;
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
