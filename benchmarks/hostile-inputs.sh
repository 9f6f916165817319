#!/usr/bin/env bash
# Peak memory and outcome of the command line on hostile inputs: a config.json that describes a huge model beside
# a small weights file, a sample_size of 4096, an --init-noise file that never ends (/dev/zero) or declares a
# (2^40, 2^40, 1, 1) shape or holds NaN, and an image folder holding a 20000 x 20000 PNG of about 1 MB.
#   benchmarks/hostile-inputs.sh [--jar JAR] [--label NAME] [--out FILE]
# Each case runs `java -Xmx8g -jar JAR ...` under /usr/bin/time (peak resident memory) with a 120 s limit and
# prints a Markdown row: case, exit status, peak RSS, seconds, the first line of stderr (or of stdout). --jar runs another build
# (an older jar, for a before/after table); default: this tree's jar, rebuilt when older than the sources.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/benchmarks/d4j-jar.sh"
jar="" label="this tree" out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --jar) jar="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
ensure_jdk_and_jar 0
[[ -n "$jar" ]] || jar="$JAR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# a tiny trained checkpoint to corrupt (built with this tree's jar, read by both)
cat > "$work/tiny.json" <<'EOF'
{"_class_name": "UNet2DModel", "sample_size": 12, "in_channels": 1, "out_channels": 1,
 "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 8,
 "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}
EOF
"$JAVA" -jar "$JAR" train --config "$work/tiny.json" --steps 1 --batch-size 2 --backend cpu --out "$work/ck" >/dev/null

with_config() { # NAME PYTHON-EXPRESSION-ON-c : a copy of the checkpoint whose config.json is changed
  rm -rf "$work/$1"; cp -r "$work/ck" "$work/$1"; rm -rf "$work/$1/ema"
  python3 - "$work/$1/config.json" "$2" <<'EOF'
import json, sys
p, expr = sys.argv[1], sys.argv[2]
c = json.load(open(p)); exec(expr); json.dump(c, open(p, "w"))
EOF
}
with_config huge 'c["block_out_channels"] = [3072, 3072]; c["norm_num_groups"] = 32; c["attention_head_dim"] = 64'
with_config big2048 'c["block_out_channels"] = [2048, 2048]; c["norm_num_groups"] = 32; c["attention_head_dim"] = 64'
with_config wide 'c["sample_size"] = 4096'

python3 - "$work" <<'EOF'
import struct, sys, zlib
w = sys.argv[1]
def npy(path, shape, floats):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(str(s) for s in shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % len(floats), *floats))
npy(w + "/huge-shape.npy", (1 << 40, 1 << 40, 1, 1), [0.0] * 16)
npy(w + "/nan.npy", (1, 1, 12, 12), [float("nan")] + [0.0] * 143)
# a valid 20000 x 20000 grayscale PNG of zeros, written row by row (about 1 MB compressed)
import os
os.makedirs(w + "/images", exist_ok=True)
W = H = 20000
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
z = zlib.compressobj(9); idat = bytearray(); row = b"\x00" * (W + 1)
for _ in range(H): idat += z.compress(row)
idat += z.flush()
with open(w + "/images/big.png", "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 0, 0, 0, 0)))
    f.write(chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b""))
import shutil
shutil.copy(w + "/images/big.png", w + "/images/big2.png")
EOF

run_case() { # NAME ARGS...
  local name="$1"; shift
  local rc=0
  # time outside timeout: a killed run still reports its peak (the rusage of timeout's waited-for child)
  /usr/bin/time -f "%M %e" -o "$work/time" timeout 120 "$JAVA" -Xmx8g -jar "$jar" "$@" \
    >"$work/stdout" 2>"$work/stderr" || rc=$?
  local rss=0 secs="?" first
  read -r rss secs < <(grep -E '^[0-9]+ [0-9.]+$' "$work/time" | tail -1 || echo "0 ?")
  # the first line of stderr (stdout when stderr is empty), stack frames skipped
  local src="$work/stderr"; [[ -s "$src" ]] || src="$work/stdout"
  first=$( (grep -v '^\s*at ' "$src" || true) | head -1 | cut -c1-150 | sed "s|$work|W|g; s/|/\\\\|/g")
  [[ $rc -eq 124 ]] && first="(killed after 120 s) $first"
  printf '| %s | %s | %s | %s MB | %s s | %s |\n' "$label" "$name" "$rc" "$(( ${rss:-0} / 1024 ))" "$secs" "$first"
}
{
  echo "| build | case | exit | peak RSS | time | first line of stderr |"
  echo "|---|---|---:|---:|---:|---|"
  run_case "config.json with block_out_channels [3072, 3072]" sample --checkpoint "$work/huge" --n 1 --steps 2 --backend cpu --out "$work/o1"
  run_case "config.json with block_out_channels [2048, 2048]" sample --checkpoint "$work/big2048" --n 1 --steps 2 --backend cpu --out "$work/o2"
  run_case "sample_size 4096" sample --checkpoint "$work/wide" --n 1 --steps 2 --backend cpu --out "$work/o3"
  run_case "--init-noise /dev/zero" sample --checkpoint "$work/ck" --n 1 --steps 2 --backend cpu --init-noise /dev/zero --out "$work/o4"
  run_case "--init-noise of shape (2^40, 2^40, 1, 1)" sample --checkpoint "$work/ck" --n 1 --steps 2 --backend cpu --init-noise "$work/huge-shape.npy" --out "$work/o5"
  run_case "--init-noise holding NaN" sample --checkpoint "$work/ck" --n 1 --steps 2 --backend cpu --init-noise "$work/nan.npy" --out "$work/o6"
  run_case "two 20000 x 20000 PNGs (1 MB each) to train on" train --config "$work/tiny.json" --steps 1 --batch-size 2 --backend cpu --data images --data-dir "$work/images" --out "$work/t1"
} | tee "${out:-/dev/null}"
