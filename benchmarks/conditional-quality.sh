#!/usr/bin/env bash
# The conditional-generation results of docs/conditional.md from a class-conditional Fashion-MNIST checkpoint, one
# command (measurement only):
#
#   benchmarks/conditional-quality.sh CHECKPOINT OUT [N]
#
# Writes into OUT: class grids (one row per class, DDIM-50 with use_clipped_model_output) at guidance 1 and 3 (and
# at 3 with diffusers' default, the model's noise kept), an inpainting example (the top
# half of test image 1 known, RePaint with jumps) and an image-to-image example (the pullover made a T-shirt, strength 0.7), then for N images
# per setting (default 1000, 100 per class) the Frechet distance in a Fashion-MNIST classifier's feature space
# (benchmarks/fashion-fd.sh) and the fraction classified as the requested class, for DDIM-50 with and without
# use_clipped_model_output, at guidance 1 and 3, and unconditionally (the null class). OUT/results.txt collects
# the numbers. Needs the jar (mvn package) and what fashion-fd.sh needs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CK="${1:?usage: conditional-quality.sh CHECKPOINT OUT [N]}"
OUT="${2:?usage: conditional-quality.sh CHECKPOINT OUT [N]}"
N="${3:-1000}"
JAVA="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/java"
JAR="$ROOT/src/cli/target/diffusion4j.jar"
FD="$ROOT/benchmarks/fashion-fd.sh"
[[ -f "$JAR" ]] || { echo "conditional-quality: build the jar first (mvn -B package -DskipTests)" >&2; exit 1; }
mkdir -p "$OUT"
ALL=0,1,2,3,4,5,6,7,8,9
sample() { "$JAVA" -jar "$JAR" sample --checkpoint "$CK" --backend cpu "$@" 2>/dev/null | tail -1; }

# examples: grids and the image-conditioned runs
for g in 1 3; do
  sample --sampler ddim --steps 50 --n 100 --class-labels $ALL --guidance-scale $g --use-clipped-model-output \
      --grid-scale 2 --out "$OUT/grid-g$g"
done
# the same guided grid with diffusers' DDIM default (the model's noise kept beside the clipped x0)
sample --sampler ddim --steps 50 --n 100 --class-labels $ALL --guidance-scale 3 --grid-scale 2 --out "$OUT/grid-g3-default"
python3 "$ROOT/benchmarks/fid/write_test_png.py" 1 "$OUT/test1.png" "$OUT/mask-top-half.png"
sample --sampler ddpm --steps 100 --n 8 --init-image "$OUT/test1.png" --mask-image "$OUT/mask-top-half.png" \
    --grid-scale 3 --out "$OUT/inpaint"
sample --sampler ddim --steps 50 --n 8 --init-image "$OUT/test1.png" --strength 0.7 --class-labels T-shirt/top \
    --guidance-scale 3 --use-clipped-model-output --grid-scale 3 --out "$OUT/img2img"

# quality: N images per setting, N / 10 per class
labels="$OUT/labels.txt"
python3 -c "import sys; n=int(sys.argv[1]); print(' '.join(str(i * 10 // n) for i in range(n)))" "$N" > "$labels"
{
  echo "setting | Frechet distance | classified as requested"
  for g in 1 3; do
    for clip in no yes; do
      d="$OUT/fd-g$g-clip-$clip"
      extra=(); [[ $clip == yes ]] && extra=(--use-clipped-model-output)
      t0=$(date +%s)
      sample --sampler ddim --steps 50 --n "$N" --batch-size 100 --class-labels $ALL --guidance-scale $g \
          "${extra[@]}" --seed 1 --out "$d" > /dev/null
      r=$("$FD" "$d" --labels-file "$labels")
      echo "guidance $g, use_clipped_model_output $clip ($(( $(date +%s) - t0 )) s) | $(echo "$r" | grep -m1 '^FD (classifier' | sed 's/.*: //') | $(echo "$r" | grep -m1 'classified as requested' | sed 's/[^:]*: //; s/;.*//')"
    done
  done
  for clip in no yes; do
    d="$OUT/fd-uncond-clip-$clip"
    extra=(); [[ $clip == yes ]] && extra=(--use-clipped-model-output)
    sample --sampler ddim --steps 50 --n "$N" --batch-size 100 "${extra[@]}" --seed 1 --out "$d" > /dev/null
    r=$("$FD" "$d")
    echo "unconditional (null class), use_clipped_model_output $clip | $(echo "$r" | grep -m1 '^FD (classifier' | sed 's/.*: //') | -"
  done
} | tee "$OUT/results.txt"
