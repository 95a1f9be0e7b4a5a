"""The translation of the routing custom ops (mod_export.models.torch_ops) into ONNX nodes (docs/design.md).

During export the built-in model's RoutingOps point at `torch.ops.mod_export.*` (a user's model calls them
through mod_export.ops); the ONNX exporter then turns each call into one `mod_export.MoDTopKGather` /
`mod_export.MoDScatter` node via the translation table below.
"""

from __future__ import annotations

import onnxscript
import torch

from mod_export.contract import DOMAIN, OPSET_VERSION
from mod_export.graph.schemas import plugin_attributes, register_onnx_schemas
from mod_export.models.model import RoutingOps
from mod_export.models.torch_ops import scatter_op, topk_gather_op


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
