package io.diffusion4j.io;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Typed reads of the members of one parsed JSON object (a {@code config.json}, a
 * {@code scheduler_config.json}, a request body): the one place that turns {@link Json}'s plain values into
 * ints, longs, doubles, booleans, strings and lists, and refuses wrong types with a
 * {@link JsonFieldException} naming the source, the key, what was expected and what was there.
 *
 * <p>{@code require*} reads a member that must be there with a non-null value. {@code opt*} takes the default
 * when the member is absent <b>or null</b> (diffusers writes {@code null} for "the default"); a present value
 * of the wrong type is refused either way. A caller to whom a present null is an error tests
 * {@link #has(String)} and then calls {@code require*}.
 */
public final class JsonFields {
    private final Map<String, ?> map;
    private final String source;

    private JsonFields(Map<String, ?> map, String source) {
        this.map = map;
        this.source = source;
    }

    /**
     * The members of {@code map}.
     *
     * @param source where the object came from, for messages (a file path, "scheduler config"); null for none
     */
    public static JsonFields of(Map<String, ?> map, String source) {
        return new JsonFields(Objects.requireNonNull(map, "map"), source);
    }

    /** Where the object came from, as given to {@link #of}; may be null. */
    public String source() {
        return source;
    }

    /** True when the object has the member, even with a null value. */
    public boolean has(String key) {
        return map.containsKey(key);
    }

    /** The member's plain value ({@link Json}'s types), or null when absent. */
    public Object get(String key) {
        return map.get(key);
    }

    /** The member names, in the object's order. */
    public Set<String> keys() {
        return Collections.unmodifiableSet(map.keySet());
    }

    // ---------------------------------------------------------------------------------------------
    // required members

    public int requireInt(String key) {
        return requireInt(key, Integer.MIN_VALUE, Integer.MAX_VALUE);
    }

    /** An integer in [min, max]. */
    public int requireInt(String key, int min, int max) {
        return (int) requireLong(key, min, max);
    }

    public long requireLong(String key) {
        return requireLong(key, Long.MIN_VALUE, Long.MAX_VALUE);
    }

    /** An integer in [min, max]. */
    public long requireLong(String key, long min, long max) {
        return integer(key, present(key), min, max);
    }

    /** A finite number (integer or not). */
    public double requireDouble(String key) {
        return number(key, present(key));
    }

    public boolean requireBoolean(String key) {
        Object v = present(key);
        if (v instanceof Boolean b) return b;
        throw fail(key, "must be true or false, got " + describe(v));
    }

    public String requireString(String key) {
        Object v = present(key);
        if (v instanceof String s) return s;
        throw fail(key, "must be a string, got " + describe(v));
    }

    /** An array of strings; an element of another type is refused as {@code key[i]}. */
    public List<String> requireStringList(String key) {
        List<?> l = list(key);
        List<String> out = new ArrayList<>(l.size());
        for (int i = 0; i < l.size(); i++) {
            if (!(l.get(i) instanceof String s)) {
                throw new JsonFieldException(source, key + "[" + i + "]",
                        "must be a string, got " + describe(l.get(i)));
            }
            out.add(s);
        }
        return out;
    }

    /** An array of ints; an element of another type or out of the int range is refused as {@code key[i]}. */
    public int[] requireIntArray(String key) {
        List<?> l = list(key);
        int[] out = new int[l.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (int) integer(key + "[" + i + "]", l.get(i), Integer.MIN_VALUE, Integer.MAX_VALUE);
        }
        return out;
    }

    /** An array, its elements as parsed. */
    public List<?> requireList(String key) {
        return list(key);
    }

    // ---------------------------------------------------------------------------------------------
    // optional members: absent or null -> the default

    public int optInt(String key, int def) {
        return isAbsent(key) ? def : requireInt(key);
    }

    public long optLong(String key, long def) {
        return isAbsent(key) ? def : requireLong(key);
    }

    public double optDouble(String key, double def) {
        return isAbsent(key) ? def : requireDouble(key);
    }

    public boolean optBoolean(String key, boolean def) {
        return isAbsent(key) ? def : requireBoolean(key);
    }

    public String optString(String key, String def) {
        return isAbsent(key) ? def : requireString(key);
    }

    /** True when the member is absent or null. */
    public boolean isAbsent(String key) {
        return map.get(key) == null;
    }

    // ---------------------------------------------------------------------------------------------

    /**
     * The exception for member {@code key} with a problem this class does not know (an unsupported value, a
     * range): same form as its own messages.
     *
     * @param problem what is wrong, e.g. "must be 0 or 1"
     */
    public JsonFieldException fail(String key, String problem) {
        return new JsonFieldException(source, key, problem);
    }

    /** A value for messages: its JSON type and, for a scalar, the value itself (shortened). */
    public static String describe(Object v) {
        if (v == null) return "null";
        String type = "a JSON " + Json.typeName(v);
        if (v instanceof Map || v instanceof List) return type;
        String s = v instanceof String str ? "\"" + str + "\"" : String.valueOf(v);
        return type + " " + (s.length() <= 60 ? s : s.substring(0, 57) + "...");
    }

    private Object present(String key) {
        Object v = map.get(key);
        if (v == null) {
            throw new JsonFieldException(source, key, map.containsKey(key) ? "must not be null" : "missing (required)");
        }
        return v;
    }

    private List<?> list(String key) {
        Object v = present(key);
        if (v instanceof List<?> l) return l;
        throw fail(key, "must be an array, got " + describe(v));
    }

    private long integer(String key, Object v, long min, long max) {
        if (!(v instanceof Long l)) {
            throw new JsonFieldException(source, key, "must be an integer, got " + describe(v));
        }
        if (l < min || l > max) {
            throw new JsonFieldException(source, key, "must be in [" + min + ", " + max + "], got " + l);
        }
        return l;
    }

    private double number(String key, Object v) {
        if (!(v instanceof Long) && !(v instanceof Double)) {
            throw new JsonFieldException(source, key, "must be a number, got " + describe(v));
        }
        double d = ((Number) v).doubleValue();
        if (!Double.isFinite(d)) throw new JsonFieldException(source, key, "must be a finite number, got " + d);
        return d;
    }
}
