#!/usr/bin/env bash
# Peak memory of one SmolLM2 training step on a long conversation (issue 13's goal: a 1,024-token
# step well under the 8.3 GB it took at 4614604): `arlas bench train` under /usr/bin/time, LoRA
# rank 16 and full fine-tuning, activation checkpointing on and off, at batch 1 and 2.
# Appends one JSON record per run to OUT (the bench's JSON plus the whole process's wall seconds,
# peak RSS and the commit); bench/train_memory_table.py prints them.
#
# Usage: bench/train_memory.sh OUT.jsonl ARLAS
# Environment: MODELS_DIR (default models), SEQ_LEN (default 1024), COMMIT (default this
#   checkout's HEAD, with -dirty when it has changes), BASE=1 for a build from before adapters
#   and checkpointing (e.g. 4614604): one run, batch 1, full fine-tuning, its own flags only.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
out="$1" arlas="$2"
models="${MODELS_DIR:-models}"
seq_len="${SEQ_LEN:-1024}"
commit="${COMMIT:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo -dirty)}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs `arlas "$@"` under /usr/bin/time and appends its record to OUT.
run() {
    /usr/bin/time -f '%e %M' -o "$work/time.txt" "$arlas" "$@" >"$work/out.json"
    read -r wall peak_kb <"$work/time.txt"
    python3 - "$commit" "$wall" "$peak_kb" "$work/out.json" <<'PY' >>"$out"
import json, sys
commit, wall, peak_kb, path = sys.argv[1:5]
r = json.load(open(path))
print(json.dumps({"commit": commit, "process_seconds": float(wall),
                  "process_peak_rss_bytes": int(peak_kb) * 1024, **r}))
PY
}

common=(bench train --model smollm2 --models-dir "$models" --seq-len "$seq_len" --steps 1 --json
    --log warn)
if [[ -n "${BASE:-}" ]]; then
    echo "train_memory.sh: base build, batch 1, full fine-tuning" >&2
    run "${common[@]}" --batch 1
    echo "train_memory.sh: wrote $out" >&2
    exit 0
fi
for batch in 1 2; do
    for lora in 16 0; do
        for ckpt in true false; do
            echo "train_memory.sh: batch $batch, lora rank $lora, checkpointing $ckpt" >&2
            args=("${common[@]}" --batch "$batch" --activation-checkpointing "$ckpt")
            [[ "$lora" != 0 ]] && args+=(--lora-rank "$lora")
            run "${args[@]}"
        done
    done
done
echo "train_memory.sh: wrote $out" >&2
