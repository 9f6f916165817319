package io.diffusion4j.distributed;

import io.diffusion4j.bindings.mpi.mpi_h;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;

/**
 * Open MPI's ABI through the bindings of its {@code mpi.h}. Its predefined handles are the addresses of global
 * structs of incomplete type, which jextract skips: they are looked up here by symbol name.
 */
final class OpenMpiAbi implements MpiAbi {
    /** A symbol only Open MPI's libmpi has: how a loaded library is recognised. */
    static final String MARKER = "ompi_mpi_comm_world";

    private final MemorySegment comm, floatType, longType, errorsReturn;

    OpenMpiAbi(SymbolLookup symbols) {
        comm = handle(symbols, MARKER);
        floatType = handle(symbols, "ompi_mpi_float");
        longType = handle(symbols, "ompi_mpi_long");
        errorsReturn = handle(symbols, "ompi_mpi_errors_return");
    }

    private static MemorySegment handle(SymbolLookup symbols, String name) {
        return symbols.find(name).orElseThrow(() -> new MpiException("the Open MPI library has no symbol " + name));
    }

    @Override public String name() { return "Open MPI"; }
    @Override public int initialized(MemorySegment flag) { return mpi_h.MPI_Initialized(flag); }
    @Override public int initThreadFunneled(MemorySegment provided) {
        return mpi_h.MPI_Init_thread(MemorySegment.NULL, MemorySegment.NULL, mpi_h.MPI_THREAD_FUNNELED(), provided);
    }
    @Override public int funneled() { return mpi_h.MPI_THREAD_FUNNELED(); }
    @Override public int errorsReturn() { return mpi_h.MPI_Comm_set_errhandler(comm, errorsReturn); }
    @Override public int rank(MemorySegment out) { return mpi_h.MPI_Comm_rank(comm, out); }
    @Override public int size(MemorySegment out) { return mpi_h.MPI_Comm_size(comm, out); }
    @Override public int maxLibraryVersion() { return mpi_h.MPI_MAX_LIBRARY_VERSION_STRING(); }
    @Override public int libraryVersion(MemorySegment text, MemorySegment length) {
        return mpi_h.MPI_Get_library_version(text, length);
    }
    @Override public int maxErrorString() { return mpi_h.MPI_MAX_ERROR_STRING(); }
    @Override public int errorString(int code, MemorySegment text, MemorySegment length) {
        return mpi_h.MPI_Error_string(code, text, length);
    }
    @Override public long requestBytes() { return ValueLayout.ADDRESS.byteSize(); }
    @Override public int allToAllFloats(MemorySegment send, MemorySegment recv, int count, MemorySegment request) {
        return mpi_h.MPI_Ialltoall(send, count, floatType, recv, count, floatType, comm, request);
    }
    @Override public int allGatherFloats(MemorySegment send, MemorySegment recv, int count, MemorySegment request) {
        return mpi_h.MPI_Iallgather(send, count, floatType, recv, count, floatType, comm, request);
    }
    @Override public int allGatherLongs(MemorySegment send, MemorySegment recv, int count, MemorySegment request) {
        return mpi_h.MPI_Iallgather(send, count, longType, recv, count, longType, comm, request);
    }
    @Override public int sendLongs(MemorySegment buf, int count, int dest, int tag, MemorySegment request) {
        return mpi_h.MPI_Isend(buf, count, longType, dest, tag, comm, request);
    }
    @Override public int receiveLongs(MemorySegment buf, int count, int source, int tag, MemorySegment request) {
        return mpi_h.MPI_Irecv(buf, count, longType, source, tag, comm, request);
    }
    @Override public int test(MemorySegment request, MemorySegment flag) {
        return mpi_h.MPI_Test(request, flag, MemorySegment.NULL);
    }
    @Override public int abort(int code) { return mpi_h.MPI_Abort(comm, code); }
    @Override public int finish() { return mpi_h.MPI_Finalize(); }
}
