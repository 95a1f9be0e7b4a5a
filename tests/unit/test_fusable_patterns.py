"""Exported graphs in the forms ONNX Runtime fuses: GELU -> BiasGelu, the router as a GEMM, row scatter."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from mod_export.graph.fusable_patterns import reorder_gelu_for_fusion


def _optimized_op_types(proto: onnx.ModelProto, tmp_path) -> list[str]:
    import onnx.inliner
    import onnxruntime as ort

    from mod_export.graph.reference_functions import attach_reference_functions
    from mod_export.graph.weights import session_config

    weights = session_config(proto)  # where the exported forms' weights are
    proto = onnx.inliner.inline_local_functions(attach_reference_functions(proto))  # as create_session does
    options = ort.SessionOptions()
    for key, value in weights.items():
        options.add_session_config_entry(key, value)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx"), load_external_data=False).graph.node]


def _torch_style_gelu(extra_consumer: bool = False) -> onnx.ModelProto:
    """y = x * (0.5 * (1 + erf(x / sqrt 2))) exactly as torch's exporter writes it (after a biased MatMul)."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32), "b")
    consts = [
        numpy_helper.from_array(np.array(v, np.float32), n)
        for n, v in (("sqrt2", math.sqrt(2)), ("one", 1.0), ("half", 0.5))
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["h"]),
        helper.make_node("Div", ["h", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["a", "half"], ["m"]),
        helper.make_node("Mul", ["h", "m"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5, 16])]
    if extra_consumer:  # the intermediate (1 + erf) * 0.5 is also a graph output: must not be rewritten
        outputs.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [3, 5, 16]))
    graph = helper.make_graph(
        nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, 8])], outputs, [w, b, *consts]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_reordered_gelu_is_fused_by_onnxruntime_and_keeps_its_values(tmp_path):
    import onnxruntime as ort

    original = _torch_style_gelu()
    assert "Erf" in _optimized_op_types(original, tmp_path)  # the pattern ORT misses (why the pass exists)
    rewritten = _torch_style_gelu()
    assert reorder_gelu_for_fusion(rewritten) == 1
    onnx.checker.check_model(rewritten, full_check=True)
    fused = _optimized_op_types(rewritten, tmp_path)
    assert {"Gelu", "BiasGelu"} & set(fused) and "Erf" not in fused
    x = np.random.default_rng(1).standard_normal((3, 5, 8)).astype(np.float32) * 3
    outs = [
        ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for p in (original, rewritten)
    ]
    w, b = (torch.from_numpy(numpy_helper.to_array(t).copy()) for t in original.graph.initializer[:2])
    expected = F.gelu(torch.from_numpy(x) @ w + b).numpy()
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[1], expected, rtol=1e-5, atol=1e-5)


def test_gelu_with_a_shared_intermediate_is_left_alone():
    proto = _torch_style_gelu(extra_consumer=True)
    before = proto.SerializeToString()
    assert reorder_gelu_for_fusion(proto) == 0
    assert proto.SerializeToString() == before


@pytest.fixture(scope="module")
def small_forms():
    from mod_export.exporter.onnx_export import export_forms
    from mod_export.models.config import MoDConfig
    from mod_export.models.model import MoDTransformer

    torch.manual_seed(0)
    return export_forms(MoDTransformer(MoDConfig(d_model=64, n_heads=2, n_layers=2, d_mlp=128)).eval())


def test_exported_forms_have_every_gelu_fused_router_as_matrix_and_row_scatter(small_forms, tmp_path):
    for proto in (small_forms.plugin, small_forms.portable):
        ops = _optimized_op_types(proto, tmp_path)
        assert ops.count("BiasGelu") == 2 and "Erf" not in ops
    portable = small_forms.portable
    assert "ScatterND" in {n.op_type for n in portable.graph.node}
    assert "ScatterElements" not in {n.op_type for n in portable.graph.node}
    # the router weight reaches its MatMul as a [D,1] matrix (a 1-D weight takes ORT's slow generic path)
    from mod_export.graph.queries import router_nodes

    inits = {t.name: t for t in small_forms.plugin.graph.initializer}
    matmuls = [n for n in router_nodes(small_forms.plugin) if n.op_type == "MatMul"]
    assert len(matmuls) == 1
    assert [list(inits[i].dims) for i in matmuls[0].input if i in inits] == [[64, 1]]
