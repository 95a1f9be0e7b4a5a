"""Three implementations agree: PyTorch routing (docs/design.md (routing semantics)), the C++ host reference, and the
kernels' selection algorithm (the shared __host__ __device__ helpers run on the host), through ctypes."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mod_export.models import routing
from mod_export.plugin_build import build_reference_library

F32 = ctypes.POINTER(ctypes.c_float)
I32 = ctypes.POINTER(ctypes.c_int32)
I64 = ctypes.c_int64


@pytest.fixture(scope="module")
def reference_lib(tmp_path_factory):
    lib = ctypes.CDLL(str(build_reference_library(tmp_path_factory.mktemp("ref-build"))))
    lib.mod_capacity_k.restype = I64
    lib.mod_capacity_k.argtypes = [I64, I64, I64]
    lib.mod_reference_topk_gather.argtypes = [F32, F32, I32, I64, I64, I64, I64, I64, F32, I32, F32]
    lib.mod_reference_scatter.argtypes = [F32, I32, F32, F32, F32, I64, I64, I64, I64, ctypes.c_int32, F32]
    lib.mod_radix_select.argtypes = [F32, I32, I64, I64, I64, I32, F32]
    return lib


def ptr(a: np.ndarray, kind):
    return a.ctypes.data_as(kind)


@st.composite
def cases(draw):
    B, T, D = draw(st.integers(1, 4)), draw(st.integers(1, 300)), draw(st.integers(1, 6))
    den = draw(st.integers(1, 16))
    num = draw(st.integers(1, den))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    kind = draw(st.sampled_from(["ties", "continuous", "all-equal"]))
    if kind == "ties":
        scores = (rng.integers(0, 3, (B, T)) * 0.5).astype(np.float32)
    elif kind == "all-equal":
        scores = np.full((B, T), 0.25, np.float32)
    else:
        scores = rng.standard_normal((B, T)).astype(np.float32)
    mask = (rng.random((B, T)) >= draw(st.sampled_from([0.0, 0.2, 0.7]))).astype(np.int32)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    return x, scores, mask, num, den, draw(st.sampled_from([0, 1]))


@settings(max_examples=1500, deadline=None)
@given(cases())
def test_pytorch_cpp_reference_and_kernel_selection_agree(reference_lib, case):
    x, scores, mask, num, den, gate = case
    B, T, D = x.shape
    k = routing.capacity_k(T, num, den)
    assert reference_lib.mod_capacity_k(T, num, den) == k
    tx, tidx, ts = routing.topk_gather(torch.from_numpy(x), torch.from_numpy(scores), torch.from_numpy(mask), num, den)

    x_sel = np.zeros((B, k, D), np.float32)
    idx = np.zeros((B, k), np.int32)
    s_sel = np.zeros((B, k), np.float32)
    reference_lib.mod_reference_topk_gather(
        ptr(x, F32),
        ptr(scores, F32),
        ptr(mask, I32),
        B,
        T,
        D,
        num,
        den,
        ptr(x_sel, F32),
        ptr(idx, I32),
        ptr(s_sel, F32),
    )
    np.testing.assert_array_equal(idx, tidx.numpy())
    np.testing.assert_array_equal(s_sel, ts.numpy())
    np.testing.assert_array_equal(x_sel, tx.numpy())

    radix_idx = np.full((B, k), -1, np.int32)
    radix_s = np.zeros((B, k), np.float32)
    reference_lib.mod_radix_select(ptr(scores, F32), ptr(mask, I32), B, T, k, ptr(radix_idx, I32), ptr(radix_s, F32))
    np.testing.assert_array_equal(radix_idx, tidx.numpy())
    np.testing.assert_array_equal(radix_s, ts.numpy())

    y_sel = (x_sel * 1.5 - 0.25).astype(np.float32)
    out = np.zeros_like(x)
    reference_lib.mod_reference_scatter(
        ptr(x, F32), ptr(idx, I32), ptr(x_sel, F32), ptr(y_sel, F32), ptr(s_sel, F32), B, T, D, k, gate, ptr(out, F32)
    )
    expected = routing.scatter_update(torch.from_numpy(x), tidx, tx, torch.from_numpy(y_sel), ts, gate).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_long_rows_past_tensorrt_topk_limit(reference_lib):
    T, B = 40000, 2  # k = 5000 > 3840 (TensorRT's built-in TopK limit)
    rng = np.random.default_rng(0)
    scores = (rng.integers(0, 50, (B, T)) * 0.1).astype(np.float32)
    mask = np.ones((B, T), np.int32)
    k = routing.capacity_k(T, 1, 8)
    idx = np.zeros((B, k), np.int32)
    s = np.zeros((B, k), np.float32)
    reference_lib.mod_radix_select(ptr(scores, F32), ptr(mask, I32), B, T, k, ptr(idx, I32), ptr(s, F32))
    _, tidx, _ = routing.topk_gather(torch.zeros(B, T, 1), torch.from_numpy(scores), torch.from_numpy(mask), 1, 8)
    np.testing.assert_array_equal(idx, tidx.numpy())
