package io.diffusion4j.backend;

import io.diffusion4j.testutil.RepoPaths;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Device;
import io.diffusion4j.bindings.d4j_h;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Random bad arguments for the UNet layer entry points of d4j.h (convolution, norms, activations,
 * linear, attention, optimiser, concat, classifier-free guidance, fill), called through the generated bindings.
 *
 * <p>Each entry point is described once: the kind of every argument (required or optional buffer and
 * its size, dimension, finite scalar, 0/1 flag, choice, out-pointer) and a generator of a valid call
 * on small odd shapes. The argument names are checked against the prototypes parsed from d4j.h, so the
 * description cannot drift from the header. A case first checks that the valid call succeeds, then
 * breaks one argument in a way its kind defines and expects the documented status and a fresh message
 * that names the argument: NULL, freed or foreign buffers, buffers 4 bytes too small, outputs aliasing
 * inputs (refused unless the header allows in-place use), dimensions 0, negative or huge, non-finite
 * scalars, flags other than 0/1, a NULL or closed backend. Live bytes return to their start.
 */
class LayerBadArgumentFuzzTest {
    static final int ITERATIONS = Integer.getInteger("diffusion4j.fuzz.iterations", 3600);
    static final int OK = 0, INVALID_ARGUMENT = 1, INVALID_HANDLE = 2;

    static Backend a, b;
    static Arena arena;
    static MemorySegment scratch, closedBackend;
    static long marker = 2_000_000_000L;
    static Map<String, List<String>> headerNames;

    @BeforeAll
    static void setUp() throws IOException {
        a = Backend.open(Device.CPU);
        b = Backend.open(Device.CPU);
        Backend victim = Backend.open(Device.CPU);
        closedBackend = victim.handle();
        victim.close(); // no backend is opened after this, so the address is not reused during the test
        arena = Arena.ofShared();
        scratch = arena.allocate(ValueLayout.JAVA_LONG);
        headerNames = parseHeader(RepoPaths.of("native/include/d4j.h"));
    }

    @AfterAll
    static void tearDown() {
        if (a != null) a.close();
        if (b != null) b.close();
        if (arena != null) arena.close();
    }

    /** Parameter names of every D4J_API function in the header, in order. */
    static Map<String, List<String>> parseHeader(Path header) throws IOException {
        String text = Files.readString(header).replaceAll("/\\*.*?\\*/", " ");
        Matcher m = Pattern.compile("D4J_API\\s+\\w+\\s*\\*?\\s*(d4j_\\w+)\\s*\\(([^)]*)\\)", Pattern.DOTALL).matcher(text);
        Map<String, List<String>> out = new HashMap<>();
        while (m.find()) {
            List<String> names = new ArrayList<>();
            String params = m.group(2).trim();
            if (!params.equals("void")) {
                for (String p : params.split(",")) {
                    String[] words = p.trim().replace("*", " ").split("\\s+");
                    names.add(words[words.length - 1]);
                }
            }
            out.put(m.group(1), names);
        }
        return out;
    }

    // ---- argument kinds --------------------------------------------------------------------------------

    enum Kind { BACKEND, BUF, OPT_BUF, DIM, COUNT, POSITIVE, FINITE, FLAG, CHOICE, OUT_PTR, OTHER }

    /** One argument of a valid call. For buffers {@code bytes} is the exact size needed; outputs are marked. */
    record Arg(String name, Kind kind, Object value, long bytes, boolean output, int[] choices) {}

    /** A valid call under construction. */
    final class Call {
        final String function;
        final List<Arg> args = new ArrayList<>();
        final Set<String> inPlaceOk;
        final List<MemorySegment> owned = new ArrayList<>();
        boolean sized = true; // false: buffers of any size are valid (no size argument)

        Call(String function, String... inPlaceOutputs) {
            this.function = function;
            this.inPlaceOk = Set.of(inPlaceOutputs);
            args.add(new Arg("backend", Kind.BACKEND, a.handle(), 0, false, null));
        }

        Call buf(String name, long floats) { return buffer(name, Kind.BUF, floats, false); }
        Call out(String name, long floats) { return buffer(name, Kind.BUF, floats, true); }
        Call optOut(String name, long floats) { return buffer(name, Kind.OPT_BUF, floats, true); }
        Call optIn(String name, long floats) { return buffer(name, Kind.OPT_BUF, floats, false); }

