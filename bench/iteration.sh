#!/usr/bin/env bash
# One ARLAS iteration, this build against an older one (issue 13's benchmark): 4 banking tasks
# x 6 rollouts per player from an imitation-free start, seed 0, no evaluation. Each side runs
# under /usr/bin/time (wall seconds and peak resident memory of the whole process, model
# loading included) and appends one JSON record to OUT; bench/iteration_table.py prints them.
#
# Usage: bench/iteration.sh OUT.jsonl BASE_ARLAS NEW_ARLAS [ROUNDS]
#   BASE_ARLAS: a build from before `arlas bench iteration` (e.g. 4614604), run as
#               `arlas train --iterations 1` with its own settings: SmolLM2 agent, full
#               fine-tuning, the 2M `tiny` attacker (a second SmolLM2 did not fit there).
#   NEW_ARLAS:  `arlas bench iteration`, both players SmolLM2 with adapters, and the mixed
#               setting of the base side (SmolLM2 agent with an adapter, tiny attacker).
# Rounds alternate the sides, so a slow drift of a shared machine hits both.
# Environment: MODELS_DIR (default models), WORK (default a fresh temporary directory),
#   BASE_COMMIT (the base build's commit, recorded; default unknown), NEW_COMMIT (default this
#   checkout's HEAD, with -dirty when it has changes), SIDES (default "base new mixed": which
#   runs each round makes).
set -euo pipefail
if [[ $# -lt 3 ]]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
out="$1" base="$2" new="$3" rounds="${4:-1}"
models="${MODELS_DIR:-models}"
work="${WORK:-$(mktemp -d)}"
common=(--suites banking --group-size 6 --max-turns 4 --models-dir "$models" --log warn)

# Runs "$@" under /usr/bin/time; prints "WALL_SECONDS PEAK_KB" of the whole process.
timed() {
    local t="$work/time.txt"
    /usr/bin/time -f '%e %M' -o "$t" "$@" >"$work/stdout.txt"
    cat "$t"
}

record() { # side setting commit wall peak_kb json
    python3 - "$@" <<'PY' >>"$out"
import json, sys
side, setting, commit, wall, peak_kb, result = sys.argv[1:7]
r = json.loads(result)
print(json.dumps({"side": side, "setting": setting, "commit": commit,
                  "process_seconds": float(wall), "process_peak_rss_bytes": int(peak_kb) * 1024,
                  **r}))
PY
}

run_base() {
    local dir="$work/base-run"
    rm -rf "$dir"
    read -r wall peak < <(timed "$base" train --model smollm2 --attacker "$models/tiny-2m" \
        --iterations 1 --tasks-per-iteration 4 --warmup-episodes 0 --eval-episodes 1 \
        --seed 0 --run-dir "$dir" --json "${common[@]}")
    local it
    it=$(grep '"kind":"iteration"' "$dir/metrics.jsonl" | tail -n 1)
    record base "smollm2 agent full fine-tuning, tiny attacker" "$base_commit" "$wall" "$peak" "$it"
}

run_new() { # setting-name extra-args...
    local name="$1"
    shift
    read -r wall peak < <(timed "$new" bench iteration --model smollm2 --tasks 4 --json \
        "${common[@]}" "$@")
    record new "$name" "$new_commit" "$wall" "$peak" "$(tail -n 1 "$work/stdout.txt")"
}

base_commit="${BASE_COMMIT:-unknown}"
new_commit="${NEW_COMMIT:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo -dirty)}"

sides="${SIDES:-base new mixed}"
for r in $(seq "$rounds"); do
    for side in $sides; do
        echo "iteration.sh: round $r/$rounds: $side" >&2
        case "$side" in
            base) run_base ;;
            new) run_new "both smollm2, adapters" ;;
            mixed) run_new "smollm2 agent adapter, tiny attacker" --attacker "$models/tiny-2m" ;;
            *) echo "iteration.sh: unknown side $side (base, new or mixed)" >&2; exit 2 ;;
        esac
    done
done
echo "iteration.sh: wrote $out" >&2
