"""FP16 and INT8: structure of the graphs (what is quantised, what stays float32), accuracy on the trained
example model, the calibration cache, and bad input."""

from __future__ import annotations

import json

import pytest
from onnx import TensorProto, numpy_helper

from calibration.data import load_calibration_data
from calibration.fp16 import fp16_stage
from calibration.int8 import CACHE_FORMAT, CalibrationError, quantize_forms, weight_matmuls
from calibration.policy import PrecisionPolicy, apply_policy, policy_violations
from mod_export.data.corpus import fixed_windows, held_out_split
from mod_export.errors import CorpusError
from mod_export.exporter.onnx_export import export_forms
from mod_export.graph.queries import router_nodes
from mod_export.graph.weights import materialized
from mod_export.validate.quality import quality_report
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def float_forms(trained):
    return export_forms(trained[0])


@pytest.fixture(scope="module")
def calib(corpus):
    return load_calibration_data(None, windows=24)


@pytest.fixture(scope="module")
def eval_windows(corpus):
    return fixed_windows(held_out_split(corpus.held_out).evaluation, 48, 257)


@pytest.fixture(scope="module")
def int8_forms(float_forms, calib, tmp_path_factory):
    cache = tmp_path_factory.mktemp("calib") / "cache.json"
    return quantize_forms(
        float_forms.plugin, float_forms.portable, calib, "percentile", cache, show_progress=False
    ), cache


def fp16_forms(model):
    """The fp16 stage, as the pipeline runs it: an explicit half-precision export, then the policy pass."""
    return fp16_stage(export_forms(model, half=True)).forms


def producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_fp16_keeps_routers_softmax_norm_stats_and_scores_float32(trained):
    forms = fp16_forms(trained[0])
    for proto in (forms.plugin, forms.portable):
        assert policy_violations(proto, PrecisionPolicy()) == []
        assert all(
            next((a.i for a in n.attribute if a.name == "stash_type"), 1) == 1
            for n in proto.graph.node
            if n.op_type == "LayerNormalization"
        )
        router_weights = {i for n in router_nodes(proto) for i in n.input}
        inits = {t.name: t.data_type for t in proto.graph.initializer}
        matmul_weights = [n.input[1] for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
        assert any(inits[w] == TensorProto.FLOAT16 for w in matmul_weights), "block weights must be float16"
        assert all(inits[w] == TensorProto.FLOAT for w in matmul_weights if w in router_weights), "routers stay float32"
    assert len(forms.plugin.functions) == 0


def test_policy_is_extensible(float_forms, trained):
    forms = fp16_forms(trained[0])
    policy = PrecisionPolicy().extended("Erf")  # GELU's Erf in float32 too
    assert policy_violations(forms.portable, policy)  # not yet
    fixed = apply_policy(forms.portable, policy)
    assert policy_violations(fixed, policy) == []


def test_fp16_quality_on_held_out_text(trained, eval_windows):
    forms = fp16_forms(trained[0])
    quality = quality_report(trained[0], {"portable": forms.portable}, forms.plugin, eval_windows, "fp16")
    assert quality["passed"], quality["mismatches"]
    result = quality["forms"]["portable"]
    assert result["relative_bpb_change"] < 0.005 and result["forced_max_abs_err"] <= 0.25
    for layer in result["routing"].values():  # margin-aware: every differing row is a near-tie
        assert layer["routing_errors"] == 0 and layer["rows"] == len(eval_windows)


def test_int8_graph_structure(int8_forms, float_forms):
    q, _ = int8_forms
    for proto in (materialized(q.plugin), materialized(q.portable)):  # the values, to read the zero points
        prod = producers(proto)
        inits = {t.name: t for t in proto.graph.initializer}
        for node in proto.graph.node:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                zp = inits.get(node.input[2]) if len(node.input) > 2 else None
                assert zp is not None and zp.data_type == TensorProto.INT8 and not numpy_helper.to_array(zp).any(), (
                    "symmetric int8"
                )
        quantized = set(q.quantized_nodes)
        for node in proto.graph.node:
            if node.name in quantized:
                act, weight = (prod.get(i) for i in node.input[:2])
                assert act is not None and act.op_type == "DequantizeLinear"
                assert weight is not None and weight.op_type == "DequantizeLinear"
                scale = inits[weight.input[1]]
                axis = next((a.i for a in weight.attribute if a.name == "axis"), 1)
                assert axis == 1 and len(scale.dims) == 1 and scale.dims[0] > 1, "per-channel weights on axis 1"
                assert len(inits[act.input[1]].dims) == 0, "per-tensor activations"
        for node in router_nodes(proto):
            assert all(prod.get(i) is None or prod[i].op_type != "DequantizeLinear" for i in node.input), (
                "router quantised"
            )
        for node in proto.graph.node:
            if node.domain == "mod_export":
                assert all(prod.get(i) is None or prod[i].op_type != "DequantizeLinear" for i in node.input)
    assert len(q.plugin.functions) == 0
    assert set(q.excluded_router_nodes) == {n.name for n in router_nodes(float_forms.plugin) if n.op_type == "MatMul"}
    assert q.quantized_nodes, "something must be quantised"
    eligible, _ = weight_matmuls(float_forms.plugin)
    assert set(q.quantized_nodes) | set(q.float_for_routing) == set(eligible)


def test_int8_quality_and_margin_aware_routing(int8_forms, trained, eval_windows):
    q, _ = int8_forms
    quality = quality_report(trained[0], {"portable": q.portable, "plugin": q.plugin}, q.plugin, eval_windows, "int8")
    assert quality["passed"], quality["mismatches"]
    for result in quality["forms"].values():
        assert result["relative_bpb_change"] < 0.03
        for layer in result["routing"].values():
            assert layer["routing_errors"] == 0 and layer["raw_agreement"] <= layer["margin_aware_agreement"]


def test_calibration_cache_is_reused_and_guarded(int8_forms, float_forms, calib, trained, tmp_path):
    q, cache = int8_forms
    saved = json.loads(cache.read_text())
    assert saved["method"] == "percentile" and saved["data_sha256"] == calib.sha256 and saved["tensor_ranges"]
    again = quantize_forms(float_forms.plugin, float_forms.portable, calib, "percentile", cache, show_progress=False)
    assert again.portable.SerializeToString() == q.portable.SerializeToString()
    with pytest.raises(CalibrationError, match="holds percentile ranges"):
        quantize_forms(float_forms.plugin, float_forms.portable, calib, "minmax", cache, show_progress=False)
    other_data = load_calibration_data(None, windows=8)
    with pytest.raises(CalibrationError, match="data hash mismatch"):
        quantize_forms(float_forms.plugin, float_forms.portable, other_data, "percentile", cache, show_progress=False)
    import copy

    other = copy.deepcopy(trained[0])
    other.lm_head.weight.data *= 1.01
    other_forms = export_forms(other)
    with pytest.raises(CalibrationError, match="another model"):
        quantize_forms(other_forms.plugin, other_forms.portable, calib, "percentile", cache, show_progress=False)
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        quantize_forms(float_forms.plugin, float_forms.portable, calib, "kl", None, show_progress=False)
    old_format = tmp_path / "old.json"
    old_format.write_text(json.dumps({**saved, "format": "mod_export.calibration/1"}))
    with pytest.raises(CalibrationError, match="delete it to recalibrate"):
        quantize_forms(float_forms.plugin, float_forms.portable, calib, "percentile", old_format, show_progress=False)


def test_calibration_data_errors(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        load_calibration_data(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no files"):
        load_calibration_data(tmp_path / "empty")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        load_calibration_data(tmp_path / "empty.txt")
    (tmp_path / "short.txt").write_text("x = 1\n")
    with pytest.raises(CorpusError, match="too short"):
        load_calibration_data(tmp_path / "short.txt")
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.py").write_text("print('hello')\n" * 100)
    data = load_calibration_data(folder, windows=4)
    assert data.windows.shape[1] == 256 and len(data.windows) == 4


def test_cli_int8_bad_inputs_leave_nothing(trained, tmp_path):
    _, _, ckpt = trained
    out = tmp_path / "o"

    def run(*extra):
        return run_cli(str(ckpt), "--target", "onnx", "--out", str(out), "--precision", "int8", "--no-decode", *extra)

    proc = run("--calib-method", "kl")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    (tmp_path / "short.txt").write_text("tiny")
    proc = run("--calib-data", str(tmp_path / "short.txt"))
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: calibration text")
    bad_cache = tmp_path / "cache.json"
    bad_cache.write_text(json.dumps({"format": CACHE_FORMAT, "model_sha256": "0" * 64}))
    proc = run("--calib-cache", str(bad_cache), "--no-validate")
    assert proc.returncode == 1 and "another model" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def _largest_range(cache: dict) -> dict[str, float]:
    """tensor -> max |range| from ORT's saved TensorsData (as kept in our calibration cache)."""
    import numpy as np

    out = {}
    for name, entry in cache["tensor_ranges"]["data"].items():
        hi = entry["highest"]
        out[name] = float(np.abs(np.asarray(hi["data"] if isinstance(hi, dict) else hi, dtype=float)).max())
    return out


def test_each_calibration_method_computes_its_own_ranges(float_forms, calib):
    """Entropy and percentile must not silently fall back to min-max (quantize_static drops bin-count
    options; we build the calibrator ourselves): both clip some activation below its observed max."""
    ranges = {
        m: _largest_range(
            quantize_forms(
                float_forms.plugin, float_forms.portable, calib, m, None, show_progress=False, routing_guard=None
            ).cache
        )
        for m in ("minmax", "percentile", "entropy")
    }
    assert set(ranges["minmax"]) == set(ranges["entropy"]) == set(ranges["percentile"])
    for method in ("percentile", "entropy"):
        assert all(ranges[method][t] <= ranges["minmax"][t] * (1 + 1e-6) for t in ranges["minmax"]), method
        assert sum(ranges[method][t] < 0.95 * ranges["minmax"][t] for t in ranges["minmax"]) >= 3, method
    assert ranges["entropy"] != ranges["percentile"]


def test_calibration_and_evaluation_text_never_overlap(corpus):
    """The default calibration windows come from the first half of the held-out slice, and every evaluation
    (parity cases, quality reports, router health) from the second: the routing guard is not tuned on test data."""
    import numpy as np

    split = held_out_split(corpus.held_out)
    assert len(split.calibration) + len(split.evaluation) == len(corpus.held_out)
    assert split.calibration.tobytes() + split.evaluation.tobytes() == corpus.held_out.tobytes()
    calibration = split.calibration.tobytes()
    data = load_calibration_data(None, windows=64)
    assert "calibration part" in data.source
    for window in data.windows:
        assert calibration.find(window.astype(np.uint8).tobytes()) >= 0
    from mod_export.validate.artifacts import evaluation_text

    assert evaluation_text().tobytes() == split.evaluation.tobytes()
