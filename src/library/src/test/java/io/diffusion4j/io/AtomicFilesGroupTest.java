package io.diffusion4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link AtomicFiles.Group}: the files of a group are replaced together; every state a kill can leave (staged
 * files without a journal, a journal with some files renamed, temporary files) is recovered to one group's files.
 */
class AtomicFilesGroupTest {
    static void old(Path dir) throws IOException {
        Files.createDirectories(dir.resolve("sub"));
        Files.writeString(dir.resolve("a"), "old a");
        Files.writeString(dir.resolve("sub").resolve("b"), "old b");
    }

    static List<String> hidden(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.map(p -> dir.relativize(p).toString()).filter(n -> n.startsWith(".") || n.contains("/.")).toList();
        }
    }

    @Test
    void committedGroupReplacesEveryFileAndLeavesNothingHidden(@TempDir Path dir) throws IOException {
        old(dir);
        try (AtomicFiles.Group g = AtomicFiles.begin(dir)) {
            g.writeString(dir.resolve("a"), "new a");
            g.writeString(dir.resolve("sub").resolve("b"), "new b");
            assertEquals("old a", Files.readString(dir.resolve("a")), "not before the commit");
            g.commit();
        }
        assertEquals("new a", Files.readString(dir.resolve("a")));
        assertEquals("new b", Files.readString(dir.resolve("sub").resolve("b")));
        assertEquals(List.of(), hidden(dir));
    }

    /**
     * The journal exists (and is complete) before the first target is replaced: a commit interrupted at its first
     * rename is completed by recovery. Checked by a target whose replacement fails: the journal is left behind.
     */
    @Test
    void journalIsWrittenBeforeAnyTargetIsReplaced(@TempDir Path dir) throws IOException {
        old(dir);
        Files.createDirectories(dir.resolve("c")); // a directory in the way: the rename of its staged file fails
        Files.writeString(dir.resolve("c").resolve("x"), "in the way");
        try (AtomicFiles.Group g = AtomicFiles.begin(dir)) {
            g.writeString(dir.resolve("c"), "new c");
            g.writeString(dir.resolve("a"), "new a");
            assertThrows(IOException.class, g::commit);
        }
        assertEquals("diffusion4j-commit-1\nc\na\n", Files.readString(dir.resolve(AtomicFiles.JOURNAL)));
        assertEquals("old a", Files.readString(dir.resolve("a")), "nothing replaced before the failing first rename");
        assertTrue(Files.exists(AtomicFiles.staged(dir.resolve("a"))), "staged files kept for the roll-forward");
    }

    /** A staged file that vanished before the commit (another process cleaning the folder) fails the commit. */
    @Test
    void stagedFileMissingAtTheCommitFailsIt(@TempDir Path dir) throws IOException {
        old(dir);
        try (AtomicFiles.Group g = AtomicFiles.begin(dir)) {
            g.writeString(dir.resolve("a"), "new a");
            g.writeString(dir.resolve("sub").resolve("b"), "new b");
            Files.delete(AtomicFiles.staged(dir.resolve("sub").resolve("b")));
            assertThrows(IOException.class, g::commit);
        }
        assertEquals("old a", Files.readString(dir.resolve("a")));
        assertFalse(Files.exists(dir.resolve(AtomicFiles.JOURNAL)), "no commit point");
    }

    @Test
    void uncommittedGroupLeavesTheOldFiles(@TempDir Path dir) throws IOException {
        old(dir);
        try (AtomicFiles.Group g = AtomicFiles.begin(dir)) {
            g.writeString(dir.resolve("a"), "new a");
        }
        assertEquals("old a", Files.readString(dir.resolve("a")));
        assertEquals(List.of(), hidden(dir));
    }

    /** A kill after staging, before the journal: recovery deletes the staged files, the old ones stay. */
    @Test
    void killBeforeTheCommitPointIsUndone(@TempDir Path dir) throws IOException {
        old(dir);
        Files.writeString(AtomicFiles.staged(dir.resolve("a")), "new a");
        Files.writeString(dir.resolve("sub").resolve(".b.0123abcd.tmp"), "half");
        Files.writeString(dir.resolve(".keep"), "not ours"); // a hidden file of another name is left alone
        Path other = Files.createDirectories(dir.resolve("other")); // a folder the groups do not write into
        Files.writeString(other.resolve(".c.staged"), "someone else's");
        assertTrue(AtomicFiles.recover(dir, "sub"));
        assertEquals("old a", Files.readString(dir.resolve("a")));
        assertEquals(List.of(".keep", "other/.c.staged"), hidden(dir));
        assertFalse(AtomicFiles.recover(dir, "sub"), "nothing left to do");
    }

    /** A kill after the journal, with one file renamed and one still staged: recovery completes the group. */
    @Test
    void killAfterTheCommitPointIsCompleted(@TempDir Path dir) throws IOException {
        old(dir);
        Files.writeString(dir.resolve("a"), "new a"); // renamed before the kill
        Files.writeString(AtomicFiles.staged(dir.resolve("sub").resolve("b")), "new b");
        Files.writeString(dir.resolve(AtomicFiles.JOURNAL), "diffusion4j-commit-1\na\nsub/b\n", StandardCharsets.UTF_8);
        AtomicFiles.awaitCommitted(dir, 0); // a reader finishes it (no writer is left)
        assertEquals("new a", Files.readString(dir.resolve("a")));
        assertEquals("new b", Files.readString(dir.resolve("sub").resolve("b")));
        assertEquals(List.of(), hidden(dir));
    }

    @Test
    void journalNamingAFileOutsideTheFolderIsRefused(@TempDir Path dir) throws IOException {
        Path inner = Files.createDirectories(dir.resolve("ck"));
        Files.writeString(dir.resolve("victim"), "keep");
        Files.writeString(dir.resolve(".victim.staged"), "evil");
        Files.writeString(inner.resolve(AtomicFiles.JOURNAL), "diffusion4j-commit-1\n../victim\n");
        IOException e = assertThrows(IOException.class, () -> AtomicFiles.recover(inner));
        assertTrue(e.getMessage().contains("not inside"), e.getMessage());
        assertEquals("keep", Files.readString(dir.resolve("victim")));
        Files.writeString(inner.resolve(AtomicFiles.JOURNAL), "something else\n");
        assertThrows(IOException.class, () -> AtomicFiles.recover(inner));
        Files.writeString(inner.resolve(AtomicFiles.JOURNAL), "diffusion4j-commit-1\na\u0000b\n");
        assertThrows(IOException.class, () -> AtomicFiles.recover(inner));
        Files.write(inner.resolve(AtomicFiles.JOURNAL), new byte[1 << 20]); // not read whole
        assertThrows(IOException.class, () -> AtomicFiles.recover(inner));
    }

    @Test
    void groupRefusesPathsOutsideItsFolder(@TempDir Path dir) throws IOException {
        Path inner = Files.createDirectories(dir.resolve("ck"));
        try (AtomicFiles.Group g = AtomicFiles.begin(inner)) {
            assertThrows(IOException.class, () -> g.writeString(dir.resolve("x"), "no"));
            assertThrows(IOException.class, () -> g.writeString(inner.resolve("../x"), "no"));
        }
        assertFalse(Files.exists(dir.resolve("x")));
    }
}
