#!/usr/bin/env bash
# Prepares the device check (scripts/gpu-check.sh) for a GPU machine that has no Rust, no
# network and no model: builds the CUDA binary and the device test binary here, and packs them
# with the SmolLM2 GGUF (98 MB) into numbered folders, one per `run` call of the device tool,
# each small enough to travel (the working tree that travels is at most 64 MiB per call).
#
#   scripts/gpu-pack.sh [--into DIR] [--no-build]
#
# DIR (default: <the main worktree>/.gpu) must be inside the checkout whose tree the device
# tool sends: the session's own checkout, which is not necessarily this worktree. The script
# adds `/<DIR's name>/` to that checkout's .git/info/exclude so the folders travel only when
# carried. It prints the calls and writes them to DIR/calls.txt.
#
# The calls, in order and back to back (files left on the machine survive only while it stays
# warm, about 30 s after a call), for N folders (N = 2 for the sizes measured so far):
#   1:        carries the binaries, the scripts and part 1 of the model, and runs a smoke check
#             (BUDGET=75: the CUDA tests on the tiny models, which need no SmolLM2). When it
#             shows the build cannot run there, give the machine back, fix, and start again
#             rather than spend the device time on the full check.
#   2 .. N-1: carry further parts of the model.
#   N:        carries the last part and runs the check:
#             run(command="mkdir -p /tmp/arlas-gpu/pack && for d in .gpu/[0-9]*; do cp -r $d/. /tmp/arlas-gpu/pack/; done; bash /tmp/arlas-gpu/pack/gpu-check.sh",
#                 carry=[".gpu/N"], timeout_s=570)
# The exact calls are printed and written to DIR/calls.txt.
# Each part lands twice over: in /tmp (outside the synced tree) and as the ignored folder the
# tool leaves in the tree while the machine stays warm; the last call gathers both. Call N must
# follow call N-1 at once: on a machine that went back in between, a part is missing, and the
# check records the model as missing (every step that needs it fails, the others still run).
# gpu-check.sh stops its own steps at 480 s (BUDGET; lower it, e.g. BUDGET=300 before `bash`,
# to leave device time for a rerun) and leaves $OUT/gpu-check.json and $OUT/gpu-check.log.
# Whatever fails, the JSON says which step and why.
#
# Built here on Debian 12 (glibc 2.36) for x86-64; the GPU machine's image is Ubuntu 24.04
# (Python 3.12.3, glibc 2.39): newer, so a binary linked against 2.36 loads there (glibc is
# backwards compatible); gpu-check.sh records `ldd` to confirm.
set -euo pipefail
cd "$(dirname "$0")/.."

into=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --into) into="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: $0 [--into DIR] [--no-build]" >&2; exit 2 ;;
  esac
done
main_root="$(git worktree list --porcelain | awk '/^worktree /{print $2; exit}')"
into="${into:-$main_root/.gpu}"
mkdir -p "$into"
into="$(cd "$into" && pwd)"
checkout="$(git -C "$into" rev-parse --show-toplevel)"
rel="${into#"$checkout"/}"
log() { echo "gpu-pack: $*" >&2; }

# 1. The binaries (the CUDA build's own target directory, see build-cuda.sh).
target="${CARGO_TARGET_DIR:-target/cuda}"
if [ "$build" = 1 ]; then
  nice -n 10 bash scripts/build-cuda.sh --no-clippy --tests
fi
arlas="$target/cuda/arlas"
devices="$(awk '$1 == "devices" { print $2 }' "$target/gpu-tests.txt" 2>/dev/null || true)"
[ -x "$arlas" ] || { log "no $arlas: run scripts/build-cuda.sh --tests"; exit 1; }
[ -x "$devices" ] || { log "no device test binary in $target/gpu-tests.txt: run scripts/build-cuda.sh --tests"; exit 1; }

# 2. The model.
gguf="models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$gguf" ] || bash scripts/fetch-smollm2.sh models
[ -f "$gguf" ] || { log "no $gguf and it cannot be fetched"; exit 1; }

# 3. Stage: stripped, xz-compressed binaries (the PTX inside compresses well) and the scripts.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/last/tests"
for pair in "$arlas:last/arlas" "$devices:last/tests/devices"; do
  src="${pair%%:*}"
  dst="$stage/${pair#*:}"
  strip -o "$dst" "$src"
  xz -9 -T0 -f "$dst"
  log "$(basename "$dst"): $(stat -c %s "$src") bytes, stripped and compressed $(stat -c %s "$dst.xz")"
