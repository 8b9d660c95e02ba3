#!/usr/bin/env bash
# A/B comparison of two arlas builds on one benchmark: runs them alternately N times and prints
# each one's median and best tokens/s. This is how docs/benchmarks.md's "What closed the gap"
# measured each change against the build before it: alternating cancels slow drifts of a
# shared machine, and the median resists single slow runs.
#
# Usage: bench/ab.sh N ARLAS_A ARLAS_B bench sample --model tiny --batch 32 --ignore-eos --repeats 3
#        (everything after the two binaries is passed to both; --json and --log warn are added)
# Environment: THREADS=2 (RAYON_NUM_THREADS for both sides)
set -euo pipefail
if [[ $# -lt 4 ]]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
n="$1" a="$2" b="$3"
shift 3
export RAYON_NUM_THREADS="${THREADS:-2}"
results_a=() results_b=()
tokens_per_sec() {
    "$1" "${@:2}" --json --log warn | tail -n 1 |
        python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["tokens_per_sec"])'
}
for _ in $(seq "$n"); do
    results_a+=("$(tokens_per_sec "$a" "$@")")
    results_b+=("$(tokens_per_sec "$b" "$@")")
done
summary() {
    python3 -c '
import statistics, sys
name, values = sys.argv[1], [float(v) for v in sys.argv[2:]]
print(f"{name}: median {statistics.median(values):.0f} best {max(values):.0f} tokens/s, runs {[round(v) for v in values]}")
' "$@"
}
summary "A $a" "${results_a[@]}"
summary "B $b" "${results_b[@]}"
