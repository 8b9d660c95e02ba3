#!/usr/bin/env bash
# Creates bench/.venv: CPU PyTorch + transformers + safetensors (+ gguf and accelerate, to read SmolLM2's
# GGUF) for the reference benchmarks in bench/torch_reference.py. Needs python3 (>= 3.10,
# with venv) and PyPI; nothing else is downloaded.
#
# Usage: bench/setup.sh            (idempotent: reinstalls into an existing venv)
#        PYTHON=python3.12 bench/setup.sh
#
# What was tried, and why the install looks like this (measured 2026-11, Python 3.11):
# - PyPI has no CPU-only torch for Linux x86_64 (the `+cpu` wheels live on the PyTorch index,
#   which this machine cannot reach). The PyPI wheel torch-2.15.0 (539 MB) is a CUDA 13 build.
# - `pip install --no-deps torch` plus its pure-Python deps does NOT import: libtorch_cuda.so
#   and libtorch_global_deps.so are linked against libcudart, libcublas(Lt), libcudnn, libnccl,
#   libcusparse(Lt), libcufft, libcufile, libnvrtc, libcupti, libnvshmem_host
#   ("OSError: libcudart.so.13: cannot open shared object file").
# - `pip install torch==2.15.0` with its dependencies works: 5.3 GB venv, ~80 s.
# - The lightest install that imports and runs on CPU (what this script does): torch without
#   triton (~1 GB, only for GPU kernels / torch.compile) and cuda-bindings, but with the
#   nvidia-* runtime libraries it links: ~4.6 GB venv with transformers, ~80 s on this machine.
#   Every package is pinned in bench/requirements.txt and installed with --no-deps, so pip
#   never pulls triton back in.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip==25.3
start=$SECONDS
"$venv/bin/python" -m pip install --quiet --no-deps -r "$here/requirements.txt"
echo "installed in $((SECONDS - start)) s; venv size: $(du -sh "$venv" | cut -f1)"

# Smoke test: torch runs a CPU matmul without any GPU, transformers builds a Llama.
"$venv/bin/python" - <<'EOF'
import torch
import transformers

torch.set_num_threads(2)
c = torch.randn(64, 64) @ torch.randn(64, 64)
assert c.shape == (64, 64)
cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2, vocab_size=100)
model = transformers.LlamaForCausalLM(cfg)
out = model(torch.tensor([[1, 2, 3]]))
assert out.logits.shape == (1, 3, 100)
print(f"ok: torch {torch.__version__} ({torch.get_num_threads()} threads), "
      f"transformers {transformers.__version__}")
EOF