        Call buffer(String name, Kind kind, long floats, boolean output) {
            MemorySegment h = alloc(a, floats * 4);
            owned.add(h);
            args.add(new Arg(name, kind, h, floats * 4, output, null));
            return this;
        }

        Call dim(String name, long v) { args.add(new Arg(name, Kind.DIM, v, 0, false, null)); return this; }
        /** A counter that must be >= 1 but has no upper limit (AdamW's step). */
        Call positive(String name, long v) { args.add(new Arg(name, Kind.POSITIVE, v, 0, false, null)); return this; }
        /** An element count of an element-wise entry point: 0 is valid and does nothing (d4j.h). */
        Call count(long v) { args.add(new Arg("count", Kind.COUNT, v, 0, false, null)); return this; }
        Call finite(String name, double v) { args.add(new Arg(name, Kind.FINITE, v, 0, false, null)); return this; }
        Call flag(String name, int v) { args.add(new Arg(name, Kind.FLAG, v, 0, false, null)); return this; }
        Call choice(String name, int v, int... allowed) { args.add(new Arg(name, Kind.CHOICE, v, 0, false, allowed)); return this; }
        Call other(String name, Object v) { args.add(new Arg(name, Kind.OTHER, v, 0, false, null)); return this; }
        Call outPtr(String name) {
            args.add(new Arg(name, Kind.OUT_PTR, arena.allocate(ValueLayout.JAVA_DOUBLE), 0, false, null));
            return this;
        }

        Object[] values() {
            return args.stream().map(Arg::value).toArray();
        }

        void free() {
            for (MemorySegment h : owned) assertEquals(OK, d4j_h.d4j_buffer_free(h), lastError());
        }
    }

    static MemorySegment alloc(Backend be, long bytes) {
        assertEquals(OK, d4j_h.d4j_buffer_alloc(be.handle(), bytes, scratch), lastError());
        return scratch.get(ValueLayout.ADDRESS, 0);
    }

    static String lastError() {
        return d4j_h.d4j_last_error().reinterpret(1024).getString(0);
    }

    static int odd(Random r, int max) {
        return 1 + 2 * r.nextInt((max + 1) / 2); // 1, 3, 5, ...
    }

    // ---- valid calls, one generator per entry point ------------------------------------------------

    Call conv(Random r, boolean backward) {
        int n = 1 + r.nextInt(2), h = odd(r, 7), w = odd(r, 7), ci = odd(r, 5), co = odd(r, 5);
        int k = r.nextBoolean() ? 3 : 1, stride = k == 3 && r.nextBoolean() ? 2 : 1, pad = k == 3 ? 1 : 0;
        int up = stride == 1 && r.nextBoolean() ? 1 : 0;
        int H = up == 1 ? 2 * h : h, W = up == 1 ? 2 * w : w;
        int ho = (H + 2 * pad - k) / stride + 1, wo = (W + 2 * pad - k) / stride + 1;
        Call c = new Call(backward ? "d4j_conv2d_backward" : "d4j_conv2d_forward");
        c.buf("x", (long) n * h * w * ci).dim("n", n).dim("h", h).dim("w", w).dim("c_in", ci).buf("weight", (long) k * k * ci * co);
        if (!backward) c.optIn("bias", co);
        c.dim("c_out", co).choice("kernel_size", k, 1, 3).choice("stride", stride, 1, 2)
                .other("pad_top", pad).other("pad_left", pad).other("pad_bottom", pad).other("pad_right", pad).flag("upsample2x", up);
        if (backward) {
            c.buf("dy", (long) n * ho * wo * co).optOut("dx", (long) n * h * w * ci).optOut("dweight", (long) k * k * ci * co)
                    .optOut("dbias", co);
        } else {
            c.out("y", (long) n * ho * wo * co);
        }
        return c;
    }

