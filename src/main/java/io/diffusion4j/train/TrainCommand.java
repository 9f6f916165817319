package io.diffusion4j.train;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.AtomicFiles;
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
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The {@code train} command: trains a UNet2DModel on the procedural shapes, Fashion-MNIST or a folder
 * of PNG/JPEG images, prints a progress line (step, loss averaged since the last line, gradient norm,
 * lr, it/s, images/s, ETA) every {@code --log-every} steps, and writes to {@code --out} (every
 * {@code --save-every} steps and at the end) a diffusers checkpoint folder ({@link Checkpoint}) with
 * {@code loss.csv} (step, loss, lr, grad_norm) and {@code loss_curve.png} ({@link LossCurve}) beside it.
 *
 * <p>{@code --resume DIR} continues a checkpoint written by this command: the model config, schedule,
 * trainer options and data source come from the checkpoint, an option given on the command line
 * that would change the run is refused, {@code --steps} is the total step count, and the result is
 * bit for bit the uninterrupted run on the same backend. {@code --init-from DIR} starts a new run
 * (fresh optimiser, step 0) from the weights of any diffusers UNet2DModel folder.
 */
public final class TrainCommand {
    private TrainCommand() {}

    public static final String USAGE = "train [--data procedural|fashion-mnist|images] [--data-dir DIR] [--steps N] [--batch-size N]\n"
            + "        [--lr X] [--warmup N] [--weight-decay X] [--ema-decay X] [--prediction-type epsilon|sample|v_prediction]\n"
            + "        [--beta-schedule linear|scaled_linear|squaredcos_cap_v2|sigmoid] [--timesteps T] [--min-snr-gamma X]\n"
            + "        [--config FILE] [--init-from MODEL_DIR] [--resume CHECKPOINT_DIR] [--out DIR] [--save-every N]\n"
            + "        [--seed N] [--backend cpu|cuda|cuda-sim] [--log-every N] [--threads N]";

    /** The options a resumed run takes from its checkpoint; giving one with another value is refused. */
    private static final List<String> FIXED_BY_CHECKPOINT = List.of("--data", "--batch-size", "--lr", "--warmup",
            "--weight-decay", "--ema-decay", "--prediction-type", "--beta-schedule", "--timesteps", "--min-snr-gamma",
            "--seed", "--config");
    private static final java.util.Set<String> OPTIONS = java.util.Set.of("--data", "--data-dir", "--steps", "--batch-size",
            "--lr", "--warmup", "--weight-decay", "--ema-decay", "--prediction-type", "--beta-schedule", "--timesteps",
            "--min-snr-gamma", "--config", "--init-from", "--resume", "--out", "--save-every", "--seed", "--backend",
            "--log-every", "--threads");
    private static final int PROCEDURAL_IMAGES = 60000;

