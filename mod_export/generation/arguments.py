"""Checks of generation arguments, each a typed InputError with one sentence: counts, real numbers and token ids
as a caller of Session.generate / Session.stream may pass them (Python ints, numpy scalars, lists, arrays).
Booleans and strings are refused wherever a number is expected ("0.5" is not a number here)."""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from mod_export.errors import InputError


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def integer(name: str, value, minimum: int) -> int:
    """An integer >= minimum (int or numpy integer; not bool, float or str) -> int."""
    if not _is_int(value) or operator.index(value) < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return operator.index(value)


def real(name: str, value) -> float:
    """A finite real number (int, float or numpy number; not bool or str) -> float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _flat(name: str, values, what: str) -> np.ndarray:
    """values as a 1-D numpy array, or an InputError naming `what` they should be."""
    if isinstance(values, (str, bytes)):
        raise InputError(f"{name} must be {what}, got text {values!r}"[:200])
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):  # ragged nesting, objects numpy cannot hold
        raise InputError(f"{name} must be {what} (a flat sequence of integers)") from None
    if array.ndim != 1:
        raise InputError(f"{name} must be {what}, got {_describe(values, array)}"[:200])
    return array


def _describe(values, array: np.ndarray) -> str:
    return repr(values) if array.ndim == 0 else f"shape {list(array.shape)}"


def _ids_in_range(name: str, array: np.ndarray, vocab: int | None) -> list[int]:
    """Every element an integer in [0, vocab) -> list of ints."""
    if array.dtype == object:
        if not all(_is_int(v) for v in array.tolist()):
            raise InputError(f"{name} must hold integer token ids, got {array.tolist()!r}"[:200])
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{name} must hold integer token ids, got dtype {array.dtype}")
    ids = [int(v) for v in array.tolist()]
    bound = f"[0, {vocab})" if vocab is not None else ">= 0"
    for t in ids:
        if t < 0 or (vocab is not None and t >= vocab):
            raise InputError(f"{name} must be token ids in {bound}, got {t}")
    return ids


def token_ids(name: str, values, vocab: int | None) -> list[int]:
    """A sequence of integer token ids, each in [0, vocab) (>= 0 when the vocabulary is unknown) -> list of ints.
    One id alone is refused (pass (5,), not 5), as are text, floats and nested lists; empty is allowed."""
    array = _flat(name, values, "a sequence of token ids such as (5, 7)")
    return _ids_in_range(name, array, vocab) if array.size else []


def prompt_rows(prompts) -> list:
    """One prompt (a sequence of token ids) or a list of them -> the list of rows (each still to be checked)."""
    if isinstance(prompts, (str, bytes)):
        raise InputError("prompts are token ids: encode text first (a byte-level model: session.codec.encode(text))")
    try:
        rows = list(prompts)
    except TypeError:
        raise InputError(
            f"prompts must be a sequence of token ids or a list of them, got {type(prompts).__name__}"
        ) from None
    if not rows:
        raise InputError("prompts is empty: give at least one prompt of at least one token")
    return [rows] if all(_is_scalar(r) for r in rows) else rows


def _is_scalar(value) -> bool:
    """A number (Python, numpy, or a 0-d array or tensor): a token of one prompt rather than a prompt."""
    return isinstance(value, (numbers.Number, np.generic)) or getattr(value, "ndim", None) == 0


def prompt_ids(row, vocab: int | None) -> list[int]:
    """One prompt: a non-empty sequence of integer token ids in [0, vocab) -> list of ints."""
    array = _flat("each prompt", row, "a sequence of token ids")
    if array.size == 0:
        raise InputError("every prompt needs at least one token")
    return _ids_in_range("prompts", array, vocab)
