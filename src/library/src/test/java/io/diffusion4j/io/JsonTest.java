package io.diffusion4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.testutil.TestRandom;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class JsonTest {

    private static final String SAMPLE = """
            {
              "_class_name": "UNet2DModel",
              "act_fn": "silu",
              "attention_head_dim": null,
              "block_out_channels": [128, 256, 256, 256],
              "center_input_sample": false,
              "norm_eps": 1e-06,
              "mid_block_scale_factor": 1,
              "nested": {"a": [1, -2.5, true, {"b": "\\u00e9\\ud83d\\ude00\\n"}], "empty": {}, "e2": []}
            }
            """;

    // ---- values -----------------------------------------------------------------------------------

    /** Python's json.dumps writes non-finite floats as bare tokens (diffusers: "lambda_min_clipped": -Infinity). */
    @Test
    void pythonNonFiniteConstantsOnlyWhereAsked() {
        String text = "{\"a\": -Infinity, \"b\": [Infinity, NaN], \"c\": -1.5, \"d\": -0}";
        Map<String, Object> m = Json.parseObjectFromPython(text);
        assertEquals(Double.NEGATIVE_INFINITY, m.get("a"));
        assertEquals(List.of(Double.POSITIVE_INFINITY, Double.NaN), m.get("b"));
        assertEquals(-1.5, m.get("c"));
        assertEquals(0L, m.get("d"));
        JsonException e = assertThrows(JsonException.class, () -> Json.parseObject(text));
        assertTrue(e.getMessage().contains("line 1"), e.getMessage());
        for (String bad : new String[] {"{\"a\": Inf}", "{\"a\": -NaN}", "{\"a\": nan}", "{\"a\": Infinityx}",
            "{\"a\": -Infinity,}"}) {
            assertThrows(JsonException.class, () -> Json.parseObjectFromPython(bad), bad);
        }
    }

    @Test
    void parsesEveryValueTypeToPlainJava() {
        Map<String, Object> m = Json.parseObject(SAMPLE);
        assertInstanceOf(LinkedHashMap.class, m);
        assertEquals(List.of("_class_name", "act_fn", "attention_head_dim", "block_out_channels",
                "center_input_sample", "norm_eps", "mid_block_scale_factor", "nested"), new ArrayList<>(m.keySet()),
                "document key order is kept");
        assertEquals("UNet2DModel", m.get("_class_name"));
        assertNull(m.get("attention_head_dim"));
        assertTrue(m.containsKey("attention_head_dim"));
        assertEquals(List.of(128L, 256L, 256L, 256L), m.get("block_out_channels"));
        assertEquals(Boolean.FALSE, m.get("center_input_sample"));
        assertEquals(1e-6, m.get("norm_eps"));
        assertEquals(1L, m.get("mid_block_scale_factor"));
        @SuppressWarnings("unchecked")
        Map<String, Object> nested = (Map<String, Object>) m.get("nested");
        List<?> a = (List<?>) nested.get("a");
        assertEquals(1L, a.get(0));
        assertEquals(-2.5, a.get(1));
        assertEquals(true, a.get(2));
        assertEquals("é\uD83D\uDE00\n", ((Map<?, ?>) a.get(3)).get("b"), "\\u escapes and a surrogate pair");
        assertEquals(Map.of(), nested.get("empty"));
        assertEquals(List.of(), nested.get("e2"));
    }

    @Test
    void numbers() {
        assertEquals(0L, Json.parse("0"));
        assertEquals(-0.0, Json.parse("-0.0"));
        assertEquals(Long.MAX_VALUE, Json.parse("9223372036854775807"));
        assertEquals(Long.MIN_VALUE, Json.parse("-9223372036854775808"));
        assertEquals(1.5e300, Json.parse("1.5E+300"));
        assertEquals(1e-320, Json.parse("1e-320"), "subnormals are fine");
        assertEquals(12.0, Json.parse("1.2e1"));
        assertInstanceOf(Double.class, Json.parse("1E2"));
        assertEquals("x", Json.parse(" \t\r\n\"x\" \n"));
    }

    @Test
    void stringEscapes() {
        assertEquals("\"\\/\b\f\n\r\t", Json.parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""));
        assertEquals("\u0000\u001f", Json.parse("\"\\u0000\\u001F\""));
        assertEquals("\uD834\uDD1E", Json.parse("\"\\uD834\\udd1e\""), "G clef, mixed-case hex");
        assertEquals("日本", Json.parse("\"日本\""));
        assertEquals("\uD83D\uDE00", Json.parse("\"😀\"".getBytes(StandardCharsets.UTF_8)));
    }

    // ---- malformed documents ---------------------------------------------------------------------

    @ParameterizedTest
    @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
        "``|empty JSON document|1|1",
        "`   `|empty JSON document|1|4",
        "`{`|unterminated object|1|2",
        "`{\"a\":1,}`|trailing comma in object|1|8",
        "`[1,2,]`|trailing comma in array|1|6",
        "`[1 2]`|expected ',' or ']'|1|4",
        "`{\"a\" 1}`|expected ':'|1|6",
        "`{a:1}`|expected a string key|1|2",
        "`{\"a\":1,\"a\":2}`|duplicate key \"a\"|1|8",
        "`01`|leading zero|1|1",
        "`-`|'-' not followed by a digit|1|1",
        "`1.`|digit after the decimal point|1|3",
        "`1e`|digit in the exponent|1|3",
        "`.5`|unexpected character '.'|1|1",
        "`+1`|unexpected character '+'|1|1",
        "`NaN`|unexpected character 'N'|1|1",
        "`Infinity`|unexpected character 'I'|1|1",
        "`1e999`|overflows a double|1|1",
        "`9223372036854775808`|outside the 64-bit range|1|1",
        "`tru`|unexpected character 't'|1|1",
        "`nul`|unexpected character 'n'|1|1",
        "`\"abc`|unterminated string|1|5",
        "`\"a\\x\"`|invalid escape sequence '\\x'|1|3",
        "`\"\\u12G4\"`|invalid hex digit|1|6",
        "`\"\\u12\"`|truncated|1|2",
        "`\"\\uD800\"`|unpaired high surrogate|1|2",
        "`\"\\uDC00\"`|unpaired low surrogate|1|2",
        "`\"\\uD800\\u0041\"`|not a low surrogate|1|8",
        "`[1] [2]`|after the JSON document|1|5",
        "`{} x`|after the JSON document|1|4",
        "`// c\n1`|unexpected character '/'|1|1",
        "`'a'`|unexpected character '''|1|1",
        "`[1,\n  2,\n  x]`|unexpected character 'x'|3|3",
    })
    void malformedDocumentsAreRefusedWithPosition(String text, String message, int line, int column) {
        JsonException e = assertThrows(JsonException.class, () -> Json.parse(text), text);
        assertTrue(e.getMessage().contains(message), "message '" + e.getMessage() + "' should contain '" + message + "'");
        assertEquals(line, e.line(), "line of " + e.getMessage());
        assertEquals(column, e.column(), "column of " + e.getMessage());
        assertTrue(e.getMessage().endsWith("at line " + line + ", column " + column), e.getMessage());
    }

    @Test
    void controlCharactersBomAndBadUtf8() {
        JsonException e = assertThrows(JsonException.class, () -> Json.parse("\"a\tb\""));
        assertTrue(e.getMessage().contains("unescaped control character U+0009"), e.getMessage());
        e = assertThrows(JsonException.class, () -> Json.parse("\uFEFF{}"));
        assertTrue(e.getMessage().contains("byte order mark"), e.getMessage());
        e = assertThrows(JsonException.class, () -> Json.parse(new byte[] {'"', (byte) 0xC3, '"'}));
        assertTrue(e.getMessage().contains("malformed UTF-8"), e.getMessage());
        e = assertThrows(JsonException.class, () -> Json.parse(new byte[] {'"', (byte) 0xED, (byte) 0xA0, (byte) 0x80, '"'}));
        assertTrue(e.getMessage().contains("malformed UTF-8"), "CESU surrogate bytes: " + e.getMessage());
        e = assertThrows(JsonException.class, () -> Json.parse("\"\uD800x\""));
        assertTrue(e.getMessage().contains("unpaired surrogate"), e.getMessage());
        e = assertThrows(JsonException.class, () -> Json.parseObject("[1]"));
        assertTrue(e.getMessage().contains("expected a JSON object"), e.getMessage());
    }

    @Test
    void deepNestingIsRefusedNotAStackOverflow() {
        String ok = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
        Json.parse(ok);
        String deep = "[".repeat(100_000) + "]".repeat(100_000);
        JsonException e = assertThrows(JsonException.class, () -> Json.parse(deep));
        assertTrue(e.getMessage().contains("nesting deeper than " + Json.MAX_DEPTH), e.getMessage());
        String deepObj = "{\"a\":".repeat(Json.MAX_DEPTH + 1) + "1" + "}".repeat(Json.MAX_DEPTH + 1);
        assertThrows(JsonException.class, () -> Json.parse(deepObj));
    }

    @Test
    void lineAndColumnCountCrLf() {
        JsonException e = assertThrows(JsonException.class, () -> Json.parse("{\r\n\"a\": 1,\r\n\"b\": ?}"));
        assertEquals(3, e.line(), e.getMessage());
        assertEquals(6, e.column(), e.getMessage());
        e = assertThrows(JsonException.class, () -> Json.parse("[\r\r 1 x]"));
        assertEquals(3, e.line(), "lone CR ends a line: " + e.getMessage());
    }

    // ---- writing ---------------------------------------------------------------------------------

    @Test
    void prettyWriterIsStableAndReadable() {
        LinkedHashMap<String, Object> m = new LinkedHashMap<>();
        m.put("z", 1L);
        m.put("a", List.of(1L, 2.5, "x"));
        m.put("o", new LinkedHashMap<>(Map.of("k", List.of(Map.of("q", true)))));
        m.put("n", null);
        m.put("e", Map.of());
        m.put("l", List.of());
        String expected = """
                {
                  "z": 1,
                  "a": [1, 2.5, "x"],
                  "o": {
                    "k": [
                      {
                        "q": true
                      }
                    ]
                  },
                  "n": null,
                  "e": {},
                  "l": []
                }""";
        assertEquals(expected, Json.write(m));
        assertEquals("{\"z\":1,\"a\":[1,2.5,\"x\"],\"o\":{\"k\":[{\"q\":true}]},\"n\":null,\"e\":{},\"l\":[]}",
                Json.writeCompact(m));
    }

    @Test
    void unorderedMapsAreWrittenInSortedKeyOrder() {
        Map<String, Object> h = new HashMap<>();
        for (String k : List.of("delta", "alpha", "charlie", "bravo", "echo", "zulu", "kilo")) h.put(k, k.length());
        assertEquals(Json.writeCompact(new TreeMap<>(h)), Json.writeCompact(h));
    }

    @Test
    void stringEscapingRoundTrips() {
        String nasty = "q\"b\\s/\b\f\n\r\t\u0000\u0001\u001f é \uD83D\uDE00 \u2028";
        String json = Json.writeCompact(nasty);
        assertEquals("\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0000\\u0001\\u001F é \uD83D\uDE00 \u2028\"", json);
        assertEquals(nasty, Json.parse(json));
        assertEquals(nasty, Json.parse(json.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void writerRefusesWhatJsonCannotHold() {
        assertTrue(assertThrows(JsonException.class, () -> Json.write(Double.NaN)).getMessage().contains("non-finite"));
        assertThrows(JsonException.class, () -> Json.write(List.of(1.0, Double.POSITIVE_INFINITY)));
        assertTrue(assertThrows(JsonException.class, () -> Json.write(Map.of(1, 2))).getMessage().contains("not a string"));
        assertTrue(assertThrows(JsonException.class, () -> Json.write(new Object())).getMessage().contains("cannot write"));
        assertTrue(assertThrows(JsonException.class, () -> Json.write("\uDC00")).getMessage().contains("unpaired surrogate"));
        List<Object> cyclic = new ArrayList<>();
        cyclic.add(cyclic);
        assertTrue(assertThrows(JsonException.class, () -> Json.write(cyclic)).getMessage().contains("deeper"));
    }

    @Test
    void doublesRoundTripExactly() {
        TestRandom rnd = TestRandom.fresh();
        for (int i = 0; i < 2000; i++) {
            double d = Double.longBitsToDouble(rnd.nextLong());
            if (!Double.isFinite(d)) continue;
            Object back = Json.parse(Json.writeCompact(d));
            assertEquals(d, ((Number) back).doubleValue(), "round trip of " + d + " (" + rnd.describe() + ")");
        }
        assertEquals("0.1", Json.writeCompact(0.1f), "floats written through their shortest decimal form");
    }

    @Test
    void randomDocumentsRoundTrip() {
        TestRandom rnd = TestRandom.fresh();
        for (int i = 0; i < 300; i++) {
            Object v = randomValue(rnd, 0);
            String pretty = Json.write(v);
            String compact = Json.writeCompact(v);
            assertEquals(v, Json.parse(pretty), rnd.describe() + "\n" + pretty);
            assertEquals(v, Json.parse(compact), rnd.describe());
            assertEquals(compact, Json.writeCompact(Json.parse(pretty)), "writer is a function of the value");
        }
    }

    private static Object randomValue(TestRandom rnd, int depth) {
        int kind = rnd.nextInt(depth > 4 ? 6 : 8);
        switch (kind) {
            case 0: return null;
            case 1: return rnd.nextInt(2) == 0;
            case 2: return rnd.nextLong() >> rnd.nextInt(64);
            case 3: return (rnd.nextDouble() - 0.5) * Math.pow(10, rnd.nextInt(-20, 20));
            case 4:
            case 5: return randomString(rnd);
            case 6: {
                List<Object> l = new ArrayList<>();
                int n = rnd.nextInt(5);
                for (int i = 0; i < n; i++) l.add(randomValue(rnd, depth + 1));
                return l;
            }
            default: {
                LinkedHashMap<String, Object> m = new LinkedHashMap<>();
                int n = rnd.nextInt(5);
                for (int i = 0; i < n; i++) m.put(randomString(rnd), randomValue(rnd, depth + 1));
                return m;
            }
        }
    }

    private static String randomString(TestRandom rnd) {
        StringBuilder sb = new StringBuilder();
        int n = rnd.nextInt(8);
        for (int i = 0; i < n; i++) {
            switch (rnd.nextInt(5)) {
                case 0 -> sb.append((char) rnd.nextInt(0x20));
                case 1 -> sb.append("\"\\/".charAt(rnd.nextInt(3)));
                case 2 -> sb.appendCodePoint(rnd.nextInt(0x10000, 0x110000));
                case 3 -> sb.append((char) rnd.nextInt(0x80, 0xD800));
                default -> sb.append((char) rnd.nextInt(0x20, 0x7f));
            }
        }
        return sb.toString();
    }

    // ---- fuzzing ---------------------------------------------------------------------------------

    /**
     * Thousands of random byte-level mutations of a valid document: each either parses or fails
     * with a JsonException carrying a position, quickly; nothing else may escape.
     */
    @Test
    void mutationFuzzNeverCrashesOrHangs() {
        TestRandom rnd = TestRandom.fresh();
        byte[] base = SAMPLE.getBytes(StandardCharsets.UTF_8);
        byte[] alphabet = "{}[]\",:\\u0123456789abcdefEe.-+ tnrfl\n\u0000".getBytes(StandardCharsets.UTF_8);
        int parsed = 0;
        int refused = 0;
        long start = System.nanoTime();
        for (int iter = 0; iter < 5000; iter++) {
            byte[] doc = Arrays.copyOf(base, base.length);
            int edits = 1 + rnd.nextInt(4);
            for (int k = 0; k < edits; k++) {
                doc = mutate(doc, rnd, alphabet);
            }
            byte[] input = doc;
            try {
                Json.parse(input);
                parsed++;
            } catch (JsonException e) {
                refused++;
                assertTrue(e.getMessage() != null && !e.getMessage().isBlank(), "empty message");
                if (!e.getMessage().contains("UTF-8")) {
                    assertTrue(e.line() >= 1 && e.column() >= 1,
                            "position missing in '" + e.getMessage() + "' (" + rnd.describe() + ")");
                }
            } catch (RuntimeException | StackOverflowError e) {
                fail("mutation " + iter + " escaped with " + e + " on input "
                        + new String(input, StandardCharsets.UTF_8) + " (" + rnd.describe() + ")");
            }
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        assertTrue(ms < 30_000, "5000 parses took " + ms + " ms");
        assertTrue(refused > 1000 && parsed > 50, "fuzz should hit both outcomes: parsed " + parsed
                + ", refused " + refused + " (" + rnd.describe() + ")");
    }

    private static byte[] mutate(byte[] doc, TestRandom rnd, byte[] alphabet) {
        int at = doc.length == 0 ? 0 : rnd.nextInt(doc.length);
        switch (rnd.nextInt(5)) {
            case 0: { // replace
                if (doc.length == 0) return doc;
                doc[at] = rnd.nextInt(4) == 0 ? (byte) rnd.nextInt(256) : alphabet[rnd.nextInt(alphabet.length)];
                return doc;
            }
            case 1: { // delete a run
                if (doc.length == 0) return doc;
                int len = Math.min(doc.length - at, 1 + rnd.nextInt(3));
                byte[] out = new byte[doc.length - len];
                System.arraycopy(doc, 0, out, 0, at);
                System.arraycopy(doc, at + len, out, at, doc.length - at - len);
                return out;
            }
            case 2: { // insert
                byte[] out = new byte[doc.length + 1];
                System.arraycopy(doc, 0, out, 0, at);
                out[at] = alphabet[rnd.nextInt(alphabet.length)];
                System.arraycopy(doc, at, out, at + 1, doc.length - at);
                return out;
            }
            case 3: // truncate
                return Arrays.copyOf(doc, at);
            default: { // duplicate a slice (creates duplicate keys, nested structures)
                int len = Math.min(doc.length - at, 1 + rnd.nextInt(20));
                int to = doc.length == 0 ? 0 : rnd.nextInt(doc.length);
                byte[] out = new byte[doc.length + len];
                System.arraycopy(doc, 0, out, 0, to);
                System.arraycopy(doc, at, out, to, len);
                System.arraycopy(doc, to, out, to + len, doc.length - to);
                return out;
            }
        }
    }
}
