"""TensorRT target, runtime Session and Triton repository, as far as a CPU-only machine allows.

Tests whose name says mock_tensorrt use tests/unit/fakes/mock_tensorrt.py instead of the TensorRT runtime."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import pytest
import torch

from mod_export.backends.trt import builder as trt_builder
from mod_export.backends.trt.builder import EngineBuildError, EngineSettings, ShapeRange
from mod_export.errors import MissingDependencyError, ModExportError
from mod_export.runtime import Session
from tests.helpers import run_cli
from tests.unit.fakes.mock_export import export_on_mock_tensorrt
from tests.unit.parity_helpers import assert_forced_parity


@pytest.fixture()
def mock_tensorrt(monkeypatch):
    from tests.unit.fakes import mock_tensorrt as fake

    fake.REGISTRY.libraries.clear()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr("mod_export.backends.trt.builder.require_gpu", lambda: None)
    monkeypatch.setattr("mod_export.backends.trt.generation.require_gpu", lambda: None)
    return fake


def test_session_onnxruntime_matches_pytorch_numpy_and_torch_paths(trained, exported, corpus):
    model, _, _ = trained
    _, out = exported
    rng = np.random.default_rng(3)
    ids = np.stack([corpus.held_out[s : s + 150] for s in rng.integers(0, 10000, 3)]).astype(np.int64)
    mask = np.ones_like(ids)
    mask[2, :40] = 0
    for form in ("portable", "plugin"):
        session = Session(out, backend="auto", form=form)
        assert session.backend == "onnxruntime"
        logits, idx = session.run_with_routing(ids, mask)
        assert len(idx) == 2 and idx[0].shape == (3, 19)  # ceil(150/8) per row
        assert_forced_parity(model, ids, mask, logits, idx)  # what this session decided, judged margin-aware
        np.testing.assert_array_equal(session.run(ids, mask), logits)  # run() is the same session
        plain, plain_idx = session.run_with_routing(ids)
        np.testing.assert_array_equal(session.run(ids), plain)
        assert_forced_parity(model, ids, None, plain, plain_idx)
        got = session.run(torch.from_numpy(ids), torch.from_numpy(mask))
        assert isinstance(got, torch.Tensor) and got.device.type == "cpu"
        np.testing.assert_array_equal(got.numpy(), logits)
    assert Session(out / "model.onnx").run(ids[:1, :7]).shape == (1, 7, 256)


def test_session_reports_bad_use_clearly(exported, tmp_path):
    _, out = exported
    with pytest.raises(ModExportError, match="backend must be one of"):
        Session(out, backend="tflite")
    with pytest.raises(ModExportError, match="not found"):
        Session(tmp_path / "nothing")
    with pytest.raises(ModExportError, match="no TensorRT engine"):
        Session(out, backend="tensorrt")
    session = Session(out)
    with pytest.raises(ModExportError, match=r"\[batch, seq\]"):
        session.run(np.zeros(5, np.int64))
    with pytest.raises(ModExportError, match="differs"):
        session.run(np.zeros((1, 5), np.int64), np.ones((1, 4), np.int64))


def test_target_trt_without_tensorrt_writes_onnx_then_exits_4(trained, tmp_path):
    """TensorRT is made unimportable for the child process (a machine without it), whatever this machine has."""
    _, _, ckpt = trained
    out = tmp_path / "trt"
    blocker = tmp_path / "no_tensorrt"
    blocker.mkdir()
    (blocker / "tensorrt.py").write_text("raise ImportError('TensorRT hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli(str(ckpt), "--target", "trt", "--out", str(out), "--no-validate", "--no-decode", env=env)
    assert proc.returncode == 4, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "TensorRT" in errors[0] and "Traceback" not in proc.stderr
    assert {"model.onnx", "model.plugin.onnx", "report.json", "manifest.json"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert report["engine"]["built"] is False and "TensorRT" in report["engine"]["reason"]


@pytest.mark.parametrize("bad", ["1:2", "0:1:8", "4:2:8", "a:b:c"])
def test_shape_ranges_are_checked_before_any_work(trained, tmp_path, bad):
    _, _, ckpt = trained
    proc = run_cli(str(ckpt), "--target", "trt", "--out", str(tmp_path / "o"), "--seq-len", bad)
    assert proc.returncode == 1 and "MIN:OPT:MAX" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_network_flags_by_name_for_10_3_and_11():
    import types

    v103 = types.SimpleNamespace(
        NetworkDefinitionCreationFlag=types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    )
    v11 = types.SimpleNamespace(
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=0, PREFER_JIT_PYTHON_PLUGINS=1)
    )
    assert trt_builder.network_flags(v103) == 1 << 1
    assert trt_builder.network_flags(v11) == 1 << 0
    assert trt_builder.network_flags(types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace())) == 0


def test_engine_build_with_mock_tensorrt_runtime(mock_tensorrt, exported, tmp_path):
    _, out = exported
    library = tmp_path / "libmod_export_plugins.so"
    library.write_bytes(b"\x7fELF mock")
    cache = tmp_path / "timing.cache"
    settings = EngineSettings(
        batch=ShapeRange(1, 2, 8),
        seq=ShapeRange(1, 128, 2048),
        timing_cache=cache,
        plugin_library=library,
        show_progress=True,
    )
    engine = tmp_path / "model.engine"
    info = trt_builder.build_engine(out / "model.plugin.onnx", engine, settings)
    payload = json.loads(engine.read_bytes())
    assert payload["flags"] == 1 << 1  # strongly typed on 10.3
    assert payload["profiles"] == [
        {"input_ids": [[1, 1], [2, 128], [8, 2048]], "attention_mask": [[1, 1], [2, 128], [8, 2048]]}
    ]
    assert payload["plugins"] == [str(library)] and mock_tensorrt.REGISTRY.libraries == [str(library)]
    assert not info["timing_cache_reused"] and cache.read_bytes() == b"mock-timing-cache+1"
    info = trt_builder.build_engine(out / "model.plugin.onnx", engine, settings)
    assert info["timing_cache_reused"] and cache.read_bytes() == b"mock-timing-cache+1+1"


def test_parser_errors_name_every_node_with_mock_tensorrt_runtime(mock_tensorrt, exported, tmp_path):
    _, out = exported
    with pytest.raises(EngineBuildError) as info:
        trt_builder.build_engine(out / "model.plugin.onnx", tmp_path / "e", EngineSettings(show_progress=False))
    message = str(info.value)
    assert "4 error(s)" in message  # 2 routed blocks x (MoDTopKGather, MoDScatter), none loadable
    assert message.count(" MoDTopKGather: ") == 2 and message.count(" MoDScatter: ") == 2  # operator per node
    assert message.count("node ") >= 4  # each error names its node index
    assert not (tmp_path / "e").exists()
    trt_builder.build_engine(
        out / "model.onnx", tmp_path / "e", EngineSettings(show_progress=False)
    )  # portable form parses


def test_target_trt_and_triton_with_mock_tensorrt_runtime(mock_tensorrt, monkeypatch, trained, tmp_path):
    _, _, ckpt = trained
    library, out, tri = tmp_path / "libmod_export_plugins.so", tmp_path / "trt", tmp_path / "tri"
    report = export_on_mock_tensorrt(monkeypatch, ckpt, out, library, target="trt", decode=False)
    assert (
        report["engine"]["built"] and (out / "model.engine").is_file() and (out / "libmod_export_plugins.so").is_file()
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"model.engine", "libmod_export_plugins.so"} <= set(manifest["files"])
    engine = EngineSettings(batch=ShapeRange(1, 4, 16), show_progress=False)
    export_on_mock_tensorrt(monkeypatch, ckpt, tri, library, target="triton", engine=engine, decode=False)
    repo = tri / "model_repository"
    assert (repo / "mod_export_trt" / "1" / "model.plan").is_file()
    assert (repo / "mod_export_trt" / "libmod_export_plugins.so").is_file()
    check_triton_config(repo / "mod_export_trt" / "config.pbtxt", tri / "model.onnx", 16, platform="tensorrt_plan")
    check_triton_config(repo / "mod_export_onnx" / "config.pbtxt", tri / "model.onnx", 16, backend="onnxruntime")
    check_triton_config(repo / "mod_export_score" / "config.pbtxt", tri / "model.onnx", 16, backend="python")


def check_triton_config(path, onnx_path, max_batch, platform=None, backend=None):
    """Parse with Triton's own ModelConfig schema and compare names, dtypes, dims with the ONNX file."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    assert config.name == path.parent.name
    if platform:
        assert config.platform == platform
    if backend:
        assert config.backend == backend
    assert config.max_batch_size == max_batch
    model = onnx.load(str(onnx_path))
    triton_dtype = {onnx.TensorProto.INT64: mc.TYPE_INT64, onnx.TensorProto.FLOAT: mc.TYPE_FP32}
    for declared, actual in ((config.input, model.graph.input), (config.output, model.graph.output)):
        assert [t.name for t in declared] == [v.name for v in actual]
        for t, v in zip(declared, actual):
            assert t.data_type == triton_dtype[v.type.tensor_type.elem_type]
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            assert list(t.dims) == dims[1:], "Triton dims exclude the batch dimension"
    assert config.HasField("dynamic_batching")


