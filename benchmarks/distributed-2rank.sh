#!/usr/bin/env bash
# Data-parallel training on this machine, one command:
#
#   benchmarks/distributed-2rank.sh [--fashion-steps N] [--cifar10-steps N] [--no-write]
#
# For the default 28x28 model (procedural data) and google/ddpm-cifar10-32's UNet2DModel, runs the same global
# batch twice, one after the other: `mpirun -np 2 ... train --distributed --threads 1` (2 ranks x B) and one
# process with --threads 2 at 2B, and prints each run's progress and the all-reduce line (bytes sent and received
# per step, mean time per step after the first, time waiting for the slower rank). Writes
# benchmarks/results/distributed-2rank.md unless --no-write. Needs Open MPI (Debian: openmpi-bin,
# libopenmpi-dev) and builds src/cli/target/diffusion4j.jar when it is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FASHION_STEPS=60
CIFAR_STEPS=12
WRITE=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fashion-steps) FASHION_STEPS="$2"; shift 2 ;;
    --cifar10-steps) CIFAR_STEPS="$2"; shift 2 ;;
    --no-write) WRITE=0; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v mpirun >/dev/null || { echo "mpirun not found: apt-get install openmpi-bin libopenmpi-dev" >&2; exit 1; }
JAR=src/cli/target/diffusion4j.jar
[ -f "$JAR" ] || mvn -B -ntp -q package -DskipTests
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -c "import json,sys; json.dump(json.load(open(sys.argv[1]))['config'], open(sys.argv[2], 'w'))" \
  src/library/src/test/resources/crosscheck/ddpm-cifar10-32.json "$WORK/cifar10.json"
JAVA=(java --enable-native-access=ALL-UNNAMED -Xss4m -jar "$ROOT/$JAR" train)
MPI=(mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
report="$WORK/report.md"
{
  echo "# Data-parallel training: 2 ranks against one process"
  echo
  echo "Made by \`benchmarks/distributed-2rank.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) cores"
  echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(mpirun --version | head -1)."
  echo "Same global batch, same seed; 2 ranks x 1 thread against 1 process x 2 threads, run one after the other."
  echo "Load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)."
} > "$report"
run_case() { # name, steps, per-rank batch, extra args...
  local name=$1 steps=$2 b=$3; shift 3
  echo "== $name: 2 ranks x $b" | tee -a "$WORK/log"
  "${MPI[@]}" -np 2 "${JAVA[@]}" --distributed --threads 1 --steps "$steps" --batch-size "$b" \
    --log-every "$steps" --out "$WORK/$name-2" "$@" 2>&1 | tee "$WORK/$name-2.txt" | grep -E "^(step|done|all-reduce|distributed)"
  echo "== $name: 1 process x $((2 * b))" | tee -a "$WORK/log"
  "${JAVA[@]}" --threads 2 --steps "$steps" --batch-size "$((2 * b))" --log-every "$steps" --out "$WORK/$name-1" "$@" \
    2>&1 | tee "$WORK/$name-1.txt" | grep -E "^(step|done)"
  {
    echo
    echo "## $name, $steps steps, global batch $((2 * b))"
    echo
    echo '```'
    grep -E "^(model|distributed|done|all-reduce)" "$WORK/$name-2.txt" | sed 's/^/2 ranks:   /'
    grep -E "^(done)" "$WORK/$name-1.txt" | sed 's/^/1 process: /'
    echo '```'
  } >> "$report"
}
run_case fashion-default "$FASHION_STEPS" 8
run_case cifar10 "$CIFAR_STEPS" 2 --config "$WORK/cifar10.json"
cat "$report"
if [ "$WRITE" = 1 ]; then
  mkdir -p benchmarks/results
  sed "s|$WORK|/tmp/run|g" "$report" > benchmarks/results/distributed-2rank.md
  echo "wrote benchmarks/results/distributed-2rank.md"
fi
