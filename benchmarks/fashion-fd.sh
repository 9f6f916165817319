#!/usr/bin/env bash
# Sample quality of a Fashion-MNIST diffusion model, one command (measurement only; see docs/benchmarks.md):
#
#   benchmarks/fashion-fd.sh DIR [--labels L | --labels-file F] [--json FILE]
#   benchmarks/fashion-fd.sh --selfcheck [--n N]
#   benchmarks/fashion-fd.sh --train
#
# DIR is a folder written by `diffusion4j sample --out DIR`: every *.png but grid.png is scored, in file-name
# order (sample_00000.png, ...). Prints the Frechet distance between the features of a small classifier for
# those images and for the 10,000 Fashion-MNIST test images (NOT the Inception-v3 FID), the same distance for
# as many real training images (the floor at that image count), the class histogram the classifier assigns,
# and with --labels (0-9 or class names, comma-separated, one per image or one for all) the fraction
# classified as requested. The classifier is trained on first use (about 5 minutes of CPU time) into
# benchmarks/fid/target/ and reused afterwards.
#
# Options placed before the mode go to the tool as well: --threads N (default 2), --weights FILE, --data DIR.
# Installs nothing: it says which Debian packages are missing and stops.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL="$ROOT/benchmarks/fid/fashion_fd.py"
PY=/usr/bin/python3   # Debian's interpreter: python3-torch installs there (a pyenv/venv python would not see it)
DATA=/usr/share/datasets/fashion-mnist

GLOBAL=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads|--weights|--data|--seed) GLOBAL+=("$1" "$2"); [[ "$1" == --data ]] && DATA="$2"; shift 2 ;;
    *) break ;;
  esac
done
if [[ $# -eq 0 || "$1" == -h || "$1" == --help ]]; then sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi

missing=()
if ! [[ -x "$PY" ]]; then missing+=(python3); fi
if ! "$PY" -c 'import torch' 2>/dev/null; then missing+=(python3-torch); fi
if ! "$PY" -c 'import numpy' 2>/dev/null; then missing+=(python3-numpy); fi
if ! "$PY" -c 'import PIL' 2>/dev/null; then missing+=(python3-pil); fi
if ! dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q 'install ok installed'; then
  missing+=(libopenblas0-pthread)
fi
if ! [[ -e "$DATA/t10k-images-idx3-ubyte.gz" || -e "$DATA/t10k-images-idx3-ubyte" ]]; then
  missing+=(dataset-fashion-mnist)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "fashion-fd: missing Debian packages: ${missing[*]}" >&2
  echo "install them with: apt-get install -y ${missing[*]}   (sudo when not root)" >&2
  exit 1
fi

case "$1" in
  --selfcheck) shift; exec "$PY" "$TOOL" "${GLOBAL[@]}" selfcheck "$@" ;;
  --train) shift; exec "$PY" "$TOOL" "${GLOBAL[@]}" train "$@" ;;
  -*) echo "fashion-fd: the first argument is DIR, --selfcheck or --train, got '$1'" >&2; exit 2 ;;
  *) if ! [[ -d "$1" ]]; then echo "fashion-fd: $1 is not a folder" >&2; exit 2; fi
     exec "$PY" "$TOOL" "${GLOBAL[@]}" score "$@" ;;
esac