def test_triton_repository_validates_against_tritons_schema(trained, tmp_path):
    _, _, ckpt = trained
    out = tmp_path / "tri"
    proc = run_cli(
        str(ckpt), "--target", "triton", "--out", str(out), "--no-validate", "--no-decode", "--batch", "1:2:16"
    )
    assert proc.returncode == 0, proc.stderr
    repo = out / "model_repository"
    assert sorted(p.name for p in repo.iterdir()) == ["mod_export_onnx", "mod_export_score"]  # no engine here
    check_triton_config(repo / "mod_export_onnx" / "config.pbtxt", out / "model.onnx", 16, backend="onnxruntime")
    check_triton_config(repo / "mod_export_score" / "config.pbtxt", out / "model.onnx", 16, backend="python")
    for model in ("mod_export_onnx", "mod_export_score"):
        assert (repo / model / "1" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    assert "No TensorRT engine" in (out / "TRITON.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f"model_repository/{m}/config.pbtxt" for m in ("mod_export_onnx", "mod_export_score")} <= set(
        manifest["files"]
    )
    assert "model_repository/mod_export_score/1/model.py" in manifest["files"]


def test_missing_tensorrt_is_one_clear_error(monkeypatch):
    from mod_export.backends.trt import availability

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails like a machine without the bindings
    with pytest.raises(MissingDependencyError, match="TensorRT is not available"):
        availability.import_tensorrt()
    assert availability.cuda_device_count() >= 0  # whatever this machine has, the probe never raises
    monkeypatch.setattr(availability, "cuda_device_count", lambda: 0)  # a machine without a CUDA driver
    with pytest.raises(MissingDependencyError, match="no NVIDIA GPU"):
        availability.require_gpu()
