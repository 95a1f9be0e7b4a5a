"""The ONNX reference bodies of MoDTopKGather / MoDScatter, run in ONNX Runtime, against the PyTorch routing
on random cases with deliberate ties and padding (ONNX TopK's tie rule must be ours)."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from mod_export.backends.onnxrt.session import create_session
from mod_export.graph.reference_functions import inline_to_portable
from mod_export.graph.schemas import plugin_attributes, register_onnx_schemas
from mod_export.models import routing


def routing_graph(num: int, den: int, gate: int) -> onnx.ModelProto:
    register_onnx_schemas()
    nodes = [
        helper.make_node(
            "MoDTopKGather",
            ["x", "scores", "mask"],
            ["x_sel", "idx", "s_sel"],
            domain="mod_export",
            capacity_num=num,
            capacity_den=den,
            **plugin_attributes(),
        ),
        helper.make_node("Constant", [], ["two"], value_float=2.0),
        helper.make_node("Constant", [], ["one"], value_float=1.0),
        helper.make_node("Mul", ["x_sel", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["y_sel"]),
        helper.make_node(
            "MoDScatter",
            ["x", "idx", "x_sel", "y_sel", "s_sel"],
            ["out"],
            domain="mod_export",
            gate=gate,
            **plugin_attributes(),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "routing",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", "D"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", "T"]),
            helper.make_tensor_value_info("mask", TensorProto.INT32, ["B", "T"]),
        ],
        [
            helper.make_tensor_value_info(n, t, None)
            for n, t in (
                ("x_sel", TensorProto.FLOAT),
                ("idx", TensorProto.INT32),
                ("s_sel", TensorProto.FLOAT),
                ("out", TensorProto.FLOAT),
            )
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("mod_export", 1)])


@functools.cache
def session(num: int, den: int, gate: int, portable: bool):
    model = routing_graph(num, den, gate)
    if portable:
        model = inline_to_portable(model)
    return create_session(model, providers=["CPUExecutionProvider"])


@st.composite
def case(draw):
    B, T, D = draw(st.integers(1, 3)), draw(st.integers(1, 50)), draw(st.integers(1, 4))
    den = draw(st.sampled_from([1, 2, 3, 4, 7, 8, 16]))
    num = draw(st.integers(1, den))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    levels = draw(st.sampled_from([1, 2, 3, 1000]))
    scores = (rng.integers(0, levels, (B, T)) * 0.25).astype(np.float32)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = (rng.random((B, T)) >= draw(st.sampled_from([0.0, 0.25, 0.8]))).astype(np.int32)
    return x, scores, mask, num, den, draw(st.sampled_from([0, 1])), draw(st.booleans())


@settings(max_examples=250, deadline=None)
@given(case())
def test_reference_bodies_in_onnxruntime_match_pytorch(c):
    x, scores, mask, num, den, gate, portable = c
    x_sel, idx, s_sel, out = session(num, den, gate, portable).run(None, {"x": x, "scores": scores, "mask": mask})
    ex, eidx, es = routing.topk_gather(torch.from_numpy(x), torch.from_numpy(scores), torch.from_numpy(mask), num, den)
    eout = routing.scatter_update(torch.from_numpy(x), eidx, ex, ex * 2 + 1, es, gate)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx, eidx.numpy())
    np.testing.assert_array_equal(s_sel, es.numpy())
    np.testing.assert_array_equal(x_sel, ex.numpy())
    np.testing.assert_allclose(out, eout.numpy(), rtol=1e-6, atol=1e-6)


def test_all_equal_scores_select_the_first_k_positions():
    T = 4000  # k = 500, well past any small-k special case
    scores = np.zeros((2, T), np.float32)
    x = np.random.default_rng(0).standard_normal((2, T, 2)).astype(np.float32)
    _, idx, _, _ = session(1, 8, 1, True).run(None, {"x": x, "scores": scores, "mask": np.ones((2, T), np.int32)})
    np.testing.assert_array_equal(idx, np.tile(np.arange(500, dtype=np.int32), (2, 1)))
