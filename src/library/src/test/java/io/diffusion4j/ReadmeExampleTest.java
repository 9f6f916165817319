package io.diffusion4j;

import io.diffusion4j.testutil.RepoPaths;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.testutil.TestRandom;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import javax.imageio.ImageIO;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's API example, taken from README.md at test time (the java block after the
 * {@code api-example} marker), compiled with javac against a class path holding only the API package's
 * classes (so it can use nothing else, and the API's signatures must be complete without the internal
 * classes), then run against a tiny checkpoint trained in the test: it must write the 4 PNGs that the pipeline
 * gives for DDIM-50, seed 42.
 */
class ReadmeExampleTest {
    static final Pattern BLOCK = Pattern.compile("<!-- api-example[^>]*-->\\s*```java\\n(.*?)```", Pattern.DOTALL);

    @TempDir
    Path dir;

    static String example() throws IOException {
        String readme = Files.readString(RepoPaths.of("README.md"), StandardCharsets.UTF_8);
        Matcher m = BLOCK.matcher(readme);
        if (!m.find()) fail("README.md has no ```java block after an <!-- api-example --> marker");
        String code = m.group(1);
        if (m.find()) fail("README.md has two api-example blocks");
        return code;
    }

    /** A directory with only the public API package's class files (the rest of target/classes left out). */
    Path apiOnlyClasses() throws Exception {
        Path src = ApiSurfaceTest.classesDir();
        Path dst = dir.resolve("api-classes").resolve("io/diffusion4j");
        Files.createDirectories(dst);
        try (Stream<Path> files = Files.list(src)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".class")).toList()) {
                Files.copy(f, dst.resolve(f.getFileName()));
            }
        }
        return dir.resolve("api-classes");
    }

    /** Compiles the example; returns the output directory, failing with javac's messages. */
    Path compile(String code, Path classPath) throws IOException {
        Matcher cls = Pattern.compile("public\\s+class\\s+(\\w+)").matcher(code);
        assertTrue(cls.find(), "the example declares no public class");
        Path srcDir = dir.resolve("src");
        Files.createDirectories(srcDir);
        Path file = srcDir.resolve(cls.group(1) + ".java");
        Files.writeString(file, code);
        Path out = dir.resolve("example-classes");
        Files.createDirectories(out);
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        int rc = javac.run(null, log, log, "-Xlint:all", "-Werror", "-proc:none", "-classpath", classPath.toString(),
                "-d", out.toString(), file.toString());
        if (rc != 0) fail("the README example does not compile against the API package alone:\n" + log.toString(StandardCharsets.UTF_8)
                + "\n" + code);
        return out;
    }

    @Test
    void theReadmeExampleCompilesAgainstTheApiAloneAndRuns() throws Exception {
        String code = example();
        for (String line : code.split("\n")) {
            if (line.startsWith("import ")) {
                assertTrue(line.matches("import (io\\.diffusion4j\\.\\*|io\\.diffusion4j\\.[A-Z]\\w*|java\\.[\\w.]+|javax\\.[\\w.]+);"),
                        "the example imports beyond the API and the JDK: " + line);
            }
        }
        Path classes = compile(code, apiOnlyClasses());

        long seed = TestRandom.fresh().nextLong();
        Path ck = dir.resolve("checkpoint");
        Path out = dir.resolve("out");
        List<float[]> expected = new ArrayList<>();
        try (Diffusion4j d4j = Diffusion4j.open(Device.CPU)) {
            ApiTestSupport.trainTiny(d4j, ck, seed, 3);
            try (DiffusionPipeline pipe = d4j.loadPipeline(ck)) {
                Samples s = pipe.sample(SamplerConfig.ddim(50).withEta(0.0).withSeed(42), 4);
                for (int i = 0; i < 4; i++) expected.add(s.toFloatArray(i));
                s.writePngs(dir.resolve("expected"));
            }
        }

        boolean bestIsCpu;
        try (Diffusion4j best = Diffusion4j.open()) {
            bestIsCpu = best.device() == Device.CPU;
        }
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        PrintStream old = System.out;
        try (URLClassLoader loader = new URLClassLoader(new URL[] {classes.toUri().toURL()}, getClass().getClassLoader())) {
            Matcher cls = Pattern.compile("public\\s+class\\s+(\\w+)").matcher(code);
            assertTrue(cls.find());
            Method main = loader.loadClass(cls.group(1)).getMethod("main", String[].class);
            System.setOut(new PrintStream(printed, true, StandardCharsets.UTF_8));
            main.invoke(null, (Object) new String[] {ck.toString(), out.toString()});
        } finally {
            System.setOut(old);
        }
        String text = printed.toString(StandardCharsets.UTF_8);
        for (int i = 0; i < 4; i++) {
            Path png = out.resolve(String.format("sample_%05d.png", i));
            assertTrue(text.contains("wrote " + png), text);
            BufferedImage img = ImageIO.read(png.toFile());
            assertEquals(8, img.getWidth());
            assertEquals(8, img.getHeight());
            // the pixels the pipeline gives for DDIM-50 seed 42 on the CPU: the example did sample that (exactly
            // when its Diffusion4j.open() picked the CPU too, as on every machine without a GPU)
            BufferedImage ref = ImageIO.read(dir.resolve("expected").resolve(png.getFileName()).toFile());
            int tol = bestIsCpu ? 0 : 1;
            for (int y = 0; y < 8; y++) {
                for (int x = 0; x < 8; x++) {
                    int a = img.getRaster().getSample(x, y, 0), b = ref.getRaster().getSample(x, y, 0);
                    if (Math.abs(a - b) > tol) fail(png + " pixel (" + x + ", " + y + "): " + a + ", the pipeline gives " + b);
                }
            }
        }
        assertFalse(Files.exists(out.resolve("sample_00004.png")));
        assertEquals(4, expected.size());
    }

    @Test
    void theCompileCheckRejectsInternalTypes() throws Exception {
        // teeth: the same compile step must fail when an example touches an internal class
        String bad = "import io.diffusion4j.*;\npublic class Bad {\n  public static void main(String[] a) {\n"
                + "    io.diffusion4j.tensor.DType t = io.diffusion4j.tensor.DType.FLOAT32;\n    System.out.println(t);\n  }\n}\n";
        AssertionError e = org.junit.jupiter.api.Assertions.assertThrows(AssertionError.class, () -> compile(bad, apiOnlyClasses()));
        assertTrue(e.getMessage().contains("io.diffusion4j.tensor"), e.getMessage());
    }
}