    /** The default model: Fashion-MNIST sized (28x28x1), 32/64/64 channels, attention at the lowest level. */
    public static UNet2DConfig defaultConfig() {
        return UNet2DConfig.builder().sampleSize(28).inChannels(1).outChannels(1).blockOutChannels(32, 64, 64)
                .layersPerBlock(1).normNumGroups(8)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK, UNet2DConfig.UP_BLOCK))
                .build();
    }

    private static void help(PrintStream out) {
        out.println("usage: java -jar target/diffusion4j.jar " + USAGE);
        out.println();
        out.println("  --data procedural      built-in shapes, no download (default)");
        out.println("  --data fashion-mnist   IDX files in --data-dir (default " + FashionMnist.DEFAULT_DIRECTORY + ",");
        out.println("                         the dataset-fashion-mnist package)");
        out.println("  --data images          every PNG/JPEG under --data-dir (recursive, sorted), center-cropped and");
        out.println("                         resized to the model's sample_size, luminance or RGB by its in_channels");
        out.println("  --min-snr-gamma X      min-SNR-gamma loss weighting (Hang et al. 2023; 5 is the paper's choice),");
        out.println("                         0 = off (default); the reported loss is the weighted one");
        out.println("  --init-from DIR        start from the weights of a diffusers UNet2DModel folder (config.json +");
        out.println("                         diffusion_pytorch_model.safetensors; legacy attention names accepted);");
        out.println("                         the model config comes from there, the optimiser starts fresh");
        out.println("  --resume DIR           continue a checkpoint of this command exactly: config, schedule, options");
        out.println("                         and data come from it (a differing option is refused); --steps is the");
        out.println("                         total count (default: the run's planned total); --out defaults to DIR");
        out.println("  --save-every N         also write the checkpoint every N steps (default 0: only at the end)");
        out.println("  --out DIR              checkpoint folder; loss.csv and loss_curve.png are written beside it");
        out.println();
        out.println("defaults: procedural data, the 28x28 32/64/64 model, 300 steps of batch 16, lr 1e-3 with 50 warmup");
        out.println("steps, weight decay 1e-6, EMA decay 0.999 (with warmup), epsilon, linear betas, T 1000, seed 0,");
        out.println("--out checkpoints/train, the best backend (cuda if usable, else cpu). The progress line shows the");
        out.println("loss averaged since the previous line, the gradient norm, lr, it/s, images/s and the ETA.");
    }

    /** Runs the command; returns the exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        LinkedHashMap<String, String> given = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--help") || a.equals("-h")) {
                help(out);
                return 0;
            }
            if (!a.startsWith("--")) throw new IllegalArgumentException("train: unexpected argument '" + a + "'");
            if (!OPTIONS.contains(a)) throw new IllegalArgumentException("train: unknown option '" + a + "'");
            if (i + 1 >= args.length) throw new IllegalArgumentException("train: " + a + " needs a value");
            if (given.put(a, args[++i]) != null) throw new IllegalArgumentException("train: " + a + " given twice");
        }
        String data = given.getOrDefault("--data", "procedural");
        if (!data.equals("procedural") && !data.equals("fashion-mnist") && !data.equals("images")) {
            throw new IllegalArgumentException("train: --data must be procedural, fashion-mnist or images, got '" + data + "'");
        }
        Path dataDir = given.containsKey("--data-dir") ? Path.of(given.get("--data-dir")) : null;
        Integer stepsArg = given.containsKey("--steps") ? intArg("--steps", given.get("--steps"), 1) : null;
        int batch = intArg("--batch-size", given.getOrDefault("--batch-size", "16"), 1);
        int warmup = intArg("--warmup", given.getOrDefault("--warmup", "50"), 0);
        int logEvery = intArg("--log-every", given.getOrDefault("--log-every", "10"), 1);
        int timesteps = intArg("--timesteps", given.getOrDefault("--timesteps", "1000"), 1);
        int threads = given.containsKey("--threads") ? intArg("--threads", given.get("--threads"), 1) : 0;
        int saveEvery = intArg("--save-every", given.getOrDefault("--save-every", "0"), 0);
        double lr = doubleArg("--lr", given.getOrDefault("--lr", "1e-3"), 0, Double.MAX_VALUE);
        double weightDecay = doubleArg("--weight-decay", given.getOrDefault("--weight-decay", "1e-6"), 0, Double.MAX_VALUE);
        double emaDecay = doubleArg("--ema-decay", given.getOrDefault("--ema-decay", "0.999"), 0, 1);
        double gamma = doubleArg("--min-snr-gamma", given.getOrDefault("--min-snr-gamma", "0"), 0, 1e12);
        PredictionType prediction = PredictionType.fromConfigName(given.getOrDefault("--prediction-type", "epsilon"));
        BetaSchedule betas = BetaSchedule.fromConfigName(given.getOrDefault("--beta-schedule", "linear"));
        long seed = longArg("--seed", given.getOrDefault("--seed", "0"));
        Path resume = given.containsKey("--resume") ? Path.of(given.get("--resume")) : null;
        Path initFrom = given.containsKey("--init-from") ? Path.of(given.get("--init-from")) : null;
        Path outDir = Path.of(given.getOrDefault("--out", resume != null ? resume.toString() : "checkpoints/train"));
        String backendName = given.get("--backend");
        UNet2DConfig fileConfig = null;
        if (given.containsKey("--config")) {
            Path configFile = Path.of(given.get("--config"));
            try {
                fileConfig = UNet2DConfig.fromJson(Files.readString(configFile, StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new IllegalArgumentException("train: cannot read --config " + configFile + ": " + e.getMessage());
            } catch (RuntimeException e) {
                throw new IllegalArgumentException("train: --config " + configFile + ": " + e.getMessage());
            }
        }
        if (resume != null && initFrom != null) {
            throw new IllegalArgumentException("train: --resume and --init-from exclude each other (a resumed run keeps "
                    + "its own weights)");
        }
        if (data.equals("images") && dataDir == null && resume == null) {
            throw new IllegalArgumentException("train: --data images needs --data-dir DIR");
        }

        UNet2DConfig config = fileConfig == null ? defaultConfig() : fileConfig;
        NoiseSchedule schedule = NoiseSchedule.of(betas, timesteps, 0.0001, 0.02);
        Trainer.Options options = new Trainer.Options(batch, lr, warmup,
                new OptimKernels.AdamW(lr, 0.95, 0.999, 1e-8, weightDecay), 1.0,
                EmaSchedule.power(emaDecay, 0.0, 0, 1.0, 0.75), prediction, seed, true, gamma);
        Map<String, String> runMeta = new LinkedHashMap<>();
        int steps = stepsArg == null ? 300 : stepsArg;
        Checkpoint.ModelFolder init = null;
        Integer expectedImages = null;
        try {
            if (resume != null) {
                UNet2DConfig ckConfig = Checkpoint.readConfig(resume);
                Trainer.Options ck = Checkpoint.readOptions(resume);
                NoiseSchedule ckSchedule = Checkpoint.readSchedule(resume.resolve(Checkpoint.SCHEDULER));
                Map<String, String> md = Checkpoint.readStateMetadata(resume);
                String ckData = md.get("data");
                if (ckData == null || md.get("data_images") == null) {
                    throw new IOException(resume.resolve(Checkpoint.TRAINING_STATE) + ": no data source in the metadata "
                            + "(not written by the train command), cannot resume from the command line");
                }
                Map<String, Object[]> pairs = new LinkedHashMap<>(); // option -> {given value, checkpoint value}
                pairs.put("--data", new Object[] {data, ckData});
                pairs.put("--batch-size", new Object[] {batch, ck.batchSize()});
                pairs.put("--lr", new Object[] {lr, ck.learningRate()});
                pairs.put("--warmup", new Object[] {warmup, ck.warmupSteps()});
                pairs.put("--weight-decay", new Object[] {weightDecay, ck.adamw().weightDecay()});
                pairs.put("--ema-decay", new Object[] {emaDecay, ck.ema().maxDecay()});
                pairs.put("--prediction-type", new Object[] {prediction.configName(), ck.prediction().configName()});
                pairs.put("--beta-schedule", new Object[] {betas.configName(),
                        ckSchedule.betaSchedule() == null ? "(explicit betas)" : ckSchedule.betaSchedule().configName()});
                pairs.put("--timesteps", new Object[] {timesteps, ckSchedule.numTrainTimesteps()});
                pairs.put("--min-snr-gamma", new Object[] {gamma, ck.minSnrGamma()});
                pairs.put("--seed", new Object[] {seed, ck.seed()});
                pairs.put("--config", new Object[] {fileConfig, ckConfig});
                for (String opt : FIXED_BY_CHECKPOINT) {
                    Object[] p = pairs.get(opt);
                    if (given.containsKey(opt) && !p[0].equals(p[1])) {
                        String shown = opt.equals("--config") ? "a different model config" : opt + " " + p[1];
                        throw new IllegalArgumentException("train: --resume " + resume + " was trained with " + shown
                                + "; " + opt + " " + given.get(opt) + " would not continue the same run (leave the option out to use the checkpoint's)");
                    }
                }
                long done = Checkpoint.metaLong(md, "step", resume.resolve(Checkpoint.TRAINING_STATE));
                long planned = md.containsKey("run_steps")
                        ? Checkpoint.metaLong(md, "run_steps", resume.resolve(Checkpoint.TRAINING_STATE)) : done;
                if (done > Integer.MAX_VALUE || planned > Integer.MAX_VALUE) {
                    throw new IOException(resume.resolve(Checkpoint.TRAINING_STATE) + ": step count out of range");
                }
                steps = stepsArg != null ? stepsArg : (int) Math.max(planned, done);
                if (steps < done) {
                    throw new IllegalArgumentException("train: --steps " + steps + " is below the checkpoint's step " + done
                            + " (--steps is the total step count of the run)");
                }
                data = ckData;
                if (dataDir == null && md.get("data_dir") != null) dataDir = Path.of(md.get("data_dir"));
                expectedImages = (int) Checkpoint.metaLong(md, "data_images", resume.resolve(Checkpoint.TRAINING_STATE));
                config = ckConfig;
                schedule = ckSchedule;
                options = ck;
                if (md.get("init_from") != null) runMeta.put("init_from", md.get("init_from"));
            } else if (initFrom != null) {
                init = Checkpoint.readModelFolder(initFrom);
                if (fileConfig != null && !fileConfig.equals(init.config())) {
                    throw new IllegalArgumentException("train: --config " + given.get("--config") + " differs from the "
                            + "config.json of --init-from " + init.dir() + " (leave --config out: the model's config is used)");
                }
                config = init.config();
                runMeta.put("init_from", init.dir().toAbsolutePath().toString());
            }
        } catch (IOException e) {
            err.println("train: " + e.getMessage());
            return 1;
        }

        Dataset dataset;
        try {
            dataset = dataset(data, dataDir, config, options.seed());
        } catch (IOException e) {
            err.println("train: " + e.getMessage());
            return 1;
        }
        if (expectedImages != null && dataset.size() != expectedImages) {
            err.println("train: " + dataset.describe() + " has " + dataset.size() + " images, the checkpoint was trained on "
                    + expectedImages + " (resume would not continue the same run)");
            return 1;
        }
        runMeta.put("data", data);
        if (!data.equals("procedural")) {
            runMeta.put("data_dir", (dataDir == null ? FashionMnist.DEFAULT_DIRECTORY : dataDir).toAbsolutePath().toString());
        }
        runMeta.put("data_images", Integer.toString(dataset.size()));
        runMeta.put("run_steps", Integer.toString(steps));

        try (Backend backend = Backend.open(backendName)) {
            if (threads > 0) backend.setThreads(threads);
            try (UNet2DModel model = new UNet2DModel(backend, config, options.seed())) {
                if (init != null) model.loadFlat(init.weights()); // before the trainer: the EMA starts from them
                try (Trainer trainer = new Trainer(model, schedule, dataset, options)) {
                    LossHistory history;
                    try {
                        history = resume != null ? Checkpoint.load(resume, trainer) : new LossHistory();
                    } catch (IOException e) {
                        err.println("train: cannot resume: " + e.getMessage());
                        return 1;
                    }
                    return train(trainer, dataset, history, steps, logEvery, saveEvery, outDir, runMeta, resume, initFrom,
                            out);
                }
            }
        } catch (UncheckedIOException e) {
            err.println("train: cannot write the checkpoint: " + e.getCause().getMessage());
            return 1;
        }
    }

    private static Dataset dataset(String data, Path dataDir, UNet2DConfig config, long seed) throws IOException {
        int h = config.sampleHeight(), w = config.sampleWidth();
        return switch (data) {
            // sample_size null in a config: the Fashion-MNIST size
            case "procedural" -> new ProceduralDataset(PROCEDURAL_IMAGES, h < 0 ? 28 : h, w < 0 ? 28 : w,
                    config.inChannels(), seed);
            case "fashion-mnist" -> FashionMnist.load(dataDir == null ? FashionMnist.DEFAULT_DIRECTORY : dataDir, true);
            default -> {
                if (h < 0) {
                    throw new IllegalArgumentException("train: --data images resizes to the model's sample_size, and the "
                            + "config has none");
                }
                yield ImageFolderDataset.load(dataDir, h, w, config.inChannels());
            }
        };
    }

    private static int train(Trainer trainer, Dataset dataset, LossHistory history, int steps, int logEvery, int saveEvery,
                             Path outDir, Map<String, String> runMeta, Path resume, Path initFrom, PrintStream out) {
        UNet2DModel model = trainer.model();
        UNet2DConfig config = model.config();
        Trainer.Options o = trainer.options();
        NoiseSchedule schedule = trainer.schedule();
        Backend backend = model.backend();
        int batch = o.batchSize();
        long params = model.layout().params().stream().mapToLong(p -> p.size()).sum();
        long done = trainer.stepCount();
        out.printf(Locale.ROOT, "train: %s on %s (%s)%n", dataset.describe(), backend.kind().cliName(), backend.description());
        if (resume != null) out.printf(Locale.ROOT, "resume: %s at step %d of %d%n", resume.toAbsolutePath(), done, steps);
        if (initFrom != null) out.printf(Locale.ROOT, "init: weights from %s%n", runMeta.get("init_from"));
        String betas = schedule.betaSchedule() == null ? "explicit" : schedule.betaSchedule().configName();
        String settings = String.format(Locale.ROOT, "batch %d, lr %.3g (warmup %d), weight decay %.3g, EMA %.4g, %s, %s betas, "
                        + "T %d, seed %d%s", batch, o.learningRate(), o.warmupSteps(), o.adamw().weightDecay(), o.ema().maxDecay(),
                o.prediction().configName(), betas, schedule.numTrainTimesteps(), o.seed(),
                o.minSnrGamma() > 0 ? String.format(Locale.ROOT, ", min-SNR gamma %.3g", o.minSnrGamma()) : "");
        out.printf(Locale.ROOT, "model: %d parameters, block_out_channels %s; %d steps, %s%n", params,
                Arrays.toString(config.blockOutChannels()), steps, settings);
        out.flush();
        String title = String.format(Locale.ROOT, "diffusion4j train: %s data, UNet2DModel %s (%,d parameters), %dx%dx%d",
                runMeta.get("data"), Arrays.toString(config.blockOutChannels()), params, dataset.height(), dataset.width(),
                dataset.channels());
        String subtitle = settings + (o.minSnrGamma() > 0 ? " (weighted loss)" : "")
                + (runMeta.containsKey("init_from") ? ", init from " + Path.of(runMeta.get("init_from")).getFileName() : "");
        if (done >= steps) {
            out.printf(Locale.ROOT, "done: the checkpoint is already at step %d of %d; nothing to train%n", done, steps);
            return 0;
        }
        long start = System.nanoTime(), last = start;
        double lossSum = 0;
        int lossCount = 0;
        long lastStep = done;
        double firstLoss = Double.NaN, lastLoss = Double.NaN;
        for (long s = done + 1; s <= steps; s++) {
            Trainer.StepResult r = trainer.step();
            history.add(r);
            lossSum += r.loss();
            lossCount++;
            if (s == done + 1) firstLoss = r.loss();
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
            if (saveEvery > 0 && s % saveEvery == 0 && s != steps) {
                save(outDir, trainer, history, runMeta, title, subtitle);
                out.printf(Locale.ROOT, "saved: step %d to %s%n", s, outDir.toAbsolutePath());
                last = System.nanoTime(); // the save is not training time
            }
        }
        double secs = (System.nanoTime() - start) * 1e-9;
        save(outDir, trainer, history, runMeta, title, subtitle);
        long ran = steps - done;
        out.printf(Locale.ROOT, "done: %d steps in %s (%.1f img/s), loss %.5f (first step) -> %.5f (last %d steps); "
                        + "checkpoint written to %s (with loss.csv and loss_curve.png)%n",
                ran, duration(secs), ran * (double) batch / secs, firstLoss, lastLoss, Math.min(logEvery, ran),
                outDir.toAbsolutePath());
        return 0;
    }

    /** The checkpoint (training state last), then loss.csv and loss_curve.png regenerated from the history. */
    private static void save(Path outDir, Trainer trainer, LossHistory history, Map<String, String> runMeta, String title,
                             String subtitle) {
        try {
            Checkpoint.save(outDir, trainer, history, runMeta);
            AtomicFiles.writeString(outDir.resolve(LOSS_CSV), history.toCsv());
            LossCurve.write(outDir.resolve(LOSS_CURVE), history, title, subtitle);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** File names written beside the checkpoint. */
    public static final String LOSS_CSV = "loss.csv", LOSS_CURVE = "loss_curve.png";

    private static long longArg(String name, String v) {
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("train: " + name + " must be an integer, got '" + v + "'");
        }
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
