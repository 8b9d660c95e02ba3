#!/usr/bin/env bash
# Runs `arlas bench sample|train` and the PyTorch reference (bench/torch_reference.py) side by
# side: same model, same shapes, same 2 threads, one after the other for each configuration,
# and appends every result as a JSON line to bench/results/<UTC date-time>.jsonl, then prints
# a markdown table with arlas/torch ratios (bench/table.py).
#
# Usage: bench/setup.sh   # once: bench/.venv with torch + transformers
#        bench/run.sh     # everything: tiny and smollm2, sampling at batch 1, 8, 32, training
#
# Environment (all optional):
#   ARLAS=path          arlas binary (default target/release/arlas; built with
#                       `cargo build --release -p arlas` when missing)
#   MODELS="tiny smollm2"   BATCHES="1 8 32"   THREADS=2
#   PROMPT_LEN=128 NEW_TOKENS=128 REPEATS=2          (sampling; arlas's defaults)
#   TRAIN_BATCH=8 SEQ_LEN=256 STEPS=3 MICRO_BATCH=   (training; micro-batch defaults to the batch)
#   BENCH=all|sample|train  OUT=path.jsonl
#   QUIET_WAIT=1 QUIET_IDLE=0.95 QUIET_TIMEOUT=900   (bench/quiet.py: before each benchmark,
#                       wait until all cores are >= 95% idle for 5 s, at most 900 s)
#   OMP_WAIT_POLICY=PASSIVE   (torch's OpenMP threads sleep at barriers: see below)
#   ALSO_CANDLE_THREADS_1=1   also run arlas with CANDLE_NUM_THREADS=1 (candle's element-wise
#                       pool spins at its barrier like OpenMP's ACTIVE policy; matmuls keep 2
#                       threads), recorded as framework "arlas-candle1"
#   NICE=-15            run each benchmark (both sides alike) at this nice level; negative values
#                       need root and make other jobs on a shared machine yield the cores
#
# Other processes on the machine distort the numbers badly (torch's OpenMP threads more than
# candle's rayon ones): every record carries the 1-minute load average before and after and
# `run.others_cores`, the cores other processes kept busy during the benchmark (bench/quiet.py).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="$root/bench/.venv/bin/python"
if [[ ! -x "$py" ]]; then
    echo "bench/.venv is missing: run bench/setup.sh first" >&2
    exit 1
fi
arlas="${ARLAS:-target/release/arlas}"
if [[ ! -x "$arlas" ]]; then
    echo "building $arlas (cargo build --release -p arlas)" >&2
    cargo build --release -p arlas
fi

models="${MODELS:-tiny smollm2}"
batches="${BATCHES:-1 8 32}"
threads="${THREADS:-2}"
prompt_len="${PROMPT_LEN:-128}"
new_tokens="${NEW_TOKENS:-128}"
repeats="${REPEATS:-2}"
train_batch="${TRAIN_BATCH:-8}"
seq_len="${SEQ_LEN:-256}"
steps="${STEPS:-3}"
micro_batch="${MICRO_BATCH:-$train_batch}"
which="${BENCH:-all}"
quiet_wait="${QUIET_WAIT:-1}"
quiet_idle="${QUIET_IDLE:-0.95}"
quiet_timeout="${QUIET_TIMEOUT:-900}"
priority="${NICE:-}"
candle1="${ALSO_CANDLE_THREADS_1:-0}"
mkdir -p bench/results
out="${OUT:-bench/results/$(date -u +%Y-%m-%dT%H%MZ).jsonl}"

# Same threads everywhere: candle's CPU kernels run on rayon (gemm too); torch on OpenMP/MKL.
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
# libgomp's default (active) wait policy spins at every OpenMP barrier: when another process
# holds one of the 2 cores, each parallel op then waits for a descheduled thread, and torch ran
# 25x slower here (tiny, batch 1: 11.6 vs 306 tokens/s with 1.3 cores busy elsewhere). PASSIVE
# sleeps instead, like rayon's idle workers. Set OMP_WAIT_POLICY=ACTIVE on a truly idle machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export ARLAS_LOG="${ARLAS_LOG:-warn}" TOKENIZERS_PARALLELISM=false
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- policy src 2>/dev/null | wc -l | tr -d ' ')"

load1() { cut -d' ' -f1 /proc/loadavg; }

# Adds run metadata to the last JSON line of stdin and appends it to $out.
record() {
    local extra="$1"
    "$py" -c '
import json, sys
lines = [l for l in sys.stdin.read().splitlines() if l.startswith("{")]
if not lines:
    sys.exit("no JSON line in the benchmark output")
d = json.loads(lines[-1])
d.update(json.loads(sys.argv[1]))
print(json.dumps(d))
' "$extra" | tee -a "$out"
}

