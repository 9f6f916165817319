package io.diffusion4j.io;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * A strict, dependency-free JSON (RFC 8259) reader and writer for configuration files and
 * safetensors headers.
 *
 * <p>Parsing yields plain Java values: {@link LinkedHashMap} (keys in document order) for objects,
 * {@link List} for arrays, {@link String}, {@link Long} for numbers without fraction or exponent,
 * {@link Double} for the others, {@link Boolean} and {@code null}. It is strict where lenient
 * parsers hide mistakes: duplicate keys, leading zeros, trailing commas, comments, single quotes,
 * unescaped control characters, unpaired surrogate escapes, integers outside the long range, numbers
 * that overflow to infinity and content after the document are all refused with a
 * {@link JsonException} naming the problem and its line and column. Nesting is limited to
 * {@value #MAX_DEPTH} levels so hostile input cannot exhaust the stack.
 *
 * <p>Writing is deterministic: objects are written in the iteration order of a {@link LinkedHashMap}
 * or {@link SortedMap} and in sorted key order for any other map, so the same value always gives the
 * same bytes.
 */
public final class Json {
    /** Deepest accepted nesting of arrays and objects. */
    public static final int MAX_DEPTH = 512;

    private Json() {}

    // ---------------------------------------------------------------------------------------------
    // parsing

    /** Parses one JSON document. */
    public static Object parse(String text) {
        if (text == null) {
            throw new JsonException("JSON text is null");
        }
        return new Parser(text).document();
    }

    /** Parses one JSON document from UTF-8 bytes; malformed UTF-8 is refused. */
    public static Object parse(byte[] utf8) {
        if (utf8 == null) {
            throw new JsonException("JSON bytes are null");
        }
        return parse(decodeUtf8(ByteBuffer.wrap(utf8)));
    }

    /** Strict UTF-8 decoding (no silent replacement characters), shared with the safetensors reader. */
    static String decodeUtf8(ByteBuffer bytes) {
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        try {
            CharBuffer chars = decoder.decode(bytes);
            return chars.toString();
        } catch (CharacterCodingException e) {
            throw new JsonException("malformed UTF-8 in JSON text (" + e.getMessage() + ")");
        }
    }

    /**
     * {@link #parseObject} that also accepts the tokens {@code NaN}, {@code Infinity} and {@code -Infinity} as
     * {@link Double} values: what Python's {@code json.dumps} writes for non-finite floats, e.g. diffusers'
     * {@code "lambda_min_clipped": -Infinity} in every DPMSolverMultistepScheduler scheduler_config.json.
     * Everything else is as strict as {@link #parseObject}.
     */
    @SuppressWarnings("unchecked")
    public static LinkedHashMap<String, Object> parseObjectFromPython(String text) {
        if (text == null) {
            throw new JsonException("JSON text is null");
        }
        Parser p = new Parser(text);
        p.pythonConstants = true;
        Object v = p.document();
        if (!(v instanceof LinkedHashMap)) {
            throw new JsonException("expected a JSON object at the top level, got " + typeName(v));
        }
        return (LinkedHashMap<String, Object>) v;
    }

    /** Parses a document that must be a JSON object. */
    @SuppressWarnings("unchecked")
    public static LinkedHashMap<String, Object> parseObject(String text) {
        Object v = parse(text);
        if (!(v instanceof LinkedHashMap)) {
            throw new JsonException("expected a JSON object at the top level, got " + typeName(v));
        }
        return (LinkedHashMap<String, Object>) v;
    }

    /** A short description of a parsed value's JSON type, for error messages. */
    public static String typeName(Object v) {
        if (v == null) return "null";
        if (v instanceof Map) return "object";
        if (v instanceof List) return "array";
        if (v instanceof String) return "string";
        if (v instanceof Boolean) return "boolean";
        if (v instanceof Long) return "integer";
        if (v instanceof Number) return "number";
        return v.getClass().getSimpleName();
    }

    private static final class Parser {
        private final String s;
        private int pos;
        private int depth;
        private boolean pythonConstants; // NaN, Infinity, -Infinity (see parseObjectFromPython)

        Parser(String s) {
            this.s = s;
        }

        Object document() {
            if (!s.isEmpty() && s.charAt(0) == '\uFEFF') {
                throw error("byte order mark is not allowed", 0);
            }
            skipWhitespace();
            if (pos >= s.length()) {
                throw error("empty JSON document", pos);
            }
            Object v = value();
            skipWhitespace();
            if (pos < s.length()) {
                throw error("unexpected " + describe(pos) + " after the JSON document", pos);
            }
            return v;
        }

        private Object value() {
            if (pos >= s.length()) {
                throw error("unexpected end of input, expected a value", pos);
            }
            char c = s.charAt(pos);
            switch (c) {
                case '{':
                    return object();
                case '[':
                    return array();
                case '"':
                    return string();
                case 't':
                    literal("true");
                    return Boolean.TRUE;
                case 'f':
                    literal("false");
                    return Boolean.FALSE;
                case 'n':
                    literal("null");
                    return null;
                default:
                    if (pythonConstants && (s.startsWith("NaN", pos) || s.startsWith("Infinity", pos)
                            || s.startsWith("-Infinity", pos))) {
                        String lit = s.charAt(pos) == 'N' ? "NaN" : s.charAt(pos) == 'I' ? "Infinity" : "-Infinity";
                        literal(lit);
                        return lit.equals("NaN") ? Double.NaN
                                : lit.equals("Infinity") ? Double.POSITIVE_INFINITY : Double.NEGATIVE_INFINITY;
                    }
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return number();
                    }
                    throw error("unexpected " + describe(pos) + ", expected a value", pos);
            }
        }

        private void enter(int at) {
            if (++depth > MAX_DEPTH) {
                throw error("nesting deeper than " + MAX_DEPTH + " levels", at);
            }
        }

        private LinkedHashMap<String, Object> object() {
            int open = pos;
            enter(open);
            pos++; // '{'
            LinkedHashMap<String, Object> map = new LinkedHashMap<>();
            skipWhitespace();
            if (peek() == '}') {
                pos++;
                depth--;
                return map;
            }
            while (true) {
                skipWhitespace();
                if (pos >= s.length()) {
                    throw error("unterminated object (opened at " + where(open) + ")", pos);
                }
                if (s.charAt(pos) != '"') {
                    throw error("expected a string key in object, got " + describe(pos), pos);
                }
                int keyAt = pos;
                String key = string();
                if (map.containsKey(key)) {
                    throw error("duplicate key \"" + shorten(key) + "\" in object", keyAt);
                }
                skipWhitespace();
                if (peek() != ':') {
                    throw error("expected ':' after object key, got " + describe(pos), pos);
                }
                pos++;
                skipWhitespace();
                map.put(key, value());
                skipWhitespace();
                int c = peek();
                if (c == ',') {
                    pos++;
                    skipWhitespace();
                    if (peek() == '}') {
                        throw error("trailing comma in object", pos);
                    }
                } else if (c == '}') {
                    pos++;
                    depth--;
                    return map;
                } else if (c < 0) {
                    throw error("unterminated object (opened at " + where(open) + ")", pos);
                } else {
                    throw error("expected ',' or '}' in object, got " + describe(pos), pos);
                }
            }
        }

        private List<Object> array() {
            int open = pos;
            enter(open);
            pos++; // '['
            List<Object> list = new ArrayList<>();
            skipWhitespace();
            if (peek() == ']') {
                pos++;
                depth--;
                return list;
            }
            while (true) {
                skipWhitespace();
                if (pos >= s.length()) {
                    throw error("unterminated array (opened at " + where(open) + ")", pos);
                }
                list.add(value());
                skipWhitespace();
                int c = peek();
                if (c == ',') {
                    pos++;
                    skipWhitespace();
                    if (peek() == ']') {
                        throw error("trailing comma in array", pos);
                    }
                } else if (c == ']') {
                    pos++;
                    depth--;
                    return list;
                } else if (c < 0) {
                    throw error("unterminated array (opened at " + where(open) + ")", pos);
                } else {
                    throw error("expected ',' or ']' in array, got " + describe(pos), pos);
                }
            }
        }

        private String string() {
            int open = pos;
            pos++; // opening quote
            StringBuilder sb = null;
            int runStart = pos;
            while (true) {
                if (pos >= s.length()) {
                    throw error("unterminated string (opened at " + where(open) + ")", pos);
                }
                char c = s.charAt(pos);
                if (c == '"') {
                    String out = sb == null ? s.substring(runStart, pos)
                            : sb.append(s, runStart, pos).toString();
                    pos++;
                    return out;
                }
                if (c < 0x20) {
                    throw error("unescaped control character U+" + hex4(c) + " in string", pos);
                }
                if (Character.isSurrogate(c)) {
                    // Raw surrogates come only from a Java String (bytes are decoded strictly): they
                    // must still form a pair, as escaped ones must.
                    if (Character.isHighSurrogate(c) && pos + 1 < s.length()
                            && Character.isLowSurrogate(s.charAt(pos + 1))) {
                        pos += 2;
                        continue;
                    }
                    throw error("unpaired surrogate U+" + hex4(c) + " in string", pos);
                }
                if (c != '\\') {
                    pos++;
                    continue;
                }
                if (sb == null) sb = new StringBuilder();
                sb.append(s, runStart, pos);
                int escAt = pos;
                pos++;
                if (pos >= s.length()) {
                    throw error("unterminated escape sequence", escAt);
                }
                char e = s.charAt(pos++);
                switch (e) {
                    case '"' -> sb.append('"');
                    case '\\' -> sb.append('\\');
                    case '/' -> sb.append('/');
                    case 'b' -> sb.append('\b');
                    case 'f' -> sb.append('\f');
                    case 'n' -> sb.append('\n');
                    case 'r' -> sb.append('\r');
                    case 't' -> sb.append('\t');
                    case 'u' -> {
                        char u = hexEscape(escAt);
                        if (Character.isHighSurrogate(u)) {
                            int lowAt = pos;
                            if (pos + 1 < s.length() && s.charAt(pos) == '\\' && s.charAt(pos + 1) == 'u') {
                                pos += 2;
                                char low = hexEscape(lowAt);
                                if (!Character.isLowSurrogate(low)) {
                                    throw error("high surrogate \\u" + hex4(u)
                                            + " followed by \\u" + hex4(low) + ", not a low surrogate", lowAt);
                                }
                                sb.append(u).append(low);
                            } else {
                                throw error("unpaired high surrogate \\u" + hex4(u), escAt);
                            }
                        } else if (Character.isLowSurrogate(u)) {
                            throw error("unpaired low surrogate \\u" + hex4(u), escAt);
                        } else {
                            sb.append(u);
                        }
                    }
                    default -> throw error("invalid escape sequence '\\" + printable(e) + "'", escAt);
                }
                runStart = pos;
            }
        }

        /** Reads the 4 hex digits after "\\u" (pos is on the first digit). */
        private char hexEscape(int escAt) {
            if (pos + 4 > s.length()) {
                throw error("truncated \\u escape", escAt);
            }
            int v = 0;
            for (int i = 0; i < 4; i++) {
                int d = Character.digit(s.charAt(pos + i), 16);
                if (d < 0 || s.charAt(pos + i) > 'f') { // Character.digit accepts non-ASCII digits
                    throw error("invalid hex digit " + describe(pos + i) + " in \\u escape", pos + i);
                }
                v = (v << 4) | d;
            }
            pos += 4;
            return (char) v;
        }

        private Object number() {
            int start = pos;
            boolean integral = true;
            if (s.charAt(pos) == '-') pos++;
            if (pos >= s.length()) {
                throw error("'-' not followed by a digit", start);
            }
            char c = s.charAt(pos);
            if (c == '0') {
                pos++;
                if (pos < s.length() && isDigit(s.charAt(pos))) {
                    throw error("leading zero in number", start);
                }
            } else if (c >= '1' && c <= '9') {
                while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
            } else {
                throw error("'-' not followed by a digit", start);
            }
            if (pos < s.length() && s.charAt(pos) == '.') {
                integral = false;
                pos++;
                if (pos >= s.length() || !isDigit(s.charAt(pos))) {
                    throw error("expected a digit after the decimal point", pos);
                }
                while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
            }
            if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
                integral = false;
                pos++;
                if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) pos++;
                if (pos >= s.length() || !isDigit(s.charAt(pos))) {
                    throw error("expected a digit in the exponent", pos);
                }
                while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
            }
            String lexeme = s.substring(start, pos);
            if (integral) {
                try {
                    return Long.parseLong(lexeme);
                } catch (NumberFormatException e) {
                    throw error("integer " + shorten(lexeme) + " is outside the 64-bit range", start);
                }
            }
            double d = Double.parseDouble(lexeme);
            if (Double.isInfinite(d)) {
                throw error("number " + shorten(lexeme) + " overflows a double", start);
            }
            return d;
        }

        private static boolean isDigit(char c) {
            return c >= '0' && c <= '9';
        }

        private void literal(String word) {
            if (!s.startsWith(word, pos)) {
                throw error("unexpected " + describe(pos) + ", expected a value", pos);
            }
            pos += word.length();
        }

        private int peek() {
            return pos < s.length() ? s.charAt(pos) : -1;
        }

        private void skipWhitespace() {
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                    pos++;
                } else {
                    return;
                }
            }
        }

        private String describe(int at) {
            if (at >= s.length()) return "end of input";
            return "character '" + printable(s.charAt(at)) + "'";
        }

        private String where(int at) {
            int[] lc = lineColumn(at);
            return "line " + lc[0] + ", column " + lc[1];
        }

        private int[] lineColumn(int at) {
            int line = 1;
            int col = 1;
            int end = Math.min(at, s.length());
            for (int i = 0; i < end; i++) {
                char c = s.charAt(i);
                if (c == '\n' || (c == '\r' && (i + 1 >= s.length() || s.charAt(i + 1) != '\n'))) {
                    line++;
                    col = 1;
                } else if (c != '\r') {
                    col++;
                }
            }
            return new int[] {line, col};
        }

        private JsonException error(String message, int at) {
            int[] lc = lineColumn(at);
            return new JsonException(message, lc[0], lc[1]);
        }
    }

    private static String printable(char c) {
        if (c >= 0x20 && c < 0x7f) return String.valueOf(c);
        return "U+" + hex4(c);
    }

    private static String hex4(char c) {
        return String.format("%04X", (int) c);
    }

    private static String shorten(String s) {
        return s.length() <= 40 ? s : s.substring(0, 37) + "...";
    }

    // ---------------------------------------------------------------------------------------------
    // writing

    /** Pretty-printed JSON (two-space indent, one member per line, "\n" line ends, no final newline). */
    public static String write(Object value) {
        StringBuilder sb = new StringBuilder();
        new Writer(sb, true).value(value, 0, "value");
        return sb.toString();
    }

    /** Compact JSON without any whitespace. */
    public static String writeCompact(Object value) {
        StringBuilder sb = new StringBuilder();
        new Writer(sb, false).value(value, 0, "value");
        return sb.toString();
    }

    private record Writer(StringBuilder sb, boolean pretty) {
        void value(Object v, int depth, String path) {
            if (depth > MAX_DEPTH) {
                throw new JsonException("value nested deeper than " + MAX_DEPTH + " levels at " + path);
            }
            if (v == null) {
                sb.append("null");
            } else if (v instanceof String str) {
                string(str, path);
            } else if (v instanceof Boolean b) {
                sb.append(b.booleanValue());
            } else if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte
                    || v instanceof BigInteger) {
                sb.append(v);
            } else if (v instanceof Double || v instanceof Float) {
                double d = ((Number) v).doubleValue();
                if (!Double.isFinite(d)) {
                    throw new JsonException("non-finite number " + d + " cannot be written as JSON at " + path);
                }
                // Float via its shortest decimal form, so 0.1f is written 0.1 and not 0.10000000149011612.
                sb.append(v instanceof Float f ? Float.toString(f) : Double.toString(d));
            } else if (v instanceof BigDecimal bd) {
                sb.append(bd.toString());
            } else if (v instanceof Map<?, ?> m) {
                object(m, depth, path);
            } else if (v instanceof List<?> l) {
                array(l, depth, path);
            } else {
                throw new JsonException("cannot write a " + v.getClass().getName() + " as JSON at " + path);
            }
        }

        private void object(Map<?, ?> m, int depth, String path) {
            for (Object k : m.keySet()) {
                if (!(k instanceof String)) {
                    throw new JsonException("object key " + k + " is not a string at " + path);
                }
            }
            Map<?, ?> ordered = m instanceof LinkedHashMap || m instanceof SortedMap ? m : new TreeMap<>(m);
            if (ordered.isEmpty()) {
                sb.append("{}");
                return;
            }
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ordered.entrySet()) {
                if (!first) sb.append(',');
                first = false;
                newline(depth + 1);
                String key = (String) e.getKey();
                string(key, path);
                sb.append(pretty ? ": " : ":");
                value(e.getValue(), depth + 1, path + "." + key);
            }
            newline(depth);
            sb.append('}');
        }

        private void array(List<?> l, int depth, String path) {
            if (l.isEmpty()) {
                sb.append("[]");
                return;
            }
            // Arrays of scalars stay on one line (shapes, channel lists): easier to read and diff.
            boolean flat = l.stream().noneMatch(x -> x instanceof Map || x instanceof List);
            sb.append('[');
            for (int i = 0; i < l.size(); i++) {
                if (i > 0) sb.append(pretty && flat ? ", " : ",");
                if (!flat) newline(depth + 1);
                value(l.get(i), depth + 1, path + "[" + i + "]");
            }
            if (!flat) newline(depth);
            sb.append(']');
        }

        private void newline(int depth) {
            if (!pretty) return;
            sb.append('\n');
            sb.append("  ".repeat(depth));
        }

        private void string(String str, String path) {
            sb.append('"');
            for (int i = 0; i < str.length(); i++) {
                char c = str.charAt(i);
                switch (c) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    case '\b' -> sb.append("\\b");
                    case '\f' -> sb.append("\\f");
                    default -> {
                        if (c < 0x20) {
                            sb.append("\\u").append(hex4(c));
                        } else if (Character.isHighSurrogate(c) && i + 1 < str.length()
                                && Character.isLowSurrogate(str.charAt(i + 1))) {
                            sb.append(c).append(str.charAt(++i));
                        } else if (Character.isSurrogate(c)) {
                            // an unpaired surrogate has no UTF-8 encoding: refuse rather than corrupt
                            throw new JsonException("unpaired surrogate U+" + hex4(c) + " in string at " + path);
                        } else {
                            sb.append(c);
                        }
                    }
                }
            }
            sb.append('"');
        }
    }
}