    Call groupNormConv(Random r) {
        int n = 1 + r.nextInt(2), h = odd(r, 7), w = odd(r, 7), g = 1 + r.nextInt(3), ci = g * odd(r, 3), co = odd(r, 5);
        int k = r.nextBoolean() ? 3 : 1, stride = k == 3 && r.nextBoolean() ? 2 : 1, pad = k == 3 ? 1 : 0;
        int up = stride == 1 && r.nextBoolean() ? 1 : 0;
        int H = up == 1 ? 2 * h : h, W = up == 1 ? 2 * w : w;
        int ho = (H + 2 * pad - k) / stride + 1, wo = (W + 2 * pad - k) / stride + 1;
        Call c = new Call("d4j_group_norm_conv2d_forward");
        c.buf("x", (long) n * h * w * ci).optIn("tb", (long) n * ci).buf("gamma", ci).buf("beta", ci)
                .buf("mean", (long) n * g).buf("rstd", (long) n * g).dim("num_groups", g).flag("apply_silu", 1)
                .dim("n", n).dim("h", h).dim("w", w).dim("c_in", ci).buf("weight", (long) k * k * ci * co)
                .optIn("bias", co).dim("c_out", co).choice("kernel_size", k, 1, 3).choice("stride", stride, 1, 2)
                .other("pad_top", pad).other("pad_left", pad).other("pad_bottom", pad).other("pad_right", pad)
                .flag("upsample2x", up).out("y", (long) n * ho * wo * co);
        return c;
    }

    /**
     * The prepared-weights entry points on an upsampling convolution (the CPU backend's phase path has a prepared
     * form for every such geometry with more than one output channel): 0 d4j_conv2d_forward_prepared, 1
     * d4j_group_norm_conv2d_forward_prepared, 2 d4j_conv2d_prepare, 3 d4j_conv2d_prepared_size. The prepared buffer
     * of a forward is filled by d4j_conv2d_prepare first, so its valid call succeeds.
     */
    Call prepared(Random r, int which) {
        int n = 1 + r.nextInt(2), h = odd(r, 5), w = odd(r, 5), g = 1 + r.nextInt(2), ci = g * odd(r, 3);
        int co = 2 + r.nextInt(4), k = r.nextBoolean() ? 3 : 1, pad = k == 3 ? 1 : 0;
        int ho = 2 * h + 2 * pad - k + 1, wo = 2 * w + 2 * pad - k + 1;
        MemorySegment size = arena.allocate(ValueLayout.JAVA_LONG);
        assertEquals(OK, d4j_h.d4j_conv2d_prepared_size(a.handle(), h, w, ci, co, k, 1, pad, pad, pad, pad, 1, size),
                lastError());
        long floats = size.get(ValueLayout.JAVA_LONG, 0) / 4;
        assertTrue(floats > 0, "an upsampling conv has a prepared form on the CPU");
        String f = switch (which) {
            case 0 -> "d4j_conv2d_forward_prepared";
            case 1 -> "d4j_group_norm_conv2d_forward_prepared";
            case 2 -> "d4j_conv2d_prepare";
            default -> "d4j_conv2d_prepared_size";
        };
        Call c = new Call(f);
        if (which >= 2) {
            if (which == 2) c.buf("weight", (long) k * k * ci * co);
            c.dim("h", h).dim("w", w).dim("c_in", ci).dim("c_out", co).choice("kernel_size", k, 1, 3)
                    .choice("stride", 1, 1, 2).other("pad_top", pad).other("pad_left", pad).other("pad_bottom", pad)
                    .other("pad_right", pad).flag("upsample2x", 1);
            if (which == 2) c.out("prepared", floats);
            else c.outPtr("bytes");
            return c;
        }
        c.buf("x", (long) n * h * w * ci);
        if (which == 1) {
            c.optIn("tb", (long) n * ci).buf("gamma", ci).buf("beta", ci).buf("mean", (long) n * g)
                    .buf("rstd", (long) n * g).dim("num_groups", g).flag("apply_silu", 1);
        }
        c.dim("n", n).dim("h", h).dim("w", w).dim("c_in", ci).buf("prepared", floats);
        MemorySegment weight = alloc(a, 4L * k * k * ci * co);
        try {
            assertEquals(OK, d4j_h.d4j_conv2d_prepare(a.handle(), weight, h, w, ci, co, k, 1, pad, pad, pad, pad, 1,
                    (MemorySegment) c.args.getLast().value()), lastError());
        } finally {
            assertEquals(OK, d4j_h.d4j_buffer_free(weight), lastError());
        }
        c.optIn("bias", co).dim("c_out", co).choice("kernel_size", k, 1, 3).choice("stride", 1, 1, 2)
                .other("pad_top", pad).other("pad_left", pad).other("pad_bottom", pad).other("pad_right", pad)
                .flag("upsample2x", 1).out("y", (long) n * ho * wo * co);
        return c;
    }

