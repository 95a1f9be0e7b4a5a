"""Which computations stay float32 under reduced precision, as data that users can extend, applied and checked as
onnx-graphsurgeon graph functions (`graph.mod_apply_precision_policy(policy)`, `graph.mod_policy_violations(policy)`).

`PrecisionPolicy.float32_ops` are ONNX op types whose float16 inputs get a Cast to float32 before them and
a Cast back after them; LayerNormalization keeps its statistics in float32 through `stash_type=1`.
Routers (the path from a routed block's input to MoDTopKGather's scores) and the routing ops' scores are
float32 by construction of the model (mod_export.models.routing.router_scores) and are checked here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from mod_export.contract import DOMAIN, SCATTER, TOPK_GATHER
from mod_export.graph.queries import router_node_names
from mod_export.graph.schemas import register_onnx_schemas
from mod_export.graph.surgery import edit_in_place, read

FLOAT16, FLOAT32 = np.dtype(np.float16), np.dtype(np.float32)


@dataclass
class PrecisionPolicy:
    float32_ops: set[str] = field(
        default_factory=lambda: {"Softmax", "ReduceMean", "Exp", "Log", "Pow", "Sqrt", "Reciprocal"}
    )
    layer_norm_stats_float32: bool = True

    def extended(self, *op_types: str) -> PrecisionPolicy:
        return PrecisionPolicy(self.float32_ops | set(op_types), self.layer_norm_stats_float32)


def _dtype(tensor) -> np.dtype | None:
    dtype = getattr(tensor, "dtype", None)
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def _is_standard(node: gs.Node) -> bool:
    return node.domain in ("", "ai.onnx", None)


@gs.Graph.register()
def mod_apply_precision_policy(self, policy: PrecisionPolicy) -> int:
    """Wrap float16 nodes of the policy's op types in Casts to float32 and back; LayerNormalization statistics in
    float32. Needs dtypes on the tensors (import a shape-inferred model). Returns the number of edits."""
    edits = 0
    for node in list(self.nodes):
        if node.op == "LayerNormalization" and policy.layer_norm_stats_float32 and node.attrs.get("stash_type", 1) != 1:
            node.attrs["stash_type"] = 1
            edits += 1
        if node.op not in policy.float32_ops or not _is_standard(node):
            continue
        if not any(_dtype(t) == FLOAT16 for t in node.inputs):
            continue
        label = node.name or node.op
        for i, tensor in enumerate(node.inputs):
            if _dtype(tensor) == FLOAT16:
                up = gs.Variable(f"{tensor.name}__f32_for_{label}", dtype=FLOAT32, shape=tensor.shape)
                self.nodes.append(
                    gs.Node("Cast", name=up.name, attrs={"to": onnx.TensorProto.FLOAT}, inputs=[tensor], outputs=[up])
                )
                node.inputs[i] = up
        for i, tensor in enumerate(list(node.outputs)):
            if _dtype(tensor) == FLOAT16:
                wide = gs.Variable(f"{tensor.name}__f32", dtype=FLOAT32, shape=tensor.shape)
                node.outputs[i] = wide
                self.nodes.append(
                    gs.Node(
                        "Cast",
                        name=f"{tensor.name}__to_f16",
                        attrs={"to": onnx.TensorProto.FLOAT16},
                        inputs=[wide],
                        outputs=[tensor],
                    )
                )
        edits += 1
    if edits:
        self.toposort()
    return edits


@gs.Graph.register()
def mod_policy_violations(self, policy: PrecisionPolicy, routers: set[str]) -> list[str]:
    """Everything in the graph that breaks the policy (empty list = compliant)."""
    problems = []
    for node in self.nodes:
        if node.op in policy.float32_ops and _is_standard(node):
            bad = [t.name for t in node.inputs if _dtype(t) == FLOAT16]
            if bad:
                problems.append(f"{node.op} {node.name}: float16 input {bad[0]}")
        if node.op == "LayerNormalization" and policy.layer_norm_stats_float32 and node.attrs.get("stash_type", 1) != 1:
            problems.append(
                f"LayerNormalization {node.name}: stash_type {node.attrs['stash_type']}, statistics not float32"
            )
        if node.domain == DOMAIN and node.op in (TOPK_GATHER, SCATTER):
            score = node.inputs[1] if node.op == TOPK_GATHER else node.inputs[4]
            if _dtype(score) != FLOAT32:
                problems.append(f"{node.op} {node.name}: scores {score.name} are not float32")
        if node.name in routers and node.op in ("MatMul", "Gemm", "Add"):
            bad = [t.name for t in node.inputs if _dtype(t) not in (FLOAT32, None)]
            if bad:
                problems.append(f"router {node.op} {node.name}: input {bad[0]} is not float32")
    return problems


def _typed(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with inferred value_info, so graph tensors carry dtypes."""
    register_onnx_schemas()
    return onnx.shape_inference.infer_shapes(model)


def apply_policy(model: onnx.ModelProto, policy: PrecisionPolicy) -> onnx.ModelProto:
    """In place (and returned): graph.mod_apply_precision_policy(policy) on the protobuf."""
    typed = _typed(model)
    edit_in_place(typed, lambda graph: graph.mod_apply_precision_policy(policy))
    model.graph.CopyFrom(typed.graph)
    return model


def policy_violations(model: onnx.ModelProto, policy: PrecisionPolicy) -> list[str]:
    return read(_typed(model)).mod_policy_violations(policy, router_node_names(model))
