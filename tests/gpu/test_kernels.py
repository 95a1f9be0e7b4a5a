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
    from mod_export.kernel_abi import KernelLibrary
    from mod_export.plugin_build import KERNEL_LIBRARY_ENV, build_plugins

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
    from mod_export.kernel_abi import KernelError

    x = torch.zeros(2, 8, 4, device="cuda", dtype=torch.float16)
    scores = torch.zeros(2, 8, device="cuda")
    with pytest.raises(KernelError, match="bad capacity"):
        lib.topk_gather(x, scores, None, 9, 8)
    with pytest.raises(KernelError, match="mask must be torch.int32"):
        lib.topk_gather(x, scores, torch.ones(2, 8, device="cuda", dtype=torch.int64), 1, 8)
    with pytest.raises(KernelError, match="BAD_ATTRIBUTE"):
        idx = torch.zeros(2, 1, device="cuda", dtype=torch.int32)
        lib.scatter(x, idx, x[:, :1].contiguous(), x[:, :1].contiguous(), scores[:, :1].contiguous(), 3)


def test_decode_step_kernels_match_the_reference(lib):
    """MoDTakeCount and MoDCacheAppend on the device against torch: n = 0, n = B, odd widths (scalar path),
    16-byte rows (vector path), int64 lengths at and past S (skipped), in place and out of place."""
    gen = torch.Generator(device="cpu").manual_seed(18)
    for B, H, S, Dh, p, dtype in (
        (1, 8, 64, 64, 1.0, torch.float16),
        (1, 8, 64, 64, 0.0, torch.float16),
        (37, 3, 17, 5, 0.4, torch.float32),
        (64, 32, 128, 128, 0.125, torch.bfloat16),
        (1000, 1, 3, 1, 0.5, torch.float32),
    ):
        take = (torch.rand(B, generator=gen) < p).cuda()
        rows, count = lib.take_count(take)
        want = torch.nonzero(take).flatten().to(torch.int32)
        n = int(count)
        assert n == want.numel() and torch.equal(rows[:n], want), (B, p)
        cache = torch.randn(B, H, S, Dh, generator=gen).to(dtype).cuda()
        entry = torch.randn(B, H, 1, Dh, generator=gen).to(dtype).cuda()
        length = torch.randint(0, S + 2, (B,), generator=gen).cuda()
        expected = cache.clone()
        for r in want.tolist():
            if int(length[r]) < S:
                expected[r, :, int(length[r])] = entry[r, :, 0]
        out = lib.cache_append(cache, entry, length, rows, n)
        torch.cuda.synchronize()
        assert torch.equal(out, expected), (B, H, S, Dh, dtype, "out of place")
        in_place = cache.clone()
        lib.cache_append(in_place, entry, length, rows, n, out=in_place)
        torch.cuda.synchronize()
        assert torch.equal(in_place, expected), (B, H, S, Dh, dtype, "in place")
