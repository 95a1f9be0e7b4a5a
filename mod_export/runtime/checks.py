"""What Session checks before anything reaches a backend, each a typed error with one sentence: its own arguments
(UsageError), the files it loads (IntegrityError, InputError) and the token ids and masks it is given
(InputError). numpy or torch tensors; torch is the caller's module from sys.modules, never imported here."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mod_export.backends import registry
from mod_export.backends.model import caller_torch, is_torch
from mod_export.backends.onnxrt.model import FORMS as ONNX_FORMS
from mod_export.errors import InputError, UsageError

FORMS = tuple(ONNX_FORMS)  # which ONNX file of an export folder ONNX Runtime runs
SOURCE_SUFFIXES = (".onnx", ".engine", ".plan")


# ---------------------------------------------------------------- Session's own arguments


def _choice(name: str, value, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{name} must be one of {choices}, got {value!r}")


def _flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be True or False, got {value!r}")


def check_options(source, backend, form, providers, cuda_graphs, threads, skip_integrity) -> Path:
    """Session(...)'s arguments, checked before any file is read; returns the source as a Path."""
    if not isinstance(source, (str, os.PathLike)):
        raise UsageError(
            f"source must be a path (an export directory, an .onnx or an .engine file), got {type(source).__name__}"
        )
    _choice("backend", backend, registry.runtime_names())  # read when used: the registry may grow
    _choice("form", form, FORMS)
    _flag("cuda_graphs", cuda_graphs)
    _flag("skip_integrity", skip_integrity)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise UsageError(f"threads must be None or an integer >= 0 (0: ONNX Runtime's choice), got {threads!r}")
    if providers is not None:
        have = ort.get_available_providers()
        if isinstance(providers, str) or not isinstance(providers, (list, tuple)) or not providers:
            raise UsageError(f"providers must be a non-empty list of provider names such as {have}, got {providers!r}")
        unknown = [p for p in providers if p not in have]
        if unknown:
            raise UsageError(f"provider {unknown[0]!r} is not available in this ONNX Runtime (available: {have})")
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path} not found")
    if path.is_file() and path.suffix not in SOURCE_SUFFIXES:
        raise InputError(f"{path} is not an export directory, an .onnx file or a TensorRT .engine file")
    return path


# ---------------------------------------------------------------- run()'s inputs


def check_ids(ids, torch_input: bool, vocab: int | None) -> None:
    dtype = ids.dtype
    integer = (
        (not dtype.is_floating_point and not dtype.is_complex and dtype != caller_torch().bool)
        if torch_input
        else np.issubdtype(dtype, np.integer)
    )
    if not integer:
        raise InputError(f"input_ids must hold integer token ids, got dtype {dtype}")
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise InputError(f"input_ids must be [batch, seq] with batch, seq >= 1, got shape {tuple(ids.shape)}")
    low, high = (int(ids.min()), int(ids.max()))
    if low < 0 or (vocab is not None and high >= vocab):
        bound = f"[0, {vocab})" if vocab is not None else ">= 0"
        raise InputError(f"input_ids must be token ids in {bound}, got values from {low} to {high}")


def check_mask(mask, shape, torch_input: bool) -> None:
    if tuple(mask.shape) != tuple(shape):
        raise InputError(f"attention_mask shape {tuple(mask.shape)} differs from input_ids {tuple(shape)}")
    dtype = mask.dtype
    ok = (
        (not dtype.is_floating_point and not dtype.is_complex)
        if torch_input
        else (np.issubdtype(dtype, np.integer) or dtype == np.bool_)
    )
    if not ok:
        raise InputError(
            f"attention_mask must hold 0 (padding) and 1 (token) as integers or booleans, got dtype {dtype}"
        )
    values = set(np.unique(mask.cpu().numpy() if torch_input else mask).tolist())
    if not values <= {0, 1}:
        raise InputError(f"attention_mask may hold only 0 (padding) and 1 (token), got {sorted(values)[:5]}")


def same_kind(input_ids, attention_mask) -> bool:
    """True for torch inputs; refuses a torch tensor mixed with numpy arrays or lists."""
    torch_input = is_torch(input_ids)
    if attention_mask is not None and is_torch(attention_mask) != torch_input:
        raise InputError(
            "input_ids and attention_mask must both be torch tensors or both numpy arrays (or lists), "
            f"got {type(input_ids).__name__} and {type(attention_mask).__name__}"
        )
    return torch_input


def as_array(name: str, value) -> np.ndarray:
    """A numpy array of a list, array or scalar; ragged lists are refused."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise InputError(
            f"{name} must be a rectangular [batch, seq] array or list of lists (rows of one length)"
        ) from None


def numpy_inputs(input_ids, attention_mask, vocab: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Checked numpy inputs as contiguous int64 [B,T] arrays; a mask of ones when attention_mask is None."""
    ids = as_array("input_ids", input_ids)
    check_ids(ids, False, vocab)
    if attention_mask is None:
        mask = np.ones(ids.shape, np.int64)
    else:
        mask = as_array("attention_mask", attention_mask)
        check_mask(mask, ids.shape, False)
    return np.ascontiguousarray(ids, dtype=np.int64), np.ascontiguousarray(mask, dtype=np.int64)


def torch_inputs(input_ids, attention_mask, vocab: int | None):
    """Checked torch inputs as int64 tensors on their device; a mask of ones when attention_mask is None."""
    torch = caller_torch()
    check_ids(input_ids, True, vocab)
    if attention_mask is not None:
        check_mask(attention_mask, input_ids.shape, True)
    ids = input_ids.to(torch.int64)
    return ids, torch.ones_like(ids) if attention_mask is None else attention_mask.to(torch.int64)
