package io.diffusion4j;

import io.diffusion4j.testutil.RepoPaths;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.backend.NativeLibraries;
import io.diffusion4j.backend.Status;
import io.diffusion4j.schedule.PredictionType;
import io.diffusion4j.schedule.VarianceType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The committed jextract bindings (bindings/java) must cover native/include/d4j.h: every declared
 * function with a matching Java signature, every enum constant and the ABI version macro. Fails when
 * d4j.h changes without bindings/generate.sh being rerun.
 */
class BindingsCoverageTest {
    static final Path HEADER = RepoPaths.of("native", "include", "d4j.h");
    static final String BINDINGS = "io.diffusion4j.bindings.d4j_h";

    /** One function declared in the header. */
    record CFunction(String name, String returnType, List<String> paramTypes) {}

    static String header;
    static List<CFunction> functions;
    static Map<String, Long> constants; // enum constants and D4J_ABI_VERSION with their values
    static Map<String, List<String>> enums;

    @BeforeAll
    static void parseHeader() throws IOException {
        assertTrue(Files.isRegularFile(HEADER), "header not found at " + HEADER.toAbsolutePath()
                + " (the test must run with the project basedir as working directory)");
        header = stripComments(Files.readString(HEADER));
        functions = parseFunctions(header);
        enums = new LinkedHashMap<>();
        constants = parseConstants(header, enums);
        // sanity of the parser itself, so an unparseable header cannot make the test vacuous
        assertTrue(functions.size() >= 20, "parsed only " + functions.size() + " functions from d4j.h: " + functions);
        assertTrue(constants.containsKey("D4J_OK") && constants.containsKey("D4J_ABI_VERSION"), "constants: " + constants);
        assertTrue(enums.containsKey("d4j_status"), "enums: " + enums);
    }

    static String stripComments(String s) {
        return s.replaceAll("(?s)/\\*.*?\\*/", " ").replaceAll("//[^\n]*", " ");
    }

    static List<CFunction> parseFunctions(String text) {
        // D4J_API <return type> <name>(<params>);   possibly over several lines
        Pattern p = Pattern.compile("D4J_API\\s+([A-Za-z_][\\w\\s\\*]*?)\\s*\\b([A-Za-z_]\\w*)\\s*\\(([^)]*)\\)\\s*;");
        List<CFunction> out = new ArrayList<>();
        Matcher m = p.matcher(text);
        while (m.find()) {
            String ret = normalizeType(m.group(1));
            String params = m.group(3).replaceAll("\\s+", " ").trim();
            List<String> types = new ArrayList<>();
            if (!params.isEmpty() && !params.equals("void")) {
                for (String param : params.split(",")) types.add(paramType(param.trim()));
            }
            out.add(new CFunction(m.group(2), ret, types));
        }
        // every "D4J_API" token that is a declaration must have been parsed
        long declared = Pattern.compile("(?<!#define )\\bD4J_API\\s+[A-Za-z_]").matcher(text).results().count();
        assertEquals(declared, out.size(), "some D4J_API declarations could not be parsed; parsed " + out);
        return out;
    }

    /** The type of one "const d4j_buffer *x0"-style parameter, with its name removed. */
    static String paramType(String param) {
        Matcher m = Pattern.compile("^(.*?)([A-Za-z_]\\w*)$").matcher(param);
        if (!m.matches()) throw new AssertionError("cannot parse parameter '" + param + "'");
        String type = m.group(1).trim();
        if (type.isEmpty()) throw new AssertionError("parameter '" + param + "' has no name");
        return normalizeType(type);
    }

    static String normalizeType(String t) {
        String s = t.replace("const", " ").replaceAll("\\s*\\*\\s*", "*").replaceAll("\\s+", " ").trim();
        return s.replace(" *", "*");
    }

