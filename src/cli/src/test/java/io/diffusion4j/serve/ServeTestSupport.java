package io.diffusion4j.serve;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.Json;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.schedule.BetaSchedule;
import io.diffusion4j.schedule.NoiseSchedule;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.testutil.TinyUNet;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;

/** Tiny 1-channel 8x8 models, their scheduler configs, checkpoints on disk and an HTTP client for the serve tests. */
final class ServeTestSupport {
    private ServeTestSupport() {}

    static final int H = 8, W = 8, C = 1;

    static UNet2DConfig config() {
        return TinyUNet.config(C);
    }

    static NoiseSchedule schedule() {
        return NoiseSchedule.of(BetaSchedule.LINEAR, 1000, 1e-4, 0.02);
    }

    /** diffusers' defaults for an epsilon model (clip_sample true, leading). */
    static Map<String, Object> plainConfig() {
        return Checkpoint.schedulerConfig(schedule(), PredictionType.EPSILON);
    }

    /** v-prediction with dynamic thresholding, no clipping, trailing spacing. */
    static Map<String, Object> thresholdedConfig() {
        Map<String, Object> m = new LinkedHashMap<>(Checkpoint.schedulerConfig(schedule(), PredictionType.V_PREDICTION));
        m.put("thresholding", true);
        m.put("dynamic_thresholding_ratio", 0.9);
        m.put("sample_max_value", 1.5);
        m.put("clip_sample", false);
        m.put("timestep_spacing", "trailing");
        return m;
    }

    /** A served model with weights initialised from seed, made as the server makes them (no gradient buffer). */
    static ServedModel model(Backend be, String name, long seed, Map<String, Object> schedCfg) {
        UNet2DModel m = UNet2DModel.forInference(be, config());
        m.initParameters(seed);
        return new ServedModel(name, m, schedule(), schedCfg);
    }

    /** The tiny model, class-conditional with {@code numClassEmbeds} class-embedding rows. */
    static UNet2DConfig conditionalConfig(int numClassEmbeds) {
        return TinyUNet.conditionalConfig(C, numClassEmbeds);
    }

    /** A served class-conditional model with weights from seed and {@code classes} (null: unnamed, no null class). */
    static ServedModel conditionalModel(Backend be, String name, long seed, ClassLabels classes) {
        int rows = classes == null ? 3 : classes.names().size() + (classes.hasNullClass() ? 1 : 0);
        UNet2DModel m = UNet2DModel.forInference(be, conditionalConfig(rows));
        m.initParameters(seed);
        return new ServedModel(name, m, schedule(), plainConfig(), classes);
    }

    /** A checkpoint folder of the class-conditional tiny model with weights from seed and its class_labels.json. */
    static Path conditionalCheckpoint(Path dir, long seed, ClassLabels classes) throws IOException {
        Files.createDirectories(dir);
        UNet2DConfig cfg = conditionalConfig(classes.names().size() + (classes.hasNullClass() ? 1 : 0));
        Files.writeString(dir.resolve(Checkpoint.CONFIG), cfg.toJson());
        TinyUNet.writeWeights(dir.resolve(Checkpoint.WEIGHTS), cfg, seed);
        Files.writeString(dir.resolve(Checkpoint.SCHEDULER), Json.write(plainConfig()));
        classes.write(dir);
        return dir;
    }

    /** A checkpoint folder (config, weights, scheduler config) of the tiny model with weights from seed. */
    static Path checkpoint(Path dir, long seed) throws IOException {
        Files.createDirectories(dir);
        UNet2DConfig cfg = config();
        Files.writeString(dir.resolve(Checkpoint.CONFIG), cfg.toJson());
        TinyUNet.writeWeights(dir.resolve(Checkpoint.WEIGHTS), cfg, seed);
        Files.writeString(dir.resolve(Checkpoint.SCHEDULER), Json.write(plainConfig()));
        return dir;
    }

    static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    static HttpResponse<byte[]> post(int port, String body) throws IOException, InterruptedException {
        HttpRequest r = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/v1/samples"))
                .timeout(Duration.ofSeconds(120)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
        return CLIENT.send(r, HttpResponse.BodyHandlers.ofByteArray());
    }

    static HttpResponse<String> get(int port, String path) throws IOException, InterruptedException {
        HttpRequest r = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).timeout(Duration.ofSeconds(30))
                .GET().build();
        return CLIENT.send(r, HttpResponse.BodyHandlers.ofString());
    }

    static String text(HttpResponse<byte[]> r) {
        return new String(r.body(), StandardCharsets.UTF_8);
    }
}
