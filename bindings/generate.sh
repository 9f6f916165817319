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
