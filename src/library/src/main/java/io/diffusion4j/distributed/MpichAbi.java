package io.diffusion4j.distributed;

import io.diffusion4j.bindings.mpich.mpich_h;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** MPICH's ABI (and its derivatives') through the bindings of its {@code mpi.h}: handles are int constants. */
final class MpichAbi implements MpiAbi {
    private static final int COMM = mpich_h.MPI_COMM_WORLD(), FLOAT = mpich_h.MPI_FLOAT(), LONG = mpich_h.MPI_LONG();
    /** MPICH's MPI_STATUS_IGNORE is the address 1, not NULL (a macro jextract does not carry: a pointer cast). */
    private static final MemorySegment STATUS_IGNORE = MemorySegment.ofAddress(1);

    @Override public String name() { return "MPICH"; }
    @Override public int initialized(MemorySegment flag) { return mpich_h.MPI_Initialized(flag); }
    @Override public int initThreadFunneled(MemorySegment provided) {
        return mpich_h.MPI_Init_thread(MemorySegment.NULL, MemorySegment.NULL, mpich_h.MPI_THREAD_FUNNELED(), provided);
    }
    @Override public int funneled() { return mpich_h.MPI_THREAD_FUNNELED(); }
    @Override public int errorsReturn() { return mpich_h.MPI_Comm_set_errhandler(COMM, mpich_h.MPI_ERRORS_RETURN()); }
    @Override public int rank(MemorySegment out) { return mpich_h.MPI_Comm_rank(COMM, out); }
    @Override public int size(MemorySegment out) { return mpich_h.MPI_Comm_size(COMM, out); }
    @Override public int maxLibraryVersion() { return mpich_h.MPI_MAX_LIBRARY_VERSION_STRING(); }
    @Override public int libraryVersion(MemorySegment text, MemorySegment length) {
        return mpich_h.MPI_Get_library_version(text, length);
    }
    @Override public int maxErrorString() { return mpich_h.MPI_MAX_ERROR_STRING(); }
    @Override public int errorString(int code, MemorySegment text, MemorySegment length) {
        return mpich_h.MPI_Error_string(code, text, length);
    }
    @Override public long requestBytes() { return ValueLayout.JAVA_INT.byteSize(); }
    @Override public int allToAllFloats(MemorySegment send, MemorySegment recv, int count, MemorySegment request) {
        return mpich_h.MPI_Ialltoall(send, count, FLOAT, recv, count, FLOAT, COMM, request);
    }
    @Override public int allGatherFloats(MemorySegment send, MemorySegment recv, int count, MemorySegment request) {
        return mpich_h.MPI_Iallgather(send, count, FLOAT, recv, count, FLOAT, COMM, request);
    }
    @Override public int allGatherLongs(MemorySegment send, MemorySegment recv, int count, MemorySegment request) {
        return mpich_h.MPI_Iallgather(send, count, LONG, recv, count, LONG, COMM, request);
    }
    @Override public int sendLongs(MemorySegment buf, int count, int dest, int tag, MemorySegment request) {
        return mpich_h.MPI_Isend(buf, count, LONG, dest, tag, COMM, request);
    }
    @Override public int receiveLongs(MemorySegment buf, int count, int source, int tag, MemorySegment request) {
        return mpich_h.MPI_Irecv(buf, count, LONG, source, tag, COMM, request);
    }
    @Override public int test(MemorySegment request, MemorySegment flag) {
        return mpich_h.MPI_Test(request, flag, STATUS_IGNORE);
    }
    @Override public int abort(int code) { return mpich_h.MPI_Abort(COMM, code); }
    @Override public int finish() { return mpich_h.MPI_Finalize(); }
}
