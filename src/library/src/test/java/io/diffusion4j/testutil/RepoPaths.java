package io.diffusion4j.testutil;

import java.nio.file.Path;

/** Files of the repository outside the module (native/, bindings/, README.md), for tests that read them. */
public final class RepoPaths {
    private RepoPaths() {}

    /** The repository root: the build passes it as diffusion4j.repo.root; a test run from the module falls back to ../.. */
    public static Path root() {
        return Path.of(System.getProperty("diffusion4j.repo.root", "../..")).toAbsolutePath().normalize();
    }

    /** A path below the repository root. */
    public static Path of(String first, String... more) {
        return root().resolve(Path.of(first, more));
    }
}
