#!/usr/bin/env bash
# Measured against projected, on a machine with an NVIDIA GPU, one command:
#
#   benchmarks/gpu-measure.sh [--rebuild] [--out DIR]
#
# 1. builds src/cli/target/diffusion4j.jar when missing (or with --rebuild; the build compiles the CUDA backend
#    when nvcc is on PATH, else the jar has no libd4j_cuda.so and this script stops at step 2);
# 2. `info`: stops with the backend's own reason when the cuda backend cannot run here (no driver, no GPU,
#    a driver older than r580, no CUDA backend in the jar);
# 3. `selftest --backend cuda`: every kernel family, variant and precision on the GPU against the CPU backend;
# 4. `selftest --profile --backend cuda`: the self-test's cases counted on the profiling simulator, projected on
#    A100 and H100, and timed on this GPU: the table prints the measured time beside the projection;
# 5. `selftest --profile --backend cuda --shapes cifar10 --families conv2d,linear,attention`: the same at
#    google/ddpm-cifar10-32's dimensions, every variant at fp32, tf32 and bf16 (several minutes: the simulator
#    counts each case on the CPU).
# Everything is written to DIR (default benchmarks/results/gpu-<date>): the tables and the per-launch CSVs, whose
# measured_us and projected columns are what to compare (docs/profiling.md explains the projection). Exit 0
# when every step ran and the parity self-test passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REBUILD=0
OUT="benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rebuild) REBUILD=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "usage: benchmarks/gpu-measure.sh [--rebuild] [--out DIR]" >&2; exit 2 ;;
  esac
done

if [[ -z "${JAVA_HOME:-}" && -d /usr/lib/jvm/temurin-25-jdk-amd64 ]]; then export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64; fi
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! "$JAVA" -version 2>&1 | grep -qE 'version "(2[5-9]|[3-9][0-9])'; then
  echo "diffusion4j needs JDK 25 or newer (found $("$JAVA" -version 2>&1 | head -1) at $JAVA): set JAVA_HOME" >&2
  exit 1
fi
JAR=src/cli/target/diffusion4j.jar
if [[ $REBUILD -eq 1 || ! -f $JAR ]]; then
  mvn -B -q package -DskipTests
fi
run() { "$JAVA" --enable-native-access=ALL-UNNAMED -jar "$JAR" "$@"; }

mkdir -p "$OUT"
echo "writing to $OUT"
run info | tee "$OUT/info.txt"
if ! grep -qE '^ +cuda +available' "$OUT/info.txt"; then
  echo "gpu-measure: the cuda backend cannot run here (see its line in $OUT/info.txt); nothing to measure" >&2
  exit 1
fi

status=0
run selftest --backend cuda | tee "$OUT/selftest.txt" || status=1
run selftest --profile --backend cuda --csv "$OUT/profile-small.csv" | tee "$OUT/profile-small.txt"
run selftest --profile --backend cuda --shapes cifar10 --families conv2d,linear,attention \
  --csv "$OUT/profile-cifar10.csv" | tee "$OUT/profile-cifar10.txt"
echo "done: $OUT (measured_us beside the projected columns in the CSVs)"
exit $status
