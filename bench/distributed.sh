#!/usr/bin/env bash
# Benchmarks of the distributed runtime (docs/benchmarks.md, "Distributed runtime"):
# episodes/s with 1, 2, 4 actor processes; learner busy fraction async vs --sync; trajectory
# intake vs raw loopback TCP; checkpoint broadcast to 4 actors vs raw loopback TCP.
# Appends one JSON line per measurement to bench/results/dist-<UTC time>.jsonl.
#
# Knobs (environment): SECS (window per cluster run, 90), ACTORS ("1 2 4"), REPEATS (2),
# WORK (/tmp/arlas-dist-bench), BROADCAST_MB (540), INTAKE_SECS (20), ONLY (cluster, busy,
# intake or broadcast: run just that part), SKIP_BUILD (use the binaries in target/release),
# WARM (a run directory with agent/warmup and attacker/warmup; default: a 32-episode warm-up
# made here), BUSY_PENALTY (the game's format-error penalty in the busy runs, 0.1: with a
# weak warm-up it is what makes GRPO groups differ, so that updates run).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-90}
ACTORS=${ACTORS:-"1 2 4"}
REPEATS=${REPEATS:-2}
WORK=${WORK:-/tmp/arlas-dist-bench}
BROADCAST_MB=${BROADCAST_MB:-540}
INTAKE_SECS=${INTAKE_SECS:-20}
ONLY=${ONLY:-}
OUT=${OUT:-bench/results/dist-$(date -u +%Y-%m-%dT%H%MZ).jsonl}

[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p arlas --bin arlas --example distributed_bench
BENCH=target/release/examples/distributed_bench
mkdir -p "$WORK" "$(dirname "$OUT")"
echo "{\"machine\":{\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\",\"commit\":\"$(git rev-parse --short HEAD)\",\"arlas_sha256\":\"$(sha256sum target/release/arlas | cut -c1-16)\",\"uptime\":\"$(uptime | xargs)\"}}" >>"$OUT"

run() { # label, then the bench's arguments
  local label=$1; shift
  echo "== $label ($(uptime | sed 's/.*load/load/'))" >&2
  "$BENCH" "$@" | sed "s/^{/{\"label\":\"$label\",/" | tee -a "$OUT"
}

# The learners of the cluster runs start from a cheap imitation warm-up (a random tiny model
# makes flat GRPO groups: nothing to train, busy fraction ~0).
WARM=${WARM:-$WORK/warm}
BUSY_PENALTY=${BUSY_PENALTY:-0.1}
if [ ! -d "$WARM/agent/warmup" ] || [ ! -d "$WARM/attacker/warmup" ]; then
  rm -rf "$WARM"
  CANDLE_NUM_THREADS=1 target/release/arlas train --run-dir "$WARM" --model tiny \
    --iterations 0 --warmup-episodes 32 --warmup-epochs 1 >&2
fi

for r in $(seq "$REPEATS"); do
  if [ -z "$ONLY" ] || [ "$ONLY" = cluster ]; then
    for n in $ACTORS; do
      run "actors-$n-r$r" cluster --actors "$n" --secs "$SECS" --warm "$WARM" --dir "$WORK/cluster"
    done
  fi
  if [ -z "$ONLY" ] || [ "$ONLY" = busy ]; then
    run "busy-async-r$r" cluster --actors 2 --secs "$SECS" --warm "$WARM" --dir "$WORK/cluster" \
      --format-error-penalty "$BUSY_PENALTY"
    run "busy-sync-r$r" cluster --actors 2 --secs "$SECS" --warm "$WARM" --dir "$WORK/cluster" \
      --format-error-penalty "$BUSY_PENALTY" --sync
  fi
  if [ -z "$ONLY" ] || [ "$ONLY" = intake ]; then
    run "intake-small-r$r" intake --streams 16 --secs "$INTAKE_SECS" --dir "$WORK/intake"
    run "intake-large-r$r" intake --streams 16 --secs "$INTAKE_SECS" --dir "$WORK/intake" \
      --prompt-tokens 256 --completion-tokens 64 --turns 4
  fi
done
if [ -z "$ONLY" ] || [ "$ONLY" = broadcast ]; then
  df -h "$WORK" >&2
  run broadcast broadcast --mb "$BROADCAST_MB" --clients 4 --repeats "$REPEATS" --dir "$WORK/broadcast"
fi
rm -rf "$WORK/cluster" "$WORK/intake" "$WORK/broadcast"
echo "results: $OUT" >&2
