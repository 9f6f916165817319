package io.diffusion4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Typed reads of JSON members: values, defaults for absent and null members, and messages naming the member. */
class JsonFieldsTest {
    static final String DOC = """
            {"i": 3, "big": 4294967297, "d": 0.25, "b": true, "s": "x", "n": null,
             "ints": [1, 2, 3], "strs": ["a", "b"], "mixed": [1, 2.5], "inf": Infinity}
            """;

    static JsonFields fields() {
        return JsonFields.of(Json.parseObjectFromPython(DOC), "cfg.json");
    }

    @Test
    void requiredValues() {
        JsonFields f = fields();
        assertEquals(3, f.requireInt("i"));
        assertEquals(4294967297L, f.requireLong("big"));
        assertEquals(0.25, f.requireDouble("d"));
        assertEquals(3.0, f.requireDouble("i"), "an integer is a number");
        assertTrue(f.requireBoolean("b"));
        assertEquals("x", f.requireString("s"));
        assertArrayEquals(new int[] {1, 2, 3}, f.requireIntArray("ints"));
        assertEquals(List.of("a", "b"), f.requireStringList("strs"));
        assertEquals(2, f.requireList("mixed").size());
    }

    @Test
    void optionalValuesTakeTheDefaultWhenAbsentOrNull() {
        JsonFields f = fields();
        assertEquals(7, f.optInt("absent", 7));
        assertEquals(7, f.optInt("n", 7));
        assertEquals(3, f.optInt("i", 7));
        assertEquals(8L, f.optLong("n", 8));
        assertEquals(1.5, f.optDouble("absent", 1.5));
        assertFalse(f.optBoolean("n", false));
        assertEquals("dflt", f.optString("absent", "dflt"));
        assertTrue(f.has("n") && f.isAbsent("n") && !f.has("absent") && f.isAbsent("absent"));
    }

    static JsonFieldException refused(Runnable r, String key, String... parts) {
        JsonFieldException e = assertThrows(JsonFieldException.class, r::run);
        assertEquals(key, e.key());
        assertTrue(e.getMessage().startsWith("cfg.json: " + key + ": "), e.getMessage());
        for (String p : parts) assertTrue(e.getMessage().contains(p), e.getMessage() + " should say " + p);
        assertTrue(e.getMessage().endsWith(e.problem()), e.getMessage());
        return e;
    }

    @Test
    void wrongTypesAndRangesAreRefusedNamingTheMember() {
        JsonFields f = fields();
        refused(() -> f.requireInt("s"), "s", "must be an integer", "a JSON string \"x\"");
        refused(() -> f.requireInt("d"), "d", "must be an integer", "0.25");
        refused(() -> f.requireInt("big"), "big", "must be in [", "4294967297");
        refused(() -> f.requireInt("i", 4, 9), "i", "must be in [4, 9], got 3");
        refused(() -> f.requireDouble("b"), "b", "must be a number");
        refused(() -> f.requireDouble("inf"), "inf", "finite");
        refused(() -> f.requireBoolean("i"), "i", "true or false");
        refused(() -> f.requireString("ints"), "ints", "must be a string", "a JSON array");
        refused(() -> f.requireIntArray("mixed"), "mixed[1]", "must be an integer");
        refused(() -> f.requireStringList("ints"), "ints[0]", "must be a string");
        refused(() -> f.requireIntArray("s"), "s", "must be an array");
        refused(() -> f.requireInt("absent"), "absent", "missing");
        refused(() -> f.requireInt("n"), "n", "must not be null");
        refused(() -> f.optInt("s", 1), "s", "must be an integer");
        refused(() -> { throw f.fail("i", "must be 0"); }, "i", "must be 0");
    }

    @Test
    void withoutASourceTheMessageStartsWithTheKey() {
        JsonFieldException e = assertThrows(JsonFieldException.class,
                () -> JsonFields.of(Json.parseObject("{\"a\": \"1\"}"), null).requireInt("a"));
        assertEquals("a: must be an integer, got a JSON string \"1\"", e.getMessage());
    }
}
