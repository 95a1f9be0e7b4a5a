"""The two MoD routing steps as PyTorch custom ops: `torch.ops.mod_export.topk_gather` / `.scatter`.

Registered on import. In eager mode they run the canonical routing (recorded and forced under a
RoutingCapture, so validation sees the decisions of any model that calls them); under torch.export their fake
implementations give the symbolic shapes, and the exporter's translation table (mod_export.exporter.custom_ops)
turns each call into one MoDTopKGather / MoDScatter node. A `.pt2` archive of a model that uses them can be
loaded in a process that imports `mod_export.ops` (which imports this module).
"""

from __future__ import annotations

import torch

from mod_export.models import capture, routing


@torch.library.custom_op("mod_export::topk_gather", mutates_args=())
def topk_gather_op(
    x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, capacity_num: int, capacity_den: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x[B,T,D], scores[B,T] f32, mask[B,T] int32 (0 = padding) -> x_sel[B,k,D], idx[B,k] int32, s_sel[B,k] f32."""
    x_sel, idx, s_sel = capture.topk_gather(x, scores, mask, capacity_num, capacity_den)
    return x_sel.contiguous(), idx.contiguous(), s_sel.contiguous()


@topk_gather_op.register_fake
def _topk_gather_fake(x, scores, mask, capacity_num, capacity_den):
    B, T, D = x.shape
    k = routing.capacity_k(T, capacity_num, capacity_den)  # symbolic ceil-div of T
    return x.new_empty(B, k, D), x.new_empty(B, k, dtype=torch.int32), x.new_empty(B, k, dtype=torch.float32)


@torch.library.custom_op("mod_export::scatter", mutates_args=())
def scatter_op(
    x: torch.Tensor, idx: torch.Tensor, x_sel: torch.Tensor, y_sel: torch.Tensor, s_sel: torch.Tensor, gate: int
) -> torch.Tensor:
    """out = x; out[b, idx[b,j]] = x_sel + g(s_sel) (y_sel - x_sel). Shapes as routing.scatter_update."""
    return routing.scatter_update(x, idx, x_sel, y_sel, s_sel, gate).contiguous()


@scatter_op.register_fake
def _scatter_fake(x, idx, x_sel, y_sel, s_sel, gate):
    return torch.empty_like(x)
