"""GPU only (marker `gpu`, no TensorRT needed): the CUDA kernels of both plugins, called through their C ABI
(libmod_export_kernels.so) with PyTorch CUDA tensors, against the PyTorch reference of docs/design.md (routing semantics).

Thousands of random cases (ties, all-equal rows, signed zeros, infinities, every padding pattern, odd
widths, misaligned pointers) plus T from 1 to 65536, k past 3840 and B = 64, for float32, float16 and
bfloat16 x. Skips with one reason where PyTorch sees no GPU (conftest.py). The checks themselves are
tests/kernel_cases.py, shown to fail on wrong implementations by tests/unit/test_kernel_harness.py.

The library: $MOD_EXPORT_KERNEL_LIBRARY (tests/gpu/run_checks.sh builds it once), else it is built here
for this GPU's architecture (a minute or two).
"""

from __future__ import annotations

import os

import pytest
import torch

from tests.kernel_cases import check_all, edge_cases, random_cases

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    from mod_export.kernels import KernelLibrary
    from mod_export.plugins import KERNEL_LIBRARY_ENV, build_plugins

    path = os.environ.get(KERNEL_LIBRARY_ENV)
    if not path:
        major, minor = torch.cuda.get_device_capability()
        path = build_plugins(
            tmp_path_factory.mktemp("kernels"),
            archs=f"{major}{minor}",
            run_tests=False,
            require_library=False,
            show_progress=False,
        ).kernel_library
    return KernelLibrary(path)


def run(lib, cases, stream=None):
    with torch.cuda.stream(stream or torch.cuda.current_stream()):
        failing, problems = check_all(lib, cases)
    torch.cuda.synchronize()
    return failing, problems


def test_random_cases_match_the_reference(lib):
    cases = random_cases(3000, seed=2026, device="cuda")
    failing, problems = run(lib, cases)
    assert failing == 0, f"{failing} of {len(cases)} cases differ:\n" + "\n".join(problems)


def test_long_rows_big_batches_ties_and_padding_match_the_reference(lib):
    cases = edge_cases("cuda", large=True)
    failing, problems = run(lib, cases)
    assert failing == 0, f"{failing} of {len(cases)} cases differ:\n" + "\n".join(problems)


def test_the_kernels_run_on_the_stream_they_are_given(lib):
    side = torch.cuda.Stream()
    cases = random_cases(200, seed=7, device="cuda")
    torch.cuda.synchronize()
    failing, problems = run(lib, cases, stream=side)
    assert failing == 0, "\n".join(problems)


def test_argument_errors_on_the_device_are_typed_errors(lib):
    from mod_export.kernels import KernelError

    x = torch.zeros(2, 8, 4, device="cuda", dtype=torch.float16)
    scores = torch.zeros(2, 8, device="cuda")
    with pytest.raises(KernelError, match="bad capacity"):
        lib.topk_gather(x, scores, None, 9, 8)
    with pytest.raises(KernelError, match="mask must be torch.int32"):
        lib.topk_gather(x, scores, torch.ones(2, 8, device="cuda", dtype=torch.int64), 1, 8)
    with pytest.raises(KernelError, match="BAD_ATTRIBUTE"):
        idx = torch.zeros(2, 1, device="cuda", dtype=torch.int32)
        lib.scatter(x, idx, x[:, :1].contiguous(), x[:, :1].contiguous(), scores[:, :1].contiguous(), 3)
