package io.diffusion4j.io;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Reading the small text files of a model folder (config.json, scheduler_config.json, class_labels.json) with a
 * size bound and messages that name the file: a directory, a device or a file of gigabytes in their place is an
 * IOException saying so, never an attempt to read it whole.
 */
public final class SmallFiles {
    /**
     * The longest JSON file read: diffusers writes about 1.5 KB; a megabyte leaves room for any hand-written
     * config while a file of gigabytes (or a device such as /dev/zero) is refused before it is read.
     */
    public static final int MAX_JSON_BYTES = 1 << 20;

    private SmallFiles() {}

    /** A UTF-8 text file that must be a regular file of at most {@value #MAX_JSON_BYTES} bytes. */
    public static String readText(Path file) throws IOException {
        try {
            if (!Files.isRegularFile(file)) {
                throw new IOException(file + (Files.isDirectory(file) ? ": is a directory, not a file"
                        : Files.exists(file) ? ": not a regular file" : ": no such file"));
            }
            long size = Files.size(file);
            if (size > MAX_JSON_BYTES) {
                throw new IOException(file + ": " + size + " bytes; a JSON config file is at most " + MAX_JSON_BYTES);
            }
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw withPath(file, e);
        }
    }

    /**
     * {@code e} if its message names {@code file} already, else an IOException "file: message" caused by it: the
     * JDK's messages for some failures ("Is a directory", "Permission denied") do not say which file.
     */
    public static IOException withPath(Path file, IOException e) {
        String m = e.getMessage();
        if (m != null && m.contains(file.toString())) return e;
        return new IOException(file + ": " + (m == null ? e.toString() : m), e);
    }
}
