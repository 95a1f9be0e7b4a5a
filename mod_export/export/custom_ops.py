"""The two MoD routing steps as PyTorch custom ops, and their translation into ONNX nodes (docs/design.md).

During export the model's RoutingOps point at `torch.ops.mod_export.*`; the ONNX exporter then turns each
call into one `mod_export.MoDTopKGather` / `mod_export.MoDScatter` node via a translation table. The
custom ops run the canonical routing in eager mode, so the exporting model still computes the same thing.
"""

from __future__ import annotations

import onnxscript
import torch

from mod_export.contract import DOMAIN, OPSET_VERSION
from mod_export.graph.schemas import plugin_attributes, register_onnx_schemas
from mod_export.models import capture, routing
from mod_export.models.model import RoutingOps


@torch.library.custom_op("mod_export::topk_gather", mutates_args=())
def topk_gather_op(
    x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, capacity_num: int, capacity_den: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    return routing.scatter_update(x, idx, x_sel, y_sel, s_sel, gate).contiguous()


@scatter_op.register_fake
def _scatter_fake(x, idx, x_sel, y_sel, s_sel, gate):
    return torch.empty_like(x)


def export_routing_ops() -> RoutingOps:
    return RoutingOps(topk_gather=topk_gather_op, scatter=scatter_op)


def translation_table() -> dict:
    """torch custom op -> onnxscript function emitting the plugin-form node."""
    register_onnx_schemas()
    custom = onnxscript.values.Opset(DOMAIN, OPSET_VERSION)

    def topk_gather_to_onnx(x, scores, mask, capacity_num: int, capacity_den: int):
        return custom.MoDTopKGather(
            x, scores, mask, capacity_num=capacity_num, capacity_den=capacity_den, **plugin_attributes()
        )

    def scatter_to_onnx(x, idx, x_sel, y_sel, s_sel, gate: int):
        return custom.MoDScatter(x, idx, x_sel, y_sel, s_sel, gate=gate, **plugin_attributes())

    return {
        torch.ops.mod_export.topk_gather.default: topk_gather_to_onnx,
        torch.ops.mod_export.scatter.default: scatter_to_onnx,
    }
