package io.diffusion4j.distributed;

import java.lang.foreign.MemorySegment;

/**
 * The calls {@link Mpi} makes, over one MPI implementation's binary interface. Open MPI and MPICH agree on the
 * functions but not on the handles: Open MPI's communicators, datatypes and requests are pointers (its predefined
 * ones addresses of global structs), MPICH's are ints. Each implementation holds its own handles and its own
 * jextract bindings; every method returns MPI's error code.
 */
interface MpiAbi {
    /** "Open MPI" or "MPICH". */
    String name();

    int initialized(MemorySegment flag);

    int initThreadFunneled(MemorySegment provided);

    int funneled();

    /** Makes errors on the world communicator return codes instead of aborting inside the call. */
    int errorsReturn();

    int rank(MemorySegment out);

    int size(MemorySegment out);

    int maxLibraryVersion();

    int libraryVersion(MemorySegment text, MemorySegment length);

    int maxErrorString();

    int errorString(int code, MemorySegment text, MemorySegment length);

    /** Bytes of one MPI_Request (a pointer in Open MPI, an int in MPICH). */
    long requestBytes();

    int allToAllFloats(MemorySegment send, MemorySegment recv, int count, MemorySegment request);

    int allGatherFloats(MemorySegment send, MemorySegment recv, int count, MemorySegment request);

    int allGatherLongs(MemorySegment send, MemorySegment recv, int count, MemorySegment request);

    int sendLongs(MemorySegment buf, int count, int dest, int tag, MemorySegment request);

    int receiveLongs(MemorySegment buf, int count, int source, int tag, MemorySegment request);

    int test(MemorySegment request, MemorySegment flag);

    int abort(int code);

    int finish();
}
