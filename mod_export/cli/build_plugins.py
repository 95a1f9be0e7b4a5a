"""`mod-export build-plugins`: build libmod_export_plugins.so and libmod_export_kernels.so (CMake + nvcc) and
run the host tests (skipped, with one line saying why, where GoogleTest is missing)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mod_export.cli.types import positive_int
from mod_export.contract import CUDA_ARCHS
from mod_export.plugin_build import build_plugins


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = "Build the TensorRT plugin library (MoDTopKGather, MoDScatter) and run the host tests."
    parser.add_argument("--tensorrt-include", type=Path, help="TensorRT include directory (NvInferRuntime.h)")
    parser.add_argument("--build-dir", type=Path, help="build folder (default ~/.cache/mod_export/plugins)")
    parser.add_argument("--archs", default=CUDA_ARCHS, help=f"CUDA architectures (default {CUDA_ARCHS})")
    parser.add_argument(
        "--kernels-only",
        action="store_true",
        help="without TensorRT headers: kernels, their C ABI (libmod_export_kernels.so), reference and tests",
    )
    parser.add_argument("--no-tests", action="store_true", help="do not build or run the host tests")
    parser.add_argument("--jobs", type=positive_int, help="parallel compile jobs (default: the number of CPU cores)")


def run(args: argparse.Namespace) -> int:
    result = build_plugins(
        args.build_dir,
        args.tensorrt_include,
        args.archs,
        run_tests=not args.no_tests,
        require_library=not args.kernels_only,
        jobs=args.jobs,
    )
    if result.tests_skipped:
        print(f"host tests skipped: {result.tests_skipped}")
    elif result.tests_passed:
        print("host tests: passed (ctest)")
    if result.kernel_library is not None:
        print(f"wrote {result.kernel_library} (kernels' C ABI, no TensorRT)")
    if result.library is not None:
        print(f"wrote {result.library}")
    else:
        what = "kernels and host tests" if result.tests_passed else "kernels"
        print(f"built {what} in {result.build_dir} (no plugin library: TensorRT headers not found)")
    return 0
