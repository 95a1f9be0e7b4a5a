"""Which computations stay float32 under reduced precision, as data that users can extend.

`PrecisionPolicy.float32_ops` are ONNX op types whose float16 inputs get a Cast to float32 before them and
a Cast back after them; LayerNormalization keeps its statistics in float32 through `stash_type=1`.
Routers (the path from a routed block's input to MoDTopKGather's scores) and the routing ops' scores are
float32 by construction of the model (mod_export.models.routing.router_scores) and are checked here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper

from mod_export.export.custom_ops import DOMAIN, SCATTER, TOPK_GATHER


@dataclass
class PrecisionPolicy:
    float32_ops: set[str] = field(default_factory=lambda: {"Softmax", "ReduceMean", "Exp", "Log", "Pow", "Sqrt", "Reciprocal"})
    layer_norm_stats_float32: bool = True

    def extended(self, *op_types: str) -> "PrecisionPolicy":
        return PrecisionPolicy(self.float32_ops | set(op_types), self.layer_norm_stats_float32)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    from mod_export.export.custom_ops import register_onnx_schemas

    register_onnx_schemas()
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def apply_policy(model: onnx.ModelProto, policy: PrecisionPolicy) -> onnx.ModelProto:
    """Wrap float16 nodes of policy op types in Casts to float32 and back; set LayerNormalization stash_type."""
    types = _types(model)
    new_nodes = []
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and policy.layer_norm_stats_float32:
            for attr in node.attribute:
                if attr.name == "stash_type":
                    attr.i = 1
                    break
            else:
                node.attribute.append(helper.make_attribute("stash_type", 1))
        if node.op_type in policy.float32_ops and node.domain in ("", "ai.onnx") and any(
                types.get(i) == TensorProto.FLOAT16 for i in node.input if i):
            inputs = []
            for i in node.input:
                if i and types.get(i) == TensorProto.FLOAT16:
                    cast = f"{i}__f32_for_{node.name or node.op_type}"
                    new_nodes.append(helper.make_node("Cast", [i], [cast], to=TensorProto.FLOAT, name=cast))
                    inputs.append(cast)
                else:
                    inputs.append(i)
            outputs = []
            back = []
            for o in node.output:
                if types.get(o) == TensorProto.FLOAT16:
                    f32 = f"{o}__f32"
                    outputs.append(f32)
                    back.append(helper.make_node("Cast", [f32], [o], to=TensorProto.FLOAT16, name=f"{o}__to_f16"))
                else:
                    outputs.append(o)
            del node.input[:]
            node.input.extend(inputs)
            del node.output[:]
            node.output.extend(outputs)
            new_nodes.append(node)
            new_nodes.extend(back)
        else:
            new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return model


def router_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes on the path from each MoDTopKGather's x to its scores (the router), found by structure."""
    producers = {o: n for n in model.graph.node for o in n.output}
    found: dict[int, onnx.NodeProto] = {}
    for gather in (n for n in model.graph.node if n.domain == DOMAIN and n.op_type == TOPK_GATHER):
        x, stack, seen = gather.input[0], [gather.input[1]], set()
        while stack:
            name = stack.pop()
            if name in seen or name == x or name not in producers:
                continue
            seen.add(name)
            node = producers[name]
            found[id(node)] = node
            stack.extend(i for i in node.input if i)
    return list(found.values())


def policy_violations(model: onnx.ModelProto, policy: PrecisionPolicy) -> list[str]:
    """Everything in the graph that breaks the policy (empty list = compliant)."""
    types = _types(model)
    problems = []
    for node in model.graph.node:
        if node.op_type in policy.float32_ops and node.domain in ("", "ai.onnx"):
            bad = [i for i in node.input if i and types.get(i) == TensorProto.FLOAT16]
            if bad:
                problems.append(f"{node.op_type} {node.name}: float16 input {bad[0]}")
        if node.op_type == "LayerNormalization" and policy.layer_norm_stats_float32:
            stash = next((a.i for a in node.attribute if a.name == "stash_type"), 1)
            if stash != 1:
                problems.append(f"LayerNormalization {node.name}: stash_type {stash}, statistics not float32")
        if node.domain == DOMAIN and node.op_type in (TOPK_GATHER, SCATTER):
            score = node.input[1] if node.op_type == TOPK_GATHER else node.input[4]
            if types.get(score) != TensorProto.FLOAT:
                problems.append(f"{node.op_type} {node.name}: scores {score} are not float32")
    for node in router_nodes(model):
        if node.op_type in ("MatMul", "Gemm", "Add"):
            bad = [i for i in node.input if i and types.get(i) not in (TensorProto.FLOAT, None)]
            if bad:
                problems.append(f"router {node.op_type} {node.name}: input {bad[0]} is not float32")
    return problems
