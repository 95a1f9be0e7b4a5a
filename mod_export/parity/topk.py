"""The contract's selection in numpy: k = ceil(T*num/den) (integers only) and the top-k positions per row,
ties to the lower position, ascending. The torch reference (mod_export.models.routing) implements the same
rule; tests check that the two agree exactly."""

from __future__ import annotations

import numpy as np

from mod_export.contract import capacity_k

__all__ = ["capacity_k", "contract_topk"]


def contract_topk(masked: np.ndarray, k: int) -> np.ndarray:
    """masked[B,T] float scores (-inf at padding) -> idx[B,k] int64 ascending; equal scores keep position order."""
    order = np.argsort(-np.asarray(masked, dtype=np.float64), axis=-1, kind="stable")  # descending, stable
    return np.sort(order[:, :k], axis=-1)
