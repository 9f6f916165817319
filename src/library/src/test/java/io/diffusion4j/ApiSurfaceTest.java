package io.diffusion4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.lang.reflect.Constructor;
import java.lang.reflect.Executable;
import java.lang.reflect.Field;
import java.lang.reflect.GenericArrayType;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.lang.reflect.WildcardType;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import javax.tools.DocumentationTool;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;

/**
 * The public API is the package {@code io.diffusion4j} alone: every public or protected member (constructors,
 * methods, fields, record components, nested types, supertypes, type parameters and bounds, declared
 * exceptions) of every public class in it mentions only API and JDK types, the class list is the documented
 * one, and javadoc's doclint accepts every public type and member with no warning.
 */
class ApiSurfaceTest {
    static final String API = "io.diffusion4j";

    /** The documented API (README "The Java API"). A new public class must be added here deliberately. */
    static final Set<String> EXPECTED = Set.of("Device", "DeviceUnavailableException", "Diffusion4j", "DiffusionPipeline", "Precision",
            "SampleInputs", "SamplerConfig", "SamplerType", "Samples", "SamplingProgress", "TimestepSpacing", "TrainingData",
            "TrainingProgress", "TrainingRun", "TrainingRun$Builder", "TrainingStep");

    static Path classesDir() throws Exception {
        Path p = Path.of(Diffusion4j.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        return p.resolve(API.replace('.', '/'));
    }

    /** The public classes (top-level and nested) compiled into the API package of target/classes. */
    static List<Class<?>> apiClasses() throws Exception {
        List<Class<?>> out = new ArrayList<>();
        try (Stream<Path> files = Files.list(classesDir())) {
            for (Path f : files.filter(p -> p.toString().endsWith(".class")).sorted().toList()) {
                String name = f.getFileName().toString().replace(".class", "");
                Class<?> c = Class.forName(API + "." + name, false, ApiSurfaceTest.class.getClassLoader());
                if (isExported(c)) out.add(c);
            }
        }
        return out;
    }

    /** Public, and every enclosing class public (else it is not reachable by users). */
    static boolean isExported(Class<?> c) {
        for (Class<?> k = c; k != null; k = k.getDeclaringClass()) {
            if (!Modifier.isPublic(k.getModifiers()) || k.isAnonymousClass() || k.isLocalClass()) return false;
        }
        return true;
    }

    static boolean allowed(Class<?> c) {
        while (c.isArray()) c = c.getComponentType();
        if (c.isPrimitive()) return true;
        String pkg = c.getPackageName();
        return pkg.equals(API) || pkg.startsWith("java.") || pkg.startsWith("javax.");
    }

    static void check(Type t, String where, List<String> problems) {
        switch (t) {
            case Class<?> c -> {
                if (!allowed(c)) problems.add(where + " uses " + c.getName());
            }
            case ParameterizedType p -> {
                check(p.getRawType(), where, problems);
                if (p.getOwnerType() != null) check(p.getOwnerType(), where, problems);
                for (Type a : p.getActualTypeArguments()) check(a, where, problems);
            }
            case GenericArrayType g -> check(g.getGenericComponentType(), where, problems);
            case WildcardType w -> {
                for (Type b : w.getUpperBounds()) check(b, where, problems);
                for (Type b : w.getLowerBounds()) check(b, where, problems);
            }
            case TypeVariable<?> v -> {
                for (Type b : v.getBounds()) check(b, where, problems);
            }
            default -> problems.add(where + ": unknown type kind " + t);
        }
    }

    static boolean visible(int modifiers) {
        return Modifier.isPublic(modifiers) || Modifier.isProtected(modifiers);
    }

    /** Every problem of one class's public surface. */
    static List<String> surfaceProblems(Class<?> c) {
        List<String> problems = new ArrayList<>();
        String cn = c.getName();
        if (c.getGenericSuperclass() != null) check(c.getGenericSuperclass(), cn + " extends", problems);
        for (Type i : c.getGenericInterfaces()) check(i, cn + " implements", problems);
        for (TypeVariable<?> v : c.getTypeParameters()) check(v, cn + " <" + v + ">", problems);
        if (c.isRecord()) {
            for (RecordComponent rc : c.getRecordComponents()) check(rc.getGenericType(), cn + "." + rc.getName(), problems);
        }
        for (Field f : c.getDeclaredFields()) {
            if (visible(f.getModifiers()) && !f.isSynthetic()) check(f.getGenericType(), cn + "." + f.getName(), problems);
        }
        List<Executable> execs = new ArrayList<>(List.of(c.getDeclaredMethods()));
        for (Constructor<?> k : c.getDeclaredConstructors()) execs.add(k);
        for (Executable e : execs) {
            if (!visible(e.getModifiers()) || e.isSynthetic()) continue;
            String where = cn + "." + e.getName() + "(...)";
            if (e instanceof Method m) check(m.getGenericReturnType(), where + " returns", problems);
            for (Type p : e.getGenericParameterTypes()) check(p, where + " parameter", problems);
            for (Type x : e.getGenericExceptionTypes()) check(x, where + " throws", problems);
            for (TypeVariable<?> v : e.getTypeParameters()) check(v, where + " <" + v + ">", problems);
        }
        for (Class<?> n : c.getDeclaredClasses()) {
            if (visible(n.getModifiers()) && !allowed(n)) problems.add(cn + " nests " + n.getName());
        }
        return problems;
    }

    @Test
    void publicSignaturesMentionOnlyApiAndJdkTypes() throws Exception {
        List<Class<?>> classes = apiClasses();
        List<String> problems = new ArrayList<>();
        for (Class<?> c : classes) problems.addAll(surfaceProblems(c));
        assertTrue(problems.isEmpty(), "internal types in the public API:\n  " + String.join("\n  ", problems));
        Set<String> names = new TreeSet<>();
        for (Class<?> c : classes) names.add(c.getName().substring(API.length() + 1));
        assertEquals(new TreeSet<>(EXPECTED), names, "the public classes of " + API);
    }

    // A deliberately leaky class: the checker must flag each kind of leak.
    @SuppressWarnings("unused")
    public static class Leaky extends io.diffusion4j.backend.D4jException
            implements java.util.function.Supplier<List<? extends io.diffusion4j.backend.Backend>> {
        public io.diffusion4j.model.UNet2DConfig field;
        protected Leaky(io.diffusion4j.schedule.NoiseSchedule s) throws io.diffusion4j.io.JsonException {
            super(null, "leaky");
        }
        public Set<io.diffusion4j.schedule.PredictionType[]> method() {
            return null;
        }
        @Override
        public List<? extends io.diffusion4j.backend.Backend> get() {
            return null;
        }
        public <T extends io.diffusion4j.tensor.Tensor> void generic(T t) {}
        private io.diffusion4j.kernels.EmaSchedule hidden() { // private: not part of the surface
            return null;
        }
    }

    @Test
    void theCheckerFindsEveryKindOfLeak() {
        String all = String.join("\n", surfaceProblems(Leaky.class));
        for (String leak : new String[] {"tensor.Tensor", "backend.D4jException", "backend.Backend", "model.UNet2DConfig",
            "schedule.NoiseSchedule", "io.JsonException", "schedule.PredictionType"}) {
            assertTrue(all.contains("io.diffusion4j." + leak), leak + " not found in:\n" + all);
        }
        assertTrue(!all.contains("EmaSchedule"), "a private member was checked:\n" + all);
        assertTrue(surfaceProblems(SamplerConfig.class).isEmpty());
    }

    /** The API's sources: src/main/java/io/diffusion4j/*.java (found from the project directory). */
    static List<File> apiSources() throws IOException {
        Path dir = Path.of("src/main/java/io/diffusion4j");
        List<File> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(dir)) {
            s.filter(p -> p.toString().endsWith(".java")).sorted().forEach(p -> out.add(p.toFile()));
        }
        return out;
    }

    @Test
    void javadocDoclintAcceptsTheApiPackage() throws Exception {
        DocumentationTool javadoc = ToolProvider.getSystemDocumentationTool();
        Path outDir = Files.createTempDirectory("d4j-apidoc");
        List<String> args = new ArrayList<>(List.of("-Xdoclint:all", "-Werror", "-quiet", "-public", "-d", outDir.toString(),
                "-classpath", System.getProperty("java.class.path"), "-encoding", "UTF-8"));
        for (File f : apiSources()) args.add(f.getPath());
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        int rc = javadoc.run(null, bytes, bytes, args.toArray(String[]::new));
        String log = bytes.toString(StandardCharsets.UTF_8);
        if (rc != 0 || log.contains("warning")) fail("javadoc -Xdoclint:all on " + API + " (exit " + rc + "):\n" + log);
        assertTrue(Files.exists(outDir.resolve("io/diffusion4j/DiffusionPipeline.html")), "no HTML written");
    }
}
