#!/usr/bin/env bash
# The device check of issue 16, run ON the GPU machine: the CUDA build's tests, `arlas generate`
# (Paris), `arlas bench sample|train` next to PyTorch + transformers on the same GPU in bf16,
# and one short ARLAS iteration. Every step is recorded, none is fatal; the results are ONE
# JSON file, $OUT/gpu-check.json, plus $OUT/gpu-check.log. Fits in 8 minutes (BUDGET=480).
#
#   bash gpu-check.sh                  # from the folder scripts/gpu-pack.sh filled (or PACK=...)
#   DEVICE=cpu BATCHES="1 2" TRAIN_BATCHES=2 NEW_TOKENS=8 SEQ_LEN=32 TORCH=0 bash gpu-check.sh
#                                      # a dry run of the logic on a machine without a GPU
#
# The arlas binary is built elsewhere (scripts/build-cuda.sh) and needs, at run time,
# libcuda.so.1 from the driver and libcublas(Lt).so.13, libcurand.so.10, libcudart.so.13 and
# libnvrtc.so.13: this finds them in python3's PyTorch installation (the GPU machine's venv
# has the nvidia-* wheels) and in the driver's folders. ARLAS_CUDA_LIBS (colon-separated) is
# put first: a dry run with a CUDA build on a machine without a GPU points it at the wheels
# and the driver stub of scripts/cuda-toolchain.sh.
# Settings: see gpu_check.py's docstring (DEVICE, DTYPE, BATCHES, BUDGET, TORCH, ...).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PACK="${PACK:-$here}"

libs=()
[ -n "${ARLAS_CUDA_LIBS:-}" ] && libs+=("$ARLAS_CUDA_LIBS")
# The CUDA libraries of PyTorch's wheels: the folders holding them, wherever the layout puts them.
site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)"
for root in "$site/nvidia" /opt/torch/.venv/lib/python3*/site-packages/nvidia; do
  [ -d "$root" ] || continue
  while IFS= read -r dir; do
    libs+=("$dir")
  done < <(find "$root" \( -name 'libcublas.so.*' -o -name 'libcublasLt.so.*' -o -name 'libcurand.so.*' \
    -o -name 'libcudart.so.*' -o -name 'libnvrtc.so.*' \) -printf '%h\n' 2>/dev/null | sort -u)
done
# The driver's libcuda.so.1, when the loader's cache does not know it.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '; then
  for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
    [ -e "$dir/libcuda.so.1" ] && libs+=("$dir")
  done
fi
joined="$(IFS=:; echo "${libs[*]:-}")"
export LD_LIBRARY_PATH="${joined}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "gpu-check: LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
exec python3 "$here/gpu_check.py"
