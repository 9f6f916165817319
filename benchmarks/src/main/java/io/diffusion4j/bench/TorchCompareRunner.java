package io.diffusion4j.bench;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import io.diffusion4j.io.Json;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.LinearKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.train.Dataset;
import io.diffusion4j.train.ProceduralDataset;
import io.diffusion4j.train.TrainingDefaults;
import io.diffusion4j.train.Trainer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * diffusion4j's side of the PyTorch comparison (benchmarks/torch-compare.sh): a long-lived process
 * driven line by line over stdin by benchmarks/torch/compare.py, so both sides keep their warmed-up state
 * (JIT, allocated buffers, thread pools) while the driver alternates turns between them. Only one side
 * computes at any time: while the driver runs PyTorch this process blocks reading stdin.
 *
 * <p>Commands (one per line; every reply is one line starting with {@code ok} or {@code err}):
 * <ul>
 *   <li>{@code info} — backend description, JDK version;</li>
 *   <li>{@code setup NAME MODEL KIND BATCH} — MODEL {@code fashion} (TrainingDefaults.config()) or
 *       {@code cifar10} (the config in the file given by {@code --cifar10-config}); KIND {@code train}: a
 *       {@link Trainer} (procedural data, {@code Trainer.Options.defaults}: noising, forward, fused loss,
 *       backward, grad-norm clip, AdamW, EMA per step) or {@code denoise}: what {@code Sampler} does per step, an
 *       inference instance's forward plus the fused DDPM update (epsilon, fixed_small, clip_sample 1) in place,
 *       timesteps 999, 998, ... (cyclic). Replies with the parameter count and the config JSON;</li>
 *   <li>{@code run NAME ITERS} — runs ITERS steps, replies with each one's wall time in nanoseconds;</li>
 *   <li>{@code gemm M N K ITERS} — times {@link LinearKernels#linear} y[M,N] = x[M,K] w[N,K]^T (2MNK FLOPs);</li>
 *   <li>{@code free NAME}, {@code quit}.</li>
 * </ul>
 *
 * <p>Usage: {@code java --enable-native-access=ALL-UNNAMED -cp src/cli/target/diffusion4j.jar:CLASSES
 * io.diffusion4j.bench.TorchCompareRunner --threads 2 --cifar10-config FILE}
 */
public final class TorchCompareRunner {
    private static final long SEED = 1234;
    /** Images held in memory for the training steps (the PyTorch side indexes a tensor of as many). */
    private static final int DATASET_IMAGES = 512;

    /** A dataset read once into memory, so a step's batch assembly is a copy (as PyTorch's tensor indexing). */
    private record MemoryDataset(float[] all, int size, int height, int width, int channels) implements Dataset {
        MemoryDataset(Dataset d) {
            this(read(d), d.size(), d.height(), d.width(), d.channels());
        }

        private static float[] read(Dataset d) {
            float[] all = new float[d.size() * d.imageFloats()];
            for (int i = 0; i < d.size(); i++) d.image(i, all, i * d.imageFloats());
            return all;
        }

        @Override
        public void image(int index, float[] dst, int offset) {
            System.arraycopy(all, index * imageFloats(), dst, offset, imageFloats());
        }

        @Override
        public String describe() {
            return size + " images in memory";
        }
    }

    private interface Work extends AutoCloseable {
        void step();

        @Override
        void close();
    }

    private final Backend backend;
    private final Path cifarConfig;
    private final Map<String, Work> cases = new LinkedHashMap<>();
    private final Map<String, String> setupReply = new LinkedHashMap<>();

    private TorchCompareRunner(Backend backend, Path cifarConfig) {
        this.backend = backend;
        this.cifarConfig = cifarConfig;
    }

    public static void main(String[] args) throws IOException {
        int threads = 2;
        Path cifar = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--cifar10-config" -> cifar = Path.of(args[++i]);
                default -> throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try (Backend be = Backend.open(Device.CPU)) {
            be.setThreads(threads);
            TorchCompareRunner r = new TorchCompareRunner(be, cifar);
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            out.println("ok ready");
            String line;
            while ((line = in.readLine()) != null) {
                line = line.strip();
                if (line.isEmpty()) continue;
                if (line.equals("quit")) break;
                String reply;
                try {
                    reply = "ok " + r.command(line.split("\\s+"));
                } catch (RuntimeException | IOException e) {
                    reply = "err " + (e.getClass().getSimpleName() + ": " + e.getMessage()).replace('\n', ' ');
                }
                out.println(reply);
            }
            r.cases.values().forEach(Work::close);
        }
    }

    private String command(String[] a) throws IOException {
        switch (a[0]) {
            case "info" -> {
                return backend.description() + " | JDK " + System.getProperty("java.version");
            }
            case "setup" -> {
                need(a, 5);
                return setup(a[1], a[2], a[3], Integer.parseInt(a[4]));
            }
            case "run" -> {
                need(a, 3);
                Work w = cases.get(a[1]);
                if (w == null) throw new IllegalArgumentException("no case " + a[1] + " (setup first)");
                int iters = Integer.parseInt(a[2]);
                StringBuilder sb = new StringBuilder("run " + a[1]);
                for (int i = 0; i < iters; i++) {
                    long t0 = System.nanoTime();
                    w.step();
                    sb.append(' ').append(System.nanoTime() - t0);
                }
                return sb.toString();
            }
            case "gemm" -> {
                need(a, 5);
                return gemm(Integer.parseInt(a[1]), Integer.parseInt(a[2]), Integer.parseInt(a[3]), Integer.parseInt(a[4]));
            }
            case "free" -> {
                need(a, 2);
                Work w = cases.remove(a[1]);
                if (w != null) w.close();
                return "free " + a[1];
            }
            default -> throw new IllegalArgumentException("unknown command " + a[0]);
        }
    }

    private static void need(String[] a, int n) {
        if (a.length != n) throw new IllegalArgumentException(a[0] + " takes " + (n - 1) + " arguments, got " + (a.length - 1));
    }

    private UNet2DConfig config(String model) throws IOException {
        return switch (model) {
            case "fashion" -> TrainingDefaults.config();
            case "cifar10" -> {
                if (cifarConfig == null) throw new IllegalArgumentException("--cifar10-config was not given");
                Object cfg = Json.parseObject(Files.readString(cifarConfig)).get("config");
                if (!(cfg instanceof Map<?, ?> m)) throw new IllegalArgumentException(cifarConfig + ": no \"config\" object");
                @SuppressWarnings("unchecked")
                Map<String, Object> map = (Map<String, Object>) m;
                yield UNet2DConfig.fromMap(map);
            }
            default -> throw new IllegalArgumentException("unknown model " + model);
        };
    }

    private String setup(String name, String modelName, String kind, int batch) throws IOException {
        if (cases.containsKey(name)) throw new IllegalArgumentException("case " + name + " exists");
        UNet2DConfig cfg = config(modelName);
        int h = cfg.sampleHeight(), w = cfg.sampleWidth(), c = cfg.inChannels();
        UNet2DModel model = new UNet2DModel(backend, cfg, SEED);
        Work work;
        try {
            work = switch (kind) {
                case "train" -> train(model, batch, h, w, c);
                case "denoise" -> denoise(model, batch, h, w, c);
                default -> throw new IllegalArgumentException("unknown kind " + kind);
            };
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
        cases.put(name, work);
        return String.format(Locale.ROOT, "setup %s params=%d hw=%dx%d config=%s", name, model.layout().parameterCount(),
                h, w, Json.writeCompact(cfg.toMap()));
    }

    private Work train(UNet2DModel model, int batch, int h, int w, int c) {
        Dataset data = new MemoryDataset(new ProceduralDataset(DATASET_IMAGES, h, w, c, SEED));
        Trainer trainer = new Trainer(model, NoiseSchedule.defaults(), data, Trainer.Options.defaults(batch, SEED));
        return new Work() {
            @Override
            public void step() {
                trainer.step();
            }

            @Override
            public void close() {
                trainer.close();
                model.close();
            }
        };
    }

    private Work denoise(UNet2DModel model, int batch, int h, int w, int c) {
        UNet2DModel inference = model.sharingParameters();
        NoiseSchedule schedule = NoiseSchedule.defaults();
        NativeSchedule ns = NativeSchedule.of(schedule);
        Tensor x = Tensor.allocate(backend, DType.FLOAT32, batch, h, w, c);
        DiffusionKernels.randomNormal(backend, SEED, 0, x);
        int T = schedule.numTrainTimesteps();
        int[] t = new int[batch], prev = new int[batch];
        float[] tModel = new float[batch];
        long[] seeds = new long[batch], offsets = new long[batch];
        SampleNoise noise = new SampleNoise(seeds, offsets);
        return new Work() {
            int i;

            @Override
            public void step() {
                int ti = T - 1 - (i % T);
                for (int b = 0; b < batch; b++) {
                    t[b] = ti;
                    prev[b] = ti - 1;
                    tModel[b] = ti;
                    seeds[b] = SEED;
                    offsets[b] = ((long) b << 32) | (i + 1);
                }
                Tensor out = inference.forward(x, tModel);
                DiffusionKernels.ddpmStep(ns, PredictionType.EPSILON, VarianceType.FIXED_SMALL, true, 1f, x, out, t, prev,
                        noise, x);
                i++;
            }

            @Override
            public void close() {
                x.close();
                ns.close();
                inference.close();
                model.close();
            }
        };
    }

    private String gemm(int m, int n, int k, int iters) {
        try (Tensor x = Tensor.allocate(backend, DType.FLOAT32, m, k);
             Tensor wt = Tensor.allocate(backend, DType.FLOAT32, n, k);
             Tensor y = Tensor.allocate(backend, DType.FLOAT32, m, n)) {
            DiffusionKernels.randomNormal(backend, SEED, 1, x);
            DiffusionKernels.randomNormal(backend, SEED, 2, wt);
            LinearKernels.linear(x, wt, null, y); // warm-up
            StringBuilder sb = new StringBuilder("gemm");
            for (int i = 0; i < iters; i++) {
                long t0 = System.nanoTime();
                LinearKernels.linear(x, wt, null, y);
                sb.append(' ').append(System.nanoTime() - t0);
            }
            return sb.toString();
        }
    }
}
