"""Read-only questions about an exported graph, answered on an onnx-graphsurgeon view: where the routing ops are,
which tensors carry their scores, mask and selection, and which nodes form the routers. One home for them
(validation, precision, benchmarks, the runtime all ask)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from mod_export.contract import DOMAIN, LOGITS, SCATTER, TOPK_GATHER
from mod_export.graph.surgery import read


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
    for node in read(plugin_model).nodes:
        if node.domain != DOMAIN or node.op != TOPK_GATHER:
            continue
        mask = node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2].name else None
        out.append(
            RoutingTensors(
                node.name,
                node.inputs[1].name,
                mask,
                node.outputs[1].name,
                (int(node.attrs["capacity_num"]), int(node.attrs["capacity_den"])),
            )
        )
    return out


def idx_tensor_names(plugin_model: onnx.ModelProto) -> list[str]:
    """Per routed layer (graph order), the name of its idx tensor (output 1 of MoDTopKGather)."""
    return [r.idx for r in routing_tensors(plugin_model)]


def router_node_names(model: onnx.ModelProto) -> set[str]:
    """Nodes on the path from each MoDTopKGather's x to its scores (the router), found by structure."""
    names: set[str] = set()
    for gather in read(model).nodes:
        if gather.domain != DOMAIN or gather.op != TOPK_GATHER:
            continue
        x = gather.inputs[0]
        stack, seen = [gather.inputs[1]], []
        while stack:
            tensor = stack.pop()
            if tensor is x or any(tensor is s for s in seen) or not tensor.inputs:
                continue
            seen.append(tensor)
            producer = tensor.inputs[0]
            names.add(producer.name)
            stack.extend(i for i in producer.inputs if i.name)
    return names


def router_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The router nodes (router_node_names) as the model's own NodeProtos, in graph order."""
    names = router_node_names(model)
    return [n for n in model.graph.node if n.name in names]


def with_extra_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `proto` that also outputs the given intermediate tensors (each routed layer's idx, say). A plain
    protobuf edit: appending graph outputs needs no graph view."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out


def graph_vocab(proto: onnx.ModelProto) -> int | None:
    """The vocabulary size: the static last dim of the logits output, where the graph states it."""
    logits = next((o for o in proto.graph.output if o.name == LOGITS), None)
    last = logits.type.tensor_type.shape.dim[-1] if logits is not None else None
    return int(last.dim_value) if last is not None and last.HasField("dim_value") else None
