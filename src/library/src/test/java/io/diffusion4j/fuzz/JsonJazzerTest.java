package io.diffusion4j.fuzz;

import com.code_intelligence.jazzer.junit.DictionaryEntries;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.diffusion4j.io.Json;
import io.diffusion4j.io.JsonException;
import io.diffusion4j.io.JsonFieldException;
import io.diffusion4j.io.JsonFields;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.junit.jupiter.api.AfterAll;

/**
 * {@link Json#parse(byte[])} (config.json, scheduler configs, safetensors headers, request bodies) and
 * {@link Json#parseObjectFromPython} on arbitrary bytes: a value or a {@link JsonException}, nothing else. A parsed
 * value must survive writing: {@link Json#writeCompact} and {@link Json#write} of it parse back to an equal value
 * (or refuse it with a JsonException: only a non-finite Python constant cannot be written). Every member of a parsed
 * object is read with every {@link JsonFields} accessor: a value or a {@link JsonFieldException}.
 */
class JsonJazzerTest {
    static final String TARGET = "json";
    /** Java values of the parse (boxed numbers, map entries, strings) and the texts written back. */
    static final FuzzChecks.Budget BUDGET = new FuzzChecks.Budget(4 << 20, 256);

    @FuzzTest(maxDuration = "30s")
    @DictionaryEntries({"{", "}", "[", "]", "\"", ":", ",", "true", "false", "null", "NaN", "Infinity", "-Infinity",
            "\\u", "\\ud800", "\\udc00", "1e308", "-0", "0.5", "9223372036854775807", "\"_class_name\"",
            "\"block_out_channels\""})
    void parse(byte[] input) {
        FuzzChecks.check(TARGET, input.length, BUDGET, FuzzChecks.oneOf(JsonException.class), () -> {
            Object v = Json.parse(input);
            roundTrip(v);
            if (v instanceof Map<?, ?> m) readFields(m);
        });
        // the lenient (Python constants) parse of the same text, when it is UTF-8
        String text = new String(input, StandardCharsets.UTF_8);
        FuzzChecks.check(TARGET + "-python", input.length, BUDGET, FuzzChecks.oneOf(JsonException.class), () -> {
            Map<String, Object> m = Json.parseObjectFromPython(text);
            roundTrip(m);
            readFields(m);
        });
    }

    private static void roundTrip(Object v) {
        String compact;
        String pretty;
        try {
            compact = Json.writeCompact(v);
            pretty = Json.write(v);
        } catch (JsonException e) {
            if (!containsNonFinite(v)) throw new AssertionError("a parsed value could not be written: " + e.getMessage(), e);
            return;
        }
        if (!Objects.equals(Json.parse(compact), v)) throw new AssertionError("compact round trip changed the value: " + compact);
        if (!Objects.equals(Json.parse(pretty), v)) throw new AssertionError("pretty round trip changed the value: " + pretty);
    }

    private static boolean containsNonFinite(Object v) {
        if (v instanceof Double d) return !Double.isFinite(d);
        if (v instanceof Map<?, ?> m) return m.values().stream().anyMatch(JsonJazzerTest::containsNonFinite);
        if (v instanceof List<?> l) return l.stream().anyMatch(JsonJazzerTest::containsNonFinite);
        return false;
    }

    @SuppressWarnings("unchecked")
    private static void readFields(Map<?, ?> m) {
        JsonFields f = JsonFields.of((Map<String, ?>) m, "fuzz");
        for (String k : f.keys()) {
            List<Runnable> reads = List.of(() -> f.requireInt(k), () -> f.requireInt(k, 0, 10), () -> f.requireLong(k),
                    () -> f.requireDouble(k), () -> f.requireBoolean(k), () -> f.requireString(k),
                    () -> f.requireStringList(k), () -> f.requireIntArray(k), () -> f.requireList(k),
                    () -> f.optInt(k, 1), () -> f.optLong(k, 1), () -> f.optDouble(k, 1), () -> f.optBoolean(k, true),
                    () -> f.optString(k, "d"), () -> JsonFields.describe(f.get(k)));
            for (Runnable r : reads) {
                try {
                    r.run();
                } catch (JsonFieldException e) {
                    // documented refusal
                }
            }
        }
    }

    @AfterAll
    static void report() {
        FuzzChecks.report(TARGET);
        FuzzChecks.report(TARGET + "-python");
    }
}
