"""ONNX export: structure of both forms, parity across a T sweep, the float-capacity trap, bad input."""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
import warnings

import numpy as np
import onnx
import pytest
import torch

from mod_export.backends.onnxrt.runner import onnxrt_runner, routing_outputs
from mod_export.backends.onnxrt.session import create_session
from mod_export.backends.torch.runner import TorchRunner
from mod_export.exporter.onnx_export import check_model
from mod_export.graph.queries import routing_tensors, with_extra_outputs
from mod_export.integrity import sha256_file
from mod_export.models import routing
from mod_export.models.model import RoutingOps
from mod_export.validate.cases import Case
from mod_export.validate.judge import Candidate, judge
from tests.helpers import assert_one_line_error, run_cli
from tests.unit.parity_helpers import assert_forced_parity


def test_export_writes_every_artifact_with_manifest_hashes(exported):
    report, out = exported
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "manifest.json",
        "model.onnx",
        "model.onnx.data",  # every graph's weights, once
        "model.plugin.decode.onnx",
        "model.plugin.onnx",
        "model.plugin.prefill.onnx",
        "model.step.onnx",
        "report.json",
    ]
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    assert all(size < sizes["model.onnx.data"] / 4 for name, size in sizes.items() if name.endswith(".onnx"))
    manifest = json.loads((out / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(out / name)
    assert [i["name"] for i in manifest["io"]["inputs"]] == ["input_ids", "attention_mask"]
    assert manifest["io"]["outputs"][0]["name"] == "logits"
    assert manifest["versions"]["onnxruntime"] and manifest["parity"] == "passed"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["export"]["routed_blocks_found"] == on_disk["export"]["routed_blocks_expected"] == 2
    assert on_disk["parity"]["passed"] and len(on_disk["parity"]["forms"]) == 2
    for form in on_disk["parity"]["forms"].values():
        for row in form["cases"]:
            assert row["forced_max_abs_err"] <= 1e-4 and row["routing_errors"] == 0
            assert {"unforced_max_abs_err", "near_tie_flips", "max_score_deviation"} <= set(row)
        for layer in form["routing"].values():
            assert layer["rows"] > 0 and 0 <= layer["raw_agreement"] <= layer["margin_aware_agreement"] == 1.0
    health = on_disk["parity"]["router_health"]
    # Whether this machine's briefly trained router raises an alarm is the model's business, not the test's
    # (test_router_health builds degenerate routers); the report must only say it consistently.
    layer_alarms = [f"routed layer #{i}: {a}" for i, layer in health["layers"].items() for a in layer["alarms"]]
    assert set(health["layers"]) == {"0", "1"} and health["alarms"] == layer_alarms
    assert health["degenerate"] == bool(layer_alarms)
    for layer in health["layers"].values():
        assert layer["selected_fraction"] == pytest.approx(1 / 8) and "predictor_topk_agreement" in layer
    generation = on_disk["generation"]
    assert generation["parity"]["passed"] and [r["steps"] for r in generation["parity"]["cases"]] == [64, 64]
    plugin = generation["plugin_parity"]  # the plugin-form pair (reference functions), same verdict
    assert plugin["passed"] and [r["steps"] for r in plugin["cases"]] == [64, 64]
    assert manifest["generation"]["plugin_decode"] == "model.plugin.decode.onnx"
    assert "plugin_parity" not in manifest["generation"]
    assert manifest["generation"]["step"] == "model.step.onnx" and manifest["generation"]["routed_layers"] == [1, 3]
    assert "parity" not in manifest["generation"] and manifest["generation"]["max_context"] == 4096
    ideal = on_disk["flops_per_forward"]["1024"]["ideal_speedup"]
    assert 1.0 < ideal < 2.0


def test_plugin_form_has_custom_nodes_and_no_functions_portable_has_none(exported):
    _, out = exported
    plugin = onnx.load(str(out / "model.plugin.onnx"))
    portable = onnx.load(str(out / "model.onnx"))
    assert len(plugin.functions) == 0, "the TensorRT file must carry no local functions"
    gathers = [n for n in plugin.graph.node if n.op_type == "MoDTopKGather"]
    scatters = [n for n in plugin.graph.node if n.op_type == "MoDScatter"]
    assert len(gathers) == len(scatters) == 2
    for node in gathers + scatters:
        assert node.domain == "mod_export"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"mod_export"
    for node in gathers:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (attrs["capacity_num"], attrs["capacity_den"]) == (1, 8)
        assert len(node.input) == 3 and len(node.output) == 3
    assert not [n for n in portable.graph.node if n.domain not in ("", "ai.onnx")]
    ops = {n.op_type for n in portable.graph.node}
    assert {"TopK", "ScatterND"} <= ops
    for n in portable.graph.node:
        if n.op_type in ("ScatterND", "ScatterElements"):
            assert all(a.name != "reduction" or a.s == b"none" for a in n.attribute)
    for proto, name in ((plugin, "plugin"), (portable, "portable")):
        check_model(proto, name)
        dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert all(dims), f"{name}: batch and sequence axes must be dynamic, got {dims}"


def _text(corpus, B, T, seed):
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(corpus.held_out) - T, size=B)
    return np.stack([corpus.held_out[s : s + T] for s in starts]).astype(np.int64)


def test_both_forms_match_pytorch_across_a_sequence_length_sweep(trained, exported, corpus):
    """Two-part parity at 46 lengths the exporter never traced: zero routing errors, forced-routing logits within
    1e-4 (near-tie flips are allowed and counted), and k = ceil(T/8) selected per row."""
    model, _, _ = trained
    _, out = exported
    plugin = onnx.load(str(out / "model.plugin.onnx"))
    routing_info = routing_tensors(plugin)
    lengths = list(range(1, 301, 7)) + [509, 1024, 2048]
    cases = [Case(f"T={T}", ids := _text(corpus, 2 if T <= 300 else 1, T, seed=T), np.ones_like(ids)) for T in lengths]
    reference = TorchRunner(model)
    runners = [
        Candidate(form, onnxrt_runner(onnx.load(str(out / f)), form, routing_outputs(routing_info)))
        for form, f in (("portable", "model.onnx"), ("plugin", "model.plugin.onnx"))
    ]
    with reference, runners[0].runner, runners[1].runner:
        report = judge(reference, runners, cases, [r.capacity for r in routing_info])
    assert report["passed"], report["mismatches"][:5]
    for form in report["forms"].values():
        for row in form["cases"]:
            assert row["forced_max_abs_err"] <= 1e-4 and row["routing_errors"] == 0
        for layer in form["routing"].values():
            assert layer["rows"] == sum(2 if T <= 300 else 1 for T in lengths) and layer["routing_errors"] == 0
    with reference:
        got = reference.infer(cases[-1].feed)
    assert got["idx:0"].shape[1] == routing.capacity_k(2048, 1, 8)


def _naive_float_capacity_gather(x, scores, mask, num, den):
    """How MoD code is often written: a float capacity. Traced, k becomes a constant of the export-time T."""
    capacity = num / den
    k = max(1, int(math.ceil(x.shape[1] * capacity)))
    masked = scores.masked_fill(mask == 0, float("-inf"))
    idx = torch.topk(masked, k, dim=-1).indices.sort(dim=-1).values
    return routing.gather_rows(x, idx), idx.to(torch.int32), torch.gather(masked, 1, idx)


def test_float_capacity_trap_is_silent_and_our_export_avoids_it(trained, exported, corpus):
    model, _, _ = trained
    _, out = exported
    naive = copy.deepcopy(model)
    naive.routing_ops = RoutingOps(topk_gather=_naive_float_capacity_gather)
    export_T = 64
    ids = torch.from_numpy(_text(corpus, 1, export_T, seed=1))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            naive,
            (ids, torch.ones_like(ids)),
            buf,
            dynamo=False,
            opset_version=18,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}},
        )
    naive_proto = onnx.load_from_string(buf.getvalue())
    topk = next(n for n in naive_proto.graph.node if n.op_type == "TopK")
    naive_sess = create_session(with_extra_outputs(naive_proto, [topk.output[1]]), providers=["CPUExecutionProvider"])
    plugin = onnx.load(str(out / "model.plugin.onnx"))
    routing_info = routing_tensors(plugin)
    naive_errors, naive_k = {}, {}
    with onnxrt_runner(onnx.load(str(out / "model.onnx")), "portable", routing_outputs(routing_info)) as ours:
        for T in (export_T, 128, 256, 512):
            ids = _text(corpus, 1, T, seed=T)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            with torch.no_grad():
                ref = model(torch.from_numpy(ids)).numpy()
            logits, naive_idx = naive_sess.run(None, feed)[:2]  # runs without any error...
            naive_errors[T], naive_k[T] = float(np.abs(logits - ref).max()), naive_idx.shape[1]
            got = ours.infer(feed)
            assert got["idx:0"].shape[1] == routing.capacity_k(T, 1, 8)
            assert_forced_parity(model, ids, np.ones_like(ids), got["logits"], [got["idx:0"], got["idx:1"]])
    assert naive_k == {T: routing.capacity_k(export_T, 1, 8) for T in naive_k}  # ...k frozen at the traced length...
    assert min(naive_errors[T] for T in (128, 256, 512)) > 1e-2, naive_errors  # ...and silently wrong elsewhere


