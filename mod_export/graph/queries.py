"""Read-only questions about an exported graph: where the routing ops are and which tensors carry their
scores, mask and selection. One home for them (validation, precision, benchmarks all ask)."""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from mod_export.contract import DOMAIN, SCATTER, TOPK_GATHER


@dataclass(frozen=True)
class RoutingTensors:
    """One routed layer of a plugin-form graph, in graph order."""

    node: str
    scores: str  # [B,T] f32 raw router scores (MoDTopKGather input 1)
    mask: str | None  # [B,T] (MoDTopKGather input 2) or None
    idx: str  # [B,k] int32 selection (MoDTopKGather output 1)
    capacity: tuple[int, int]


def topk_gather_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == TOPK_GATHER]


def scatter_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type == SCATTER]


def routing_tensors(plugin_model: onnx.ModelProto) -> list[RoutingTensors]:
    """Per routed layer (graph order) of a plugin-form graph. The names survive inlining, so the portable form
    built from this graph has the same tensors."""
    out = []
    for node in topk_gather_nodes(plugin_model):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mask = node.input[2] if len(node.input) > 2 and node.input[2] else None
        out.append(RoutingTensors(node.name, node.input[1], mask, node.output[1],
                                  (int(attrs["capacity_num"]), int(attrs["capacity_den"]))))
    return out


def idx_tensor_names(plugin_model: onnx.ModelProto) -> list[str]:
    """Per routed layer (graph order), the name of its idx tensor (output 1 of MoDTopKGather)."""
    return [r.idx for r in routing_tensors(plugin_model)]


def with_extra_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `proto` that also outputs the given intermediate tensors (each routed layer's idx, say)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out
