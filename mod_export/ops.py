"""The public routing ops: what a user's own MoD model calls so that mod-export can export and validate it.

A model of any class whose routed blocks call `topk_gather` and `scatter` below (docs/models.md) exports to the
same MoDTopKGather / MoDScatter graphs as the built-in models, through `mod_export.export()`, a `.pt2` archive
or the CLI. In eager mode (training, validation) the ops are differentiable PyTorch and are recorded by
validation's RoutingCapture whatever the model's class; under `torch.export` they become the
`torch.ops.mod_export.*` custom ops, which the exporter translates into the plugin nodes.

    scores = ops.router_scores(x, router.weight[0], router.bias[0])        # [B,T] f32
    x_sel, idx, s_sel = ops.topk_gather(x, scores, mask, capacity=(1, 8))  # [B,k,D], [B,k] int32, [B,k] f32
    y_sel = my_block(x_sel, idx, ops.selected_key_valid(s_sel))            # the block's own output [B,k,D]
    x = ops.scatter(x, idx, x_sel, y_sel, s_sel, gate="sigmoid")           # [B,T,D]

Causal routing (the generation rule, docs/generation.md) is `causal_take` + `causal_update`.
`Routed` wraps any block callable with a router, gate and optional causal predictor.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mod_export.contract import GATE_IDS, capacity_k
from mod_export.models import capture, routing
from mod_export.models.config import parse_capacity
from mod_export.models.torch_ops import scatter_op, topk_gather_op

__all__ = [
    "GATE_IDS",
    "Routed",
    "capacity_k",
    "causal_take",
    "causal_update",
    "router_scores",
    "scatter",
    "selected_key_valid",
    "topk_gather",
]


def _gate_id(gate: str | int) -> int:
    if isinstance(gate, int) and gate in GATE_IDS.values():
        return gate
    if gate not in GATE_IDS:
        raise ValueError(f"gate must be one of {sorted(GATE_IDS)}, got {gate!r}")
    return GATE_IDS[gate]


def router_scores(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """s = x . w + b in float32 whatever the dtype of x. x[B,T,D], weight[D], bias[] -> [B,T] f32."""
    if bias is None:
        bias = weight.new_zeros(())
    return routing.router_scores(x, weight, bias)


def topk_gather(x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None = None, capacity=(1, 8)):
    """Select each row's k = ceil(T * num / den) highest-scoring real tokens (ties to the lower position,
    padding last), ascending. x[B,T,D], scores[B,T] f32, mask[B,T] (0 = padding) or None ->
    (x_sel[B,k,D], idx[B,k] int32 ascending, s_sel[B,k] f32, -inf at padding)."""
    num, den = parse_capacity(capacity)
    int_mask = None if mask is None else mask.to(torch.int32)  # [B,T] the ops' mask type
    if torch.compiler.is_exporting():
        if int_mask is None:
            int_mask = torch.ones(scores.shape, dtype=torch.int32, device=scores.device)
        return topk_gather_op(x, scores.float(), int_mask, num, den)
    return capture.topk_gather(x, scores, int_mask, num, den)


def scatter(x, idx, x_sel, y_sel, s_sel, gate: str | int = "sigmoid") -> torch.Tensor:
    """out = x; out[b, idx[b,j]] = x_sel + g(s_sel) (y_sel - x_sel), g = sigmoid or identity (0 at padding).
    x[B,T,D], idx[B,k] int32, x_sel/y_sel[B,k,D], s_sel[B,k] f32 -> [B,T,D]."""
    gate_id = _gate_id(gate)
    if torch.compiler.is_exporting():
        return scatter_op(x, idx, x_sel, y_sel, s_sel, gate_id)
    return routing.scatter_update(x, idx, x_sel, y_sel, s_sel, gate_id)


def selected_key_valid(s_sel: torch.Tensor) -> torch.Tensor:
    """[B,k] bool: which selected tokens are real (padding carries s = -inf): the keys a routed block may attend."""
    return s_sel > float("-inf")


def causal_take(decision_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The causal-routing rule: a token takes the block iff its decision logit is > 0 (and it is not padding).
    decision_logits[B,T] f32 (a predictor's output, or the router score), mask[B,T] or None -> [B,T] bool."""
    take = decision_logits > 0
    return take if mask is None else take & (mask != 0)


def causal_update(x, y, scores, take, gate: str | int = "sigmoid") -> torch.Tensor:
    """x where a token skips, x + g(s) (y - x) where it takes. x/y[B,T,D], scores[B,T] f32, take[B,T] bool."""
    return routing.gated_update(x, y, scores, take, _gate_id(gate))


class Routed(nn.Module):
    """Any block callable behind a router: only the top-k tokens of each row go through `block`.

    block(x_sel[B,k,D], idx[B,k] original positions, key_valid[B,k] bool) -> y_sel[B,k,D], the block's output
    for the selected tokens (its own residuals included). With predictor_hidden, a small causal predictor
    (trained on detached inputs) is kept for generation; `last` holds (scores[B,T], idx[B,k]) of the latest
    forward for training losses."""

    def __init__(
        self, block: nn.Module, d_model: int, capacity=(1, 8), gate: str = "sigmoid", predictor_hidden: int = 0
    ):
        super().__init__()
        self.block = block
        self.router = nn.Linear(d_model, 1)
        self.capacity = parse_capacity(capacity)
        self.gate = gate
        _gate_id(gate)
        self.predictor = (
            nn.Sequential(nn.Linear(d_model, predictor_hidden), nn.GELU(), nn.Linear(predictor_hidden, 1))
            if predictor_hidden
            else None
        )
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x[B,T,D], mask[B,T] (0 = padding) or None -> [B,T,D]."""
        scores = router_scores(x, self.router.weight[0], self.router.bias[0])  # [B,T] f32
        x_sel, idx, s_sel = topk_gather(x, scores, mask, self.capacity)
        y_sel = self.block(x_sel, idx, selected_key_valid(s_sel))
        if not torch.compiler.is_exporting():
            self.last = (scores, idx)
        return scatter(x, idx, x_sel, y_sel, s_sel, self.gate)

    def predictor_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """[B,T] decision logits of the causal predictor (None without one)."""
        return None if self.predictor is None else self.predictor(x.detach()).squeeze(-1)
