package io.diffusion4j.cli;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Precision;
import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.kernels.EmaSchedule;
import io.diffusion4j.kernels.OptimKernels;
import io.diffusion4j.model.RunMemory;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.distributed.DataParallel;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.Dataset;
import io.diffusion4j.train.FashionMnist;
import io.diffusion4j.train.ImageFolderDataset;
import io.diffusion4j.train.LossCurve;
import io.diffusion4j.train.LossHistory;
import io.diffusion4j.train.ProceduralDataset;
import io.diffusion4j.train.Trainer;
import io.diffusion4j.train.TrainingDefaults;
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
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

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
 * bit for bit the uninterrupted run on the same backend (the precision of the matrix kernels, recorded in the
 * training state, is kept too unless {@code --precision} is given). {@code --init-from DIR} starts a new run
 * (fresh optimiser, step 0) from the weights of any diffusers UNet2DModel folder.
 *
 * <p>{@code --distributed} makes the process one rank of a data-parallel job started by an MPI launcher
 * ({@code mpirun -np N java ... train --distributed}): {@code --batch-size} is each rank's batch, the gradients are
 * averaged over the ranks every step ({@link DataParallel}), rank 0 prints and writes the checkpoint, and any
 * failure on any rank ends the whole job ({@link DistributedJob}).
 */
@Command(name = "train", mixinStandardHelpOptions = true, synopsisHeading = "usage: ",
        versionProvider = Main.Version.class, sortOptions = false, sortSynopsis = false,
        description = {"Train a UNet2DModel and write a diffusers checkpoint.", "",
            "Trains a UNet2DModel and writes a diffusers checkpoint folder to --out, with loss.csv and "
            + "loss_curve.png beside it. The progress line shows the loss averaged since the previous line, the "
            + "gradient norm, lr, it/s, images/s and the ETA.", ""})
final class TrainCommand implements Callable<Integer> {
    /** The options a resumed run takes from its checkpoint; giving one with another value is refused. */
    private static final List<String> FIXED_BY_CHECKPOINT = List.of("--data", "--batch-size", "--lr", "--warmup",
            "--weight-decay", "--ema-decay", "--prediction-type", "--beta-schedule", "--timesteps", "--min-snr-gamma",
            "--seed", "--config", "--cond-drop-prob");

    @Option(names = "--data", paramLabel = "KIND", description = {"procedural: built-in shapes, no download (default)",
        "fashion-mnist: IDX files in --data-dir (default /usr/share/datasets/fashion-mnist, Debian's "
            + "dataset-fashion-mnist package)",
        "images: every PNG/JPEG under --data-dir (recursive, sorted), center-cropped and resized to the model's "
            + "sample_size, luminance or RGB by its in_channels"})
    String data = "procedural";

    @Option(names = "--data-dir", paramLabel = "DIR", description = "the data folder of --data fashion-mnist or images")
    Path dataDir;

    @Option(names = "--steps", paramLabel = "N", description = "training steps (default 300; with --resume: the total "
            + "count, default the run's planned total)")
    Integer stepsArg;

    @Option(names = "--batch-size", paramLabel = "N", description = "images per step (default: ${DEFAULT-VALUE})")
    int batch = 16;

    @Option(names = "--lr", paramLabel = "X", description = "AdamW learning rate (default: ${DEFAULT-VALUE})")
    double lr = 1e-3;

    @Option(names = "--warmup", paramLabel = "N", description = "linear warmup steps of the learning rate (default: ${DEFAULT-VALUE})")
    int warmup = 50;

    @Option(names = "--weight-decay", paramLabel = "X", description = "AdamW weight decay (default: ${DEFAULT-VALUE})")
    double weightDecay = 1e-6;

    @Option(names = "--ema-decay", paramLabel = "X", description = "maximum EMA decay, with warmup (default: ${DEFAULT-VALUE})")
    double emaDecay = 0.999;

    @Option(names = "--prediction-type", paramLabel = "TYPE", description = "epsilon, sample or v_prediction "
            + "(default: ${DEFAULT-VALUE})")
    String predictionName = "epsilon";

