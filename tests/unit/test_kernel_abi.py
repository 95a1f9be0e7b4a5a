"""CPU side of libmod_export_kernels.so (plugins/kernelApi/), built here with nvcc: the C ABI refuses bad
arguments with a status code before any CUDA call, so every check runs without a GPU. Also the issue-12
path: `build-plugins --kernels-only` without GoogleTest builds the libraries and says in one line why the
host tests were skipped. The kernels themselves run in tests/gpu/test_kernels.py."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
import torch

from mod_export.kernel_abi import STATUS, KernelError, KernelLibrary
from mod_export.models import routing
from mod_export.plugin_build import find_nvcc
from tests.helpers import run_cli

NO_GTEST = "-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON"
SKIP_LINE = "host tests skipped: GoogleTest not found (install libgtest-dev or pass -DGTest_ROOT=...)"
EXPORTED = {
    "mod_kernels_abi_version",
    "mod_kernels_status_string",
    "mod_kernels_last_cuda_error",
    "mod_kernels_capacity_k",
    "mod_kernels_topk_select",
    "mod_kernels_gather_rows",
    "mod_kernels_topk_gather",
    "mod_kernels_scatter",
    "mod_kernels_take_count",
    "mod_kernels_cache_append",
}


@pytest.fixture(scope="module")
def kernel_build(tmp_path_factory):
    """A kernels-only build for one architecture (about 15 s on 2 cores) as if GoogleTest were missing."""
    if find_nvcc() is None or shutil.which("cmake") is None:
        pytest.skip("needs nvcc and cmake to build libmod_export_kernels.so")
    from mod_export.plugin_build import build_plugins

    build = tmp_path_factory.mktemp("kernels-build")
    return build_plugins(
        build, archs="80", require_library=False, jobs=2, show_progress=False, extra_cmake_args=[NO_GTEST]
    )


@pytest.fixture(scope="module")
def lib(kernel_build):
    return KernelLibrary(kernel_build.kernel_library)


def buffers():
    """Valid host memory for every pointer that is not under test (never dereferenced: calls fail first)."""
    f32 = np.zeros(64, np.float32)
    i32 = np.zeros(64, np.int32)
    return f32, i32, f32.ctypes.data, i32.ctypes.data


def test_without_googletest_the_libraries_build_and_the_reason_is_returned(kernel_build):
    assert kernel_build.tests_skipped == SKIP_LINE.removeprefix("host tests skipped: ")
    assert kernel_build.tests_passed is None
    assert kernel_build.kernel_library is not None and kernel_build.kernel_library.is_file()
    assert (kernel_build.build_dir / "libmod_reference_capi.so").is_file()
    assert not (kernel_build.build_dir / "tests").exists(), "no test targets without GoogleTest"


def test_the_cli_says_so_in_one_line(kernel_build):
    # The cached -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON stays in force; the build is up to date (about 1 s).
    proc = run_cli(
        "build-plugins", "--kernels-only", "--build-dir", str(kernel_build.build_dir), "--archs", "80", "--jobs", "2"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines.count(SKIP_LINE) == 1 and sum("skipped" in line for line in lines) == 1, proc.stdout
    assert "GTest" not in proc.stderr and "Traceback" not in proc.stderr
    assert any("libmod_export_kernels.so" in line for line in lines)


def test_the_library_exports_only_the_c_abi(kernel_build):
    if shutil.which("nm") is None:
        pytest.skip("needs nm (binutils)")
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(kernel_build.kernel_library)], capture_output=True, text=True, check=True
    ).stdout
    assert {line.split()[-1] for line in out.splitlines() if line.strip()} == EXPORTED


def test_version_status_strings_and_capacity(lib):
    assert lib.raw.mod_kernels_abi_version() == 2
    strings = {lib.status_string(code) for code in STATUS.values()}
    assert len(strings) == len(STATUS) and lib.status_string(99) == "unknown status"
    for T in (0, 1, 2, 7, 8, 9, 97, 4096, 30721, 65536, 2**31 - 1):
        for num, den in ((1, 8), (1, 1), (3, 7), (65536, 65536), (1, 65536)):
            assert lib.capacity_k(T, num, den) == routing.capacity_k(T, num, den), (T, num, den)
    for T, num, den in ((-1, 1, 8), (8, 0, 8), (8, 9, 8), (8, 1, 0), (8, 1, 65537), (8, -1, 8)):
        assert lib.capacity_k(T, num, den) == -1


def test_null_pointers_are_refused(lib):
    _, _, f, i = buffers()
    NULL = STATUS["NULL_POINTER"]
    select = lambda s=f, idx=i, ss=f: lib.raw.mod_kernels_topk_select(s, None, 2, 8, 1, idx, ss, None)  # noqa: E731
    assert [select(s=None), select(idx=None), select(ss=None)] == [NULL] * 3
    gather = lambda x=f, idx=i, out=f: lib.raw.mod_kernels_gather_rows(x, 0, idx, 2, 8, 4, 1, out, None)  # noqa: E731
    assert [gather(x=None), gather(idx=None), gather(out=None)] == [NULL] * 3

    def topk(**null):
        args = dict(x=f, scores=f, x_sel=f, idx=i, s_sel=f) | null
        return lib.raw.mod_kernels_topk_gather(
            args["x"], 1, args["scores"], None, 2, 8, 4, 1, args["x_sel"], args["idx"], args["s_sel"], None
        )

    assert [topk(**{name: None}) for name in ("x", "scores", "x_sel", "idx", "s_sel")] == [NULL] * 5

    def scatter(**null):
        args = dict(x=f, idx=i, x_sel=f, y_sel=f, s_sel=f, out=f) | null
        return lib.raw.mod_kernels_scatter(
            args["x"], 2, args["idx"], args["x_sel"], args["y_sel"], args["s_sel"], 2, 8, 4, 1, 1, args["out"], None
        )

    assert [scatter(**{n: None}) for n in ("x", "idx", "x_sel", "y_sel", "s_sel", "out")] == [NULL] * 6
    assert lib.raw.mod_kernels_last_cuda_error() == 0, "no CUDA call was made"


@pytest.mark.parametrize(
    "B,T,D,k",
    [
        (-1, 8, 4, 1),
        (2, -1, 4, 1),
        (2, 8, -4, 1),
        (2, 8, 4, -1),
        (2, 8, 4, 9),
        (2, 2**31, 4, 1),
        (2**40, 2**31 - 1, 2**20, 1),
    ],
)
def test_bad_sizes_are_refused(lib, B, T, D, k):
    _, _, f, i = buffers()
    BAD = STATUS["BAD_SIZE"]
    assert lib.raw.mod_kernels_gather_rows(f, 0, i, B, T, D, k, f, None) == BAD
    assert lib.raw.mod_kernels_topk_gather(f, 0, f, None, B, T, D, k, f, i, f, None) == BAD
    assert lib.raw.mod_kernels_scatter(f, 0, i, f, f, f, B, T, D, k, 0, f, None) == BAD
    if D >= 0:  # the selection has no D
        assert lib.raw.mod_kernels_topk_select(f, None, B, T, k, i, f, None) == BAD


def test_batch_limit_of_the_row_kernels(lib):
    _, _, f, i = buffers()
    # gather/scatter put B on grid.y (<= 65535); the selection alone does not.
    assert lib.raw.mod_kernels_gather_rows(f, 0, i, 65536, 8, 4, 1, f, None) == STATUS["BAD_SIZE"]
    assert lib.raw.mod_kernels_scatter(f, 0, i, f, f, f, 65536, 8, 4, 1, 0, f, None) == STATUS["BAD_SIZE"]
    assert lib.raw.mod_kernels_topk_select(f, None, 65536, 8, 0, None, None, None) == STATUS["OK"]  # k = 0: no launch


@pytest.mark.parametrize("dtype", [-1, 3, 7, 99, 2**31 - 1])
def test_unknown_dtype_codes_are_refused(lib, dtype):
    _, _, f, i = buffers()
    BAD = STATUS["BAD_DTYPE"]
    assert lib.raw.mod_kernels_gather_rows(f, dtype, i, 2, 8, 4, 1, f, None) == BAD
    assert lib.raw.mod_kernels_topk_gather(f, dtype, f, None, 2, 8, 4, 1, f, i, f, None) == BAD
    assert lib.raw.mod_kernels_scatter(f, dtype, i, f, f, f, 2, 8, 4, 1, 0, f, None) == BAD
    assert lib.raw.mod_kernels_scatter(None, dtype, None, None, None, None, -1, 8, 4, 1, 0, None, None) == BAD, (
        "the dtype is checked first"
    )


@pytest.mark.parametrize("gate", [-1, 2, 255])
def test_unknown_gates_are_refused(lib, gate):
    _, _, f, i = buffers()
    assert lib.raw.mod_kernels_scatter(f, 0, i, f, f, f, 2, 8, 4, 1, gate, f, None) == STATUS["BAD_ATTRIBUTE"]


def test_empty_work_is_valid_and_needs_no_pointers(lib):
    # Nothing to select, gather or update: no CUDA call happens, so these succeed on any machine.
    assert lib.raw.mod_kernels_topk_select(None, None, 0, 5, 1, None, None, None) == STATUS["OK"]
    assert lib.raw.mod_kernels_topk_select(None, None, 3, 0, 0, None, None, None) == STATUS["OK"]
    assert lib.raw.mod_kernels_gather_rows(None, 1, None, 4, 9, 16, 0, None, None) == STATUS["OK"]
    assert lib.raw.mod_kernels_topk_gather(None, 2, None, None, 0, 9, 16, 2, None, None, None, None) == STATUS["OK"]
    assert lib.raw.mod_kernels_scatter(None, 0, None, None, None, None, 0, 9, 16, 2, 1, None, None) == STATUS["OK"]


def test_the_tensor_wrapper_refuses_cpu_tensors_before_calling(lib):
    x = torch.zeros(2, 8, 4)
    scores = torch.zeros(2, 8)
    with pytest.raises(KernelError, match="must be a CUDA tensor"):
        lib.topk_gather(x, scores, None, 1, 8)
    with pytest.raises(KernelError, match="must be a CUDA tensor"):
        lib.scatter(x, torch.zeros(2, 1, dtype=torch.int32), x[:, :1], x[:, :1], scores[:, :1], 1)
    with pytest.raises(KernelError, match="C ABI version|cannot load"):
        KernelLibrary("/nonexistent/libmod_export_kernels.so")


def test_a_failed_call_becomes_a_typed_error(lib):
    with pytest.raises(KernelError, match="BAD_SIZE") as info:
        lib.check(lib.raw.mod_kernels_topk_select(None, None, -1, 5, 1, None, None, None), "topk_select")
    assert info.value.status == STATUS["BAD_SIZE"]
    assert isinstance(lib.raw, ctypes.CDLL)


def test_decode_kernels_refuse_bad_arguments_before_any_cuda_call(lib):
    """MoDTakeCount / MoDCacheAppend through the C ABI: null pointers, bad sizes and dtypes come back as codes."""
    f32, i32, f, i = buffers()
    i64 = np.zeros(64, np.int64).ctypes.data
    u8 = np.zeros(64, np.uint8).ctypes.data
    raw, S = lib.raw, STATUS
    assert raw.mod_kernels_take_count(u8, -1, i, i, None) == S["BAD_SIZE"]
    assert raw.mod_kernels_take_count(u8, (1 << 20) + 1, i, i, None) == S["BAD_SIZE"]
    assert raw.mod_kernels_take_count(u8, 4, i, None, None) == S["NULL_POINTER"], "count is always needed"
    assert raw.mod_kernels_take_count(None, 4, i, i, None) == S["NULL_POINTER"]
    assert raw.mod_kernels_take_count(u8, 4, None, i, None) == S["NULL_POINTER"]

    def append(dtype=0, n=1, B=2, H=2, Sn=4, Dh=3, **null):
        args = dict(cache=f, entry=f, length=i64, rows=i, out=f) | null
        return raw.mod_kernels_cache_append(
            args["cache"], dtype, args["entry"], args["length"], args["rows"], n, B, H, Sn, Dh, args["out"], None
        )

    assert append(dtype=3) == S["BAD_DTYPE"]
    assert [append(n=3), append(n=-1), append(B=-1), append(Dh=-2)] == [S["BAD_SIZE"]] * 4
    assert append(B=2, H=1 << 40, Sn=1 << 30) == S["BAD_SIZE"], "overflow"
    assert [append(**{name: None}) for name in ("cache", "entry", "length", "rows", "out")] == [S["NULL_POINTER"]] * 5
    assert raw.mod_kernels_last_cuda_error() == 0, "no CUDA call was made"
    with pytest.raises(KernelError, match="must be a CUDA tensor"):
        lib.take_count(torch.zeros(3, dtype=torch.bool))
    with pytest.raises(KernelError, match="must be a CUDA tensor"):
        lib.cache_append(
            torch.zeros(1, 1, 2, 2),
            torch.zeros(1, 1, 1, 2),
            torch.zeros(1, dtype=torch.int64),
            torch.zeros(1, dtype=torch.int32),
            1,
        )
