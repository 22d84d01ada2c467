#!/usr/bin/env bash
# slak-bench's command line and tables, on configurations small enough for CI:
#   bench_cli_test.sh SLAK_BENCH CASE
# CASE:
#   model-too-small  slak_tiny at 28 px: exit 2 and one line naming the model,
#                    the size and the minimum (32 px), no LibTorch stack trace.
#   unknown-model    exit 2 and one line naming the known models.
#   layer-table      a tiny custom layer: the layer table has one row per
#                    batch x density x pass, PyTorch's best layout named, the
#                    op's layout named, and the op agrees with PyTorch.
#   model-table      slak_nano at 16 px, both LibTorch layouts: one row per
#                    configuration with positive rates and ratios. (The
#                    runtime's rows have the same form; its first step
#                    JIT-compiles the model's kernels, a minute or more on a
#                    loaded 2-core machine, too slow for this test.)
set -uo pipefail
bench="$1"
case_name="$2"
out="$(mktemp)"
err="$(mktemp)"
trap 'rm -f "$out" "$err"' EXIT

fail() {
  echo "FAIL ($case_name): $*"
  echo "--- stdout"
  cat "$out"
  echo "--- stderr"
  cat "$err"
  exit 1
}

# Runs slak-bench with the arguments after EXPECTED_EXIT_CODE; fails unless it
# exits with that code.
run_bench() {
  local expected="$1"
  shift
  "$bench" "$@" >"$out" 2>"$err"
  local rc=$?
  [[ $rc -eq $expected ]] || fail "exit code $rc, expected $expected"
}

# Checks the table's header line and sets rows to its rows (without the
# separator line).
read_table() {
  grep -qxF "$1" "$out" || fail "header"
  rows="$(grep '^| ' "$out" | tail -n +2 | grep -v '^|---')"
}

case "$case_name" in
model-too-small)
  run_bench 2 --train --model slak_tiny --image-size 28 --configs torch/nchw
  [[ $(wc -l <"$err") -eq 1 ]] || fail "expected one line on stderr"
  grep -q 'model slak_tiny needs images of at least 32 px, got --image-size 28' "$err" ||
    fail "message does not name the model, the minimum and the size"
  grep -qiE 'exception raised|frame #' "$err" && fail "a LibTorch stack trace"
  [[ -s "$out" ]] && fail "no table expected"
  ;;
unknown-model)
  run_bench 2 --train --model slak_huge --configs torch/nchw
  [[ $(wc -l <"$err") -eq 1 ]] || fail "expected one line on stderr"
  grep -q "unknown model 'slak_huge'.*slak_tiny" "$err" || fail "message does not list the models"
  ;;
layer-table)
  run_bench 0 --layer 8,8,7 --batch 2,1 --densities 1,0.6 --repeats 1 --quick --quiet 0 --threads 1
  read_table '| stage | C | HxW | M | batch | density | pass | PyTorch NCHW ms | PyTorch channels_last ms | slak op ms (layout) | vs best PyTorch | GFLOP/s | % peak | max rel err |'
  [[ $(echo "$rows" | wc -l) -eq 8 ]] || fail "expected 8 rows (2 batches x 2 densities x 2 passes)"
  for batch in 2 1; do
    for density in 1.00 0.60; do
      for pass in fwd fwd+bwd; do
        echo "$rows" | grep -qF "| custom | 8 | 8x8 | 7 | $batch | $density | $pass |" ||
          fail "no row for batch $batch density $density $pass"
      done
    done
  done
  echo "$rows" | awk -F'|' '
    { n = split($0, c, "|"); if (n != 16) { print "cells: " n; exit 1 }
      if (c[11] !~ /^ [0-9.]+ \((NCHW|channels_last)\) $/) { print "slak cell: " c[11]; exit 1 }
      if (c[12] !~ /^ [0-9.]+x \((NCHW|channels_last)\) $/) { print "speedup cell: " c[12]; exit 1 }
      if (c[9] + 0 <= 0 || c[10] + 0 <= 0) { print "PyTorch times"; exit 1 }
      if (c[15] + 0 > 1e-4) { print "slak vs PyTorch error " c[15]; exit 1 } }' >>"$err" ||
    fail "row contents"
  ;;
model-table)
  run_bench 0 --train --model slak_nano --image-size 16 --batch 2 --steps 1 --repeats 1 \
    --threads 1 --configs torch/nchw,torch/channels_last
  read_table '| model | px | large-kernel backend | layout | train images/s | infer images/s | train vs best LibTorch | infer vs best LibTorch | large-kernel ops in a train step | first train step s | first inference s |'
  [[ $(echo "$rows" | wc -l) -eq 2 ]] || fail "expected 2 rows"
  echo "$rows" | grep -qF '| slak_nano | 16 | torch (conv2d branches) | NCHW |' || fail "torch row"
  echo "$rows" | grep -qF '| slak_nano | 16 | torch (conv2d branches) | channels_last |' ||
    fail "torch channels_last row"
  echo "$rows" | awk -F'|' '
    { if ($6 + 0 <= 0 || $7 + 0 <= 0) { print "rates: " $6 " " $7; exit 1 }
      if ($8 !~ /^ [0-9.]+x $/ || $9 !~ /^ [0-9.]+x $/) { print "ratios: " $8 $9; exit 1 }
      if ($10 != " - ") { print "LibTorch rows time no slak op: " $10; exit 1 } }' \
    >>"$err" || fail "row contents"
  ;;
*)
  echo "unknown case $case_name"
  exit 2
  ;;
esac
echo "ok: $case_name"
