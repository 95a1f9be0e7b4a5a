"""Test helpers: judge one candidate result (logits and per-layer selections) against the PyTorch reference
forced to those selections, margin-aware (docs/parity.md). Never compare two float implementations' routing
or logits without this: near-ties flip tokens between them on any trained model."""

from __future__ import annotations

import numpy as np
import torch

from mod_export.contract import TOLERANCES
from mod_export.models.capture import RoutingCapture
from mod_export.parity.numerics import max_abs_error
from mod_export.parity.routing import compare_layers


def assert_forced_parity(
    model, ids: np.ndarray, mask: np.ndarray | None, logits: np.ndarray, idx: list[np.ndarray], precision: str = "fp32"
) -> dict:
    tolerance = TOLERANCES[precision]
    with torch.no_grad(), RoutingCapture(forced=idx) as capture:
        ref = model(torch.from_numpy(ids), None if mask is None else torch.from_numpy(mask)).numpy()
    assert all(r.forced for r in capture.records), "every routed layer must take the candidate's selection"
    layers = compare_layers(
        [r.scores for r in capture.records], mask, idx, [r.capacity for r in capture.records], tolerance.score_tolerance
    )
    assert sum(layer.errors for layer in layers) == 0, [layer.error_examples for layer in layers]
    error = max_abs_error(logits, ref)
    assert error <= tolerance.logits_atol, error
    return {"forced_max_abs_err": error, "near_tie_flips": sum(layer.flips for layer in layers)}