    @Option(names = "--beta-schedule", paramLabel = "NAME", description = "linear, scaled_linear, squaredcos_cap_v2 or "
            + "sigmoid (default: ${DEFAULT-VALUE})")
    String betaName = "linear";

    @Option(names = "--timesteps", paramLabel = "T", description = "num_train_timesteps (default: ${DEFAULT-VALUE})")
    int timesteps = 1000;

    @Option(names = "--min-snr-gamma", paramLabel = "X", description = "min-SNR-gamma loss weighting (Hang et al. 2023; 5 "
            + "is the paper's choice), 0 = off (default); the reported loss is the weighted one")
    double gamma;

    @Option(names = "--class-conditional", description = "train a class-conditional model (diffusers' num_class_embeds: "
            + "the classes plus a null class): labels from Fashion-MNIST's label files, or for --data images one "
            + "sub-folder per class (sorted names); the classes are saved as class_labels.json in the checkpoint")
    boolean classConditional;

    @Option(names = "--cond-drop-prob", paramLabel = "P", description = "class-conditional training: the probability "
            + "that a label is replaced by the null class, so the model also learns the unconditional prediction "
            + "classifier-free guidance needs (default: ${DEFAULT-VALUE})")
    double condDropProb = Trainer.Options.DEFAULT_COND_DROP_PROB;

    @Option(names = "--config", paramLabel = "FILE", description = "a UNet2DModel config.json (default: the 28x28 "
            + "32/64/64 model)")
    Path configFile;

    @Option(names = "--init-from", paramLabel = "DIR", description = "start from the weights of a diffusers UNet2DModel "
            + "folder (config.json + diffusion_pytorch_model.safetensors; legacy attention names accepted); the model "
            + "config comes from there, the optimiser starts fresh")
    Path initFrom;

    @Option(names = "--resume", paramLabel = "DIR", description = "continue a checkpoint of this command exactly: config, "
            + "schedule, options and data come from it (a differing option is refused); --out defaults to DIR")
    Path resume;

    @Option(names = "--out", paramLabel = "DIR", description = "checkpoint folder; loss.csv and loss_curve.png are written "
            + "beside it (default: checkpoints/train)")
    Path outArg;

    @Option(names = "--save-every", paramLabel = "N", description = "also write the checkpoint every N steps (default 0: "
            + "only at the end)")
    int saveEvery;

    @Option(names = "--seed", paramLabel = "N", description = "seed of weights, data order and noise (default: ${DEFAULT-VALUE})")
    long seed;

    @Mixin
    DeviceOptions device;

    @Mixin
    MemoryOptions memory;

    @Option(names = "--log-every", paramLabel = "N", description = "steps between progress lines (default: ${DEFAULT-VALUE})")
    int logEvery = 10;

    @Option(names = "--distributed", description = "run as one rank of a data-parallel job over MPI, started by a "
            + "launcher (mpirun -np N java ... train --distributed): --batch-size per rank, gradients averaged over the "
            + "ranks in a fixed order (identical weights on every rank), rank 0 writes the checkpoint")
    boolean distributed;

    @Option(names = "--rank-timeout", paramLabel = "S", description = "--distributed: seconds rank 0 waits for the other "
            + "ranks at a step before it names them and ends the job (default: ${DEFAULT-VALUE})")
    double rankTimeout = 300;

    @Option(names = "--check-replicas-every", paramLabel = "N", description = "--distributed: also compare the ranks' "
            + "weights (a hash) every N steps; they are always compared at each save (default 0: at saves only)")
    int checkReplicasEvery;

    @Spec
    CommandSpec spec;

    private final PrintStream out, err;

    TrainCommand(Main.Io io) {
        this.out = io.out();
        this.err = io.err();
    }

