package io.diffusion4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Pattern;

/**
 * Whole-file writes that a crash cannot leave half done: the bytes go to a new temporary file in the
 * target's directory ({@code CREATE_NEW}, so nothing else's file is reused), are forced to disk, the
 * temporary file is renamed over the target atomically, and the directory is forced so the rename is
 * durable. A reader sees the old file or the new one, never a mix. The temporary file is deleted if
 * anything fails before the rename.
 */
public final class AtomicFiles {
    private static final String TEMP_SUFFIX = ".tmp";
    /** The name of a temporary file {@link #write} makes: "." + the target's name + "." + 1 to 16 hex digits + ".tmp". */
    private static final Pattern TEMP_NAME = Pattern.compile("\\..+\\.[0-9a-f]{1,16}\\.tmp");

    private AtomicFiles() {}

    /**
     * Deletes the temporary files a {@link #write} into {@code dir} left behind when the process was killed before
     * the rename (the {@code finally} that removes them never ran): regular files directly in {@code dir} named as
     * {@link #write} names them. Symbolic links and anything else are left alone. Call it where one writer owns the
     * folder (a checkpoint's save or its resume): a temporary file of a write still in flight would go too.
     *
     * @return the files deleted
     */
    public static List<Path> removeLeftovers(Path dir) throws IOException {
        List<Path> removed = new ArrayList<>();
        if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) return removed;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                if (TEMP_NAME.matcher(p.getFileName().toString()).matches()
                        && Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS) && Files.deleteIfExists(p)) {
                    removed.add(p);
                }
            }
        }
        return removed;
    }

    /** What goes into the temporary file: writes the whole content to the channel. */
    @FunctionalInterface
    public interface Content {
        void writeTo(FileChannel channel) throws IOException;
    }

    /** Writes {@code bytes} to {@code path} atomically (see the class comment). */
    public static void write(Path path, byte[] bytes) throws IOException {
        Objects.requireNonNull(bytes, "bytes");
        write(path, ch -> writeFully(ch, ByteBuffer.wrap(bytes)));
    }

    /**
     * Writes what {@code content} produces to {@code path} atomically (see the class comment), for files
     * too large to build in memory first.
     */
    public static void write(Path path, Content content) throws IOException {
        Objects.requireNonNull(path, "path");
        Objects.requireNonNull(content, "content");
        Path target = path.toAbsolutePath();
        Path dir = target.getParent();
        Path tmp = dir.resolve("." + target.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong())
                + TEMP_SUFFIX);
        boolean moved = false;
        try {
            // CREATE_NEW: never follows or reuses a file someone else put there
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                content.writeTo(ch);
                ch.force(true);
            }
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                throw new IOException("cannot replace " + target + " atomically: " + e.getMessage(), e);
            }
            moved = true;
            try (FileChannel dc = FileChannel.open(dir, StandardOpenOption.READ)) {
                dc.force(true);
            } catch (IOException | UnsupportedOperationException e) {
                // platforms that cannot sync a directory (the rename is durable there once it returns)
            }
        } finally {
            if (!moved) Files.deleteIfExists(tmp);
        }
    }

    /** Writes all of {@code b} (a channel write may take only part of it). */
    public static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) ch.write(b);
    }

    /** Writes UTF-8 text atomically. */
    public static void writeString(Path path, String text) throws IOException {
        write(path, Objects.requireNonNull(text, "text").getBytes(StandardCharsets.UTF_8));
    }
}
