# Sourced by the benchmark scripts that run Debian's PyTorch (torch-compare.sh, runtime-compare.sh):
#   ensure_python_torch "what needs it"
# sets PY to Debian's interpreter and installs python3-torch, python3-numpy and libopenblas0-pthread with apt
# when missing (so PyTorch's matmuls run on OpenBLAS, not the reference BLAS), saying so; sudo when not root.
PY=/usr/bin/python3   # Debian's interpreter: python3-torch installs there (a pyenv/venv python would not see it)

ensure_python_torch() {
  local why="$1" missing=() SUDO=()
  if ! [[ -x "$PY" ]] || ! "$PY" -c 'import torch, numpy' 2>/dev/null; then missing+=(python3-torch python3-numpy); fi
  if ! dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q 'install ok installed'; then
    missing+=(libopenblas0-pthread)
  fi
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "installing ${missing[*]} with apt-get (needed by $why) ..."
    if [[ $(id -u) -ne 0 ]]; then
      if command -v sudo >/dev/null; then SUDO=(sudo); else
        echo "not root and no sudo: install them yourself: apt-get install -y ${missing[*]}" >&2; exit 1
      fi
    fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}"
  fi
  "$PY" -c 'import torch' || { echo "python3-torch does not import after installation" >&2; exit 1; }
}
