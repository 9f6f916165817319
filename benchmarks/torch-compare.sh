#!/usr/bin/env bash
# diffusion4j vs PyTorch on the CPU, one command:
#
#   benchmarks/torch-compare.sh [--quick] [--threads N] [--rounds N] [--turn-seconds S] [--cases a,b]
#                               [--rebuild] [--no-write]
#
# 1. installs Debian's python3-torch and libopenblas0-pthread with apt when missing (so PyTorch's matmuls run
#    on OpenBLAS, not the reference BLAS), saying so;
# 2. builds src/cli/target/diffusion4j.jar when missing or older than the sources (or with --rebuild) and compiles the Java timing runner
#    (benchmarks/src/main/java/io/diffusion4j/bench/TorchCompareRunner.java) against it;
# 3. runs benchmarks/torch/compare.py: validates the PyTorch UNet2DModel (benchmarks/torch/unet2d.py) against
#    diffusers' own outputs and gradients (and against diffusers itself when PYTHONPATH makes it importable),
#    measures the SGEMM peak, then times each case interleaved (see compare.py) and writes the table to
#    benchmarks/results/torch-compare.md.
#
# Defaults: 2 threads per side, 6 rounds (even: each side goes first equally often), 4 s turns: 4.7 minutes
# measured on the 2-core machine of benchmarks/results/torch-compare.md. --quick: 4 rounds of 1.5 s turns, one
# SGEMM size (roughly half that). Other options go to compare.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

THREADS=2
REBUILD=0
PASS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --threads=*) THREADS="${1#*=}"; shift ;;
    --quick) PASS+=(--rounds 4 --turn-seconds 1.5 --gemm-sizes 1024); shift ;;
    --rebuild) REBUILD=1; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) PASS+=("$1"); shift ;;
  esac
done
if ! [[ "$THREADS" =~ ^[1-9][0-9]*$ ]]; then echo "--threads must be a positive integer, got '$THREADS'" >&2; exit 2; fi

# ---- PyTorch (Debian's, with OpenBLAS) ---------------------------------------------------------------
source "$ROOT/benchmarks/python-torch.sh"
ensure_python_torch "the comparison"

# ---- diffusion4j jar and the timing runner -----------------------------------------------------------
source "$ROOT/benchmarks/d4j-jar.sh"
ensure_jdk_and_jar "$REBUILD"
SRC="$ROOT/benchmarks/src/main/java/io/diffusion4j/bench/TorchCompareRunner.java"
CLASSES="$ROOT/benchmarks/target/torch-compare-classes"
CLS="$CLASSES/io/diffusion4j/bench/TorchCompareRunner.class"
if [[ ! -f "$CLS" || "$SRC" -nt "$CLS" || "$JAR" -nt "$CLS" ]]; then
  mkdir -p "$CLASSES"
  "$JAVAC" -d "$CLASSES" -cp "$JAR" "$SRC"
fi

# ---- run ---------------------------------------------------------------------------------------------
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
# PyTorch's OpenMP worker threads spin after each parallel region (libgomp's default), and Debian's torch
# also runs OpenBLAS's own spinning pthreads: on a machine with other load, a spinning thread whose partner
# is descheduled made PyTorch up to 100x slower (measured: 0.9 s instead of 8 ms per batch-1 step). PyTorch
# gets the faster of the default and OMP_WAIT_POLICY=PASSIVE, measured here by a short probe, unless
# OMP_WAIT_POLICY is set by the caller.
OMP_NOTE="set by the caller"
if [[ -z "${OMP_WAIT_POLICY:-}" ]]; then
  probe() { "$PY" "$ROOT/benchmarks/torch/compare.py" --probe --threads "$THREADS"; }
  t_default=$(env -u OMP_WAIT_POLICY "$PY" "$ROOT/benchmarks/torch/compare.py" --probe --threads "$THREADS")
  t_passive=$(OMP_WAIT_POLICY=PASSIVE probe)
  if "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$t_passive" "$t_default"; then
    export OMP_WAIT_POLICY=PASSIVE
  fi
  OMP_NOTE="the faster in a probe of fashion denoise steps: default ${t_default} s, PASSIVE ${t_passive} s"
  echo "PyTorch OpenMP wait policy: ${OMP_WAIT_POLICY:-default} ($OMP_NOTE)"
fi
JAVA_CMD=$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$JAVA" --enable-native-access=ALL-UNNAMED \
  -Ddiffusion4j.cache.dir="$ROOT/target/native-cache" -cp "$JAR:$CLASSES" io.diffusion4j.bench.TorchCompareRunner \
  --threads "$THREADS" --cifar10-config "$ROOT/src/library/src/test/resources/crosscheck/ddpm-cifar10-32.json")
exec "$PY" "$ROOT/benchmarks/torch/compare.py" --java-cmd "$JAVA_CMD" --threads "$THREADS" --omp-note "$OMP_NOTE" \
  "${PASS[@]}"