done
cp scripts/gpu-check.sh scripts/gpu_check.py bench/torch_reference.py "$stage/last/"
sha256sum "$gguf" | awk '{print $1}' >"$stage/last/smollm2.gguf.sha256"
# What was built, for the check's JSON: the commit (and whether the tree had changes), when.
cat >"$stage/last/build.json" <<EOF
{"commit": "$(git rev-parse HEAD)", "dirty": $([ -z "$(git status --porcelain --untracked-files=no)" ] && echo false || echo true),
 "built": "$(date -u -r "$arlas" +%Y-%m-%dT%H:%M:%SZ)", "cuda_compute_cap": "${CUDA_COMPUTE_CAP:-90}",
 "rustc": "$(rustc --version)", "packed": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"}
EOF

# 4. Split the model over the calls: every call's tree is the checkout's own files (tracked and
# untracked-not-ignored, and shared/ where it has one) plus what it carries, at most 64 MiB.
limit=$((64 * 1024 * 1024))
tree=$( (cd "$checkout" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1) || echo 0)
if [ -d "$checkout/shared" ]; then
  tree=$((tree + $(du -sb "$checkout/shared" | cut -f1)))
fi
margin=$((1024 * 1024))
capacity=$((limit - tree - margin))
last_fixed=$(du -sb "$stage/last" | cut -f1)
model=$(stat -c %s "$gguf")
if [ $((capacity - last_fixed)) -le 0 ]; then
  log "the binaries ($last_fixed bytes) leave no room in a call ($capacity bytes free)"
  exit 1
fi
# As few calls as fit: call 1 carries the binaries and scripts and as much of the model as
# fits beside them (it also runs a short smoke check: the CUDA tests on the tiny models, which
# need no SmolLM2), the later calls the rest of the model, the last one running the check.
total=$((model + last_fixed))
calls=$(( (total + capacity - 1) / capacity ))
[ "$calls" -ge 2 ] || calls=2
rm -rf "$into"
mkdir -p "$into"
offset=0
for i in $(seq 1 "$calls"); do
  mkdir -p "$into/$i"
  if [ "$i" -eq 1 ]; then
    cp -r "$stage/last/." "$into/$i/"
    size=$(( (model * 45) / 100 ))
    [ $((size + last_fixed)) -le "$capacity" ] || size=$((capacity - last_fixed))
  elif [ "$i" -lt "$calls" ]; then
    size=$capacity
  else
    size=$((model - offset))
  fi
  dd if="$gguf" of="$into/$i/smollm2.gguf.part-$(printf '%02d' "$i")" bs=1M iflag=skip_bytes,count_bytes \
    skip="$offset" count="$size" status=none
  offset=$((offset + size))
done

# 5. Keep the folders out of the tree that travels unless carried.
exclude="$(git -C "$checkout" rev-parse --git-path info/exclude)"
case "$exclude" in /*) ;; *) exclude="$checkout/$exclude" ;; esac
mkdir -p "$(dirname "$exclude")"
grep -qxF "/${rel%%/*}/" "$exclude" 2>/dev/null || echo "/${rel%%/*}/" >>"$exclude"

# 6. The calls.
{
  echo "# checkout that must travel: $checkout (its tree: $tree bytes; limit $limit per call)"
  for i in $(seq 1 "$calls"); do
    size=$(du -sb "$into/$i" | cut -f1)
    echo "# call $i of $calls: carries $rel/$i ($size bytes; tree + carry = $((tree + size)))"
    if [ "$i" -eq 1 ]; then
      echo "run(command=\"mkdir -p /tmp/arlas-gpu/pack && cp -r $rel/$i/. /tmp/arlas-gpu/pack/ && nvidia-smi -L && BUDGET=75 TORCH=0 ITERATION=0 bash /tmp/arlas-gpu/pack/gpu-check.sh; grep -E 'test result|panicked|failed' \$OUT/gpu-check.log | tail -20\", carry=[\"$rel/$i\"], timeout_s=150)"
    elif [ "$i" -lt "$calls" ]; then
      echo "run(command=\"mkdir -p /tmp/arlas-gpu/pack && cp -r $rel/$i/. /tmp/arlas-gpu/pack/ && ls -l /tmp/arlas-gpu/pack\", carry=[\"$rel/$i\"], timeout_s=120)"
    else
      echo "run(command=\"mkdir -p /tmp/arlas-gpu/pack && for d in $rel/[0-9]*; do cp -r \$d/. /tmp/arlas-gpu/pack/; done; bash /tmp/arlas-gpu/pack/gpu-check.sh\", carry=[\"$rel/$i\"], timeout_s=570)"
    fi
  done
} | tee "$into/calls.txt"
