package io.diffusion4j.backend;

import io.diffusion4j.bindings.d4j_h;
import java.lang.foreign.MemorySegment;

/**
 * Turns native statuses into exceptions. Internal to the library's own
 * packages; not part of the supported API.
 */
public final class Native {
    private Native() {}

    /** Makes sure the front library is loaded before any binding is used. */
    public static void ensureLoaded() {
        NativeLibraries.load();
    }

    /** Throws the typed exception for a failing status, with the thread's native message. */
    public static void check(int status) {
        if (status != 0) throw error(status);
    }

    /** The exception for a failing status; the native message is read on this thread. */
    public static D4jException error(int status) {
        MemorySegment msg = d4j_h.d4j_last_error();
        String text = msg.reinterpret(4096).getString(0);
        Status s = Status.of(status);
        return D4jException.of(s, text.isEmpty() ? "native call failed with " + s : text);
    }
}
