#!/usr/bin/env bash
# Builds arlas with `--features cuda` on a machine with no GPU and no CUDA install: the toolchain
# comes from PyPI wheels (scripts/cuda-toolchain.sh), the driver from a link-time stub.
#
#   scripts/build-cuda.sh             # clippy on the feature (-D warnings), then the binary
#   scripts/build-cuda.sh --tests     # also the GPU test binaries (listed in target/cuda/gpu-tests.txt)
#   scripts/build-cuda.sh --no-clippy # the binary only
#
# Output: target/cuda/cuda/arlas (profile `cuda`: release without line tables). The separate
# target directory keeps the CPU build's cache intact. CUDA_COMPUTE_CAP picks the one GPU
# architecture candle's kernels are compiled for (default 90: H100/H200); another value needs
# its own build, so set CARGO_TARGET_DIR too (e.g. target/cuda-80).
# Cost on the 2-core CI kind: see docs/benchmarks.md, "The GPU path".
set -euo pipefail
cd "$(dirname "$0")/.."

clippy=1
tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    --no-clippy) clippy=0 ;;
    *) echo "usage: $0 [--tests] [--no-clippy]" >&2; exit 2 ;;
  esac
done

eval "$(bash scripts/cuda-toolchain.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
# One-off builds gain nothing from incremental state, and it costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
build=(--locked --profile cuda --features cuda)

step() {
  local start=$SECONDS
  echo "build-cuda: $*" >&2
  "$@"
  echo "build-cuda: done in $((SECONDS - start)) s" >&2
}

if [ "$clippy" = 1 ]; then
  step cargo clippy --workspace --all-targets "${build[@]}" -- -D warnings
fi
step cargo build "${build[@]}" --bin arlas

if [ "$tests" = 1 ]; then
  # The policy crate's integration tests hold the device checks (sampled vs scored log-probs,
  # gradients in bf16); cargo names each test executable in its JSON messages.
  list="$CARGO_TARGET_DIR/gpu-tests.txt"
  step cargo test "${build[@]}" -p arlas-policy --tests --no-run --message-format=json |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["profile"]["test"]:
        print(msg["target"]["name"], msg["executable"])
' >"$list"
  echo "build-cuda: test binaries in $list:" >&2
  cat "$list" >&2
fi
ls -l "$CARGO_TARGET_DIR/cuda/arlas" >&2
