"""Build and locate libmod_export_plugins.so (the TensorRT plugins) and libmod_export_kernels.so (the
kernels' C ABI, no TensorRT) with CMake.

`library_path()` is what engines and runtimes load; `kernel_library_path()` is what the kernel tests and
benchmarks/kernels.py load; `build_plugins()` is `mod-export build-plugins`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mod_export.contract import CUDA_ARCHS
from mod_export.contract import LIBRARY_NAME as CONTRACT_LIBRARY_NAME
from mod_export.errors import MissingDependencyError, ModExportError
from mod_export.output import BuildFolder, check_build_folder
from mod_export.output.target import cmake_cache_entry

LIBRARY_NAME = CONTRACT_LIBRARY_NAME
KERNEL_LIBRARY_NAME = "libmod_export_kernels.so"
REFERENCE_LIBRARY_NAME = "libmod_reference_capi.so"
KERNEL_LIBRARY_ENV = "MOD_EXPORT_KERNEL_LIBRARY"
DEFAULT_ARCHS = CUDA_ARCHS
_log = logging.getLogger(__name__)
HEADER_CANDIDATES = (
    "/usr/include/x86_64-linux-gnu",  # Debian/Ubuntu TensorRT packages
    "/usr/include/aarch64-linux-gnu",  # JetPack
    "/usr/local/tensorrt/include",
    "/opt/tensorrt/include",
)


def source_dir() -> Path:
    """The plugins/ CMake project shipped beside the package."""
    path = Path(__file__).resolve().parent.parent / "plugins"
    if not (path / "CMakeLists.txt").is_file():
        raise MissingDependencyError(f"plugin sources not found at {path} (install mod-export from a source checkout)")
    return path


def default_build_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "mod_export" / "plugins"


def library_path(build_dir: str | os.PathLike | None = None) -> Path:
    """Where the plugin library is: $MOD_EXPORT_PLUGIN_LIBRARY, else the default build folder."""
    override = os.environ.get("MOD_EXPORT_PLUGIN_LIBRARY")
    path = Path(override) if override else Path(build_dir or default_build_dir()) / LIBRARY_NAME
    if not path.is_file():
        raise MissingDependencyError(
            f"{path} not found: run `mod-export build-plugins` (needs nvcc and TensorRT headers)"
        )
    return path


def kernel_library_path(build_dir: str | os.PathLike | None = None) -> Path:
    """Where the kernels' C ABI is: $MOD_EXPORT_KERNEL_LIBRARY, else the given or default build folder."""
    override = os.environ.get(KERNEL_LIBRARY_ENV)
    path = Path(override) if override else Path(build_dir or default_build_dir()) / KERNEL_LIBRARY_NAME
    if not path.is_file():
        raise MissingDependencyError(f"{path} not found: run `mod-export build-plugins --kernels-only` (needs nvcc)")
    return path


def find_nvcc() -> str | None:
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def find_tensorrt_include(explicit: str | os.PathLike | None = None) -> Path | None:
    candidates = [explicit, os.environ.get("TENSORRT_INCLUDE_DIR"), *HEADER_CANDIDATES]
    for c in candidates:
        if c and (Path(c) / "NvInferRuntime.h").is_file():
            return Path(c)
    if explicit:
        raise MissingDependencyError(f"--tensorrt-include {explicit} has no NvInferRuntime.h")
    return None


@dataclass
class BuildResult:
    build_dir: Path
    library: Path | None  # None when no TensorRT headers were found (kernels and tests only)
    tests_passed: bool | None  # None when the host tests were not run
    kernel_library: Path | None = None  # libmod_export_kernels.so, the kernels' C ABI
    tests_skipped: str | None = None  # why the host tests were not built, e.g. GoogleTest not found


def _run(cmd: list[str], what: str, show_progress: bool) -> None:
    """Run a CMake step, turning its `[ NN%]` lines into a progress bar; one-line error on failure."""
    bar = None
    if show_progress:
        try:
            from tqdm import tqdm  # noqa: PLC0415 - optional: the bare GPU check machine may lack it
        except ImportError:  # a bare GPU machine may lack it: build without a bar
            tqdm = None
        if tqdm is not None:
            bar = tqdm(total=100, desc=what, file=sys.stderr, bar_format="{desc}: {percentage:3.0f}%|{bar}|")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        match = re.match(r"\[\s*(\d+)%\]", line)
        if bar is not None and match:
            bar.n = int(match.group(1))
            bar.refresh()
    code = proc.wait()
    if bar is not None:
        bar.n = 100 if code == 0 else bar.n
        bar.close()
    if code != 0:
        errors = [ln for ln in lines if "error" in ln.lower()] or lines[-1:]
        raise ModExportError(f"{what} failed: {errors[0].strip()[:300] if errors else 'exit ' + str(code)}")


