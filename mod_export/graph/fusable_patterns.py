"""Rewrites of exported subgraphs into the equivalent forms that inference engines fuse.

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
from onnx import numpy_helper


def _scalar_constants(graph: onnx.GraphProto) -> dict[str, float]:
    """Names of single-element constants (initializers or Constant nodes) -> value."""
    values: dict[str, float] = {}
    for init in graph.initializer:
        if int(np.prod(init.dims)) == 1:
            values[init.name] = float(numpy_helper.to_array(init).reshape(()))
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            array = numpy_helper.to_array(node.attribute[0].t)
            if array.size == 1:
                values[node.output[0]] = float(array.reshape(()))
    return values


def _other_input(node: onnx.NodeProto, known: str) -> str | None:
    if len(node.input) != 2 or known not in node.input:
        return None
    return node.input[1] if node.input[0] == known else node.input[0]


def reorder_gelu_for_fusion(model: onnx.ModelProto) -> int:
    """In place: every ``x * (0.5 * (1 + erf(x / sqrt 2)))`` becomes ``(x * (1 + erf(x / sqrt 2))) * 0.5``.

    Returns the number of rewritten GELUs. Nodes whose intermediate results have other consumers are left
    alone (the rewrite would change what those consumers see)."""
    graph = model.graph
    consts = _scalar_constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def only_consumer(name: str, op_type: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        if len(users) != 1 or name in outputs or users[0].op_type != op_type:
            return None
        return users[0]

    rewritten = 0
    for erf in [n for n in graph.node if n.op_type == "Erf"]:
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or not math.isclose(consts.get(div.input[1], 0.0), math.sqrt(2), rel_tol=1e-3):
            continue
        x = div.input[0]
        add = only_consumer(erf.output[0], "Add")
        if add is None or consts.get(_other_input(add, erf.output[0]) or "") != 1.0:
            continue
        half_mul = only_consumer(add.output[0], "Mul")
        half = _other_input(half_mul, add.output[0]) if half_mul is not None else None
        if half is None or consts.get(half) != 0.5:
            continue
        outer = only_consumer(half_mul.output[0], "Mul")
        if outer is None or _other_input(outer, half_mul.output[0]) != x:
            continue
        # half_mul: (1 + erf) * 0.5 -> (1 + erf) * x ; outer: x * that -> that * 0.5
        half_mul.input[:] = [add.output[0], x]
        outer.input[:] = [half_mul.output[0], half]
        rewritten += 1
    return rewritten