# run FRAMEWORK MODEL-NAME COMMAND...: waits for an idle machine, times one benchmark (and
# the CPU other processes took meanwhile) and records it.
run() {
    local framework="$1" name="$2"
    shift 2
    if [[ "$quiet_wait" != 0 ]]; then
        "$py" bench/quiet.py wait --idle "$quiet_idle" --timeout "$quiet_timeout"
    fi
    local before after output meta
    before="$(load1)"
    meta="$(mktemp)"
    echo "# $framework $name: $*" >&2
    local command=("$@")
    if [[ -n "$priority" ]]; then
        command=(nice -n "$priority" "$@")
    fi
    if ! output="$("$py" bench/quiet.py run --meta "$meta" -- "${command[@]}")"; then
        echo "failed: $*" >&2
        rm -f "$meta"
        return 1
    fi
    after="$(load1)"
    printf '%s\n' "$output" | record "{\"framework\": \"$framework\", \"name\": \"$name\", \"load_before\": $before, \"load_after\": $after, \"commit\": \"$commit\", \"arlas_dirty_files\": $dirty, \"threads_env\": $threads, \"nice\": \"$priority\", \"omp_wait_policy\": \"$OMP_WAIT_POLICY\", \"run\": $(cat "$meta")}"
    rm -f "$meta"
}

# The model directories both sides load.
hf_dir() {
    case "$1" in
        tiny) echo "models/tiny-2m" ;;
        smollm2) echo "models/smollm2-hf" ;;
        *) echo "$1" ;;
    esac
}
prepare() {
    case "$1" in
        tiny)
            [[ -f models/tiny-2m/config.json ]] || "$arlas" model build-tiny --model tiny >&2 ;;
        smollm2)
            local gguf=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
            [[ -f "$gguf" ]] || "$arlas" model fetch smollm2 >&2
            # arlas dequantizes the GGUF itself; torch needs an f32 Hugging Face directory:
            # `arlas model export` writes it (transformers' own GGUF loader gives identical
            # log-probs, and is the fallback for an arlas build without the command).
            if [[ ! -f models/smollm2-hf/config.json ]]; then
                "$arlas" model export --model smollm2 --out models/smollm2-hf >&2 ||
                    "$py" bench/torch_reference.py export-gguf --gguf "$gguf" --out models/smollm2-hf >&2
            fi ;;
    esac
}

{
    "$py" -c '
import json, os, platform, subprocess, sys
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), platform.processor())
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
print(json.dumps({"bench": "machine", "cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem / 2**20, 1), "kernel": platform.release(), "load_before": float(open("/proc/loadavg").read().split()[0]), "arlas": sys.argv[1], "arlas_sha256": __import__("hashlib").sha256(open(sys.argv[1], "rb").read()).hexdigest()[:16], "commit": sys.argv[2], "arlas_dirty_files": int(sys.argv[3])}))
' "$arlas" "$commit" "$dirty"
} | tee -a "$out"

for model in $models; do
    prepare "$model"
    dir="$(hf_dir "$model")"
    if [[ "$which" == all || "$which" == sample ]]; then
        for b in $batches; do
            shape=(--batch "$b" --prompt-len "$prompt_len" --new-tokens "$new_tokens" --repeats "$repeats")
            # --ignore-eos: exactly new_tokens per row, like the reference's min_new_tokens.
            run arlas "$model" "$arlas" bench sample --model "$model" "${shape[@]}" --ignore-eos --json
            if [[ "$candle1" != 0 ]]; then
                run arlas-candle1 "$model" env CANDLE_NUM_THREADS=1 "$arlas" bench sample --model "$model" "${shape[@]}" --ignore-eos --json
            fi
            run torch "$model" "$py" bench/torch_reference.py sample --model "$dir" --threads "$threads" "${shape[@]}"
        done
    fi
    if [[ "$which" == all || "$which" == train ]]; then
        shape=(--batch "$train_batch" --seq-len "$seq_len" --micro-batch "$micro_batch" --steps "$steps")
        run arlas "$model" "$arlas" bench train --model "$model" "${shape[@]}" --json
        if [[ "$candle1" != 0 ]]; then
            run arlas-candle1 "$model" env CANDLE_NUM_THREADS=1 "$arlas" bench train --model "$model" "${shape[@]}" --json
        fi
        run torch "$model" "$py" bench/torch_reference.py train --model "$dir" --threads "$threads" "${shape[@]}"
    fi
done

echo "results: $out" >&2
"$py" bench/table.py "$out"
