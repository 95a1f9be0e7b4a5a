"""What a benchmark times: a checkpoint's model or a synthetic one, at a given capacity, and its dense twin."""

from __future__ import annotations

import torch

from mod_export.errors import ModExportError
from mod_export.models.checkpoint import load_checkpoint
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer

SYNTHETIC = "synthetic:"


def synthetic_config(spec: str) -> MoDConfig:
    """'synthetic:512x8' -> width 512, 8 blocks, 64-wide heads, MLP 4x, every other block routed."""
    try:
        width, layers = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))
    except (ValueError, IndexError):
        raise ModExportError(
            f"synthetic model must look like synthetic:WIDTHxLAYERS (e.g. synthetic:512x8), got {spec!r}"
        ) from None
    return MoDConfig(
        d_model=width, n_heads=max(1, width // 64), n_layers=layers, d_mlp=4 * width, causal_predictor=False
    )


def load_model(spec: str, capacity: str, causal_predictor: bool = False) -> MoDTransformer:
    """The MoD model with the given capacity (weights from a checkpoint, or seeded random for synthetic, with causal
    predictors when asked: generation needs them)."""
    if spec.startswith(SYNTHETIC):
        cfg = synthetic_config(spec).replace(capacity=capacity, causal_predictor=causal_predictor)
        torch.manual_seed(0)
        return MoDTransformer(cfg).eval()
    base = load_checkpoint(spec)
    model = MoDTransformer(base.config.replace(capacity=capacity)).eval()
    model.load_state_dict(base.state_dict())
    return model
