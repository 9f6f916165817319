package io.diffusion4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.io.SafeTensors;
import io.diffusion4j.model.UNet2DLayout.Kind;
import io.diffusion4j.model.UNet2DLayout.Param;
import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class UNet2DLayoutTest {

    @TempDir
    Path dir;

    private static UNet2DLayout cifar() {
        return UNet2DLayout.of(UNet2DConfig.fromJson(UNet2DConfigTest.DDPM_CIFAR10_32));
    }

    // ---- parameter counts --------------------------------------------------------------------------

    /** The published size of google/ddpm-cifar10-32 (sum of its state dict). */
    @Test
    void ddpmCifar10HasExactly35746307Parameters() {
        assertEquals(35_746_307L, cifar().parameterCount());
    }

    /**
     * Fashion-MNIST network, counted by hand. temb = 4*32 = 128. A resnet in->out has two GroupNorms
     * (2*in + 2*out), conv1 (9*in*out + out), time_emb_proj (128*out + out), conv2 (9*out*out + out)
     * and, when in != out, a 1x1 shortcut (in*out + out). An attention block on c channels has a
     * GroupNorm (2c) and four c->c linear layers (4*(c*c + c)). Skip channels per up block (prev
     * output + skip): up0 (64+64, 64+64), up1 (64+64, 64+32), up2 (64+32, 32+32).
     */
    @Test
    void fashionMnistCountMatchesAHandCount() {
        long t = 128;
        long expected = 0;
        expected += 9 * 1 * 32 + 32;                          // conv_in
        expected += (32 * t + t) + (t * t + t);               // time_embedding
        expected += resnetByHand(32, 32, t) + conv3ByHand(32);  // down 0 + downsampler
        expected += resnetByHand(32, 64, t) + conv3ByHand(64);  // down 1 + downsampler
        expected += resnetByHand(64, 64, t) + attnByHand(64);   // down 2 (attention), no downsampler
        expected += 2 * (resnetByHand(128, 64, t) + attnByHand(64)) + conv3ByHand(64); // up 0
        expected += resnetByHand(128, 64, t) + resnetByHand(96, 64, t) + conv3ByHand(64); // up 1
        expected += resnetByHand(96, 32, t) + resnetByHand(64, 32, t);                    // up 2
        expected += attnByHand(64) + 2 * resnetByHand(64, 64, t); // mid
        expected += 2 * 32 + (9 * 32 * 1 + 1);                    // conv_norm_out, conv_out
        UNet2DLayout layout = UNet2DLayout.of(UNet2DConfigTest.fashionMnist());
        assertEquals(expected, layout.parameterCount());
        assertEquals(1_112_801L, expected, "the hand count itself");
        assertEquals(expected, layout.params().stream().mapToLong(Param::size).sum());
    }

    private static long resnetByHand(long in, long out, long t) {
        long n = 2 * in + (9 * in * out + out) + (t * out + out) + 2 * out + (9 * out * out + out);
        return in != out ? n + in * out + out : n;
    }

    private static long conv3ByHand(long c) {
        return 9 * c * c + c;
    }

    private static long attnByHand(long c) {
        return 2 * c + 4 * (c * c + c);
    }

    // ---- names, shapes, order --------------------------------------------------------------------

    private static void assertShape(UNet2DLayout l, String name, Kind kind, int... shape) {
        Param p = l.param(name);
        assertArrayEquals(shape, p.shape(), name);
        assertEquals(kind, p.kind(), name);
    }

    @Test
    void cifarNamesAndShapesFollowDiffusers() {
        UNet2DLayout l = cifar();
        assertShape(l, "conv_in.weight", Kind.CONV3X3, 128, 3, 3, 3);
        assertShape(l, "conv_in.bias", Kind.BIAS, 128);
        assertShape(l, "time_embedding.linear_1.weight", Kind.LINEAR, 512, 128);
        assertShape(l, "time_embedding.linear_2.weight", Kind.LINEAR, 512, 512);
        assertShape(l, "down_blocks.0.resnets.0.norm1.weight", Kind.NORM_WEIGHT, 128);
        assertShape(l, "down_blocks.0.resnets.0.norm1.bias", Kind.NORM_BIAS, 128);
        assertShape(l, "down_blocks.0.resnets.0.time_emb_proj.weight", Kind.LINEAR, 128, 512);
        assertFalse(l.contains("down_blocks.0.resnets.0.conv_shortcut.weight"), "128 -> 128 has no shortcut");
        assertShape(l, "down_blocks.0.downsamplers.0.conv.weight", Kind.CONV3X3, 128, 128, 3, 3);
        assertShape(l, "down_blocks.1.resnets.0.conv1.weight", Kind.CONV3X3, 256, 128, 3, 3);
        assertShape(l, "down_blocks.1.resnets.0.conv_shortcut.weight", Kind.CONV1X1, 256, 128, 1, 1);
        assertShape(l, "down_blocks.1.resnets.0.conv_shortcut.bias", Kind.BIAS, 256);
        assertShape(l, "down_blocks.1.attentions.1.group_norm.weight", Kind.NORM_WEIGHT, 256);
        for (String proj : List.of("to_q", "to_k", "to_v", "to_out.0")) {
            assertShape(l, "down_blocks.1.attentions.0." + proj + ".weight", Kind.LINEAR, 256, 256);
            assertShape(l, "down_blocks.1.attentions.0." + proj + ".bias", Kind.BIAS, 256);
        }
        assertFalse(l.contains("down_blocks.0.attentions.0.to_q.weight"), "DownBlock2D has no attention");
        assertFalse(l.contains("down_blocks.3.downsamplers.0.conv.weight"), "last down block does not downsample");
        assertShape(l, "mid_block.attentions.0.to_q.weight", Kind.LINEAR, 256, 256);
        assertShape(l, "mid_block.resnets.1.conv2.weight", Kind.CONV3X3, 256, 256, 3, 3);
        // up blocks: 3 resnets each; input = previous output + skip
        assertShape(l, "up_blocks.0.resnets.0.conv1.weight", Kind.CONV3X3, 256, 512, 3, 3);
        assertShape(l, "up_blocks.0.resnets.0.conv_shortcut.weight", Kind.CONV1X1, 256, 512, 1, 1);
        assertShape(l, "up_blocks.1.resnets.2.norm1.weight", Kind.NORM_WEIGHT, 512);
        assertShape(l, "up_blocks.2.resnets.2.conv1.weight", Kind.CONV3X3, 256, 384, 3, 3);
        assertShape(l, "up_blocks.2.attentions.2.to_out.0.weight", Kind.LINEAR, 256, 256);
        assertShape(l, "up_blocks.3.resnets.0.conv1.weight", Kind.CONV3X3, 128, 384, 3, 3);
        assertShape(l, "up_blocks.3.resnets.1.conv1.weight", Kind.CONV3X3, 128, 256, 3, 3);
        assertShape(l, "up_blocks.3.resnets.2.conv_shortcut.weight", Kind.CONV1X1, 128, 256, 1, 1);
        assertShape(l, "up_blocks.2.upsamplers.0.conv.weight", Kind.CONV3X3, 256, 256, 3, 3);
        assertFalse(l.contains("up_blocks.3.upsamplers.0.conv.weight"), "last up block does not upsample");
        assertFalse(l.contains("up_blocks.3.resnets.3.conv1.weight"), "layers_per_block + 1 resnets");
        assertShape(l, "conv_norm_out.weight", Kind.NORM_WEIGHT, 128);
        assertShape(l, "conv_out.weight", Kind.CONV3X3, 3, 128, 3, 3);
        assertShape(l, "conv_out.bias", Kind.BIAS, 3);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> l.param("conv_in.weights"));
        assertTrue(e.getMessage().contains("conv_in.weights"), e.getMessage());
    }

    @Test
    void orderIsThatOfTheDiffusersStateDict() {
        UNet2DLayout l = cifar();
        List<String> names = l.params().stream().map(Param::name).toList();
        assertEquals("conv_in.weight", names.get(0));
        assertEquals("conv_in.bias", names.get(1));
        assertEquals("time_embedding.linear_1.weight", names.get(2));
        assertEquals("conv_out.bias", names.get(names.size() - 1));
        assertEquals("conv_norm_out.weight", names.get(names.size() - 4));
        // module registration order: down_blocks, up_blocks, then mid_block
        int lastDown = lastIndex(names, "down_blocks.");
        int firstUp = names.indexOf("up_blocks.0.resnets.0.norm1.weight");
        int lastUp = lastIndex(names, "up_blocks.");
        int firstMid = names.indexOf("mid_block.attentions.0.group_norm.weight");
        assertTrue(lastDown < firstUp && lastUp < firstMid, "down < up < mid");
        // attention blocks register attentions before resnets; resnets before samplers
        assertTrue(names.indexOf("down_blocks.1.attentions.1.to_out.0.bias") < names.indexOf("down_blocks.1.resnets.0.norm1.weight"));
        assertTrue(names.indexOf("mid_block.attentions.0.to_out.0.bias") < names.indexOf("mid_block.resnets.0.norm1.weight"));
        assertTrue(names.indexOf("down_blocks.1.resnets.1.conv2.bias") < names.indexOf("down_blocks.1.downsamplers.0.conv.weight"));
        // inside a resnet: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut
        String r = "down_blocks.1.resnets.0.";
        List<String> expected = new ArrayList<>();
        for (String m : List.of("norm1", "conv1", "time_emb_proj", "norm2", "conv2", "conv_shortcut")) {
            expected.add(r + m + ".weight");
            expected.add(r + m + ".bias");
        }
        int at = names.indexOf(r + "norm1.weight");
        assertEquals(expected, names.subList(at, at + expected.size()));
        String a = "up_blocks.2.attentions.0.";
        List<String> attn = new ArrayList<>();
        for (String m : List.of("group_norm", "to_q", "to_k", "to_v", "to_out.0")) {
            attn.add(a + m + ".weight");
            attn.add(a + m + ".bias");
        }
        at = names.indexOf(a + "group_norm.weight");
        assertEquals(attn, names.subList(at, at + attn.size()));
        assertEquals(names.size(), new HashSet<>(names).size(), "names are unique");
    }

    private static int lastIndex(List<String> names, String prefix) {
        int last = -1;
        for (int i = 0; i < names.size(); i++) {
            if (names.get(i).startsWith(prefix)) last = i;
        }
        return last;
    }

    // ---- flat buffer -----------------------------------------------------------------------------

    private static void checkOffsets(UNet2DLayout l) {
        long prevEnd = 0;
        for (Param p : l.params()) {
            assertEquals(0, p.offset() % UNet2DLayout.ALIGN_FLOATS, p.name() + " aligned");
            assertTrue(p.offset() >= prevEnd, p.name() + " does not overlap its predecessor");
            assertTrue(p.offset() - prevEnd < UNet2DLayout.ALIGN_FLOATS, p.name() + " packed as tightly as alignment allows");
            prevEnd = p.offset() + p.size();
        }
        assertEquals(UNet2DLayout.alignUp(prevEnd), l.bufferFloats());
        assertEquals(0, l.bufferFloats() % UNet2DLayout.ALIGN_FLOATS, "buffer length is a multiple of the alignment");
        assertTrue(l.bufferFloats() >= l.parameterCount());
    }

    @Test
    void offsetsAreAlignedPackedAndDisjoint() {
        checkOffsets(cifar());
        UNet2DLayout f = UNet2DLayout.of(UNet2DConfigTest.fashionMnist());
        checkOffsets(f);
        assertEquals(0, f.params().get(0).offset());
        assertEquals(288, f.param("conv_in.bias").offset(), "conv_in.weight is 32*1*3*3 = 288 floats");
        assertEquals(320, f.param("time_embedding.linear_1.weight").offset(), "32 bias floats, aligned to 16");
    }

    // ---- kinds -----------------------------------------------------------------------------------

    @Test
    void kindsAgreeWithNamesAndShapes() {
        for (Param p : cifar().params()) {
            int[] s = p.shape();
            Kind expected;
            if (s.length == 4) {
                expected = s[2] == 3 ? Kind.CONV3X3 : Kind.CONV1X1;
            } else if (s.length == 2) {
                expected = Kind.LINEAR;
            } else if (p.name().matches(".*(norm1|norm2|group_norm|conv_norm_out)\\.weight")) {
                expected = Kind.NORM_WEIGHT;
            } else if (p.name().matches(".*(norm1|norm2|group_norm|conv_norm_out)\\.bias")) {
                expected = Kind.NORM_BIAS;
            } else {
                expected = Kind.BIAS;
                assertTrue(p.name().endsWith(".bias"), p.name());
            }
            assertEquals(expected, p.kind(), p.name());
        }
    }

    // ---- structure ---------------------------------------------------------------------------------

    @Test
    void structureRecordsDescribeEveryBlock() {
        UNet2DLayout l = cifar();
        assertEquals(4 * 2 + 4 * 3 + 2, l.resnets().size());
        assertEquals(2 + 3 + 1, l.attentions().size());
        for (UNet2DLayout.Attention a : l.attentions()) {
            assertEquals(1, a.heads(), "attention_head_dim null: one head");
            assertEquals(a.channels(), a.headDim());
            assertEquals(32, a.groups());
        }
        UNet2DLayout.Resnet r = l.resnets().stream().filter(x -> x.prefix().equals("up_blocks.3.resnets.0")).findFirst().orElseThrow();
        assertEquals(new UNet2DLayout.Resnet("up_blocks.3.resnets.0", 384, 128, true, 32), r);
        UNet2DLayout heads = UNet2DLayout.of(UNet2DConfig.builder().attentionHeadDim(8).attnNormNumGroups(16).build());
        UNet2DLayout.Attention mid = heads.attentions().get(heads.attentions().size() - 1);
        assertEquals(new UNet2DLayout.Attention("mid_block.attentions.0", 896, 112, 8, 16), mid);
    }

    // ---- legacy names and checkpoint checks -------------------------------------------------------

    @Test
    void legacyAttentionNamesMapToCurrentOnes() {
        assertEquals("mid_block.attentions.0.to_q.weight", UNet2DLayout.currentName("mid_block.attentions.0.query.weight"));
        assertEquals("down_blocks.1.attentions.1.to_k.bias", UNet2DLayout.currentName("down_blocks.1.attentions.1.key.bias"));
        assertEquals("up_blocks.2.attentions.0.to_v.weight", UNet2DLayout.currentName("up_blocks.2.attentions.0.value.weight"));
        assertEquals("up_blocks.2.attentions.2.to_out.0.bias", UNet2DLayout.currentName("up_blocks.2.attentions.2.proj_attn.bias"));
        assertEquals("up_blocks.2.attentions.2.group_norm.weight",
                UNet2DLayout.currentName("up_blocks.2.attentions.2.group_norm.weight"), "group_norm keeps its name");
        assertEquals("down_blocks.1.resnets.0.query.weight", UNet2DLayout.currentName("down_blocks.1.resnets.0.query.weight"),
                "only attention paths are renamed");
        assertEquals("x.attentions.0.query.weight", UNet2DLayout.currentName("x.attentions.0.query.weight"));
        assertEquals("mid_block.attentions.0.query.weight.x", UNet2DLayout.currentName("mid_block.attentions.0.query.weight.x"));
        UNet2DLayout l = cifar();
        assertSame(l.param("mid_block.attentions.0.to_out.0.weight"), l.resolve("mid_block.attentions.0.proj_attn.weight"));
        assertNull(l.resolve("mid_block.attentions.0.proj.weight"));
    }

    private static Map<String, long[]> shapes(UNet2DLayout l, boolean legacy) {
        Map<String, long[]> m = new LinkedHashMap<>();
        for (Param p : l.params()) {
            String name = p.name();
            if (legacy) {
                name = name.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
                        .replace(".to_out.0.", ".proj_attn.");
            }
            m.put(name, p.shapeLong());
        }
        return m;
    }

    @Test
    void checkpointCheckAcceptsCurrentAndLegacyNamesAndListsProblems() {
        UNet2DLayout l = cifar();
        l.checkCheckpoint(shapes(l, false));
        Map<String, long[]> legacy = shapes(l, true);
        assertTrue(legacy.containsKey("mid_block.attentions.0.proj_attn.weight"));
        l.checkCheckpoint(legacy);

        Map<String, long[]> bad = shapes(l, false);
        bad.remove("conv_out.bias");
        bad.put("extra.weight", new long[] {1});
        bad.put("conv_in.weight", new long[] {128, 3, 3});
        bad.put("mid_block.attentions.0.query.weight", new long[] {256, 256});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> l.checkCheckpoint(bad));
        String msg = e.getMessage();
        assertTrue(msg.contains("missing tensor 'conv_out.bias'"), msg);
        assertTrue(msg.contains("unexpected tensor 'extra.weight'"), msg);
        assertTrue(msg.contains("tensor 'conv_in.weight' has shape [128, 3, 3], expected [128, 3, 3, 3]"), msg);
        assertTrue(msg.contains("both map to 'mid_block.attentions.0.to_q.weight'"), msg);
    }

    /** A checkpoint written with the layout's names and shapes reads back and passes the check. */
    @Test
    void safetensorsCheckpointOfTheLayoutRoundTrips() throws IOException {
        TestRandom rnd = TestRandom.fresh();
        UNet2DLayout l = UNet2DLayout.of(UNet2DConfigTest.fashionMnist());
        List<SafeTensors.Entry> entries = new ArrayList<>();
        for (Param p : l.params()) {
            entries.add(new SafeTensors.Entry(p.name(), p.shapeLong(), rnd.gaussians((int) p.size(), 0.02)));
        }
        Path file = dir.resolve("diffusion_pytorch_model.safetensors");
        SafeTensors.write(file, entries, Map.of("format", "pt"));
        Map<String, long[]> onDisk = new LinkedHashMap<>();
        try (SafeTensors.Reader r = SafeTensors.open(file)) {
            for (SafeTensors.TensorInfo t : r.tensors()) onDisk.put(t.name(), t.shapeArray());
            l.checkCheckpoint(onDisk);
            float[] flat = new float[(int) l.bufferFloats()];
            for (SafeTensors.TensorInfo t : r.tensors()) {
                r.readFloat32(t.name(), flat, (int) l.resolve(t.name()).offset());
            }
            for (int i = 0; i < entries.size(); i++) {
                Param p = l.params().get(i);
                float[] want = entries.get(i).data();
                for (int k = 0; k < want.length; k++) {
                    if (flat[(int) p.offset() + k] != want[k]) {
                        throw new AssertionError(p.name() + "[" + k + "] (" + rnd.describe() + ")");
                    }
                }
            }
        }
    }

    /** Random valid configurations: the layout agrees with an independent count of diffusers' formula. */
    @Test
    void randomConfigsMatchAnIndependentCount() {
        TestRandom rnd = TestRandom.fresh();
        for (int iter = 0; iter < 200; iter++) {
            int n = rnd.nextInt(1, 5);
            int groups = List.of(1, 2, 4, 8).get(rnd.nextInt(4));
            int[] ch = new int[n];
            List<String> down = new ArrayList<>();
            List<String> up = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                ch[i] = groups * rnd.nextInt(1, 9);
                down.add(rnd.nextInt(2) == 0 ? "DownBlock2D" : "AttnDownBlock2D");
                up.add(rnd.nextInt(2) == 0 ? "UpBlock2D" : "AttnUpBlock2D");
            }
            int lpb = rnd.nextInt(1, 4);
            int in = rnd.nextInt(1, 6);
            int out = rnd.nextInt(1, 6);
            Integer temb = rnd.nextInt(2) == 0 ? null : rnd.nextInt(1, 50);
            UNet2DConfig c = UNet2DConfig.builder().blockOutChannels(ch).downBlockTypes(down).upBlockTypes(up)
                    .layersPerBlock(lpb).inChannels(in).outChannels(out).normNumGroups(groups)
                    .attentionHeadDim(null).timeEmbeddingDim(temb).build();
            UNet2DLayout l = UNet2DLayout.of(c);
            long expected = independentCount(ch, lpb, down, up, in, out, temb == null ? 4L * ch[0] : temb);
            assertEquals(expected, l.parameterCount(), c + " (" + rnd.describe() + ")");
            checkOffsets(l);
            l.checkCheckpoint(shapes(l, rnd.nextInt(2) == 0));
            Set<String> names = new HashSet<>();
            l.params().forEach(p -> assertTrue(names.add(p.name()), p.name()));
        }
    }

    /** Written from diffusers' UNet2DModel.__init__ arithmetic, independently of UNet2DLayout. */
    private static long independentCount(int[] ch, int lpb, List<String> down, List<String> up, int in, int out, long temb) {
        int n = ch.length;
        long total = 9L * in * ch[0] + ch[0] + (ch[0] * temb + temb) + (temb * temb + temb);
        int outCh = ch[0];
        for (int i = 0; i < n; i++) {
            int inCh = outCh;
            outCh = ch[i];
            for (int j = 0; j < lpb; j++) {
                total += resnetByHand(j == 0 ? inCh : outCh, outCh, temb);
                if (down.get(i).startsWith("Attn")) total += attnByHand(outCh);
            }
            if (i < n - 1) total += conv3ByHand(outCh);
        }
        total += 2 * resnetByHand(ch[n - 1], ch[n - 1], temb) + attnByHand(ch[n - 1]);
        outCh = ch[n - 1];
        for (int i = 0; i < n; i++) {
            int prev = outCh;
            outCh = ch[n - 1 - i];
            int inCh = ch[Math.max(n - 2 - i, 0)];
            for (int j = 0; j <= lpb; j++) {
                int skip = j == lpb ? inCh : outCh;
                total += resnetByHand((j == 0 ? prev : outCh) + skip, outCh, temb);
                if (up.get(i).startsWith("Attn")) total += attnByHand(outCh);
            }
            if (i < n - 1) total += conv3ByHand(outCh);
        }
        return total + 2L * ch[0] + 9L * ch[0] * out + out;
    }
}
