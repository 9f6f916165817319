package io.diffusion4j.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.LinkOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Whole-file writes that a crash cannot leave half done: the bytes go to a new temporary file in the
 * target's directory ({@code CREATE_NEW}, so nothing else's file is reused), are forced to disk, the
 * temporary file is renamed over the target atomically, and the directory is forced so the rename is
 * durable. A reader sees the old file or the new one, never a mix. The temporary file is deleted if
 * anything fails before the rename.
 *
 * <p>Files that must change together (the files of one checkpoint) go through a {@link Group}: each new file
 * is staged beside its target and forced to disk, then a journal naming the targets is written atomically
 * (the commit point), then the staged files are renamed over their targets and the journal is deleted. A
 * crash before the journal exists leaves the old files; a crash after it is finished by {@link #recover},
 * which the next writer or reader of the folder runs first. Either way the folder holds the files of one
 * group, never some old and some new. {@link #recover} also deletes the temporary and staged files a killed
 * process left behind.
 */
public final class AtomicFiles {
    private AtomicFiles() {}

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
                + ".tmp");
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
            forceDirectory(dir);
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

    /** Name of the commit journal a {@link Group} writes into its folder. */
    public static final String JOURNAL = ".d4j-commit";
    private static final String JOURNAL_FORMAT = "diffusion4j-commit-1";
    // what write() and Group.write() name their temporary and staged files; recover() deletes only these
    private static final Pattern LEFTOVER = Pattern.compile("\\..+\\.([0-9a-f]{1,16}\\.tmp|staged)");

    /** The staged copy of {@code target} while a group is open: a hidden file beside it. */
    static Path staged(Path target) {
        return target.resolveSibling("." + target.getFileName() + ".staged");
    }

    /**
     * Several files of one folder replaced together (see the class comment). Open with {@link #begin}, write
     * each file, then {@link #commit}; closing an uncommitted group deletes what it staged and leaves the old
     * files.
     */
    public static final class Group implements AutoCloseable {
        private final Path root;
        private final Set<Path> targets = new LinkedHashSet<>();
        private boolean done;

        private Group(Path root) {
            this.root = root;
        }

        /** Stages the new content of {@code path} (inside the group's folder or a folder below it). */
        public void write(Path path, Content content) throws IOException {
            Objects.requireNonNull(content, "content");
            if (done) throw new IllegalStateException("the group was committed or closed");
            Path target = inside(root, path.toAbsolutePath().normalize(), "path");
            if (!targets.add(target)) throw new IllegalArgumentException(target + " is already in this group");
            Path st = staged(target);
            Files.deleteIfExists(st);
            try (FileChannel ch = FileChannel.open(st, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                content.writeTo(ch);
                ch.force(true);
            }
        }

        /** Stages UTF-8 text for {@code path}. */
        public void writeString(Path path, String text) throws IOException {
            byte[] b = Objects.requireNonNull(text, "text").getBytes(StandardCharsets.UTF_8);
            write(path, ch -> writeFully(ch, ByteBuffer.wrap(b)));
        }

        /** Replaces every staged file's target: all of them, or (after a crash, once recovered) none. */
        public void commit() throws IOException {
            if (done) throw new IllegalStateException("the group was committed or closed");
            // every staged file still there and its folder entry durable before the commit point: recovery reads
            // a missing staged file as one already renamed
            Set<Path> dirs = new LinkedHashSet<>();
            for (Path t : targets) {
                if (!Files.isRegularFile(staged(t), LinkOption.NOFOLLOW_LINKS)) {
                    throw new IOException(staged(t) + " disappeared before the commit (another process in " + root + "?)");
                }
                dirs.add(t.getParent());
            }
            for (Path d : dirs) forceDirectory(d);
            StringBuilder j = new StringBuilder(JOURNAL_FORMAT).append('\n');
            for (Path t : targets) j.append(root.relativize(t).toString().replace('\\', '/')).append('\n');
            AtomicFiles.writeString(root.resolve(JOURNAL), j.toString()); // the commit point (not staged)
            done = true;
            finish(root, new ArrayList<>(targets));
        }

        /** Deletes the staged files of a group that was not committed. */
        @Override
        public void close() throws IOException {
            if (done) return;
            done = true;
            for (Path t : targets) Files.deleteIfExists(staged(t));
        }
    }

    /**
     * Opens a group of files under {@code root} (created if needed), after {@link #recover recovering} it and the
     * named subfolders its groups also write into.
     */
    public static Group begin(Path root, String... subfolders) throws IOException {
        Path r = Files.createDirectories(root).toAbsolutePath().normalize();
        recover(r, subfolders);
        return new Group(r);
    }

    /**
     * Finishes or discards what a killed process left in {@code dir}: a committed group (its journal exists) is
     * completed, staged files of an uncommitted one and temporary files of {@link #write} are deleted, in
     * {@code dir} and the named subfolders (those its groups write into: no other folder is touched). Does nothing
     * when there is nothing to do; a folder that needs recovery but cannot be written is an IOException naming it.
     *
     * @return true when something was completed or deleted
     */
    public static boolean recover(Path dir, String... subfolders) throws IOException {
        return recover(dir, true, subfolders);
    }

    /**
     * For a reader of a folder another process may be writing: when a group is being committed there (its
     * journal exists), waits up to {@code waitMillis} for the writer to finish, then completes the commit itself
     * (a writer killed after its commit point). Leftover files are left to the next writer: a live writer's
     * temporary files look the same.
     */
    public static void awaitCommitted(Path dir, long waitMillis) throws IOException {
        Path journal = dir.resolve(JOURNAL);
        long until = System.nanoTime() + waitMillis * 1_000_000L;
        while (Files.exists(journal, LinkOption.NOFOLLOW_LINKS) && System.nanoTime() < until) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException(dir + ": interrupted while waiting for a save in progress", e);
            }
        }
        if (Files.exists(journal, LinkOption.NOFOLLOW_LINKS)) recover(dir, false);
    }

    /** The largest journal read: a few hundred bytes per group of files; anything larger is not ours. */
    private static final long MAX_JOURNAL_BYTES = 64 << 10;

    private static boolean recover(Path dir, boolean deleteLeftovers, String... subfolders) throws IOException {
        Path root = dir.toAbsolutePath().normalize();
        if (!Files.isDirectory(root)) return false;
        boolean changed = false;
        Path journal = root.resolve(JOURNAL);
        if (Files.isRegularFile(journal, LinkOption.NOFOLLOW_LINKS)) {
            if (Files.size(journal) > MAX_JOURNAL_BYTES) throw new IOException(journal + ": not a diffusion4j commit journal");
            List<String> lines = Files.readAllLines(journal, StandardCharsets.UTF_8);
            if (lines.isEmpty() || !lines.get(0).equals(JOURNAL_FORMAT)) {
                throw new IOException(journal + ": not a diffusion4j commit journal");
            }
            List<Path> targets = new ArrayList<>();
            for (String l : lines.subList(1, lines.size())) {
                if (l.isEmpty()) continue;
                try {
                    targets.add(inside(root, root.resolve(l).normalize(), journal + " entry"));
                } catch (java.nio.file.InvalidPathException e) {
                    throw new IOException(journal + ": entry is not a path: " + e.getMessage(), e);
                }
            }
            finish(root, targets);
            changed = true;
        }
        if (!deleteLeftovers) return changed;
        List<Path> folders = new ArrayList<>(List.of(root));
        for (String sub : subfolders) {
            Path f = inside(root, root.resolve(sub).normalize(), "subfolder");
            if (Files.isDirectory(f, LinkOption.NOFOLLOW_LINKS)) folders.add(f);
        }
        for (Path f : folders) {
            List<Path> left;
            try (Stream<Path> s = Files.list(f)) {
                left = s.filter(p -> LEFTOVER.matcher(p.getFileName().toString()).matches()
                        && Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)).toList();
            }
            for (Path p : left) changed |= Files.deleteIfExists(p);
        }
        return changed;
    }

    // renames each target's staged file over it (a target without one was renamed before a crash), forces the
    // folders, then deletes the journal
    private static void finish(Path root, List<Path> targets) throws IOException {
        Set<Path> dirs = new LinkedHashSet<>();
        for (Path t : targets) {
            Path st = staged(t);
            if (Files.isRegularFile(st, LinkOption.NOFOLLOW_LINKS)) {
                try {
                    Files.move(st, t, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException e) {
                    throw new IOException("cannot replace " + t + " atomically: " + e.getMessage(), e);
                }
            }
            dirs.add(t.getParent());
        }
        for (Path d : dirs) forceDirectory(d);
        Files.deleteIfExists(root.resolve(JOURNAL));
        forceDirectory(root);
    }

    private static void forceDirectory(Path dir) {
        try (FileChannel dc = FileChannel.open(dir, StandardOpenOption.READ)) {
            dc.force(true);
        } catch (IOException | UnsupportedOperationException e) {
            // platforms that cannot sync a directory (the rename is durable there once it returns)
        }
    }

    private static Path inside(Path root, Path p, String what) throws IOException {
        if (!p.startsWith(root) || p.equals(root)) throw new IOException(what + " " + p + " is not inside " + root);
        return p;
    }
}
