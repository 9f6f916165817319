#!/usr/bin/env bash
# Load test of the sampling server, one command, loopback only, bounded in requests and time:
#
#   benchmarks/serve-load.sh [--seconds S] [--leak N] [--threads N] [--rebuild] [--no-write]
#
# 1. builds src/cli/target/diffusion4j.jar when missing (or with --rebuild);
# 2. makes a checkpoint of the Fashion-MNIST architecture (TrainingDefaults.config(): 28x28x1, 32/64/64
#    channels, attention at the lowest level) with a 2-step `train` run on the built-in shapes: the weights are
#    barely trained, which does not matter here, as the work per step does not depend on them;
# 3. starts `serve --max-batch 32` on 127.0.0.1 (a free port) and drives it with benchmarks/serve/ServeLoad.java
#    (java.net.http, closed loop) at concurrency 1, 8 and 32 with DDIM-20 requests of one image each: each level
#    runs for --seconds (default 12) or 5,000 requests, whichever comes first; throughput and p50/p99 latency;
# 4. then the leak check on the same server: --leak N requests (default 10,000; 0 skips it) of every sampler
#    with 1-2 steps and one image each at concurrency 32, after which the native live bytes and buffers of /metrics must
#    come back to their value before the first request (the weights; the server frees its batch buffers and
#    workspaces after 500 ms idle): exit 1 otherwise;
# 5. stops it with SIGTERM (must exit 0), starts `serve --max-batch 1` (one request at a time, no batching) and
#    runs concurrency 8 and 32 again, to show what continuous batching gains;
# 6. writes the table with the machine's description to benchmarks/results/serve-load.md (not with --no-write).
#
# Measured on the 2-core machine of benchmarks/results/serve-load.md: about 3.5 minutes with the defaults.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS_PER_LEVEL=12
LEAK=10000
THREADS=0
REBUILD=0
WRITE=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_PER_LEVEL="$2"; shift 2 ;;
    --leak) LEAK="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    --no-write) WRITE=0; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$SECONDS_PER_LEVEL" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "--seconds must be a number" >&2; exit 2; }
[[ "$LEAK" =~ ^[0-9]+$ && "$LEAK" -le 100000 ]] || { echo "--leak must be an integer in [0, 100000]" >&2; exit 2; }
[[ "$THREADS" =~ ^[0-9]+$ ]] || { echo "--threads must be an integer" >&2; exit 2; }

JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
if ! "$JAVA_HOME/bin/java" -version 2>&1 | grep -q 'version "2[5-9]'; then
  JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64
fi
export JAVA_HOME
JAVA="$JAVA_HOME/bin/java"
JAR="$ROOT/src/cli/target/diffusion4j.jar"
if [[ ! -f "$JAR" || "$REBUILD" == 1 ]]; then
  echo "serve-load: building $JAR"
  mvn -B -q -DskipTests package
fi

WORK="${TMPDIR:-/tmp}/d4j-serve-load"
mkdir -p "$WORK"
CK="$WORK/fashion-mnist-arch"
if [[ ! -f "$CK/config.json" ]]; then
  echo "serve-load: making a Fashion-MNIST-architecture checkpoint in $CK (train --steps 2)"
  "$JAVA" --enable-native-access=ALL-UNNAMED -jar "$JAR" train --steps 2 --batch-size 4 --warmup 1 --out "$CK" \
    --backend cpu > "$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; exit 1; }
fi

THREAD_ARGS=()
[[ "$THREADS" != 0 ]] && THREAD_ARGS=(--threads "$THREADS")
SERVER_PID=""
cleanup() { if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi; }
trap cleanup EXIT

# start_server LOG ARGS...: starts the server on a free loopback port, sets SERVER_PID and PORT
start_server() {
  local log="$1"; shift
  "$JAVA" --enable-native-access=ALL-UNNAMED -jar "$JAR" serve --model fm="$CK" --host 127.0.0.1 --port 0 \
    --backend cpu --idle-release-ms 500 --queue 256 "${THREAD_ARGS[@]}" "$@" > "$log" 2>&1 &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 1 600); do
    PORT="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")"
    [[ -n "$PORT" ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log"; echo "serve-load: the server exited" >&2; exit 1; }
    sleep 0.1
  done
  cat "$log"; echo "serve-load: the server did not start in 60 s" >&2; exit 1
}

stop_server() {
  kill -TERM "$SERVER_PID"
  local code=0
  wait "$SERVER_PID" || code=$?
  SERVER_PID=""
  [[ "$code" == 0 ]] || { echo "serve-load: the server exited $code after SIGTERM" >&2; exit 1; }
}

CLIENT=("$JAVA" "$ROOT/benchmarks/serve/ServeLoad.java")
BODY='{"sampler":"ddim","steps":20,"output":"png"}'
OUT="$WORK/results.txt"
: > "$OUT"
T0=$(date +%s)

echo "serve-load: continuous batching (--max-batch 32), DDIM-20, ${SECONDS_PER_LEVEL} s per level"
start_server "$WORK/server-batched.log" --max-batch 32 --max-n 4
"${CLIENT[@]}" --port "$PORT" --levels 1,8,32 --seconds "$SECONDS_PER_LEVEL" --body "$BODY" --label batched \
  --leak "$LEAK" --leak-max-n 1 | tee -a "$OUT"
grep -E '^d4j_(steps_total|batch_occupancy_(sum|count))' <(curl -s "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true) || true
stop_server

echo "serve-load: one request at a time (--max-batch 1)"
start_server "$WORK/server-single.log" --max-batch 1
"${CLIENT[@]}" --port "$PORT" --levels 8,32 --seconds "$SECONDS_PER_LEVEL" --body "$BODY" --label one-at-a-time | tee -a "$OUT"
stop_server
T1=$(date +%s)

CPU="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
MACHINE="${CPU:-unknown CPU}, $(nproc) cores visible, $(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -sr), $("$JAVA" -version 2>&1 | head -1)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
TABLE="$(awk '/^RESULT/ { printf "| %s | %s | %s | %.1f | %s | %s | %s |\n", $2, $3, $4, $6, $7, $8, $9 }' "$OUT")"
LEAKLINE="$(awk '/^LEAK/ { printf "%s requests (%s images, %s errors) in %s s: native live bytes %s before, %s after; buffers %s before, %s after: %s", $2, $9, $10, $8, $3, $4, $5, $6, $7 }' "$OUT")"
REPORT="# Sampling server load test

\`benchmarks/serve-load.sh\` ($(date -u +%Y-%m-%d), commit $COMMIT, $((T1 - T0)) s). Machine: $MACHINE.

Fashion-MNIST architecture (28x28x1, block_out_channels 32/64/64, attention at the lowest level; weights from a
2-step \`train\` run: the cost of a step does not depend on them), CPU backend, DDIM-20, one image per request,
closed loop (each client sends its next request when the previous one is answered), ${SECONDS_PER_LEVEL} s per level,
loopback HTTP, PNG responses. \"batched\": \`serve --max-batch 32\` (continuous batching); \"one-at-a-time\":
\`serve --max-batch 1\`.

| server | concurrency | requests | req/s | p50 ms | p99 ms | errors |
|---|---|---|---|---|---|---|
$TABLE

Leak check (same batched server, every sampler, 1-2 steps, one image each, concurrency 32): ${LEAKLINE:-skipped (--leak 0)}.
"
echo
echo "$REPORT"
if [[ "$WRITE" == 1 ]]; then
  mkdir -p benchmarks/results
  printf '%s' "$REPORT" > benchmarks/results/serve-load.md
  echo "serve-load: wrote benchmarks/results/serve-load.md"
fi
