"""Numeric errors that treat every non-finite value as a mismatch: NaN or Inf on either side (where the other
side is not the same infinity) counts as an infinite error, so `error <= atol` can never pass by accident
(`nan > atol` is False in IEEE arithmetic, which once let a NaN model "pass")."""

from __future__ import annotations

import math

import numpy as np


def max_abs_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    """max |candidate - reference|; inf for a shape mismatch or any non-finite difference."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    same_inf = np.isinf(a) & (a == b)
    diff = np.where(same_inf, 0.0, diff)
    if not np.isfinite(diff).all():
        return math.inf
    return float(diff.max())


def within(error: float, atol: float) -> bool:
    """True only for a finite error within a finite tolerance."""
    return math.isfinite(error) and math.isfinite(atol) and error <= atol


def nonfinite_count(values: np.ndarray) -> int:
    return int((~np.isfinite(np.asarray(values, dtype=np.float64))).sum())