    static Map<String, Long> parseConstants(String text, Map<String, List<String>> enumsOut) {
        Map<String, Long> out = new LinkedHashMap<>();
        Matcher e = Pattern.compile("typedef\\s+enum\\s+(\\w+)\\s*\\{([^}]*)\\}").matcher(text);
        while (e.find()) {
            List<String> names = new ArrayList<>();
            long next = 0;
            for (String item : e.group(2).split(",")) {
                String it = item.trim();
                if (it.isEmpty()) continue;
                String[] kv = it.split("=");
                String name = kv[0].trim();
                long v = kv.length > 1 ? Long.decode(kv[1].trim()) : next;
                out.put(name, v);
                names.add(name);
                next = v + 1;
            }
            enumsOut.put(e.group(1), names);
        }
        Matcher d = Pattern.compile("#define\\s+(D4J_ABI_VERSION)\\s+(\\d+)").matcher(text);
        while (d.find()) out.put(d.group(1), Long.parseLong(d.group(2)));
        return out;
    }

    /** The bindings class, loaded but not initialised (its initialiser looks symbols up). */
    static Class<?> bindingsClass() throws ClassNotFoundException {
        return Class.forName(BINDINGS, false, BindingsCoverageTest.class.getClassLoader());
    }

    static Class<?> javaType(String cType) {
        if (cType.endsWith("*")) return MemorySegment.class;
        return switch (cType) {
            case "void" -> void.class;
            case "int32_t", "d4j_status", "d4j_prediction_type", "d4j_variance_type" -> int.class;
            case "int64_t", "uint64_t", "size_t" -> long.class;
            case "float" -> float.class;
            case "double" -> double.class;
            default -> {
                if (enums.containsKey(cType)) yield int.class;
                throw new AssertionError("BindingsCoverageTest does not know the C type '" + cType
                        + "'; extend javaType() for it");
            }
        };
    }

    @Test
    void everyHeaderFunctionHasABindingWithTheSameSignature() throws Exception {
        Class<?> h = bindingsClass();
        Map<String, List<Method>> byName = new LinkedHashMap<>();
        // d4j_h extends d4j_h$shared, but functions are declared in d4j_h itself
        for (Method m : h.getDeclaredMethods()) {
            if (Modifier.isPublic(m.getModifiers()) && Modifier.isStatic(m.getModifiers())) {
                byName.computeIfAbsent(m.getName(), k -> new ArrayList<>()).add(m);
            }
        }
        List<String> problems = new ArrayList<>();
        for (CFunction f : functions) {
            List<Method> candidates = byName.get(f.name());
            if (candidates == null) {
                problems.add(f.name() + ": declared in d4j.h but has no binding (rerun bindings/generate.sh)");
                continue;
            }
            Class<?>[] expected = f.paramTypes().stream().map(BindingsCoverageTest::javaType).toArray(Class<?>[]::new);
            Class<?> expectedRet = javaType(f.returnType());
            boolean found = false;
            for (Method m : candidates) {
                if (m.getParameterCount() == expected.length && Arrays.equals(m.getParameterTypes(), expected)
                        && m.getReturnType() == expectedRet) {
                    found = true;
                }
            }
            if (!found) {
                problems.add(f.name() + ": header has (" + f.paramTypes() + ") -> " + f.returnType()
                        + ", expected Java " + Arrays.toString(expected) + " -> " + expectedRet.getName()
                        + ", bindings have " + candidates.stream().map(Method::toString).collect(Collectors.joining("; ")));
            }
            // jextract's companions: descriptor, handle and address accessors
            for (String suffix : List.of("$descriptor", "$handle", "$address")) {
                if (!byName.containsKey(f.name() + suffix)) problems.add(f.name() + ": no " + f.name() + suffix + "()");
            }
        }
        if (!problems.isEmpty()) fail("bindings/java is out of date with " + HEADER + ":\n  " + String.join("\n  ", problems));
    }

    @Test
    void noBindingForAFunctionTheHeaderNoLongerDeclares() throws Exception {
        Class<?> h = bindingsClass();
        var declared = functions.stream().map(CFunction::name).collect(Collectors.toSet());
        List<String> stale = new ArrayList<>();
        for (Method m : h.getDeclaredMethods()) {
            String n = m.getName();
            if (Modifier.isPublic(m.getModifiers()) && n.startsWith("d4j_") && !n.contains("$") && !declared.contains(n)) {
                stale.add(n);
            }
        }
        assertTrue(stale.isEmpty(), "bindings have functions d4j.h does not declare: " + stale);
    }