    Call groupNorm(Random r, boolean bias, boolean backward) {
        int g = 1 + r.nextInt(3), c = g * odd(r, 3), n = 1 + r.nextInt(2), h = odd(r, 5), w = odd(r, 5);
        long x = (long) n * h * w * c;
        String f = "d4j_" + (bias ? "bias_" : "") + "group_norm_" + (backward ? "backward" : "forward");
        Call call = new Call(f);
        if (backward) call.buf("dy", x);
        call.buf("x", x);
        if (bias) call.buf("tb", (long) n * c);
        call.buf("gamma", c).buf("beta", c);
        if (backward) call.buf("mean", (long) n * g).buf("rstd", (long) n * g);
        call.dim("n", n).dim("h", h).dim("w", w).dim("c", c).dim("num_groups", g);
        if (!backward) call.finite("eps", 1e-5);
        call.flag("apply_silu", 1);
        if (backward) {
            call.optOut("dx", x);
            if (bias) call.optOut("dtb", (long) n * c);
            call.optOut("dgamma", c).optOut("dbeta", c);
            // the saved statistics must be real ones: rstd is read, a poisoned value could be anything
            fill(call, "mean", 0f);
            fill(call, "rstd", 1f);
        } else {
            // y NULL: the statistics only
            call.optOut("y", x).out("mean", (long) n * g).out("rstd", (long) n * g);
        }
        return call;
    }

    Call linear(Random r, boolean backward) {
        long rows = 1 + r.nextInt(9);
        int in = odd(r, 9), out = odd(r, 9);
        Call c = new Call(backward ? "d4j_linear_backward" : "d4j_linear_forward");
        c.buf("x", rows * in).buf("weight", (long) out * in);
        if (backward) {
            c.buf("dy", rows * out).dim("rows", rows).dim("in_features", in).dim("out_features", out)
                    .optOut("dx", rows * in).optOut("dweight", (long) out * in).optOut("dbias", out);
        } else {
            c.optIn("bias", out).dim("rows", rows).dim("in_features", in).dim("out_features", out).out("y", rows * out);
        }
        return c;
    }

    Call attention(Random r, boolean backward) {
        int batch = 1 + r.nextInt(2), tokens = odd(r, 9), heads = 1 + r.nextInt(3), hd = odd(r, 5);
        long e = (long) batch * tokens * heads * hd, l = (long) batch * heads * tokens;
        Call c = new Call(backward ? "d4j_attention_backward" : "d4j_attention_forward");
        c.buf("q", e).buf("k", e).buf("v", e);
        if (backward) {
            c.buf("out", e).buf("lse", l).buf("dout", e);
            fill(c, "lse", 0f);
        }
        c.dim("batch", batch).dim("tokens", tokens).dim("heads", heads).dim("head_dim", hd).finite("scale", 1 / Math.sqrt(hd));
        if (backward) c.out("dq", e).out("dk", e).out("dv", e);
        else c.out("out", e).optOut("lse", l);
        return c;
    }

    Call silu(Random r, boolean backward) {
        long count = 1 + r.nextInt(40);
        if (backward) {
            return new Call("d4j_silu_backward", "dx").buf("dy", count).buf("x", count).count(count).out("dx", count);
        }
        return new Call("d4j_silu_forward", "y").buf("x", count).count(count).out("y", count);
    }

    Call residual(Random r, boolean backward) {
        long count = 1 + r.nextInt(40);
        if (backward) {
            return new Call("d4j_residual_add_backward", "da", "db").buf("dout", count).count(count)
                    .finite("inv_scale", 0.5).optOut("da", count).optOut("db", count);
        }
        return new Call("d4j_residual_add", "out").buf("a", count).buf("b", count).count(count).finite("inv_scale", 0.7)
                .out("out", count);
    }

    Call dropout(Random r, boolean backward) {
        long count = 1 + r.nextInt(40);
        String x = backward ? "dy" : "x", y = backward ? "dx" : "y";
        return new Call(backward ? "d4j_dropout_backward" : "d4j_dropout_forward", y).buf(x, count).count(count)
                .finite("p", 0.3).other("seed", r.nextLong()).other("offset", r.nextLong()).out(y, count);
    }

