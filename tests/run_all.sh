#!/usr/bin/env bash
# `make test`: every step runs even when an earlier one fails (one red scenario must never hide
# the others), then a summary: one row per step with its result and seconds, non-zero exit if any failed.
# Steps are make targets (lint, unit, leftovers) and molecule scenarios (molecule/*/, one each).
set -uo pipefail
cd "$(dirname "$0")/.."

scenarios=$(for f in molecule/*/molecule.yml; do basename "$(dirname "$f")"; done)
steps=(lint unit)
for s in $scenarios; do steps+=("molecule:$s"); done
steps+=(leftovers)

# Each step's output also goes to .cache/test-logs/STEP.log: the failed tests' lines are repeated under the
# summary, where a CI log that keeps only its tail still shows them.
logs=.cache/test-logs
rm -rf "$logs" && mkdir -p "$logs"

declare -A result seconds
for step in "${steps[@]}"; do
  echo "=== $step"
  started=$(date +%s)
  case $step in
    molecule:*) molecule test -s "${step#molecule:}" ;;
    *) make --no-print-directory "$step" ;;
  esac 2>&1 | tee "$logs/${step#molecule:}.log"
  rc=$?
  seconds[$step]=$(( $(date +%s) - started ))
  if [ "$rc" -eq 0 ]; then result[$step]=passed; else result[$step]="FAILED (exit $rc)"; fi
done

passed=0 failed=0
echo
printf '%-24s %-18s %8s\n' step result seconds
for step in "${steps[@]}"; do
  printf '%-24s %-18s %8s\n' "$step" "${result[$step]}" "${seconds[$step]}"
  if [ "${result[$step]}" = passed ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "make test: $passed passed, $failed failed"
for step in "${steps[@]}"; do
  [ "${result[$step]}" = passed ] && continue
  log="$logs/${step#molecule:}.log"
  echo "--- $step (whole output: $log)"
  # the failed tests by name (pytest's section headers and short summary), then what failed in them
  # (molecule's verifier prefixes pytest's lines with "│ " and wraps them)
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -oE '(^|│ )((FAILED|ERROR) [^ ]+::[^ ]+|_{3,} (ERROR at [a-z]+ of )?test_[^ ]+)' \
    | sed 's/^│ //' | sort -u | tail -n 20
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '(^|│ )(E  |[^ ]+:[0-9]+: [A-Za-z]*Error)|fatal: \[' | tail -n 30
done
[ "$failed" -eq 0 ]
