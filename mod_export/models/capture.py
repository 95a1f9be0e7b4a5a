"""Capture, and optionally force, the routing decisions of any model that routes through mod-export's ops.

    with RoutingCapture() as cap:                 # record every top-k routing call, in call order
        logits = model(input_ids, attention_mask)
    cap.records[l].scores, .mask, .idx            # per routed layer: raw scores [B,T], mask [B,T], idx [B,k]

    with RoutingCapture(forced=[idx_0, idx_1]):   # run the reference with a candidate's selections
        forced_logits = model(input_ids, attention_mask)

Forcing is how parity checks arithmetic even where a near-tie flip happened (docs/parity.md): the
reference computes its own scores on its own (forced) inputs, but gathers and scatters the tokens the
candidate chose. The hook lives in `topk_gather` below, which the built-in models call through RoutingOps
and which the `mod_export::topk_gather` torch op runs in eager mode, so user-defined models that call the
op are captured the same way, whatever their class.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mod_export.models import routing

_ACTIVE: contextvars.ContextVar[RoutingCapture | None] = contextvars.ContextVar(
    "mod_export_routing_capture", default=None
)


@dataclass
class RoutingRecord:
    """One top-k routing call."""

    scores: np.ndarray  # [B,T] f32 raw router scores (before the padding mask)
    mask: np.ndarray | None  # [B,T] (0 = padding) or None
    idx: np.ndarray  # [B,k] int64 the selection that was applied
    own_idx: np.ndarray  # [B,k] int64 the contract's selection on these scores
    capacity: tuple[int, int]
    forced: bool  # True when idx came from RoutingCapture(forced=...)


class RoutingCapture:
    """Context manager; not re-entrant across threads (a contextvar per thread/task)."""

    def __init__(self, forced: Sequence[np.ndarray | torch.Tensor | None] | None = None):
        self.forced = None if forced is None else list(forced)
        self.records: list[RoutingRecord] = []
        self._token = None

    def __enter__(self) -> RoutingCapture:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)

    def _forced_for(self, layer: int, B: int, T: int, k: int) -> torch.Tensor | None:
        """The forced idx of this layer when it is a valid selection [B,k] (in range, strictly ascending)."""
        if self.forced is None or layer >= len(self.forced) or self.forced[layer] is None:
            return None
        idx = torch.as_tensor(np.asarray(self.forced[layer])).long()
        if tuple(idx.shape) != (B, k):
            return None
        if k and (idx.min() < 0 or idx.max() >= T or (k > 1 and not bool((idx.diff(dim=-1) > 0).all()))):
            return None
        return idx


def topk_gather(x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None, num: int, den: int):
    """routing.topk_gather, recorded (and forced) when a RoutingCapture is active. Same signature and outputs."""
    capture = _ACTIVE.get()
    x_sel, idx, s_sel = routing.topk_gather(x, scores, mask, num, den)
    if capture is None:
        return x_sel, idx, s_sel
    B, T = scores.shape
    forced = capture._forced_for(len(capture.records), B, T, idx.shape[1])
    own = idx.long()
    if forced is not None:
        masked = routing.mask_scores(scores.float(), mask)
        x_sel, s_sel, idx = routing.gather_rows(x, forced), torch.gather(masked, 1, forced), forced.to(torch.int32)
    capture.records.append(
        RoutingRecord(
            scores=scores.detach().float().cpu().numpy(),
            mask=None if mask is None else mask.detach().cpu().numpy(),
            idx=idx.detach().long().cpu().numpy(),
            own_idx=own.detach().cpu().numpy(),
            capacity=(num, den),
            forced=forced is not None,
        )
    )
    return x_sel, idx, s_sel