    Call concat(Random r, boolean backward) {
        long rows = 1 + r.nextInt(9);
        int c1 = odd(r, 7), c2 = odd(r, 7);
        if (backward) {
            return new Call("d4j_concat_channels_backward").buf("dout", rows * (c1 + c2)).dim("rows", rows).dim("c1", c1)
                    .dim("c2", c2).optOut("da", rows * c1).optOut("db", rows * c2);
        }
        return new Call("d4j_concat_channels_forward").buf("a", rows * c1).buf("b", rows * c2).dim("rows", rows).dim("c1", c1)
                .dim("c2", c2).out("out", rows * (c1 + c2));
    }

    Call optim(Random r) {
        long count = 1 + r.nextInt(40);
        return switch (r.nextInt(3)) {
            case 0 -> new Call("d4j_grad_norm").buf("grad", count).dim("count", count).outPtr("out_norm");
            case 1 -> new Call("d4j_adamw").out("param", count).buf("grad", count).out("m", count).out("v", count)
                    .dim("count", count).finite("lr", 1e-3).finite("beta1", 0.9).finite("beta2", 0.999).finite("eps", 1e-8)
                    .finite("weight_decay", 0.01).positive("step", 1 + r.nextInt(5)).finite("grad_scale", 1.0);
            default -> new Call("d4j_ema_update").out("ema", count).buf("param", count).dim("count", count).finite("decay", 0.99);
        };
    }

    Call guidance(Random r) {
        long count = 1 + r.nextInt(40);
        return new Call("d4j_classifier_free_guidance", "out").buf("cond", count).buf("uncond", count).dim("count", count)
                .finite("guidance_scale", 3.0).out("out", count);
    }

    Call fill(Random r) {
        Call c = new Call("d4j_buffer_fill_f32");
        c.args.clear(); // no backend argument
        c.sized = false; // fills the whole buffer, whatever its size
        c.buffer("buffer", Kind.BUF, 1 + r.nextInt(20), true);
        c.other("value", r.nextFloat());
        return c;
    }

    void fill(Call c, String name, float v) {
        MemorySegment h = (MemorySegment) c.args.stream().filter(x -> x.name().equals(name)).findFirst().orElseThrow().value();
        assertEquals(OK, d4j_h.d4j_buffer_fill_f32(h, v), lastError());
    }

    // ---- calling and breaking ------------------------------------------------------------------------

    static final Map<String, Method> METHODS = new LinkedHashMap<>();

    static Method method(String name, int arity) {
        return METHODS.computeIfAbsent(name, n -> Arrays.stream(d4j_h.class.getMethods())
                .filter(m -> m.getName().equals(n) && m.getParameterCount() == arity).findFirst()
                .orElseThrow(() -> new AssertionError("no binding " + n + " with " + arity + " parameters")));
    }

    static int invoke(String function, Object[] values) {
        Method m = method(function, values.length);
        Class<?>[] types = m.getParameterTypes();
        Object[] args = new Object[values.length];
        for (int i = 0; i < values.length; i++) {
            Object v = values[i];
            if (types[i] == int.class) args[i] = ((Number) v).intValue();
            else if (types[i] == long.class) args[i] = ((Number) v).longValue();
            else if (types[i] == float.class) args[i] = ((Number) v).floatValue();
            else if (types[i] == double.class) args[i] = ((Number) v).doubleValue();
            else args[i] = v;
        }
        try {
            return (int) m.invoke(null, args);
        } catch (IllegalAccessException e) {
            throw new AssertionError(e);
        } catch (InvocationTargetException e) {
            throw new AssertionError(function + " threw " + e.getCause(), e.getCause());
        }
    }

    String currentMarker;

    void setMarker() {
        long v = -(marker++);
        assertEquals(INVALID_ARGUMENT, d4j_h.d4j_buffer_alloc(a.handle(), v, scratch));
        currentMarker = lastError();
    }

    /** The mutated call must return {@code expected} with a fresh message containing every token. */
    void expect(Call c, Object[] values, String what, int expected, String... tokens) {
        setMarker();
        int st = invoke(c.function, values);
        String msg = lastError();
        String where = c.function + " with " + what;
        if (expected == OK) {
            assertEquals(OK, st, where + " must succeed (message: '" + msg + "')");
            return;
        }
        assertEquals(expected, st, where + ": status (message: '" + msg + "')");
        assertNotEquals(currentMarker, msg, where + ": the call failed but left no message of its own");
        assertTrue(msg.length() >= 8, where + ": useless message '" + msg + "'");
        String lower = msg.toLowerCase(Locale.ROOT);
        for (String t : tokens) { // a token "p|q" accepts either wording
            assertTrue(Arrays.stream(t.toLowerCase(Locale.ROOT).split("\\|")).anyMatch(lower::contains), where + ": message '" + msg + "' does not mention '" + t + "'");
        }
    }

