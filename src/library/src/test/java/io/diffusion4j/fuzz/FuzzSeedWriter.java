package io.diffusion4j.fuzz;

import io.diffusion4j.io.Json;
import io.diffusion4j.io.Npy;
import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.train.Checkpoint;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;

/**
 * Writes the committed seed inputs of the fuzz targets (small valid files made with the project's own writers)
 * into {@code src/test/resources/io/diffusion4j/fuzz/<Class>Inputs/<method>/seed-*}. Run it from the library
 * module after {@code mvn test-compile} when a format changes:
 * {@code java -cp target/classes:target/test-classes io.diffusion4j.fuzz.FuzzSeedWriter src/test/resources}.
 */
public final class FuzzSeedWriter {
    private FuzzSeedWriter() {}

    public static void main(String[] args) throws IOException {
        Path root = Path.of(args.length > 0 ? args[0] : "src/test/resources").resolve("io/diffusion4j/fuzz");

        Path st = root.resolve("SafeTensorsJazzerTestInputs/read");
        write(st, "seed-two-tensors", SafeTensors.toBytes(List.of(new SafeTensors.Entry("a", new long[] {2}, new float[] {1, -2}),
                new SafeTensors.Entry("b", new long[] {1, 1}, new float[] {0.5f})), Map.of("format", "pt")));
        write(st, "seed-scalar", SafeTensors.toBytes(List.of(new SafeTensors.Entry("s", new long[] {}, new float[] {3})), null));
        write(st, "seed-f16", safetensorsImage("{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                + "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[4,12]}}", new byte[] {0, 60, 0, -68, 0, 0, 0, 0, 0, 0, -16, 63}));

        Path js = root.resolve("JsonJazzerTestInputs/parse");
        write(js, "seed-scheduler", Json.write(schedulerConfig()).getBytes(StandardCharsets.UTF_8));
        write(js, "seed-config", smallConfig().toJson().getBytes(StandardCharsets.UTF_8));
        write(js, "seed-python", "{\"lambda_min_clipped\": -Infinity, \"x\": [NaN, 1e-3, \"\\u00e9\\ud83d\\ude00\"], \"n\": null, \"t\": true}"
                .getBytes(StandardCharsets.UTF_8));

        Path npy = root.resolve("NpyJazzerTestInputs/read");
        write(npy, "seed-2x3", Npy.encode(new long[] {2, 3}, new float[] {0, 1, 2, 3, 4, 5}));
        write(npy, "seed-1d", Npy.encode(new long[] {2}, new float[] {-1, 1}));
        write(npy, "seed-scalar", Npy.encode(new long[] {}, new float[] {7}));

        Path idx = root.resolve("IdxJazzerTestInputs/read");
        byte[] images = idxImages(2, 3, 3);
        byte[] labels = idxLabels(new byte[] {0, 9});
        write(idx, "seed-images", concat(new byte[] {0}, images));
        write(idx, "seed-labels", concat(new byte[] {1}, labels));
        write(idx, "seed-images-gzip", concat(new byte[] {2}, IdxJazzerTest.gzip(images)));
        write(idx, "seed-labels-gzip", concat(new byte[] {3}, IdxJazzerTest.gzip(labels)));

        Path img = root.resolve("ImageJazzerTestInputs/decode");
        write(img, "seed-grey-png", concat(new byte[] {0}, encode(image(5, 3, BufferedImage.TYPE_BYTE_GRAY), "png")));
        write(img, "seed-rgb-png", concat(new byte[] {1}, encode(image(4, 6, BufferedImage.TYPE_INT_ARGB), "png")));
        write(img, "seed-mask-png", concat(new byte[] {2}, encode(image(8, 8, BufferedImage.TYPE_BYTE_BINARY), "png")));
        write(img, "seed-rgb-jpeg", concat(new byte[] {1}, encode(image(8, 8, BufferedImage.TYPE_INT_RGB), "jpeg")));
        write(img, "seed-grey-jpeg", concat(new byte[] {0}, encode(image(3, 5, BufferedImage.TYPE_BYTE_GRAY), "jpeg")));

        Path mf = root.resolve("ModelFolderJazzerTestInputs/load");
        UNet2DConfig cfg = smallConfig();
        byte[] weights = zeroWeights(cfg);
        byte[] config = cfg.toJson().getBytes(StandardCharsets.UTF_8);
        byte[] sched = Json.write(schedulerConfig()).getBytes(StandardCharsets.UTF_8);
        write(mf, "seed-folder", folder(0, List.of(entry(0, config), entry(2, sched), entry(1, weights))));
        write(mf, "seed-folder-ema", folder(0, List.of(entry(0, config), entry(2, sched), entry(1, weights), entry(3, weights))));
        UNet2DConfig cond = smallConditionalConfig(3);
        byte[] labelsJson = Json.write(Map.of("id2label", new LinkedHashMap<>(Map.of("0", "cat", "1", "dog")), "null_class", 2L))
                .getBytes(StandardCharsets.UTF_8);
        write(mf, "seed-folder-classes", folder(1, List.of(entry(0, cond.toJson().getBytes(StandardCharsets.UTF_8)),
                entry(2, sched), entry(1, zeroWeights(cond)), entry(4, labelsJson))));
    }

