package io.diffusion4j.build;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.Diffusion4j;
import io.diffusion4j.testutil.RepoPaths;
import java.lang.module.ModuleDescriptor;
import java.lang.module.ModuleFinder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * What a library user links: module io.diffusion4j exports the API package alone, reads only JDK modules, and the
 * library's pom declares no dependency outside the test scope (the jar needs nothing beside it).
 */
class ModuleDescriptorTest {
    static ModuleDescriptor descriptor() {
        Path classes = Path.of(Diffusion4j.class.getProtectionDomain().getCodeSource().getLocation().getPath());
        return ModuleFinder.of(classes).findAll().stream().map(r -> r.descriptor())
                .filter(d -> d.name().equals("io.diffusion4j")).findFirst()
                .orElseThrow(() -> new AssertionError("no module io.diffusion4j in " + classes));
    }

    @Test
    void exportsTheApiPackageAlone() {
        ModuleDescriptor d = descriptor();
        Set<String> exported = d.exports().stream().map(e -> e.source() + (e.isQualified() ? " to " + e.targets() : ""))
                .collect(Collectors.toSet());
        assertEquals(Set.of("io.diffusion4j"), exported);
        assertTrue(d.opens().isEmpty(), "opens: " + d.opens());
        assertTrue(d.packages().size() > 5, "the internal packages are in the module: " + d.packages());
    }

    @Test
    void readsOnlyJdkModules() {
        for (ModuleDescriptor.Requires r : descriptor().requires()) {
            assertTrue(r.name().startsWith("java.") || r.name().startsWith("jdk."), "requires " + r.name());
        }
    }

    @Test
    void declaresNoRuntimeDependency() throws Exception {
        String pom = Files.readString(RepoPaths.of("src", "library", "pom.xml"));
        Matcher m = Pattern.compile("<dependencies>(.*?)</dependencies>", Pattern.DOTALL).matcher(pom);
        assertTrue(m.find(), "the library pom lists its (test) dependencies");
        List<String> deps = Pattern.compile("<dependency>(.*?)</dependency>", Pattern.DOTALL).matcher(m.group(1)).results()
                .map(r -> r.group(1)).toList();
        assertTrue(!deps.isEmpty());
        for (String dep : deps) assertTrue(dep.contains("<scope>test</scope>"), "a dependency outside the test scope: " + dep);
    }
}