    /** Breaks one argument of a valid call according to its kind. */
    void breakOne(Random r, Call c) {
        int i = r.nextInt(c.args.size());
        Arg arg = c.args.get(i);
        Object[] v = c.values();
        String n = arg.name();
        switch (arg.kind()) {
            case BACKEND -> {
                boolean nul = r.nextBoolean();
                v[i] = nul ? MemorySegment.NULL : closedBackend;
                expect(c, v, n + (nul ? " NULL" : " closed"), nul ? INVALID_ARGUMENT : INVALID_HANDLE, "backend");
            }
            case BUF, OPT_BUF -> {
                switch (r.nextInt(5)) {
                    case 0 -> {
                        v[i] = MemorySegment.NULL;
                        if (arg.kind() == Kind.OPT_BUF) expect(c, v, n + " NULL (optional)", OK);
                        else expect(c, v, n + " NULL", INVALID_ARGUMENT, n, "null");
                    }
                    case 1 -> {
                        MemorySegment dead = alloc(a, arg.bytes());
                        assertEquals(OK, d4j_h.d4j_buffer_free(dead), lastError());
                        v[i] = dead; // nothing is allocated before the call, so the address is not reused
                        expect(c, v, n + " freed", INVALID_HANDLE, n, "freed");
                    }
                    case 2 -> {
                        if (c.args.get(0).kind() != Kind.BACKEND) { // no backend to belong to: any live buffer is valid
                            breakOne(r, c);
                            return;
                        }
                        MemorySegment foreign = alloc(b, arg.bytes());
                        v[i] = foreign;
                        try {
                            expect(c, v, n + " of another backend", INVALID_HANDLE, n, "another");
                        } finally {
                            d4j_h.d4j_buffer_free(foreign);
                        }
                    }
                    case 3 -> {
                        long small = arg.bytes() - 4;
                        if (small <= 0 || !c.sized) {
                            breakOne(r, c);
                            return;
                        }
                        MemorySegment tiny = alloc(a, small);
                        v[i] = tiny;
                        try {
                            expect(c, v, n + " " + small + " bytes", INVALID_ARGUMENT, n, "buffer holds " + small);
                        } finally {
                            d4j_h.d4j_buffer_free(tiny);
                        }
                    }
                    default -> {
                        // an output aliasing an input of at least its size
                        List<Arg> inputs = c.args.stream().filter(x -> x.kind() == Kind.BUF || x.kind() == Kind.OPT_BUF)
                                .filter(x -> x != arg && x.bytes() >= arg.bytes()).toList();
                        if (!arg.output() || inputs.isEmpty()) {
                            breakOne(r, c);
                            return;
                        }
                        Arg other = inputs.get(r.nextInt(inputs.size()));
                        v[i] = other.value();
                        boolean allowed = c.inPlaceOk.contains(n) && !other.output() && other.bytes() == arg.bytes();
                        if (allowed) expect(c, v, n + " in place of " + other.name(), OK);
                        else expect(c, v, n + " aliasing " + other.name(), INVALID_ARGUMENT, "overlap|same buffer");
                    }
                }
            }
            case DIM, COUNT, POSITIVE -> {
                long bad = switch (r.nextInt(arg.kind() == Kind.POSITIVE ? 3 : 4)) {
                    case 0 -> 0;
                    case 1 -> -1 - r.nextInt(1000);
                    case 2 -> Integer.MIN_VALUE;
                    default -> Integer.MAX_VALUE - r.nextInt(3);
                };
                v[i] = bad;
                // a huge dimension may be refused by a limit or by a buffer's capacity: any clear refusal
                if (bad == 0 && arg.kind() == Kind.COUNT) expect(c, v, n + " = 0", OK);
                else if (bad > 0) expect(c, v, n + " = " + bad, INVALID_ARGUMENT);
                else expect(c, v, n + " = " + bad, INVALID_ARGUMENT, n);
            }
            case FINITE -> {
                double[] bad = {Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY};
                v[i] = bad[r.nextInt(3)];
                expect(c, v, n + " = " + v[i], INVALID_ARGUMENT, n);
            }
            case FLAG -> {
                int bad = r.nextBoolean() ? 2 + r.nextInt(100) : -1 - r.nextInt(100);
                v[i] = bad;
                expect(c, v, n + " = " + bad, INVALID_ARGUMENT, n);
            }
            case CHOICE -> {
                int bad;
                do {
                    bad = r.nextInt(9) - 3;
                } while (contains(arg.choices(), bad));
                v[i] = bad;
                expect(c, v, n + " = " + bad, INVALID_ARGUMENT, n);
            }
            case OUT_PTR -> {
                v[i] = MemorySegment.NULL;
                expect(c, v, n + " NULL", INVALID_ARGUMENT, n);
            }
            case OTHER -> breakOne(r, c);
        }
    }

