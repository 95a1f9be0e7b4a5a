"""ctypes binding of libmod_export_kernels.so, the C ABI over the MoD CUDA kernels (plugins/kernelApi/).

The kernels the TensorRT plugins run, callable without TensorRT: PyTorch CUDA tensors go in as device
pointers, on the current (or a given) CUDA stream. Used by tests/gpu/test_kernels.py and
benchmarks/kernels.py; `raw` exposes the C functions themselves for the argument-check tests.

    lib = KernelLibrary(kernel_library_path())
    x_sel, idx, s_sel = lib.topk_gather(x, scores, mask, 1, 8)
"""

from __future__ import annotations

import ctypes
import os

import torch

from mod_export.errors import ModExportError

ABI_VERSION = 2  # 2: the decode-step kernels (take_count, cache_append)
STATUS_NAMES = {0: "OK", 1: "NULL_POINTER", 2: "BAD_SIZE", 3: "BAD_DTYPE", 4: "BAD_ATTRIBUTE", 5: "CUDA_ERROR"}
STATUS = {name: code for code, name in STATUS_NAMES.items()}
DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}


class KernelError(ModExportError):
    """A kernel call was refused (bad argument) or a CUDA call failed; `status` is the C ABI's code."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


_I64, _I32, _P = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
_SIGNATURES = {
    "mod_kernels_abi_version": (_I32, []),
    "mod_kernels_status_string": (ctypes.c_char_p, [_I32]),
    "mod_kernels_last_cuda_error": (_I32, []),
    "mod_kernels_capacity_k": (_I64, [_I64, _I64, _I64]),
    "mod_kernels_topk_select": (_I32, [_P, _P, _I64, _I64, _I64, _P, _P, _P]),
    "mod_kernels_gather_rows": (_I32, [_P, _I32, _P, _I64, _I64, _I64, _I64, _P, _P]),
    "mod_kernels_topk_gather": (_I32, [_P, _I32, _P, _P, _I64, _I64, _I64, _I64, _P, _P, _P, _P]),
    "mod_kernels_scatter": (_I32, [_P, _I32, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _I32, _P, _P]),
    "mod_kernels_take_count": (_I32, [_P, _I64, _P, _P, _P]),
    "mod_kernels_cache_append": (_I32, [_P, _I32, _P, _P, _P, _I64, _I64, _I64, _I64, _I64, _P, _P]),
}


def dtype_code(dtype: torch.dtype) -> int:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_CODES:
        raise KernelError(f"x must be float32, float16 or bfloat16, got {name}")
    return DTYPE_CODES[name]


class KernelLibrary:
    """The loaded C ABI. Tensor methods check devices, dtypes and contiguity, allocate the outputs and raise
    KernelError on a non-zero status; nothing here synchronises the stream."""

    def __init__(self, path: str | os.PathLike):
        try:
            self.raw = ctypes.CDLL(os.fspath(path))
        except OSError as exc:
            raise KernelError(f"cannot load {path}: {exc}") from exc
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.raw, name)
            fn.restype, fn.argtypes = restype, argtypes
        version = self.raw.mod_kernels_abi_version()
        if version != ABI_VERSION:
            raise KernelError(f"{path}: C ABI version {version}, this package speaks version {ABI_VERSION}")
        self.path = os.fspath(path)

    # ------------------------------------------------------------------ plain values

    def capacity_k(self, T: int, num: int, den: int) -> int:
        return int(self.raw.mod_kernels_capacity_k(T, num, den))

    def status_string(self, status: int) -> str:
        return self.raw.mod_kernels_status_string(status).decode()

    def check(self, status: int, what: str) -> None:
        if status == 0:
            return
        detail = self.status_string(status)
        if status == STATUS["CUDA_ERROR"]:
            detail += f" (cudaError_t {self.raw.mod_kernels_last_cuda_error()})"
        raise KernelError(f"{what}: {STATUS_NAMES.get(status, status)}: {detail}", status)

    # ------------------------------------------------------------------ tensors

    @staticmethod
    def _stream(stream) -> int | None:

        return (stream or torch.cuda.current_stream()).cuda_stream or None

    @staticmethod
    def _require(what: str, t, dtype=None, dims: int | None = None) -> None:
        if t is None:
            return
        if not t.is_cuda:
            raise KernelError(f"{what} must be a CUDA tensor (got device {t.device})")
        if not t.is_contiguous():
            raise KernelError(f"{what} must be contiguous")
        if dtype is not None and t.dtype != dtype:
            raise KernelError(f"{what} must be {dtype}, got {t.dtype}")
        if dims is not None and t.dim() != dims:
            raise KernelError(f"{what} must have {dims} dimensions, got {t.dim()}")

    @staticmethod
    def _shape(what: str, t, shape: tuple) -> None:
        if t is not None and tuple(t.shape) != tuple(shape):
            raise KernelError(f"{what} must have shape {list(shape)}, got {list(t.shape)}")

    @staticmethod
    def _ptr(t) -> int | None:
        return t.data_ptr() if t is not None and t.numel() > 0 else None

    def topk_select(self, scores, mask, k: int, stream=None):
        """scores[B,T] f32, mask[B,T] int32 or None -> idx[B,k] int32 ascending, s_sel[B,k] f32."""

        self._require("scores", scores, torch.float32, 2)
        self._require("mask", mask, torch.int32, 2)
        B, T = scores.shape
        self._shape("mask", mask, (B, T))
        idx = torch.empty(B, k, dtype=torch.int32, device=scores.device)
        s_sel = torch.empty(B, k, dtype=torch.float32, device=scores.device)
        self.check(
            self.raw.mod_kernels_topk_select(
                self._ptr(scores), self._ptr(mask), B, T, k, self._ptr(idx), self._ptr(s_sel), self._stream(stream)
            ),
            "topk_select",
        )
        return idx, s_sel

    def gather_rows(self, x, idx, stream=None):
        """x[B,T,D], idx[B,k] int32 -> x_sel[B,k,D]."""

        self._require("x", x, dims=3)
        self._require("idx", idx, torch.int32, 2)
        B, T, D = x.shape
        k = idx.shape[1]
        self._shape("idx", idx, (B, k))
        x_sel = torch.empty(B, k, D, dtype=x.dtype, device=x.device)
        self.check(
            self.raw.mod_kernels_gather_rows(
                self._ptr(x), dtype_code(x.dtype), self._ptr(idx), B, T, D, k, self._ptr(x_sel), self._stream(stream)
            ),
            "gather_rows",
        )
        return x_sel

    def topk_gather(self, x, scores, mask, num: int, den: int, stream=None):
        """The MoDTopKGather op: (x_sel[B,k,D], idx[B,k] int32, s_sel[B,k] f32), k = ceil(T*num/den)."""

        self._require("x", x, dims=3)
        self._require("scores", scores, torch.float32, 2)
        self._require("mask", mask, torch.int32, 2)
        B, T, D = x.shape
        self._shape("scores", scores, (B, T))
        self._shape("mask", mask, (B, T))
        k = self.capacity_k(T, num, den)
        if k < 0:
            raise KernelError(f"bad capacity {num}/{den} (need 0 < num <= den <= 65536)", STATUS["BAD_ATTRIBUTE"])
        x_sel = torch.empty(B, k, D, dtype=x.dtype, device=x.device)
        idx = torch.empty(B, k, dtype=torch.int32, device=x.device)
        s_sel = torch.empty(B, k, dtype=torch.float32, device=x.device)
        self.check(
            self.raw.mod_kernels_topk_gather(
                self._ptr(x),
                dtype_code(x.dtype),
                self._ptr(scores),
                self._ptr(mask),
                B,
                T,
                D,
                k,
                self._ptr(x_sel),
                self._ptr(idx),
                self._ptr(s_sel),
                self._stream(stream),
            ),
            "topk_gather",
        )
        return x_sel, idx, s_sel

    def scatter(self, x, idx, x_sel, y_sel, s_sel, gate: int, out=None, stream=None):
        """The MoDScatter op; `out` may be x itself (in place: the copy of x is skipped)."""

        self._require("x", x, dims=3)
        self._require("idx", idx, torch.int32, 2)
        for name, t in (("x_sel", x_sel), ("y_sel", y_sel)):
            self._require(name, t, x.dtype, 3)
        self._require("s_sel", s_sel, torch.float32, 2)
        out = torch.empty_like(x) if out is None else out
        self._require("out", out, x.dtype, 3)
        B, T, D = x.shape
        k = idx.shape[1]
        for name, t, shape in (
            ("idx", idx, (B, k)),
            ("x_sel", x_sel, (B, k, D)),
            ("y_sel", y_sel, (B, k, D)),
            ("s_sel", s_sel, (B, k)),
            ("out", out, (B, T, D)),
        ):
            self._shape(name, t, shape)
        self.check(
            self.raw.mod_kernels_scatter(
                self._ptr(x),
                dtype_code(x.dtype),
                self._ptr(idx),
                self._ptr(x_sel),
                self._ptr(y_sel),
                self._ptr(s_sel),
                B,
                T,
                D,
                k,
                gate,
                self._ptr(out),
                self._stream(stream),
            ),
            "scatter",
        )
        return out

    # ------------------------------------------------------------------ decode-step ops (docs/generation.md)

    def take_count(self, take, stream=None):
        """The MoDTakeCount op: take [B] bool -> (rows [B] int32, valid up to count; count [] int32), on device."""
        self._require("take", take, torch.bool, 1)
        B = take.shape[0]
        rows = torch.full((B,), -1, dtype=torch.int32, device=take.device)
        count = torch.zeros((), dtype=torch.int32, device=take.device)
        self.check(
            self.raw.mod_kernels_take_count(
                self._ptr(take), B, self._ptr(rows), count.data_ptr(), self._stream(stream)
            ),
            "take_count",
        )
        return rows, count

    def cache_append(self, cache, entry, length, rows, n: int, out=None, stream=None):
        """The MoDCacheAppend op: cache [B,H,S,Dh], entry [B,H,1,Dh], length [B] int64, rows [>= n] int32 (the
        first n are used). `out` may be cache itself (in place: no copy). Returns out."""
        self._require("cache", cache, dims=4)
        self._require("entry", entry, cache.dtype, 4)
        self._require("length", length, torch.int64, 1)
        self._require("rows", rows, torch.int32, 1)
        out = torch.empty_like(cache) if out is None else out
        self._require("out", out, cache.dtype, 4)
        B, H, S, Dh = cache.shape
        for name, t, shape in (("entry", entry, (B, H, 1, Dh)), ("length", length, (B,)), ("out", out, (B, H, S, Dh))):
            self._shape(name, t, shape)
        if not 0 <= n <= min(B, rows.shape[0]):
            raise KernelError(f"n = {n} must be within 0 .. min(B, len(rows))", STATUS["BAD_SIZE"])
        self.check(
            self.raw.mod_kernels_cache_append(
                self._ptr(cache),
                dtype_code(cache.dtype),
                self._ptr(entry),
                self._ptr(length),
                self._ptr(rows),
                n,
                B,
                H,
                S,
                Dh,
                self._ptr(out),
                self._stream(stream),
            ),
            "cache_append",
        )
        return out
