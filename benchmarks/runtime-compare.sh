#!/usr/bin/env bash
# diffusion4j vs ONNX Runtime vs PyTorch (through DJL), one UNet forward on the CPU, in one JVM, one command:
#
#   benchmarks/runtime-compare.sh [--quick] [--threads N] [--rounds N] [--turn-seconds S]
#                                 [--cases fashion:1,fashion:16,fashion:64,cifar10:1,cifar10:8] [--rebuild] [--no-write]
#
# 1. installs Debian's python3-torch, python3-numpy and libopenblas0-pthread with apt when missing (the exporter);
# 2. builds src/cli/target/diffusion4j.jar when missing or older than the sources (or with --rebuild);
# 3. writes random-initialised model folders (the Fashion-MNIST model of the train command, google/ddpm-cifar10-32's
#    architecture) with diffusion4j itself, and exports each with benchmarks/onnx/export.py to ONNX (unet.onnx) and
#    TorchScript (unet.pt, traced at batch 1) plus a reference output; cached under
#    benchmarks/target/runtime-compare/ and redone when the jar or the exporter is newer;
# 4. resolves ONNX Runtime and DJL's PyTorch engine with its CPU natives through benchmarks/runtimes/pom.xml
#    (a standalone POM, not part of the reactor build: about 450 MB, fetched once into ~/.m2), compiles the runner
#    (benchmarks/runtimes/src) with javac and runs it: every case first checks that the three outputs agree, then
#    times them interleaved (see RuntimeCompare.java). DJL runs offline: its natives come from the jars on the class
#    path, extracted once into benchmarks/target/runtime-compare/djl-cache;
# 5. writes the tables to benchmarks/results/runtime-compare.md (not with --no-write).
#
# Defaults: 2 threads per runtime, 6 rounds (each runtime goes first twice), 3 s turns: about 6 minutes on a 2-core
# machine. --quick: 3 rounds of 1 s turns. Exit status 3: some case's outputs disagreed (it is reported, not timed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

THREADS=2
ROUNDS=6
TURN=3
CASES="fashion:1,fashion:16,fashion:64,cifar10:1,cifar10:8"
REBUILD=0
WRITE=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --turn-seconds) TURN="$2"; shift 2 ;;
    --cases) CASES="$2"; shift 2 ;;
    --quick) ROUNDS=3; TURN=1; shift ;;
    --rebuild) REBUILD=1; shift ;;
    --no-write) WRITE=0; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$THREADS" =~ ^[1-9][0-9]*$ ]]; then echo "--threads must be a positive integer, got '$THREADS'" >&2; exit 2; fi
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then echo "--rounds must be a positive integer, got '$ROUNDS'" >&2; exit 2; fi
if [[ "$(uname -m)" != x86_64 || "$(uname -s)" != Linux ]]; then
  echo "the runtime comparison takes PyTorch's linux-x86_64 natives: run it on x86-64 Linux" >&2; exit 1
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the exporter: Debian's PyTorch and numpy -----------------------------------------------------------
source "$ROOT/benchmarks/python-torch.sh"
ensure_python_torch "the exporter"
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)') || { echo "python3-torch does not import" >&2; exit 1; }

# ---- JDK 25 and the diffusion4j jar --------------------------------------------------------------------
source "$ROOT/benchmarks/d4j-jar.sh"
ensure_jdk_and_jar "$REBUILD"

# ---- ONNX Runtime and DJL (outside the reactor) and the runner ------------------------------------------
WORK="$ROOT/benchmarks/target/runtime-compare"
mkdir -p "$WORK"
DEPS_POM="$ROOT/benchmarks/runtimes/pom.xml"
CP_FILE="$WORK/classpath.txt"
if [[ ! -s "$CP_FILE" || "$DEPS_POM" -nt "$CP_FILE" ]]; then
  echo "resolving ONNX Runtime and DJL's PyTorch engine ($DEPS_POM; the first time downloads about 450 MB) ..."
  mvn -B -q -ntp -f "$DEPS_POM" dependency:build-classpath -Dmdep.outputFile="$CP_FILE"
fi
DEPS_CP=$(cat "$CP_FILE")
SRC_DIR="$ROOT/benchmarks/runtimes/src"
CLASSES="$WORK/classes"
STAMP="$CLASSES/.compiled"
if [[ ! -f "$STAMP" || "$JAR" -nt "$STAMP" || "$CP_FILE" -nt "$STAMP" || -n "$(find "$SRC_DIR" -newer "$STAMP" -name '*.java')" ]]; then
  rm -rf "$CLASSES"; mkdir -p "$CLASSES"
  "$JAVAC" -d "$CLASSES" -cp "$JAR:$DEPS_CP" $(find "$SRC_DIR" -name '*.java')
  touch "$STAMP"
fi
JAVA_ARGS=(--enable-native-access=ALL-UNNAMED -Ddiffusion4j.cache.dir="$ROOT/target/native-cache"
  -Dai.djl.offline=true -DDJL_CACHE_DIR="$WORK/djl-cache"
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn
  -Dorg.slf4j.simpleLogger.log.ai.djl.pytorch.jni.LibUtils=info      # says when it extracts the natives
  -Dorg.slf4j.simpleLogger.log.ai.djl.util.cuda.CudaUtils=error      # the CPU natives need no GPU: no GPU warning
  -cp "$JAR:$CLASSES:$DEPS_CP" io.diffusion4j.bench.runtimes.RuntimeCompare)

