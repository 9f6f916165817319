package io.diffusion4j.bench.runtimes;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.Json;
import io.diffusion4j.io.Npy;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.train.Checkpoint;
import io.diffusion4j.train.TrainingDefaults;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/** The files the comparison reads: model configs, random-initialised model folders, the exporter's reference. */
final class ModelFiles {
    private ModelFiles() {}

    /** {@code fashion}: the train command's default Fashion-MNIST model; {@code cifar10}: google/ddpm-cifar10-32's. */
    static UNet2DConfig config(String model, Path cifar10Config) throws IOException {
        return switch (model) {
            case "fashion" -> TrainingDefaults.config();
            case "cifar10" -> {
                if (cifar10Config == null) throw new IllegalArgumentException("--cifar10-config was not given");
                Object cfg = Json.parseObject(Files.readString(cifar10Config, StandardCharsets.UTF_8)).get("config");
                if (!(cfg instanceof Map<?, ?> m)) throw new IOException(cifar10Config + ": no \"config\" object");
                @SuppressWarnings("unchecked")
                Map<String, Object> map = (Map<String, Object>) m;
                yield UNet2DConfig.fromMap(map);
            }
            default -> throw new IllegalArgumentException("unknown model '" + model + "' (fashion or cifar10)");
        };
    }

    /**
     * Writes a diffusers model folder ({@code config.json}, {@code diffusion_pytorch_model.safetensors}) holding the
     * model's own initialisation from {@code seed} (PyTorch's defaults for convolutions and linear layers: no layer is
     * zero), which every runtime then loads. Timing does not depend on the values; the output comparison needs them
     * to be neither zero nor constant.
     */
    static void writeRandomModel(Backend backend, UNet2DConfig config, long seed, Path dir) throws IOException {
        Files.createDirectories(dir);
        UNet2DLayout layout = UNet2DLayout.of(config);
        float[] flat;
        try (UNet2DModel model = new UNet2DModel(backend, config, seed)) {
            flat = model.flatParameters();
        }
        List<SafeTensors.Entry> entries = new ArrayList<>();
        for (UNet2DLayout.Param p : layout.params()) {
            int off = Math.toIntExact(p.offset());
            entries.add(new SafeTensors.Entry(p.name(), p.shapeLong(),
                    Arrays.copyOfRange(flat, off, off + Math.toIntExact(p.size()))));
        }
        SafeTensors.write(dir.resolve(Checkpoint.WEIGHTS), entries, Map.of("format", "pt"));
        Files.writeString(dir.resolve(Checkpoint.CONFIG), config.toJson(), StandardCharsets.UTF_8);
    }

    /** The exporter's reference: one input (NCHW sample, timesteps) and PyTorch's output for it (NCHW). */
    record Reference(int batch, float[] sample, float[] timesteps, float[] out) {
        /** The reference repeated to {@code n} samples ({@code n} a multiple of {@link #batch}). */
        Reference tiled(int n) {
            if (n % batch != 0) throw new IllegalArgumentException(n + " is not a multiple of " + batch);
            int k = n / batch;
            return new Reference(n, repeat(sample, k), repeat(timesteps, k), repeat(out, k));
        }

        private static float[] repeat(float[] a, int k) {
            float[] r = new float[a.length * k];
            for (int i = 0; i < k; i++) System.arraycopy(a, 0, r, i * a.length, a.length);
            return r;
        }
    }

    /** Reads {@code reference.npz} (numpy's uncompressed savez: sample.npy, timestep.npy, out.npy). */
    static Reference readReference(Path npz) throws IOException {
        Path tmp = Files.createTempDirectory("runtime-compare-npz");
        try (ZipFile zip = new ZipFile(npz.toFile())) {
            Npy.Array sample = entry(zip, "sample.npy", tmp), t = entry(zip, "timestep.npy", tmp), out = entry(zip, "out.npy", tmp);
            int n = Math.toIntExact(t.shape()[0]);
            if (sample.shape()[0] != n || out.shape()[0] != n) throw new IOException(npz + ": batch sizes differ");
            return new Reference(n, sample.data(), t.data(), out.data());
        } finally {
            try (var s = Files.list(tmp)) {
                for (Path p : s.toList()) Files.deleteIfExists(p);
            }
            Files.deleteIfExists(tmp);
        }
    }

    private static Npy.Array entry(ZipFile zip, String name, Path tmp) throws IOException {
        ZipEntry e = zip.getEntry(name);
        if (e == null) throw new IOException(zip.getName() + ": no " + name);
        Path f = tmp.resolve(name);
        try (InputStream in = zip.getInputStream(e)) {
            Files.copy(in, f, StandardCopyOption.REPLACE_EXISTING);
        }
        return Npy.read(f);
    }
}
