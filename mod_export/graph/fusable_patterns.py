"""Rewrites of exported subgraphs into the equivalent forms that inference engines fuse, as onnx-graphsurgeon
graph functions (`graph.mod_reorder_gelu()` once this module is imported).

torch's exporter writes exact GELU as ``x * (0.5 * (1 + erf(x / sqrt 2)))``. ONNX Runtime's GeluFusion
(and BiasGeluFusion after it) only match ``(x * (1 + erf(x / sqrt 2))) * 0.5`` or ``(0.5 * x) * (1 + ...)``,
so the exported MLPs ran six element-wise passes over [B,T,4D] instead of one BiasGelu kernel. Reordering
the two multiplications is exact in real arithmetic and changes float results by at most one rounding.
TensorRT matches both orders.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from mod_export.graph.surgery import edit_in_place


def _scalar(tensor) -> float | None:
    """The value of a single-element constant (an initializer or a Constant node's output), else None."""
    if isinstance(tensor, gs.Constant):
        values = np.asarray(tensor.values)
    elif len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant" and "value" in tensor.inputs[0].attrs:
        values = np.asarray(tensor.inputs[0].attrs["value"].values)
    else:
        return None
    return float(values.reshape(())) if values.size == 1 else None


def _other(node: gs.Node, known) -> object | None:
    if len(node.inputs) != 2 or known not in node.inputs:
        return None
    return node.inputs[1] if node.inputs[0] is known else node.inputs[0]


def _only_consumer(tensor, op: str, graph_outputs: list) -> gs.Node | None:
    users = tensor.outputs
    if len(users) != 1 or any(t is tensor for t in graph_outputs) or users[0].op != op:
        return None
    return users[0]


@gs.Graph.register()
def mod_reorder_gelu(self) -> int:
    """Every ``x * (0.5 * (1 + erf(x / sqrt 2)))`` becomes ``(x * (1 + erf(x / sqrt 2))) * 0.5``. Returns how many.

    Nodes whose intermediate results have other consumers are left alone (the rewrite would change what those
    consumers see)."""
    rewritten = 0
    outputs = list(self.outputs)
    for erf in [n for n in self.nodes if n.op == "Erf"]:
        source = erf.inputs[0]
        div = source.inputs[0] if len(source.inputs) == 1 else None
        if (
            div is None
            or div.op != "Div"
            or not math.isclose(_scalar(div.inputs[1]) or 0.0, math.sqrt(2), rel_tol=1e-3)
        ):
            continue
        x = div.inputs[0]
        add = _only_consumer(erf.outputs[0], "Add", outputs)
        if add is None or _scalar(_other(add, erf.outputs[0])) != 1.0:
            continue
        half_mul = _only_consumer(add.outputs[0], "Mul", outputs)
        half = _other(half_mul, add.outputs[0]) if half_mul is not None else None
        if half is None or _scalar(half) != 0.5:
            continue
        outer = _only_consumer(half_mul.outputs[0], "Mul", outputs)
        if outer is None or _other(outer, half_mul.outputs[0]) is not x:
            continue
        # half_mul: (1 + erf) * 0.5 -> (1 + erf) * x ; outer: x * that -> that * 0.5
        half_mul.inputs = [add.outputs[0], x]
        outer.inputs = [half_mul.outputs[0], half]
        rewritten += 1
    return rewritten


def reorder_gelu_for_fusion(model: onnx.ModelProto) -> int:
    """In place on the protobuf: graph.mod_reorder_gelu(). Returns the number of rewritten GELUs."""
    return edit_in_place(model, lambda graph: graph.mod_reorder_gelu())