def test_validate_subcommand_passes_and_detects_a_tampered_file(trained, exported, tmp_path):
    _, _, ckpt = trained
    _, out = exported
    proc = run_cli("validate", str(ckpt), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "parity: passed" in proc.stdout
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    portable = onnx.load(str(out / "model.onnx"))
    big = max(portable.graph.initializer, key=lambda t: len(t.raw_data))
    arr = onnx.numpy_helper.to_array(big).copy()
    arr += 0.05
    big.CopyFrom(onnx.numpy_helper.from_array(arr, big.name))
    onnx.save(portable, str(tampered / "model.onnx"))
    report = tmp_path / "r.json"
    proc = run_cli("validate", str(ckpt), str(tampered), "--report", str(report))
    assert_one_line_error(proc, 1, "does not match the sha256")  # refused before anything runs
    assert not report.exists()
    proc = run_cli("validate", str(ckpt), str(tampered), "--report", str(report), "--skip-integrity")
    assert proc.returncode == 3  # edited on purpose: judged, and it fails
    data = json.loads(report.read_text())
    assert not data["forms"]["portable"]["passed"] and data["forms"]["plugin"]["passed"]
    assert len(data["mismatches"]) >= 6, "every failing case is collected, not just the first"


@pytest.mark.parametrize("opset", [18, 20])
def test_other_opsets_export(trained, opset):
    from mod_export.exporter.onnx_export import export_forms

    model, _, _ = trained
    forms = export_forms(model, opset)
    assert any(o.version == opset for o in forms.portable.opset_import if o.domain == "")
    ids = np.arange(37, dtype=np.int64)[None] % 256
    routing_info = routing_tensors(forms.plugin)
    with onnxrt_runner(forms.portable, "portable", routing_outputs(routing_info)) as runner:
        got = runner.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert_forced_parity(
        model, ids, np.ones_like(ids), got["logits"], [got[f"idx:{i}"] for i in range(len(routing_info))]
    )


def test_bad_inputs_give_one_line_and_leave_nothing(trained, tmp_path):
    _, _, ckpt = trained
    out = tmp_path / "out"
    assert_one_line_error(run_cli(str(tmp_path / "missing.pt"), "--target", "onnx", "--out", str(out)), 1, "not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04garbage")
    assert_one_line_error(run_cli(str(corrupt), "--target", "onnx", "--out", str(out)), 1, "checkpoint")
    assert_one_line_error(run_cli(str(ckpt), "--target", "onnx", "--out", str(out), "--opset", "17"), 1, "opset 17")
    assert_one_line_error(
        run_cli(str(ckpt), "--target", "onnx", "--out", "/proc/mod-export-out"), 1, "output directory"
    )
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert_one_line_error(run_cli(str(ckpt), "--target", "onnx", "--out", str(out)), 1, "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_model_without_routed_blocks_needs_allow_dense(tmp_path):
    from mod_export.models.checkpoint import save_checkpoint
    from mod_export.models.config import MoDConfig
    from mod_export.models.model import MoDTransformer

    ckpt = save_checkpoint(
        MoDTransformer(MoDConfig(d_model=32, n_heads=2, n_layers=2, d_mlp=64, routed_layers=())), tmp_path / "d.pt"
    )
    out = tmp_path / "out"
    assert_one_line_error(run_cli(str(ckpt), "--target", "onnx", "--out", str(out)), 1, "no routed blocks")
    assert not out.exists()
    proc = run_cli(str(ckpt), "--target", "onnx", "--out", str(out), "--allow-dense", "--no-decode")
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.onnx").exists()