def build_plugins(
    build_dir: str | os.PathLike | None = None,
    tensorrt_include: str | os.PathLike | None = None,
    archs: str = DEFAULT_ARCHS,
    run_tests: bool = True,
    require_library: bool = True,
    jobs: int | None = None,
    show_progress: bool = True,
    *,
    extra_cmake_args: Sequence[str] = (),
) -> BuildResult:
    """Configure, build and (if `run_tests`) run the host tests. Without GoogleTest the libraries are still
    built and `tests_skipped` says why the tests were not; `extra_cmake_args` go to the configure step."""
    check_build_folder(build_dir or default_build_dir(), source_dir())  # before anything else: never a user's folder
    if shutil.which("cmake") is None:
        raise MissingDependencyError("cmake not found: install CMake >= 3.18")
    nvcc = find_nvcc()
    if nvcc is None:
        raise MissingDependencyError("nvcc not found: install the CUDA toolkit or set CUDACXX=/path/to/nvcc")
    include = find_tensorrt_include(tensorrt_include)
    if include is None and require_library:
        raise MissingDependencyError(
            "TensorRT headers (NvInferRuntime.h) not found: pass --tensorrt-include DIR or set TENSORRT_INCLUDE_DIR "
            "(use --kernels-only to build and test the kernels without them)"
        )
    # the build folder: new, empty, or one of ours (its CMakeCache.txt names this project and source), locked for
    # the whole build; a folder of anyone else's is refused, never written into (mod_export.output)
    with BuildFolder(build_dir or default_build_dir(), source_dir()) as build:
        return _configure_build_test(build, nvcc, include, archs, run_tests, jobs, show_progress, extra_cmake_args)


def _configure_build_test(
    build: Path,
    nvcc: str,
    include: Path | None,
    archs: str,
    run_tests: bool,
    jobs: int | None,
    show_progress: bool,
    extra_cmake_args: Sequence[str],
) -> BuildResult:
    configure = [
        "cmake",
        "-S",
        str(source_dir()),
        "-B",
        str(build),
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        f"-DCMAKE_CUDA_ARCHITECTURES={archs}",
        f"-DMOD_BUILD_TESTS={'ON' if run_tests else 'OFF'}",
        *extra_cmake_args,
    ]
    if include is not None:
        configure.append(f"-DTENSORRT_INCLUDE_DIR={include}")
    _run(configure, "cmake configure", False)
    skipped = (cmake_cache_entry(build / "CMakeCache.txt", "MOD_HOST_TESTS_SKIPPED") or None) if run_tests else None
    _run(["cmake", "--build", str(build), "-j", str(jobs or os.cpu_count() or 2)], "building plugins", show_progress)
    tests_passed = None
    if skipped:
        _log.debug("host tests skipped: %s", skipped)  # the CLI prints it; a library call returns it
    elif run_tests:
        _run(["ctest", "--test-dir", str(build), "--output-on-failure"], "host tests (ctest)", False)
        tests_passed = True
    library = build / LIBRARY_NAME if include is not None else None
    kernels = build / KERNEL_LIBRARY_NAME
    return BuildResult(build, library, tests_passed, kernels if kernels.is_file() else None, skipped)


def build_reference_library(build_dir: str | os.PathLike) -> Path:
    """Only the host reference's C ABI (no CUDA, no TensorRT): for the Python cross-check tests."""
    if shutil.which("cmake") is None:
        raise MissingDependencyError("cmake not found")
    with BuildFolder(build_dir, source_dir()) as build:
        _run(
            ["cmake", "-S", str(source_dir()), "-B", str(build), "-DMOD_BUILD_CUDA=OFF", "-DMOD_BUILD_TESTS=OFF"],
            "cmake configure",
            False,
        )
        _run(["cmake", "--build", str(build), "--target", "mod_reference_capi", "-j", "2"], "building reference", False)
        return build / REFERENCE_LIBRARY_NAME