    /** The smallest UNet the config accepts: one level without attention, two channels. */
    static UNet2DConfig smallConfig() {
        return smallBuilder().build();
    }

    static UNet2DConfig smallConditionalConfig(int numClassEmbeds) {
        return smallBuilder().numClassEmbeds(numClassEmbeds).build();
    }

    private static UNet2DConfig.Builder smallBuilder() {
        return UNet2DConfig.builder().sampleSize(4).inChannels(1).outChannels(1).blockOutChannels(2).layersPerBlock(1).attentionHeadDim(2)
                .normNumGroups(1).downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK)).upBlockTypes(List.of(UNet2DConfig.UP_BLOCK));
    }

    static Map<String, Object> schedulerConfig() {
        return Checkpoint.schedulerConfig(NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02), PredictionType.EPSILON);
    }

    static byte[] zeroWeights(UNet2DConfig cfg) {
        List<SafeTensors.Entry> e = new ArrayList<>();
        for (UNet2DLayout.Param p : UNet2DLayout.of(cfg).params()) {
            e.add(new SafeTensors.Entry(p.name(), p.shapeLong(), new float[Math.toIntExact(p.size())]));
        }
        return SafeTensors.toBytes(e, null);
    }

    static byte[] entry(int id, byte[] contents) {
        if (contents.length > 0xFFFF) throw new IllegalArgumentException("entry of " + contents.length + " bytes");
        return concat(new byte[] {(byte) id, (byte) (contents.length >> 8), (byte) contents.length}, contents);
    }

    static byte[] folder(int flags, List<byte[]> entries) {
        byte[] out = {(byte) flags};
        for (byte[] e : entries) out = concat(out, e);
        return out;
    }

    static byte[] safetensorsImage(String header, byte[] data) {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(8 + h.length + data.length).order(java.nio.ByteOrder.LITTLE_ENDIAN)
                .putLong(h.length).put(h).put(data).array();
    }

    static byte[] idxImages(int n, int rows, int cols) {
        ByteBuffer b = ByteBuffer.allocate(16 + n * rows * cols).putInt(0x803).putInt(n).putInt(rows).putInt(cols);
        for (int i = 0; i < n * rows * cols; i++) b.put((byte) (i * 37));
        return b.array();
    }

    static byte[] idxLabels(byte[] labels) {
        return ByteBuffer.allocate(8 + labels.length).putInt(0x801).putInt(labels.length).put(labels).array();
    }

    static BufferedImage image(int w, int h, int type) {
        BufferedImage img = new BufferedImage(w, h, type);
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) img.setRGB(x, y, 0xFF000000 | (x * 40) << 16 | (y * 30) << 8 | 0x80);
        return img;
    }

    static byte[] encode(BufferedImage img, String format) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        if (!ImageIO.write(img, format, out)) throw new IOException("no " + format + " writer");
        return out.toByteArray();
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    private static void write(Path dir, String name, byte[] bytes) throws IOException {
        Files.createDirectories(dir);
        Files.write(dir.resolve(name), bytes);
        System.out.println(dir.resolve(name) + ": " + bytes.length + " bytes");
    }
}
