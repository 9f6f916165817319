package io.diffusion4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.model.UNet2DConfig;
import io.diffusion4j.model.UNet2DLayout;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.testutil.TinyUNet;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.CRC32;
import java.util.zip.Deflater;
import java.util.zip.DeflaterOutputStream;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The readers of model folders and training data refuse hostile input from sizes they can check before
 * allocating: a config describing a huge model, an image declaring a huge size, an IDX file of another image size,
 * an unusable ema/ folder; and a save removes the temporaries a killed save left behind.
 */
class ReaderLimitsTest {
    @TempDir
    Path dir;

    static UNet2DConfig wide(int channels) {
        return UNet2DConfig.builder().sampleSize(32).inChannels(3).outChannels(3)
                .blockOutChannels(channels, channels, channels).layersPerBlock(2).normNumGroups(32)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.DOWN_BLOCK, UNet2DConfig.DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.UP_BLOCK, UNet2DConfig.UP_BLOCK, UNet2DConfig.UP_BLOCK)).build();
    }

    /** A config of billions of parameters beside a small weights file: refused before any array is allocated. */
    @Test
    void weightsOfAHugeConfigAreRefusedBeforeAllocating() throws IOException {
        Path w = dir.resolve("w.safetensors");
        TinyUNet.writeWeights(w, TinyUNet.config(1), 1);
        for (int c : new int[] {3072, 2048}) {
            UNet2DLayout layout = UNet2DLayout.of(wide(c));
            IOException e = assertThrows(IOException.class, () -> Checkpoint.readWeights(w, layout), "channels " + c);
            assertTrue(e.getMessage().startsWith(w + ": ") && e.getMessage().contains("above the limit"), e.getMessage());
        }
        // within the limit, a file whose tensors do not match is refused from its header (nothing read)
        UNet2DLayout medium = UNet2DLayout.of(wide(256));
        IOException e = assertThrows(IOException.class, () -> Checkpoint.readWeights(w, medium));
        assertTrue(e.getMessage().contains("does not match the UNet2DModel layout"), e.getMessage());
    }

    /** The sizing pass allocates what the real allocation allocates, for training and inference models. */
    @Test
    void activationEstimateEqualsTheArena() {
        UNet2DConfig cfg = TinyUNet.conditionalConfig(3, 4);
        try (Backend cpu = Backend.open(Device.CPU); UNet2DModel m = new UNet2DModel(cpu, cfg, 1L);
                UNet2DModel inf = m.sharingParameters()) {
            m.reserve(3, 16, 8);
            inf.reserve(5, 8, 8);
            assertEquals(m.activationBytes(), UNet2DModel.activationBytes(cfg, 3, 16, 8, true));
            assertEquals(inf.activationBytes(), UNet2DModel.activationBytes(cfg, 5, 8, 8, false));
        }
        // sample_size 4096 at batch 16: counted, not allocated
        long big = UNet2DModel.activationBytes(TinyUNet.config(3), 16, 4096, 4096, false);
        assertTrue(big > 10L << 30, Long.toString(big));
    }

    /** A valid 1-bit PNG of w x h pixels whose pixels are all 0 (its data compress to almost nothing). */
    static byte[] png(int w, int h) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(new byte[] {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'});
        ByteBuffer ihdr = ByteBuffer.allocate(13).putInt(w).putInt(h).put((byte) 1).put((byte) 0).put((byte) 0)
                .put((byte) 0).put((byte) 0);
        chunk(out, "IHDR", ihdr.array());
        ByteArrayOutputStream z = new ByteArrayOutputStream();
        try (DeflaterOutputStream d = new DeflaterOutputStream(z, new Deflater(9))) {
            byte[] row = new byte[1 + (w + 7) / 8]; // filter byte 0, then the row's bits
            for (int y = 0; y < h; y++) d.write(row);
        }
        chunk(out, "IDAT", z.toByteArray());
        chunk(out, "IEND", new byte[0]);
        return out.toByteArray();
    }

    static void chunk(ByteArrayOutputStream out, String type, byte[] data) throws IOException {
        DataOutputStream d = new DataOutputStream(out);
        d.writeInt(data.length);
        byte[] t = type.getBytes(StandardCharsets.US_ASCII);
        d.write(t);
        d.write(data);
        CRC32 crc = new CRC32();
        crc.update(t);
        crc.update(data);
        d.writeInt((int) crc.getValue());
    }

    /** Two small files declaring 20000 x 20000 pixels: refused from their header, the dataset not loaded. */
    @Test
    void imagesDeclaringHugeSizesAreRefusedFromTheirHeader() throws IOException {
        Path data = dir.resolve("images");
        Files.createDirectories(data);
        byte[] huge = png(20000, 20000);
        assertTrue(huge.length < 1 << 20, "the file is small: " + huge.length);
        Files.write(data.resolve("a.png"), huge);
        Files.write(data.resolve("b.png"), huge);
        IOException e = assertThrows(IOException.class, () -> ImageFolderDataset.load(data, 8, 8, 1));
        assertTrue(e.getMessage().contains(data.resolve("a.png").toString()) && e.getMessage().contains("20000x20000"),
                e.getMessage());
        e = assertThrows(IOException.class, () -> ImageFolderDataset.loadPixels(data.resolve("b.png"), 8, 8, 3));
        assertTrue(e.getMessage().contains("20000x20000"), e.getMessage());
        // an image within the limit still loads
        Files.write(data.resolve("a.png"), png(64, 48));
        Files.write(data.resolve("b.png"), png(8, 8));
        assertEquals(2, ImageFolderDataset.load(data, 8, 8, 1).size());
    }

    static byte[] idx(int n, int r, int c) throws IOException {
        ByteArrayOutputStream raw = new ByteArrayOutputStream();
        try (DataOutputStream d = new DataOutputStream(new GZIPOutputStream(raw))) {
            d.writeInt(0x803);
            d.writeInt(n);
            d.writeInt(r);
            d.writeInt(c);
            d.write(new byte[n * r * c]);
        }
        return raw.toByteArray();
    }

    /** IDX images of another size than the model's are refused from the header; the right size loads. */
    @Test
    void idxImagesMustHaveTheModelsSize() throws IOException {
        Files.write(dir.resolve(FashionMnist.TRAIN_IMAGES), idx(3, 464, 464));
        IOException e = assertThrows(IOException.class, () -> FashionMnist.load(dir, true, 28, 28));
        assertTrue(e.getMessage().contains("464x464") && e.getMessage().contains("28x28"), e.getMessage());
        Files.write(dir.resolve(FashionMnist.TRAIN_IMAGES), idx(3, 28, 28));
        assertEquals(3, FashionMnist.load(dir, true, 28, 28).size());
    }

    /** Absent ema/ is fine; present but unusable is an error naming it, whatever kind of unusable. */
    @Test
    void unusableEmaFolderIsAnError() throws IOException {
        Path ck = dir.resolve("ck");
        Files.createDirectories(ck);
        assertNull(CheckpointFiles.emaWeights(ck));
        Path ema = ck.resolve(Checkpoint.EMA_DIR);
        Files.createDirectories(ema); // empty
        assertEmaRefused(ck, "no " + Checkpoint.WEIGHTS);
        Files.delete(ema);
        Files.writeString(ema, "x"); // a plain file
        assertEmaRefused(ck, "not a directory");
        Files.delete(ema);
        Files.createSymbolicLink(ema, ema.getFileName()); // a link to itself
        assertEmaRefused(ck, "symbolic link");
        Files.delete(ema);
        Files.createDirectories(ema);
        TinyUNet.writeWeights(ema.resolve(Checkpoint.WEIGHTS), TinyUNet.config(1), 2);
        assertEquals(ema.resolve(Checkpoint.WEIGHTS), CheckpointFiles.emaWeights(ck));
    }

    static void assertEmaRefused(Path ck, String expect) {
        IOException e = assertThrows(IOException.class, () -> CheckpointFiles.emaWeights(ck));
        assertTrue(e.getMessage().contains(ck.resolve(Checkpoint.EMA_DIR).toString()) && e.getMessage().contains(expect)
                && e.getMessage().contains("--no-ema"), e.getMessage());
    }

    /** A save removes the temporary files a save killed before its rename left, and nothing else. */
    @Test
    void saveRemovesLeftoverTemporaries() throws IOException {
        Path ck = dir.resolve("ck");
        Files.createDirectories(ck.resolve(Checkpoint.EMA_DIR));
        Path t1 = ck.resolve("." + Checkpoint.WEIGHTS + ".3f9a0c1d2b4e5f60.tmp");
        Path t2 = ck.resolve(Checkpoint.EMA_DIR).resolve("." + Checkpoint.CONFIG + ".1a.tmp");
        Path keep = ck.resolve("notes.tmp");
        for (Path p : List.of(t1, t2, keep)) Files.writeString(p, "half");
        UNet2DConfig cfg = UNet2DConfig.builder().sampleSize(8).inChannels(1).outChannels(1).blockOutChannels(4, 8)
                .layersPerBlock(1).normNumGroups(2).attentionHeadDim(4)
                .downBlockTypes(List.of(UNet2DConfig.DOWN_BLOCK, UNet2DConfig.ATTN_DOWN_BLOCK))
                .upBlockTypes(List.of(UNet2DConfig.ATTN_UP_BLOCK, UNet2DConfig.UP_BLOCK)).build();
        try (Backend cpu = Backend.open(Device.CPU); UNet2DModel model = new UNet2DModel(cpu, cfg, 1L);
                Trainer t = new Trainer(model, TrainerTest.schedule(), new ProceduralDataset(16, 8, 8, 1, 1L),
                        TrainerTest.options(1L, io.diffusion4j.schedule.PredictionType.EPSILON))) {
            Checkpoint.save(ck, t);
        }
        assertFalse(Files.exists(t1), "leftover in the checkpoint folder");
        assertFalse(Files.exists(t2), "leftover in ema/");
        assertTrue(Files.exists(keep), "a file of another naming pattern stays");
        assertFalse(AtomicFiles.recover(ck), "nothing left to recover");
    }
}