# ---- model folders and their exports --------------------------------------------------------------------
EXPORTER=("$ROOT/benchmarks/onnx/export.py" "$ROOT/benchmarks/torch/unet2d.py" "$ROOT/benchmarks/torch/safetensors_io.py")
models=$(tr ',' '\n' <<<"$CASES" | cut -d: -f1 | sort -u)
for m in $models; do
  [[ "$m" == fashion || "$m" == cifar10 ]] || { echo "unknown model '$m' in --cases (fashion or cifar10)" >&2; exit 2; }
  mdir="$WORK/models/$m"; edir="$WORK/export/$m"
  if [[ ! -f "$mdir/config.json" || "$JAR" -nt "$mdir/config.json" ]]; then
    rm -rf "$mdir"
    "$JAVA" "${JAVA_ARGS[@]}" init --model "$m" --out "$mdir" \
      --cifar10-config "$ROOT/src/library/src/test/resources/crosscheck/ddpm-cifar10-32.json"
  fi
  stale=0
  [[ -f "$edir/reference.npz" ]] || stale=1
  for f in "$mdir/config.json" "$mdir/diffusion_pytorch_model.safetensors" "${EXPORTER[@]}"; do
    [[ $stale -eq 1 || "$f" -nt "$edir/reference.npz" ]] && stale=1
  done
  if [[ $stale -eq 1 ]]; then
    rm -rf "$edir"; mkdir -p "$edir"
    echo "exporting $m to ONNX and TorchScript (torch $TORCH_VERSION) ..."
    if ! "$PY" "$ROOT/benchmarks/onnx/export.py" "$mdir" "$edir" --batch 1 >"$edir/export.log" 2>&1; then
      cat "$edir/export.log" >&2; rm -f "$edir/reference.npz"; exit 1
    fi
    tail -1 "$edir/export.log"
  fi
done

# ---- run ------------------------------------------------------------------------------------------------
# libtorch's OpenMP pool: the same thread count as DJL's setting (it is created before DJL applies it)
export OMP_NUM_THREADS="$THREADS"
# libtorch's OpenMP workers spin after each parallel region (libgomp's default): on a machine with other load, a
# spinning thread whose partner is descheduled can make PyTorch's forward several times slower, and which policy is
# faster depended on the batch and the load. As benchmarks/torch-compare.sh does, PyTorch gets the faster of the
# default and OMP_WAIT_POLICY=PASSIVE in a short probe of DJL alone (ONNX Runtime and diffusion4j use their own
# thread pools: the setting does not reach them), unless the caller sets OMP_WAIT_POLICY.
OMP_NOTE="set by the caller"
if [[ -z "${OMP_WAIT_POLICY:-}" ]]; then
  probe_model=fashion; grep -q fashion <<<"$models" || probe_model=cifar10
  probe() { "$JAVA" "${JAVA_ARGS[@]}" probe --work "$WORK" --model "$probe_model" --threads "$THREADS" \
    2> >(grep -v 'Could not initialize NNPACK' >&2); }
  unset OMP_WAIT_POLICY
  t_default=$(probe)
  t_passive=$(OMP_WAIT_POLICY=PASSIVE probe)
  if "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$t_passive" "$t_default"; then
    export OMP_WAIT_POLICY=PASSIVE
  fi
  OMP_NOTE="the faster for DJL in a probe ($probe_model batches 1 and 16, geometric mean): default ${t_default} s, PASSIVE ${t_passive} s"
  echo "PyTorch OpenMP wait policy: ${OMP_WAIT_POLICY:-default} ($OMP_NOTE)"
fi
BODY="$WORK/report-body.md"
rm -f "$BODY"
rc=0
# libtorch warns once per convolution call site that NNPACK does not support this CPU (it falls back): dropped
"$JAVA" "${JAVA_ARGS[@]}" run --work "$WORK" --cases "$CASES" --threads "$THREADS" --rounds "$ROUNDS" \
  --turn-seconds "$TURN" --markdown "$BODY" 2> >(grep --line-buffered -v 'Could not initialize NNPACK' >&2) || rc=$?
if [[ $rc -ne 0 && $rc -ne 3 ]] || [[ ! -f "$BODY" ]]; then
  echo "the runner failed (exit $rc)" >&2; [[ $rc -eq 0 ]] && rc=1; exit "$rc"
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ $WRITE -eq 1 ]]; then
  OUT="$ROOT/benchmarks/results/runtime-compare.md"
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  args="--threads $THREADS --rounds $ROUNDS --turn-seconds $TURN --cases $CASES"
  {
    echo "# diffusion4j vs ONNX Runtime vs PyTorch (DJL): one UNet forward on the CPU"
    echo
    echo "Written by \`benchmarks/runtime-compare.sh $args\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "Machine: $cpu, $(nproc) cores visible; load average (1/5/15 min) $LOAD_BEFORE before, $LOAD_AFTER after."
    echo "Models: random-initialised with diffusion4j (seed 1234): \`fashion\` is the train command's Fashion-MNIST"
    echo "model (28x28x1, channels 32/64/64), \`cifar10\` google/ddpm-cifar10-32's architecture (32x32x3, 128/256/256/256)."
    echo "ONNX (opset 17, dynamic batch) and TorchScript (traced at batch 1, run at every batch) exported from the same"
    echo "weights by benchmarks/onnx/export.py with torch $TORCH_VERSION. For libtorch's OpenMP: OMP_NUM_THREADS=$OMP_NUM_THREADS,"
    echo "OMP_WAIT_POLICY ${OMP_WAIT_POLICY:-default} ($OMP_NOTE)."
    echo
    cat "$BODY"
  } >"$OUT"
  echo "wrote $OUT"
fi
exit "$rc"
