#!/bin/sh
# CMake compiler launcher for nvcc: runs the compile and keeps its stderr
# (the ptxas resource report of --resource-usage) in LOGDIR/<object>.log, so
# check_ptxas.cmake can build the report and fail on register spills.
logdir=$1
shift
mkdir -p "$logdir"
out=unknown
prev=
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  prev=$a
done
log="$logdir/$(basename "$out").log"
"$@" 2>"$log"
status=$?
# show real diagnostics (not the info lines) as the compiler would
grep -v -E '^ptxas info|bytes stack frame|^$' "$log" >&2
exit $status
