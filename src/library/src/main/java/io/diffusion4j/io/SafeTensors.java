package io.diffusion4j.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Reader and writer of the safetensors format used by Hugging Face checkpoints
 * ({@code diffusion_pytorch_model.safetensors}).
 *
 * <p>Layout: an unsigned 64-bit little-endian header length N; N bytes of UTF-8 JSON, an object
 * mapping each tensor name to {@code {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}}
 * plus an optional {@code "__metadata__"} object of string to string (the writer of the reference
 * implementation pads the header with spaces to a multiple of 8 bytes); then the byte buffer, in
 * which each tensor occupies {@code [begin, end)} as row-major little-endian values.
 *
 * <p>Reading validates the whole file before any tensor is returned, and refuses with a
 * {@link SafeTensorsException} naming the problem: header length outside [2, {@value #MAX_HEADER_BYTES}]
 * or past the end of the file, header not UTF-8 / not a JSON object / with unknown fields, unknown
 * dtype, negative or overflowing shapes, {@code end - begin} different from the shape's element count
 * times the dtype size, offsets that overlap, leave a gap, do not start at 0 or do not end exactly at
 * the end of the file (truncated or trailing bytes). Duplicate tensor names are refused by the JSON
 * parser. Files of at least {@value #MAP_THRESHOLD} bytes are memory-mapped; smaller ones are read.
 * F32 tensors load as they are; F16, BF16 and F64 convert to float32 on load.
 *
 * <p>Writing produces F32 tensors only and is atomic: the bytes go to a temporary file in the target
 * directory, which is forced to disk, renamed over the target in one step, and the directory is then
 * forced too, so a crash leaves either the old file or the complete new one.
 */
public final class SafeTensors {
    /** Largest accepted header, as in the reference implementation (100 MB). */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    /** Files of at least this many bytes are memory-mapped instead of read into the heap. */
    public static final long MAP_THRESHOLD = 1L << 20;
    /** Key of the optional string-to-string metadata map in the header. */
    public static final String METADATA_KEY = "__metadata__";

    private static final ValueLayout.OfFloat F32_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64_LE =
            ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64_LE =
            ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private SafeTensors() {}

    /** The element types of the format. Only those with {@link #toFloat32()} can be loaded. */
    public enum DType {
        BOOL(1, false), U8(1, false), I8(1, false), F8_E5M2(1, false), F8_E4M3(1, false),
        I16(2, false), U16(2, false), F16(2, true), BF16(2, true),
        I32(4, false), U32(4, false), F32(4, true),
        F64(8, true), I64(8, false), U64(8, false);

        private final int byteSize;
        private final boolean toFloat32;

        DType(int byteSize, boolean toFloat32) {
            this.byteSize = byteSize;
            this.toFloat32 = toFloat32;
        }

        public int byteSize() {
            return byteSize;
        }

        /** Whether this reader converts the type to float32 on load. */
        public boolean toFloat32() {
            return toFloat32;
        }

        static DType parse(String name) {
            for (DType d : values()) {
                if (d.name().equals(name)) return d;
            }
            return null;
        }
    }

    /** One tensor of a validated header: byte range relative to the start of the data buffer. */
    public record TensorInfo(String name, DType dtype, List<Long> shape, long begin, long end) {
        public TensorInfo {
            shape = List.copyOf(shape);
        }

        /** Number of elements (1 for a scalar, shape []). */
        public long elementCount() {
            long n = 1;
            for (long d : shape) n *= d; // cannot overflow: checked when the header was validated
            return n;
        }

        public long byteLength() {
            return end - begin;
        }

        public long[] shapeArray() {
            return shape.stream().mapToLong(Long::longValue).toArray();
        }
    }

    /**
     * A float32 tensor to write, or one loaded by {@link #readAll}. The data array is not copied;
     * {@code shape} is.
     */
    public record Entry(String name, long[] shape, float[] data) {
        public Entry {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(shape, "shape");
            Objects.requireNonNull(data, "data");
            shape = shape.clone();
            long n = 1;
            for (int i = 0; i < shape.length; i++) {
                if (shape[i] < 0) {
                    throw new IllegalArgumentException("tensor '" + name + "': shape[" + i + "] = " + shape[i] + " < 0");
                }
                n = Math.multiplyExact(n, shape[i]);
            }
            if (n != data.length) {
                throw new IllegalArgumentException("tensor '" + name + "': shape " + Arrays.toString(shape)
                        + " has " + n + " elements but data has " + data.length);
            }
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Entry e && e.name.equals(name) && Arrays.equals(e.shape, shape)
                    && Arrays.equals(e.data, data);
        }

        @Override
        public int hashCode() {
            return name.hashCode() * 31 + Arrays.hashCode(shape);
        }

        @Override
        public String toString() {
            return "Entry[" + name + " " + Arrays.toString(shape) + "]";
        }
    }

    // ---------------------------------------------------------------------------------------------
    // reading

    /** Opens and fully validates a file; the reader must be closed (it may hold a mapping). */
    public static Reader open(Path path) throws IOException {
        Objects.requireNonNull(path, "path");
        String where = path.toString();
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            MemorySegment seg;
            if (size >= MAP_THRESHOLD) {
                seg = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            } else {
                ByteBuffer buf = ByteBuffer.allocate((int) size);
                while (buf.hasRemaining()) {
                    if (ch.read(buf) < 0) {
                        throw new SafeTensorsException(where + ": file shrank while being read");
                    }
                }
                seg = MemorySegment.ofArray(buf.array());
            }
            return new Reader(where, seg, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** Validates an in-memory image of a safetensors file. */
    public static Reader read(byte[] bytes) throws SafeTensorsException {
        Objects.requireNonNull(bytes, "bytes");
        return new Reader("<memory>", MemorySegment.ofArray(bytes), null);
    }

    /** Reads every tensor of a file as float32, in header order. */
    public static LinkedHashMap<String, Entry> readAll(Path path) throws IOException {
        try (Reader r = open(path)) {
            LinkedHashMap<String, Entry> out = new LinkedHashMap<>();
            for (TensorInfo t : r.tensors()) {
                out.put(t.name(), new Entry(t.name(), t.shapeArray(), r.readFloat32(t.name())));
            }
            return out;
        }
    }

    /** A validated safetensors image. Thread-safe for concurrent reads until closed. */
    public static final class Reader implements AutoCloseable {
        private final String where;
        private final MemorySegment file;
        private final Arena arena;
        private final long dataStart;
        private final Map<String, String> metadata;
        private final LinkedHashMap<String, TensorInfo> tensors;

        private Reader(String where, MemorySegment file, Arena arena) throws SafeTensorsException {
            this.where = where;
            this.file = file;
            this.arena = arena;
            long size = file.byteSize();
            if (size < 8) {
                throw fail("file has " + size + " bytes, too short for the 8-byte header length");
            }
            long n = file.get(U64_LE, 0);
            // n is unsigned on disk: a negative long is a length of at least 2^63
            if (n < 2 || n > MAX_HEADER_BYTES) {
                throw fail("header length " + Long.toUnsignedString(n) + " is outside [2, " + MAX_HEADER_BYTES + "]");
            }
            if (n > size - 8) {
                throw fail("header length " + n + " exceeds the " + (size - 8)
                        + " bytes after the length field (truncated file?)");
            }
            dataStart = 8 + n;
            byte[] headerBytes = file.asSlice(8, n).toArray(ValueLayout.JAVA_BYTE);
            if (headerBytes[0] != '{') {
                throw fail("header does not start with '{'");
            }
            Object parsed;
            try {
                parsed = Json.parse(Json.decodeUtf8(ByteBuffer.wrap(headerBytes)));
            } catch (JsonException e) {
                throw new SafeTensorsException(where + ": invalid header JSON: " + e.getMessage(), e);
            }
            if (!(parsed instanceof Map<?, ?> header)) {
                throw fail("header is a JSON " + Json.typeName(parsed) + ", not an object");
            }
            Map<String, String> meta = Map.of();
            tensors = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : header.entrySet()) {
                String name = (String) e.getKey();
                if (name.equals(METADATA_KEY)) {
                    meta = parseMetadata(e.getValue());
                } else {
                    tensors.put(name, parseInfo(name, e.getValue()));
                }
            }
            metadata = meta;
            checkOffsets(size - dataStart);
        }

        private SafeTensorsException fail(String message) {
            return new SafeTensorsException(where + ": " + message);
        }

        private Map<String, String> parseMetadata(Object v) throws SafeTensorsException {
            if (!(v instanceof Map<?, ?> m)) {
                throw fail(METADATA_KEY + " is a JSON " + Json.typeName(v) + ", not an object");
            }
            LinkedHashMap<String, String> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!(e.getValue() instanceof String s)) {
                    throw fail(METADATA_KEY + "[\"" + e.getKey() + "\"] is a JSON " + Json.typeName(e.getValue())
                            + ", metadata values must be strings");
                }
                out.put((String) e.getKey(), s);
            }
            return Collections.unmodifiableMap(out);
        }

        private TensorInfo parseInfo(String name, Object v) throws SafeTensorsException {
            String t = "tensor '" + name + "'";
            if (!(v instanceof Map<?, ?> m)) {
                throw fail(t + " is a JSON " + Json.typeName(v) + ", not an object");
            }
            for (Object k : m.keySet()) {
                if (!k.equals("dtype") && !k.equals("shape") && !k.equals("data_offsets")) {
                    throw fail(t + " has unknown field \"" + k + "\"");
                }
            }
            if (!(m.get("dtype") instanceof String dtypeName)) {
                throw fail(t + ": \"dtype\" missing or not a string");
            }
            DType dtype = DType.parse(dtypeName);
            if (dtype == null) {
                throw fail(t + ": unknown dtype \"" + dtypeName + "\"");
            }
            if (!(m.get("shape") instanceof List<?> shapeList)) {
                throw fail(t + ": \"shape\" missing or not an array");
            }
            List<Long> shape = new ArrayList<>();
            long count = 1;
            for (Object d : shapeList) {
                if (!(d instanceof Long dim) || dim < 0) {
                    throw fail(t + ": shape " + shapeList + " has an entry that is not a non-negative integer");
                }
                shape.add(dim);
                try {
                    count = Math.multiplyExact(count, dim);
                } catch (ArithmeticException ex) {
                    throw fail(t + ": shape " + shapeList + " has more than 2^63 elements");
                }
            }
            if (!(m.get("data_offsets") instanceof List<?> offs) || offs.size() != 2
                    || !(offs.get(0) instanceof Long begin) || !(offs.get(1) instanceof Long end)) {
                throw fail(t + ": \"data_offsets\" missing or not an array of two integers");
            }
            if (begin < 0 || end < begin) {
                throw fail(t + ": data_offsets [" + begin + ", " + end + "] are not an ordered non-negative range");
            }
            long bytes;
            try {
                bytes = Math.multiplyExact(count, (long) dtype.byteSize());
            } catch (ArithmeticException ex) {
                throw fail(t + ": shape " + shape + " of " + dtype + " has more than 2^63 bytes");
            }
            if (bytes != end - begin) {
                throw fail(t + ": shape " + shape + " of " + dtype + " needs " + bytes + " bytes but data_offsets ["
                        + begin + ", " + end + "] span " + (end - begin));
            }
            return new TensorInfo(name, dtype, shape, begin, end);
        }

        /** The ranges must tile [0, dataBytes) exactly: no overlap, no gap, nothing missing or left over. */
        private void checkOffsets(long dataBytes) throws SafeTensorsException {
            List<TensorInfo> sorted = new ArrayList<>(tensors.values());
            sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
            long expected = 0;
            TensorInfo prev = null;
            for (TensorInfo t : sorted) {
                if (t.begin() < expected) {
                    throw fail("tensor '" + t.name() + "' [" + t.begin() + ", " + t.end() + ") overlaps tensor '"
                            + prev.name() + "' [" + prev.begin() + ", " + prev.end() + ")");
                }
                if (t.begin() > expected) {
                    throw fail("gap of " + (t.begin() - expected) + " bytes before tensor '" + t.name()
                            + "' at data offset " + expected);
                }
                expected = t.end();
                prev = t;
            }
            if (expected > dataBytes) {
                throw fail("header says the data buffer has " + expected + " bytes but the file holds only "
                        + dataBytes + " (truncated file)");
            }
            if (expected < dataBytes) {
                throw fail((dataBytes - expected) + " bytes after the last tensor's data (header says "
                        + expected + " data bytes, file holds " + dataBytes + ")");
            }
        }

        /** The header's metadata (empty when absent), unmodifiable. */
        public Map<String, String> metadata() {
            return metadata;
        }

        /** Every tensor, in header order. */
        public List<TensorInfo> tensors() {
            return List.copyOf(tensors.values());
        }

        public boolean contains(String name) {
            return tensors.containsKey(name);
        }

        /** The tensor called {@code name}. */
        public TensorInfo info(String name) {
            TensorInfo t = tensors.get(name);
            if (t == null) {
                throw new IllegalArgumentException(where + ": no tensor named '" + name + "'");
            }
            return t;
        }

        /** The tensor's values converted to float32 (row-major). */
        public float[] readFloat32(String name) {
            TensorInfo t = info(name);
            long n = t.elementCount();
            if (n > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException(where + ": tensor '" + name + "' has " + n
                        + " elements, too many for one float[]");
            }
            float[] out = new float[(int) n];
            readFloat32(name, out, 0);
            return out;
        }

        /** Converts the tensor's values to float32 into {@code dst[offset ...]}. */
        public void readFloat32(String name, float[] dst, int offset) {
            TensorInfo t = info(name);
            Objects.requireNonNull(dst, "dst");
            long n = t.elementCount();
            if (offset < 0 || offset > dst.length || n > dst.length - offset) {
                throw new IllegalArgumentException("tensor '" + name + "' has " + n + " elements, does not fit in dst["
                        + dst.length + "] at offset " + offset);
            }
            int count = (int) n;
            long base = dataStart + t.begin();
            switch (t.dtype()) {
                case F32 -> MemorySegment.copy(file, F32_LE, base, dst, offset, count);
                case F16 -> {
                    for (int i = 0; i < count; i++) {
                        dst[offset + i] = Float.float16ToFloat(file.get(I16_LE, base + 2L * i));
                    }
                }
                case BF16 -> {
                    // bfloat16 is the upper half of a float32: widening is exact
                    for (int i = 0; i < count; i++) {
                        dst[offset + i] = Float.intBitsToFloat((file.get(I16_LE, base + 2L * i) & 0xFFFF) << 16);
                    }
                }
                case F64 -> {
                    for (int i = 0; i < count; i++) {
                        double d = file.get(F64_LE, base + 8L * i);
                        float f = (float) d;
                        if (Float.isInfinite(f) && Double.isFinite(d)) {
                            throw new IllegalArgumentException(where + ": tensor '" + name + "' element " + i
                                    + " = " + d + " is outside the float32 range");
                        }
                        dst[offset + i] = f;
                    }
                }
                default -> throw new IllegalArgumentException(where + ": tensor '" + name + "' has dtype "
                        + t.dtype() + ", which cannot be loaded as float32 (F32, F16, BF16 and F64 can)");
            }
        }

        /** Releases the mapping (if any); the reader cannot be used afterwards. */
        @Override
        public void close() {
            if (arena != null) arena.close();
        }
    }

    // ---------------------------------------------------------------------------------------------
    // writing

    /**
     * The exact bytes of a safetensors image of float32 tensors, stored in the given order. The
     * metadata map is omitted when null or empty.
     */
    public static byte[] toBytes(List<Entry> tensors, Map<String, String> metadata) {
        byte[] header = header(tensors, metadata);
        long total = 8L + header.length + dataBytes(tensors);
        if (total > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("image of " + total + " bytes is too large for a byte[]; use write");
        }
        ByteBuffer buf = ByteBuffer.allocate((int) total).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(header.length).put(header);
        for (Entry e : tensors) {
            buf.asFloatBuffer().put(e.data());
            buf.position(buf.position() + 4 * e.data().length);
        }
        return buf.array();
    }

    /** Writes float32 tensors atomically to {@code path} (see the class comment). */
    public static void write(Path path, List<Entry> tensors, Map<String, String> metadata) throws IOException {
        Objects.requireNonNull(path, "path");
        AtomicFiles.write(path, content(tensors, metadata));
    }

    /** The file's bytes as {@link AtomicFiles.Content}, for a file written as part of an {@link AtomicFiles.Group}. */
    public static AtomicFiles.Content content(List<Entry> tensors, Map<String, String> metadata) {
        byte[] header = header(tensors, metadata);
        return ch -> {
            ByteBuffer head = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
            head.putLong(header.length).put(header).flip();
            AtomicFiles.writeFully(ch, head);
            // the tensors stream through a 1 MiB buffer: a checkpoint is never held twice in memory
            ByteBuffer chunk = ByteBuffer.allocateDirect(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
            for (Entry e : tensors) {
                float[] d = e.data();
                int i = 0;
                while (i < d.length) {
                    int n = Math.min(d.length - i, chunk.capacity() / 4);
                    chunk.clear();
                    chunk.asFloatBuffer().put(d, i, n);
                    chunk.limit(4 * n);
                    AtomicFiles.writeFully(ch, chunk);
                    i += n;
                }
            }
        };
    }

    private static long dataBytes(List<Entry> tensors) {
        long n = 0;
        for (Entry e : tensors) n = Math.addExact(n, 4L * e.data().length);
        return n;
    }

    /** The JSON header padded with spaces to a multiple of 8 bytes (so the data starts 8-aligned). */
    private static byte[] header(List<Entry> tensors, Map<String, String> metadata) {
        Objects.requireNonNull(tensors, "tensors");
        LinkedHashMap<String, Object> h = new LinkedHashMap<>();
        if (metadata != null && !metadata.isEmpty()) {
            LinkedHashMap<String, Object> m = new LinkedHashMap<>();
            for (Map.Entry<String, String> e : metadata.entrySet()) {
                m.put(Objects.requireNonNull(e.getKey(), "metadata key"),
                        Objects.requireNonNull(e.getValue(), "metadata value of " + e.getKey()));
            }
            h.put(METADATA_KEY, m);
        }
        Set<String> names = new HashSet<>();
        long offset = 0;
        for (Entry e : tensors) {
            Objects.requireNonNull(e, "tensor entry");
            if (e.name().equals(METADATA_KEY)) {
                throw new IllegalArgumentException("a tensor cannot be called " + METADATA_KEY);
            }
            if (!names.add(e.name())) {
                throw new IllegalArgumentException("duplicate tensor name '" + e.name() + "'");
            }
            LinkedHashMap<String, Object> info = new LinkedHashMap<>();
            info.put("dtype", "F32");
            List<Object> shape = new ArrayList<>();
            for (long d : e.shape) shape.add(d);
            info.put("shape", shape);
            long end = offset + 4L * e.data().length;
            info.put("data_offsets", List.of(offset, end));
            h.put(e.name(), info);
            offset = end;
        }
        byte[] json = Json.writeCompact(h).getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) & ~7;
        if (padded > MAX_HEADER_BYTES) {
            throw new IllegalArgumentException("header of " + padded + " bytes exceeds " + MAX_HEADER_BYTES);
        }
        byte[] out = Arrays.copyOf(json, padded);
        Arrays.fill(out, json.length, padded, (byte) ' ');
        return out;
    }
}
