#!/usr/bin/env bash
# Regenerates the Java bindings of native/include/d4j.h with jextract.
# jextract is not in any registry and is not part of this repository: build it
# from openjdk/jextract (master, JDK 25) and put its bin/ on PATH, or set
# JEXTRACT=/path/to/bin/jextract. The output in bindings/java is committed;
# BindingsCoverageTest fails when d4j.h declares a function with no binding.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jextract=${JEXTRACT:-jextract}
rm -rf "$here/java"
# Only d4j symbols (functions, enums, typedefs), not the system headers'.
includes=()
for f in $(grep -oE '\bd4j_[a-z0-9_]+\s*\(' "$here/../native/include/d4j.h" | grep -v '^d4j_status' | tr -d '( ' | sort -u); do
  includes+=(--include-function "$f")
done
for c in $(grep -oE '\bD4J_(OK|ERR_[A-Z_]+|PREDICTION_[A-Z]+|PRECISION_[A-Z0-9]+|VARIANCE_[A-Z_]+)\b' "$here/../native/include/d4j.h" | sort -u); do
  includes+=(--include-constant "$c")
done
includes+=(--include-constant D4J_ABI_VERSION)
# Structs with a body (records the caller reads, e.g. d4j_kernel_profile); opaque handles stay pointers.
for t in $(grep -oE '^typedef struct d4j_[a-z0-9_]+ \{' "$here/../native/include/d4j.h" | awk '{print $3}' | sort -u); do
  includes+=(--include-struct "$t" --include-typedef "$t")
done
"$jextract" \
  --output "$here/java" \
  --target-package io.diffusion4j.bindings \
  --header-class-name d4j_h \
  "${includes[@]}" \
  "$here/../native/include/d4j.h"
echo "generated $(find "$here/java" -name '*.java' | wc -l) files in $here/java"

# MPI (data-parallel training, loaded only by --distributed): the few functions the
# library calls, from Open MPI's mpi.h (Debian's libopenmpi-dev; MPI_INCLUDE overrides
# the folder). Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, ...) are the
# addresses of global structs of incomplete type, which jextract skips; the Java side
# looks those symbols up by name. MPICH's ABI differs (integer handles): its bindings
# follow.
mpi_include=${MPI_INCLUDE:-/usr/lib/x86_64-linux-gnu/openmpi/include}
rm -rf "$here/java/io/diffusion4j/bindings/mpi"
mpi=()
for f in MPI_Init_thread MPI_Initialized MPI_Finalized MPI_Finalize MPI_Abort MPI_Comm_rank MPI_Comm_size \
         MPI_Comm_set_errhandler MPI_Error_string MPI_Get_library_version MPI_Ialltoall MPI_Iallgather \
         MPI_Isend MPI_Irecv MPI_Test MPI_Wtime; do
  mpi+=(--include-function "$f")
done
for c in MPI_SUCCESS MPI_THREAD_SINGLE MPI_THREAD_FUNNELED MPI_MAX_ERROR_STRING MPI_MAX_LIBRARY_VERSION_STRING; do
  mpi+=(--include-constant "$c")
done
"$jextract" \
  --output "$here/java" \
  --target-package io.diffusion4j.bindings.mpi \
  --header-class-name mpi_h \
  "${mpi[@]}" \
  -I "$mpi_include" \
  "$mpi_include/mpi.h"
echo "generated $(find "$here/java/io/diffusion4j/bindings/mpi" -name '*.java' | wc -l) MPI files"

# The same functions from MPICH's mpi.h (Debian's libmpich-dev; MPICH_INCLUDE overrides
# the folder). MPICH's handles are int constants, which jextract keeps.
mpich_include=${MPICH_INCLUDE:-/usr/include/x86_64-linux-gnu/mpich}
rm -rf "$here/java/io/diffusion4j/bindings/mpich"
mpich=()
for f in MPI_Init_thread MPI_Initialized MPI_Finalize MPI_Abort MPI_Comm_rank MPI_Comm_size MPI_Comm_set_errhandler \
         MPI_Error_string MPI_Get_library_version MPI_Ialltoall MPI_Iallgather MPI_Isend MPI_Irecv MPI_Test; do
  mpich+=(--include-function "$f")
done
for c in MPI_SUCCESS MPI_THREAD_FUNNELED MPI_MAX_ERROR_STRING MPI_MAX_LIBRARY_VERSION_STRING MPI_COMM_WORLD MPI_FLOAT \
         MPI_LONG MPI_ERRORS_RETURN; do
  mpich+=(--include-constant "$c")
done
"$jextract" \
  --output "$here/java" \
  --target-package io.diffusion4j.bindings.mpich \
  --header-class-name mpich_h \
  "${mpich[@]}" \
  -I "$mpich_include" \
  "$mpich_include/mpi.h"
echo "generated $(find "$here/java/io/diffusion4j/bindings/mpich" -name '*.java' | wc -l) MPICH files"