    static boolean contains(int[] xs, int x) {
        for (int y : xs) if (y == x) return true;
        return false;
    }

    Call generate(Random r, int kind) {
        return switch (kind) {
            case 0 -> conv(r, false);
            case 1 -> conv(r, true);
            case 2 -> groupNorm(r, false, false);
            case 3 -> groupNorm(r, false, true);
            case 4 -> groupNorm(r, true, false);
            case 5 -> groupNorm(r, true, true);
            case 6 -> linear(r, false);
            case 7 -> linear(r, true);
            case 8 -> attention(r, false);
            case 9 -> attention(r, true);
            case 10 -> silu(r, r.nextBoolean());
            case 11 -> residual(r, r.nextBoolean());
            case 12 -> concat(r, r.nextBoolean());
            case 13 -> optim(r);
            case 14 -> dropout(r, r.nextBoolean());
            case 15 -> groupNormConv(r);
            case 16 -> guidance(r);
            case 17 -> prepared(r, r.nextInt(4));
            default -> fill(r);
        };
    }

    static final int KINDS = 19;

    @Test
    void layerEntryPointsRefuseBadArgumentsWithUsefulMessages() {
        long seed = Long.getLong("diffusion4j.fuzz.seed", System.nanoTime());
        long startBytes = a.liveBytes(), startBuffers = a.liveBuffers(), startBytesB = b.liveBytes();
        Map<String, Integer> counts = new LinkedHashMap<>();
        Random master = new Random(seed);
        int i = 0;
        String current = "";
        try {
            for (i = 0; i < ITERATIONS; i++) {
                long caseSeed = master.nextLong();
                Random r = new Random(caseSeed);
                Call c = generate(r, master.nextInt(KINDS));
                current = c.function + " (case seed " + caseSeed + ")";
                try {
                    List<String> names = c.args.stream().map(Arg::name).toList();
                    assertEquals(headerNames.get(c.function), names, "the test's description of " + c.function
                            + " does not match d4j.h");
                    expect(c, c.values(), "valid arguments", OK);
                    breakOne(r, c);
                    counts.merge(c.function, 1, Integer::sum);
                } finally {
                    c.free();
                }
            }
            assertEquals(startBytes, a.liveBytes(), "live bytes of backend a");
            assertEquals(startBuffers, a.liveBuffers(), "live buffers of backend a");
            assertEquals(startBytesB, b.liveBytes(), "live bytes of backend b");
        } catch (AssertionError e) {
            throw new AssertionError("failed at iteration " + i + " in " + current + "; rerun with -Ddiffusion4j.fuzz.seed=" + seed
                    + ": " + e.getMessage(), e);
        }
        // every layer entry point of the header is covered
        for (String f : headerNames.keySet()) {
            boolean layer = f.matches("d4j_(dropout|conv2d|group_norm|bias_group_norm|silu|residual_add|linear|attention|concat_channels)_.*")
                    || f.equals("d4j_residual_add") || f.equals("d4j_grad_norm") || f.equals("d4j_adamw")
                    || f.equals("d4j_ema_update") || f.equals("d4j_buffer_fill_f32")
                    || f.equals("d4j_classifier_free_guidance");
            if (layer) assertTrue(counts.getOrDefault(f, 0) >= 20, f + " ran " + counts.getOrDefault(f, 0) + " times (seed " + seed + ")");
        }
    }
}
