package io.diffusion4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.backend.NativeLibraries;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The public API reports native libraries that cannot be loaded at all as {@link DeviceUnavailableException}, not
 * as an internal exception type. Runs in a child JVM, since this JVM has loaded the libraries already.
 */
class DeviceUnavailableTest {
    /** The child: opens the devices with no usable native libraries and prints what each call threw. */
    static final class Child {
        public static void main(String[] args) {
            for (int i = 0; i < 2; i++) {
                try {
                    (i == 0 ? Diffusion4j.open() : Diffusion4j.open(Device.CPU)).close();
                    System.out.println("opened");
                } catch (RuntimeException e) {
                    String device = e instanceof DeviceUnavailableException d ? " " + d.device() : "";
                    System.out.println(e.getClass().getSimpleName() + device + ": " + e.getMessage());
                }
            }
        }
    }

    static Path codeSource(Class<?> c) throws Exception {
        return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI());
    }

    @Test
    void missingNativeLibrariesAreADeviceUnavailableException(@TempDir Path tmp) throws Exception {
        Path empty = Files.createDirectory(tmp.resolve("empty"));
        String cp = codeSource(Diffusion4j.class) + File.pathSeparator + codeSource(DeviceUnavailableTest.class);
        Path out = tmp.resolve("child.out");
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED",
                "-D" + NativeLibraries.NATIVE_DIR_PROPERTY + "=" + empty, "-cp", cp, Child.class.getName())
                .redirectErrorStream(true).redirectOutput(out.toFile()).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child JVM did not finish");
        String text = Files.readString(out);
        assertEquals(0, p.exitValue(), text);
        List<String> lines = text.strip().lines().toList();
        assertEquals(2, lines.size(), text);
        for (String line : lines) {
            assertTrue(line.startsWith("DeviceUnavailableException CPU: ") && line.contains("does not exist"),
                    "open() then open(Device.CPU): " + text);
        }
    }
}
