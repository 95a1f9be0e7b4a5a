#!/usr/bin/env bash
# The one command for a GPU machine that has CUDA (nvcc), CMake and a CUDA build of PyTorch but no TensorRT:
#
#     bash tests/gpu/run_checks.sh
#
# 1. builds the kernels and their C ABI (libmod_export_kernels.so) for this GPU's architecture only,
#    with the host tests where GoogleTest is installed;
# 2. runs the kernel tests against the PyTorch reference (tests/gpu/test_kernels.py) and the C ABI's
#    argument checks (tests/unit/test_kernel_abi.py, test_kernel_harness.py);
# 3. times the kernels against the copy bandwidth and writes the kernels section of benchmarks/RESULTS.md,
#    then times the decode-step kernels (MoDTakeCount, MoDCacheAppend in place and with the copy).
# Stops at the first failure. Needs nothing installed beyond torch, numpy and pytest (no pip, no network):
# the package runs from this checkout. tests/gpu/README.md says what it prints.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "error: $PY cannot import torch (activate the environment with the CUDA build of PyTorch, or set PYTHON=)" >&2
  exit 4
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: PyTorch sees no CUDA GPU (torch.cuda.is_available() is False); nothing to check" >&2
  exit 4
fi
arch=$("$PY" -c "import torch; print('%d%d' % torch.cuda.get_device_capability())")
build=build/gpu-check
echo "== 1/3 build for sm_$arch ($("$PY" -c "import torch; print(torch.cuda.get_device_name())"))"
"$PY" -m mod_export.cli.main build-plugins --kernels-only --archs "$arch" --build-dir "$build" --jobs "$(nproc)"
export MOD_EXPORT_KERNEL_LIBRARY="$PWD/$build/libmod_export_kernels.so"

echo "== 2/3 kernel tests"
"$PY" -m pytest -q -p no:cacheprovider tests/gpu/test_kernels.py tests/unit/test_kernel_abi.py \
  tests/unit/test_kernel_harness.py

echo "== 3/3 timing"
"$PY" benchmarks/kernels.py --library "$MOD_EXPORT_KERNEL_LIBRARY"
"$PY" benchmarks/kernels.py --decode --library "$MOD_EXPORT_KERNEL_LIBRARY"
echo "== all GPU checks passed in $(( $(date +%s) - start )) s"
