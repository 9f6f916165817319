package io.diffusion4j.backend;

/** Status codes of the native API ({@code d4j_status} in native/include/d4j.h). */
public enum Status {
    /** Success. */
    OK,
    /** A size, shape, range, NaN or null argument was refused. */
    INVALID_ARGUMENT,
    /** A freed, foreign or wrong-backend handle was passed. */
    INVALID_HANDLE,
    /** The backend could not allocate memory. */
    OUT_OF_MEMORY,
    /** The backend cannot run on this machine. */
    UNAVAILABLE,
    /** A device or runtime call failed. */
    DEVICE,
    /** A bug in the native layer. */
    INTERNAL,
    /** The backend cannot do this at all (e.g. graph capture on the CPU backend). */
    UNSUPPORTED;

    /** The status for a native code; unknown codes map to {@link #INTERNAL}. */
    public static Status of(int code) {
        Status[] all = values();
        return code >= 0 && code < all.length ? all[code] : INTERNAL;
    }
}