    @Test
    void everyEnumConstantAndTheAbiVersionHaveABinding() throws Exception {
        Class<?> h = bindingsClass();
        List<String> missing = new ArrayList<>();
        for (String c : constants.keySet()) {
            try {
                Method m = h.getDeclaredMethod(c);
                if (!Modifier.isStatic(m.getModifiers()) || m.getReturnType() != int.class) missing.add(c + " (wrong shape: " + m + ")");
            } catch (NoSuchMethodException e) {
                missing.add(c);
            }
        }
        assertTrue(missing.isEmpty(), "constants of d4j.h without a binding (rerun bindings/generate.sh): " + missing);
        // the three enums the API uses must all have been found
        assertTrue(enums.keySet().containsAll(List.of("d4j_status", "d4j_prediction_type", "d4j_variance_type")), "enums: " + enums);
    }

    /** After the front library is loaded: the constant values and every symbol of the header. */
    @Test
    void constantValuesMatchTheHeaderAndEverySymbolIsExported() throws Throwable {
        NativeLibraries libs = NativeLibraries.load();
        Class<?> h = Class.forName(BINDINGS, true, BindingsCoverageTest.class.getClassLoader());
        for (Map.Entry<String, Long> c : constants.entrySet()) {
            Object v = h.getDeclaredMethod(c.getKey()).invoke(null);
            assertEquals(c.getValue().intValue(), v, "value of " + c.getKey() + " in the bindings vs d4j.h");
        }
        assertEquals(constants.get("D4J_ABI_VERSION").intValue(), h.getDeclaredMethod("d4j_abi_version").invoke(null),
                "the loaded libd4j.so reports another ABI version than d4j.h");
        try (Arena arena = Arena.ofConfined()) {
            SymbolLookup lib = SymbolLookup.libraryLookup(libs.directory().resolve("libd4j.so"), arena);
            List<String> absent = functions.stream().map(CFunction::name).filter(n -> lib.find(n).isEmpty()).toList();
            assertTrue(absent.isEmpty(), "libd4j.so does not export " + absent);
        }
    }

    /** The Java enums passed to native code by ordinal must match the C enums value by value. */
    @Test
    void javaEnumsMatchTheCEnums() {
        List<String> status = enums.get("d4j_status");
        assertEquals(status.size(), Status.values().length, "Status vs d4j_status " + status);
        for (Status s : Status.values()) {
            String c = s == Status.OK ? "D4J_OK" : "D4J_ERR_" + s.name();
            assertEquals(Long.valueOf(s.ordinal()), constants.get(c), "Status." + s + " vs " + c);
        }
        List<String> pred = enums.get("d4j_prediction_type");
        assertEquals(pred.size(), PredictionType.values().length, "PredictionType vs " + pred);
        for (PredictionType p : PredictionType.values()) {
            String c = "D4J_PREDICTION_" + (p == PredictionType.V_PREDICTION ? "V" : p.name());
            assertEquals(Long.valueOf(p.ordinal()), constants.get(c), "PredictionType." + p + " vs " + c);
        }
        List<String> var = enums.get("d4j_variance_type");
        assertEquals(var.size(), VarianceType.values().length, "VarianceType vs " + var);
        for (VarianceType v : VarianceType.values()) {
            String c = "D4J_VARIANCE_" + v.name().toUpperCase(Locale.ROOT);
            assertEquals(Long.valueOf(v.ordinal()), constants.get(c), "VarianceType." + v + " vs " + c);
        }
    }

    /** The parser must see a newly added declaration (guards against a vacuous regex). */
    @Test
    void parserFindsAnAddedDeclaration() {
        String extra = header + "\nD4J_API d4j_status d4j_fake_new_call(d4j_backend *backend,\n    const float *x, int64_t n);\n";
        List<CFunction> more = parseFunctions(extra);
        assertEquals(functions.size() + 1, more.size());
        CFunction f = more.get(more.size() - 1);
        assertEquals(new CFunction("d4j_fake_new_call", "d4j_status", List.of("d4j_backend*", "float*", "int64_t")), f);
        assertFalse(functions.stream().anyMatch(x -> x.name().equals("d4j_fake_new_call")));
    }
}
