package io.diffusion4j.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.model.ClassLabels;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.testutil.TestRandom;
import io.diffusion4j.testutil.Tolerance;
import io.diffusion4j.train.Checkpoint;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the server loads: a checkpoint as a {@link UNet2DModel#forInference} model, which holds the weights alone
 * (no gradient buffer) and computes the same bits as a training model with those weights; its training entry
 * points refuse.
 */
class ServedModelTest {
    @TempDir
    Path dir;

    @Test
    void loadedModelHoldsTheWeightsAloneAndMatchesATrainingModel() throws Exception {
        TestRandom rnd = TestRandom.fresh();
        long seed = rnd.nextLong();
        Path ck = ServeTestSupport.checkpoint(dir.resolve("ck"), seed);
        try (Backend cpu = Backend.open(Device.CPU)) {
            long before = cpu.liveBytes();
            try (ServedModel served = ServedModel.load("m", ck, false, cpu);
                 UNet2DModel full = new UNet2DModel(cpu, ServeTestSupport.config(), seed)) {
                UNet2DModel m = served.model();
                assertTrue(m.preparedWeightBytes() > 0, "the upsampling convolution's weights are prepared at load");
                assertEquals(m.parameters().byteSize() + m.preparedWeightBytes(),
                        cpu.liveBytes() - before - full.parameters().byteSize() * 2,
                        "the served model holds its parameter buffer and prepared convolution weights only");
                Tolerance.assertBitIdentical("weights", full.flatParameters(), m.flatParameters(), rnd.describe());
                float[] x = rnd.gaussians(3 * 8 * 8, 1.0);
                float[] t = {999f, 500f, 3f};
                try (Tensor xs = Tensor.of(cpu, x, 3, 8, 8, 1); UNet2DModel ws = m.sharingParameters()) {
                    float[] expected = full.forward(xs, t).toFloatArray();
                    Tolerance.assertBitIdentical("forward", expected, m.forward(xs, t).toFloatArray(), rnd.describe());
                    Tolerance.assertBitIdentical("shared instance", expected, ws.forward(xs, t).toFloatArray(), rnd.describe());
                }
                IllegalStateException e = assertThrows(IllegalStateException.class, m::gradients);
                assertTrue(e.getMessage().contains("forInference"), e.getMessage());
                assertThrows(IllegalStateException.class, m::zeroGradients);
                assertThrows(IllegalStateException.class, m::flatGradients);
                assertThrows(IllegalStateException.class, () -> m.gradient("conv_in.weight"));
                try (Tensor xs = Tensor.of(cpu, x, 3, 8, 8, 1)) {
                    assertThrows(IllegalStateException.class, () -> m.forwardTraining(xs, t, 1, 2));
                    m.forward(xs, t);
                    try (Tensor d = Tensor.of(cpu, x, 3, 8, 8, 1)) {
                        assertThrows(IllegalStateException.class, () -> m.backward(d));
                    }
                }
            }
            assertEquals(before, cpu.liveBytes(), "everything freed");
        }
    }

    /**
     * A class-conditional checkpoint's classes are read from its class_labels.json (unnamed, without a null class,
     * when it has none); a file that does not fit the model's num_class_embeds is an IOException naming it, and
     * nothing is left allocated.
     */
    @Test
    void classLabelsAreReadAsSampleReadsThem() throws Exception {
        ClassLabels animals = new ClassLabels(java.util.List.of("cat", "dog", "bird"), 3);
        Path ck = ServeTestSupport.conditionalCheckpoint(dir.resolve("ck"), TestRandom.fresh().nextLong(), animals);
        try (Backend cpu = Backend.open(Device.CPU)) {
            long before = cpu.liveBytes();
            try (ServedModel served = ServedModel.load("m", ck, false, cpu)) {
                assertEquals(animals, served.classes());
                assertTrue(served.guidable());
            }
            Files.delete(ck.resolve(ClassLabels.FILE));
            try (ServedModel served = ServedModel.load("m", ck, false, cpu)) {
                assertEquals(ClassLabels.unnamed(4), served.classes());
                assertTrue(!served.guidable(), "no null class without class_labels.json");
            }
            new ClassLabels(java.util.List.of("cat", "dog"), 2).write(ck);
            IOException e = assertThrows(IOException.class, () -> ServedModel.load("m", ck, false, cpu));
            assertTrue(e.getMessage().contains(ClassLabels.FILE) && e.getMessage().contains("num_class_embeds 4"), e.getMessage());
            assertEquals(before, cpu.liveBytes(), "nothing left allocated");
        }
        try (Backend cpu = Backend.open(Device.CPU)) {
            UNet2DModel m = UNet2DModel.forInference(cpu, ServeTestSupport.config());
            try {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new ServedModel("u", m,
                        ServeTestSupport.schedule(), ServeTestSupport.plainConfig(), animals));
                assertTrue(e.getMessage().contains("unconditional"), e.getMessage());
            } finally {
                m.close();
            }
        }
    }

    /**
     * scheduler_config.json is read as {@code sample} reads it (CheckpointFiles): Python's non-finite
     * constants accepted (diffusers writes {@code -Infinity}); a malformed file is an IOException naming it,
     * and nothing is left allocated.
     */
    @Test
    void schedulerConfigIsReadAsSampleReadsIt() throws Exception {
        Path ck = ServeTestSupport.checkpoint(dir.resolve("ck"), TestRandom.fresh().nextLong());
        Path sched = ck.resolve(Checkpoint.SCHEDULER);
        String json = Files.readString(sched).trim();
        Files.writeString(sched, json.substring(0, json.length() - 1) + ", \"lambda_min_clipped\": -Infinity}");
        try (Backend cpu = Backend.open(Device.CPU)) {
            long before = cpu.liveBytes();
            try (ServedModel served = ServedModel.load("m", ck, false, cpu)) {
                assertEquals(Double.NEGATIVE_INFINITY, served.schedulerConfig().get("lambda_min_clipped"));
                assertEquals(ServeTestSupport.plainConfig().get("prediction_type"), served.schedulerConfig().get("prediction_type"));
            }
            Files.writeString(sched, json.substring(0, json.length() / 2));
            IOException e = assertThrows(IOException.class, () -> ServedModel.load("m", ck, false, cpu));
            assertTrue(e.getMessage().startsWith(sched + ": "), e.getMessage());
            assertEquals(before, cpu.liveBytes(), "nothing left allocated");
        }
    }
}
