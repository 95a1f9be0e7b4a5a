"""Build and locate libmod_export_plugins.so (the TensorRT plugins) with CMake.

`library_path()` is what engines and runtimes load; `build_plugins()` is `mod-export build-plugins`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mod_export.errors import MissingDependencyError, ModExportError

LIBRARY_NAME = "libmod_export_plugins.so"
REFERENCE_LIBRARY_NAME = "libmod_reference_capi.so"
DEFAULT_ARCHS = "80;86;87;89;90"
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
        raise MissingDependencyError(f"{path} not found: run `mod-export build-plugins` (needs nvcc and TensorRT headers)")
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
    tests_passed: bool | None


def _run(cmd: list[str], what: str, show_progress: bool) -> None:
    """Run a CMake step, turning its `[ NN%]` lines into a progress bar; one-line error on failure."""
    bar = None
    if show_progress:
        from tqdm import tqdm

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


def build_plugins(build_dir: str | os.PathLike | None = None, tensorrt_include: str | os.PathLike | None = None,
                  archs: str = DEFAULT_ARCHS, run_tests: bool = True, require_library: bool = True,
                  jobs: int | None = None, show_progress: bool = True) -> BuildResult:
    if shutil.which("cmake") is None:
        raise MissingDependencyError("cmake not found: install CMake >= 3.18")
    nvcc = find_nvcc()
    if nvcc is None:
        raise MissingDependencyError("nvcc not found: install the CUDA toolkit or set CUDACXX=/path/to/nvcc")
    include = find_tensorrt_include(tensorrt_include)
    if include is None and require_library:
        raise MissingDependencyError(
            "TensorRT headers (NvInferRuntime.h) not found: pass --tensorrt-include DIR or set TENSORRT_INCLUDE_DIR "
            "(use --kernels-only to build and test the kernels without them)")
    build = Path(build_dir or default_build_dir()).absolute()
    configure = ["cmake", "-S", str(source_dir()), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={nvcc}",
                 f"-DCMAKE_CUDA_ARCHITECTURES={archs}", f"-DMOD_BUILD_TESTS={'ON' if run_tests else 'OFF'}"]
    if include is not None:
        configure.append(f"-DTENSORRT_INCLUDE_DIR={include}")
    _run(configure, "cmake configure", False)
    _run(["cmake", "--build", str(build), "-j", str(jobs or os.cpu_count() or 2)], "building plugins", show_progress)
    tests_passed = None
    if run_tests:
        _run(["ctest", "--test-dir", str(build), "--output-on-failure"], "host tests (ctest)", False)
        tests_passed = True
    library = build / LIBRARY_NAME if include is not None else None
    return BuildResult(build, library, tests_passed)


def build_reference_library(build_dir: str | os.PathLike) -> Path:
    """Only the host reference's C ABI (no CUDA, no TensorRT): for the Python cross-check tests."""
    if shutil.which("cmake") is None:
        raise MissingDependencyError("cmake not found")
    build = Path(build_dir)
    _run(["cmake", "-S", str(source_dir()), "-B", str(build), "-DMOD_BUILD_CUDA=OFF", "-DMOD_BUILD_TESTS=OFF"], "cmake configure", False)
    _run(["cmake", "--build", str(build), "--target", "mod_reference_capi", "-j", "2"], "building reference", False)
    return build / REFERENCE_LIBRARY_NAME