    /** Runs the command; returns the exit code. */
    @Override
    public Integer call() {
        if (!distributed) {
            if (spec.commandLine().getParseResult().hasMatchedOption("--rank-timeout")
                    || spec.commandLine().getParseResult().hasMatchedOption("--check-replicas-every")) {
                throw Main.bad(spec, "--rank-timeout and --check-replicas-every apply to --distributed runs");
            }
            return run(null);
        }
        if (!(rankTimeout >= 0.001 && rankTimeout <= 1e6)) {
            throw Main.bad(spec, "--rank-timeout must be in [0.001, 1e6] seconds, got " + rankTimeout);
        }
        Main.atLeast(spec, "--check-replicas-every", checkReplicasEvery, 0);
        DistributedJob job;
        try {
            job = DistributedJob.start(Math.round(rankTimeout * 1000), checkReplicasEvery, err);
        } catch (io.diffusion4j.distributed.MpiException e) {
            err.println("train: --distributed: " + e.getMessage());
            return 1;
        }
        return job.run(() -> run(job));
    }

    private Integer run(DistributedJob job) {
        PrintStream out = job == null || job.rank() == 0 ? this.out : DistributedJob.QUIET;
        // the options given on the command line, as typed: a resumed run refuses those that differ from its checkpoint
        LinkedHashMap<String, String> given = new LinkedHashMap<>();
        for (OptionSpec o : spec.commandLine().getParseResult().matchedOptions()) {
            List<String> raw = o.originalStringValues();
            given.put(o.longestName(), raw.isEmpty() ? "" : raw.get(raw.size() - 1));
        }
        String data = this.data;
        if (!data.equals("procedural") && !data.equals("fashion-mnist") && !data.equals("images")) {
            throw Main.bad(spec, "--data must be procedural, fashion-mnist or images, got '" + data + "'");
        }
        Path dataDir = this.dataDir;
        if (stepsArg != null) Main.atLeast(spec, "--steps", stepsArg, 1);
        Main.atLeast(spec, "--batch-size", batch, 1);
        Main.atLeast(spec, "--warmup", warmup, 0);
        Main.atLeast(spec, "--log-every", logEvery, 1);
        Main.atLeast(spec, "--timesteps", timesteps, 1);
        int threads = device.threads(spec);
        if (job != null && threads == 0) threads = job.defaultThreads();
        long maxMemory = memory.limitBytes(spec);
        Precision askedPrecision = device.precision(spec);
        Main.atLeast(spec, "--save-every", saveEvery, 0);
        inRange("--lr", lr, 0, Double.MAX_VALUE);
        inRange("--weight-decay", weightDecay, 0, Double.MAX_VALUE);
        inRange("--ema-decay", emaDecay, 0, 1);
        inRange("--min-snr-gamma", gamma, 0, 1e12);
        if (!(condDropProb >= 0 && condDropProb < 1)) {
            throw Main.bad(spec, "--cond-drop-prob must be in [0, 1), got " + condDropProb);
        }
        if (given.containsKey("--cond-drop-prob") && !classConditional && resume == null) {
            throw Main.bad(spec, "--cond-drop-prob applies to class-conditional training (--class-conditional)");
        }
        if (classConditional && data.equals("procedural")) {
            throw Main.bad(spec, "--class-conditional needs labelled data: --data fashion-mnist or --data images");
        }
        PredictionType prediction = PredictionType.fromConfigName(predictionName);
        BetaSchedule betas = BetaSchedule.fromConfigName(betaName);
        Path outDir = outArg != null ? outArg : resume != null ? resume : Path.of("checkpoints/train");
        UNet2DConfig fileConfig = null;
        if (configFile != null) {
            try {
                fileConfig = UNet2DConfig.fromJson(io.diffusion4j.io.SmallFiles.readText(configFile));
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

        UNet2DConfig config = fileConfig == null ? TrainingDefaults.config() : fileConfig;
        NoiseSchedule schedule = NoiseSchedule.of(betas, timesteps, 0.0001, 0.02);
        Trainer.Options options = new Trainer.Options(batch, lr, warmup,
                new OptimKernels.AdamW(lr, 0.95, 0.999, 1e-8, weightDecay), 1.0,
                EmaSchedule.power(emaDecay, 0.0, 0, 1.0, 0.75), prediction, seed, true, gamma, condDropProb);
        Map<String, String> runMeta = new LinkedHashMap<>();
        int steps = stepsArg == null ? 300 : stepsArg;
        Checkpoint.ModelFolder init = null;
        Integer expectedImages = null;
        Precision resumedPrecision = null; // the checkpoint's, for a resumed run given no --precision
        try {
            if (resume != null) {
                // a save killed after its commit point is finished, one killed before it undone, leftovers removed;
                // in a distributed job by rank 0 alone, the others reading only after it (they share the folder)
                if (job == null || job.rank() == 0) AtomicFiles.recover(resume, Checkpoint.EMA_DIR);
                if (job != null) job.exchange().checkIn(0, "the recovery of the checkpoint to resume");
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
                pairs.put("--cond-drop-prob", new Object[] {condDropProb, ck.condDropProb()});
                int ckRanks = md.containsKey(DistributedJob.RANKS_KEY)
                        ? (int) Checkpoint.metaLong(md, DistributedJob.RANKS_KEY, resume.resolve(Checkpoint.TRAINING_STATE)) : 1;
                int ranks = job == null ? 1 : job.size();
                if (ckRanks != ranks) {
                    throw new IllegalArgumentException("train: --resume " + resume + " was trained on " + ckRanks + " rank"
                            + (ckRanks == 1 ? "" : "s") + " (global batch " + (long) ckRanks * ck.batchSize() + " = "
                            + ckRanks + " x " + ck.batchSize() + "), this run has " + ranks + ": another rank count "
                            + "changes the global batch and the data order, so it would not continue the same run; "
                            + (ckRanks == 1 ? "resume without --distributed" : "resume with mpirun -np " + ckRanks
                            + " ... --distributed"));
                }
                if (classConditional && !ckConfig.isClassConditional()) {
                    throw new IllegalArgumentException("train: --resume " + resume + " is an unconditional model; "
                            + "--class-conditional cannot continue it");
                }
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
                if (md.get("precision") != null) {
                    try {
                        resumedPrecision = Precision.parse(md.get("precision"));
                    } catch (IllegalArgumentException e) {
                        throw new IOException(resume.resolve(Checkpoint.TRAINING_STATE) + ": " + e.getMessage());
                    }
                }
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
            err.println("train: " + Main.describe(e));
            return 1;
        }

        if (config.sampleHeight() > 0) { // before the data are read: an image folder is decoded at this size
            checkMemory(config, options.batchSize(), config.inChannels(), config.sampleHeight(), config.sampleWidth(),
                    maxMemory, job == null ? 1 : job.size());
        }
        Dataset dataset;
        boolean labelled = classConditional || config.isClassConditional();
        try {
            dataset = dataset(data, dataDir, config, options.seed(), labelled);
        } catch (IOException e) {
            err.println("train: " + Main.describe(e));
            return 1;
        }
        if (labelled && !config.isClassConditional()) {
            // the classes and one null class (the unconditional prediction)
            java.util.LinkedHashMap<String, Object> m = config.toMap();
            m.put("num_class_embeds", (long) dataset.numClasses() + 1);
            config = UNet2DConfig.fromMap(m);
        }
        if (expectedImages != null && dataset.size() != expectedImages) {
            err.println("train: " + dataset.describe() + " has " + dataset.size() + " images, the checkpoint was trained on "
                    + expectedImages + " (resume would not continue the same run)");
            return 1;
        }
        checkMemory(config, options.batchSize(), dataset.channels(), dataset.height(), dataset.width(), maxMemory,
                job == null ? 1 : job.size());
        runMeta.put("data", data);
        if (!data.equals("procedural")) {
            runMeta.put("data_dir", (dataDir == null ? FashionMnist.DEFAULT_DIRECTORY : dataDir).toAbsolutePath().toString());
        }
        runMeta.put("data_images", Integer.toString(dataset.size()));
        runMeta.put("run_steps", Integer.toString(steps));
        if (job != null) runMeta.put(DistributedJob.RANKS_KEY, Integer.toString(job.size()));

        try (Backend backend = Backend.open(device.backend)) {
            if (threads > 0) backend.setThreads(threads);
            // a resumed run keeps its checkpoint's precision where the backend computes in it (bit for bit on the
            // same backend); every save records the precision in the training state
            Precision asked = askedPrecision != null ? askedPrecision
                    : resumedPrecision != null && resumedPrecision.supportedOn(backend.kind()) ? resumedPrecision : null;
            DeviceOptions.apply(backend, asked);
            try (UNet2DModel model = new UNet2DModel(backend, config, options.seed())) {
                if (init != null) model.loadFlat(init.weights()); // before the trainer: the EMA starts from them
                try (Trainer trainer = new Trainer(model, schedule, dataset, options, job == null ? null : job.exchange())) {
                    LossHistory history;
                    try {
                        history = resume != null ? Checkpoint.load(resume, trainer) : new LossHistory();
                    } catch (IOException e) {
                        err.println("train: cannot resume: " + Main.describe(e));
                        return 1;
                    }
                    if (job != null) job.agree(trainer, runMeta);
                    return train(trainer, dataset, history, steps, logEvery, saveEvery, outDir, runMeta, resume, initFrom,
                            out, job);
                }
            }
        } catch (UncheckedIOException e) {
            err.println("train: cannot write the checkpoint: " + Main.describe(e.getCause()));
            return 1;
        }
    }

    /**
     * Refuses a run whose estimated memory ({@link RunMemory#training}) exceeds the limit. A rank of a data-parallel
     * job of {@code ranks} also holds the whole global batch's images, noised images and noise (3 x ranks x batch
     * images; its own rows are counted in the training estimate).
     */
    private static void checkMemory(UNet2DConfig config, int batch, int c, int h, int w, long limit, int ranks) {
        long global = 3L * (ranks - 1) * batch * c * h * w * Float.BYTES;
        MemoryOptions.check(String.format(Locale.ROOT, "train: batches of %d images of %dx%dx%d%s", batch, c, h, w,
                        ranks > 1 ? " on each of " + ranks + " ranks" : ""),
                RunMemory.training(config, batch, h, w) + global, limit, "lower --batch-size");
    }

    private static Dataset dataset(String data, Path dataDir, UNet2DConfig config, long seed, boolean labelled)
            throws IOException {
        int h = config.sampleHeight(), w = config.sampleWidth();
        if (labelled && data.equals("procedural")) {
            throw new IllegalArgumentException("train: a class-conditional model needs labelled data: --data fashion-mnist"
                    + " or --data images");
        }
        Path fm = dataDir == null ? FashionMnist.DEFAULT_DIRECTORY : dataDir;
        return switch (data) {
            case "procedural" -> ProceduralDataset.forModel(config, seed);
            case "fashion-mnist" -> labelled ? FashionMnist.loadLabelled(fm, true, Math.max(h, 0), Math.max(w, 0))
                    : FashionMnist.load(fm, true, Math.max(h, 0), Math.max(w, 0));
            default -> {
                if (h < 0) {
                    throw new IllegalArgumentException("train: --data images resizes to the model's sample_size, and the "
                            + "config has none");
                }
                ImageFolderDataset images = ImageFolderDataset.load(dataDir, h, w, config.inChannels());
                yield labelled ? images.labelledBySubfolder() : images;
            }
        };
    }

    private static int train(Trainer trainer, Dataset dataset, LossHistory history, int steps, int logEvery, int saveEvery,
                             Path outDir, Map<String, String> runMeta, Path resume, Path initFrom, PrintStream out,
                             DistributedJob job) {
        UNet2DModel model = trainer.model();
        UNet2DConfig config = model.config();
        Trainer.Options o = trainer.options();
        NoiseSchedule schedule = trainer.schedule();
        Backend backend = model.backend();
        int batch = o.batchSize();
        long params = model.layout().params().stream().mapToLong(p -> p.size()).sum();
        long done = trainer.stepCount();
        out.printf(Locale.ROOT, "train: %s on %s (%s), precision %s%n", dataset.describe(), backend.kind().cliName(),
                backend.description(), backend.precision().cliName());
        if (resume != null) out.printf(Locale.ROOT, "resume: %s at step %d of %d%n", resume.toAbsolutePath(), done, steps);
        if (initFrom != null) out.printf(Locale.ROOT, "init: weights from %s%n", runMeta.get("init_from"));
        String betas = schedule.betaSchedule() == null ? "explicit" : schedule.betaSchedule().configName();
        String settings = String.format(Locale.ROOT, "batch %d, lr %.3g (warmup %d), weight decay %.3g, EMA %.4g, %s, %s betas, "
                        + "T %d, seed %d%s", batch, o.learningRate(), o.warmupSteps(), o.adamw().weightDecay(), o.ema().maxDecay(),
                o.prediction().configName(), betas, schedule.numTrainTimesteps(), o.seed(),
                o.minSnrGamma() > 0 ? String.format(Locale.ROOT, ", min-SNR gamma %.3g", o.minSnrGamma()) : "");
        out.printf(Locale.ROOT, "model: %d parameters, block_out_channels %s; %d steps, %s%n", params,
                Arrays.toString(config.blockOutChannels()), steps, settings);
        if (job != null) out.println(job.describe(trainer));
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
                        s, steps, lastLoss, r.gradNorm(), r.learningRate(), its, its * batch * trainer.worldSize(),
                        duration(eta));
                out.flush();
                last = now;
                lastStep = s;
                lossSum = 0;
                lossCount = 0;
            }
            if (job != null && job.checkEvery() > 0 && s % job.checkEvery() == 0) job.checkReplicas(trainer, out);
            if (saveEvery > 0 && s % saveEvery == 0 && s != steps) {
                save(outDir, trainer, history, runMeta, title, subtitle, job);
                out.printf(Locale.ROOT, "saved: step %d to %s%n", s, outDir.toAbsolutePath());
                last = System.nanoTime(); // the save is not training time
            }
        }
        double secs = (System.nanoTime() - start) * 1e-9;
        save(outDir, trainer, history, runMeta, title, subtitle, job);
        long ran = steps - done;
        out.printf(Locale.ROOT, "done: %d steps in %s (%.1f img/s), loss %.5f (first step) -> %.5f (last %d steps); "
                        + "checkpoint written to %s (with loss.csv and loss_curve.png)%n",
                ran, duration(secs), ran * (double) batch * trainer.worldSize() / secs, firstLoss, lastLoss,
                Math.min(logEvery, ran), outDir.toAbsolutePath());
        if (job != null) out.println(job.exchangeSummary(secs / ran));
        return 0;
    }

