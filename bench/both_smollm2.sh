#!/usr/bin/env bash
# A whole `arlas train` run with both players SmolLM2 (adapters over one shared base): a
# short imitation warm-up of both players, ARLAS iterations, the evaluations and the report,
# end to end on this machine (issue 13). The process runs under /usr/bin/time; one JSON record
# (wall seconds and peak RSS of the whole run, the commit from the run's versions.json, the
# settings from its config.json, each iteration's and update's record) is appended to OUT;
# bench/both_smollm2_table.py renders the records for docs/results.md.
#
# Usage: bench/both_smollm2.sh OUT.jsonl [ARLAS] [RUN_DIR]
#   ARLAS defaults to ./target/release/arlas, RUN_DIR to a fresh temporary directory.
# Environment: MODELS_DIR (default models); ITERATIONS (default 1); EVAL_EPISODES (default 4);
#   WARMUP_EPISODES (default 8); FORMAT_ERROR_PENALTY (default 0.1: so short a warm-up leaves
#   the agent malformed on most turns, and with no penalty every group is flat and nothing trains).
set -euo pipefail
if [[ $# -lt 1 ]]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
out="$1" arlas="${2:-./target/release/arlas}"
run="${3:-$(mktemp -d)/run}"
models="${MODELS_DIR:-models}"
time_file="$(mktemp)"
config="$(mktemp --suffix .toml)"
printf '[rollout.game]\nformat_error_penalty = %s\n' "${FORMAT_ERROR_PENALTY:-0.1}" >"$config"
/usr/bin/time -f '%e %M' -o "$time_file" "$arlas" train --model smollm2 --run-dir "$run" \
    --models-dir "$models" --suites banking --max-turns 4 --seed 0 \
    --warmup-episodes "${WARMUP_EPISODES:-8}" --warmup-epochs 1 --warmup-batch 4 \
    --iterations "${ITERATIONS:-1}" --tasks-per-iteration 4 --group-size 6 \
    --eval-episodes "${EVAL_EPISODES:-4}" --config "$config" --quiet --json >"$run.summary.json"
python3 - "$run" "$time_file" <<'PY' >>"$out"
import json, sys
run, time_file = sys.argv[1:3]
wall, peak_kb = open(time_file).read().split()
records = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
print(json.dumps({
    "run_dir": run,
    "process_seconds": float(wall),
    "process_peak_rss_bytes": int(peak_kb) * 1024,
    "versions": json.load(open(f"{run}/versions.json")),
    "config": json.load(open(f"{run}/config.json")),
    "iterations": [r for r in records if r.get("kind") == "iteration"],
    "updates": [r for r in records if r.get("kind") == "update"],
    "evals": [r for r in records if r.get("kind") == "eval"],
    "warmup_steps": sum(1 for r in records if r.get("kind") == "warmup"),
}))
PY
echo "both_smollm2.sh: wrote $out (run in $run)" >&2