    /** The checkpoint with loss.csv and loss_curve.png regenerated from the history, all replaced together. */
    private static void save(Path outDir, Trainer trainer, LossHistory history, Map<String, String> runMeta, String title,
                             String subtitle, DistributedJob job) {
        if (job != null) {
            // every rank holds the same weights (checked here); one writer, the others waiting for it
            job.checkReplicas(trainer, null);
            if (job.rank() != 0) {
                job.exchange().awaitSave(trainer.stepCount());
                return;
            }
        }
        try {
            Map<String, byte[]> extra = new java.util.LinkedHashMap<>();
            extra.put(TrainingDefaults.LOSS_CSV, history.toCsv().getBytes(java.nio.charset.StandardCharsets.UTF_8));
            extra.put(TrainingDefaults.LOSS_CURVE, LossCurve.png(history, title, subtitle));
            Checkpoint.save(outDir, trainer, history, runMeta, extra);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (job != null) job.exchange().awaitSave(trainer.stepCount());
    }


    private static String duration(double seconds) {
        if (!Double.isFinite(seconds)) return "?";
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60)
                : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : s + "s";
    }

    private void inRange(String name, double x, double min, double max) {
        if (!(x >= min && x <= max)) throw Main.bad(spec, name + " must be in [" + min + ", " + max + "], got " + x);
    }
}
