"""The TensorRT backend of generation (mod_export/backends/trt/generation.py), host logic only: tests whose name says
mock_tensorrt run it on tests/unit/fakes/mock_tensorrt.py, whose engines execute the plugin-form ONNX with ONNX
Runtime on the addresses the stepper binds (CPU tensors standing in for device buffers). Checked: one engine per
phase and its profile, aliased plugin I/O requested, buffer sizes, per-step shapes, the cache updated in place
through the output bound to the past input, batch padding to a CUDA-graph size, and the same generation as the
ONNX Runtime stepper."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
import torch

from mod_export.backends.onnxrt.generation import OrtStepper
from mod_export.backends.trt import builder as trt_builder
from mod_export.backends.trt import generation as trt_generation
from mod_export.backends.trt.generation import (
    DecodeLayout,
    TrtStepper,
    build_phase_engine,
    cache_bytes,
    decode_shapes,
    graph_batch,
    phase_profiles,
)
from mod_export.contract import CUDA_GRAPH_BATCHES
from mod_export.errors import InputError
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.generation.loop import generate, left_pad
from mod_export.generation.sampling import Sampling
from mod_export.graph.generation_plugin_form import plugin_decode_graph, plugin_prefill_graph
from mod_export.graph.weights import save_graphs
from mod_export.models.model import MoDTransformer
from mod_export.training.train import example_config
from tests.unit.fakes.mock_export import export_on_mock_tensorrt


@pytest.fixture()
def mock_tensorrt(monkeypatch):
    from tests.unit.fakes import mock_tensorrt as fake

    fake.REGISTRY.libraries.clear()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_generation, "require_gpu", lambda: None)
    monkeypatch.setattr(trt_builder, "require_gpu", lambda: None)
    return fake


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A small random MoD model's generation graphs: portable pair in memory, plugin pair on disk."""
    torch.manual_seed(18)
    model = MoDTransformer(example_config()).eval()
    forms = export_decode_forms(model)
    folder = tmp_path_factory.mktemp("trt-gen")
    paths = {"prefill": folder / "model.plugin.prefill.onnx", "decode": folder / "model.plugin.decode.onnx"}
    graphs = {paths["prefill"].name: plugin_prefill_graph(forms.prefill)}
    save_graphs({**graphs, paths["decode"].name: plugin_decode_graph(forms.decode)}, folder)
    return forms, paths, DecodeLayout.of(forms.decode)


def _engines(pair, folder, max_batch=8, max_context=64):
    _, paths, layout = pair
    profiles = phase_profiles(layout, max_batch, max_context)
    library = folder / "libmod_export_plugins.so"
    library.write_bytes(b"")
    reports, engines = {}, {}
    for phase in ("prefill", "decode"):
        engines[phase] = folder / f"model.{phase}.engine"
        reports[phase] = build_phase_engine(paths[phase], engines[phase], profiles[phase], library)
    return engines, reports, library


def test_profiles_buffers_and_shapes_of_the_generation_engines(pair):
    _, _, layout = pair
    assert layout.layers == 4 and layout.routed_layers == (1, 3)
    profiles = phase_profiles(layout, max_batch=8, max_context=4096, opt_batch=2)
    assert profiles["prefill"]["input_ids"] == ((1, 1), (2, 256), (8, 4096))
    assert set(profiles["prefill"]) == {"input_ids", "attention_mask", "position_ids"}
    decode = profiles["decode"]
    assert decode["past_key_values.3.value"] == ((1, 4, 1, 32), (2, 4, 256, 32), (8, 4, 4096, 32))
    assert decode["active"] == ((1,), (2,), (8,)) and decode["input_ids"] == ((1, 1), (2, 1), (8, 1))
    assert len(decode) == 3 + 3 * layout.layers
    # device bytes of one generation: keys + values per block, lengths
    assert cache_bytes(layout, 4, 100) == 4 * (2 * 4 * 4 * 100 * 32 * 4 + 8 * 4)
    assert cache_bytes(layout, 1, 4096, element_bytes=2) == 4 * (2 * 4 * 4096 * 32 * 2 + 8)
    assert [graph_batch(b) for b in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 9]
    assert CUDA_GRAPH_BATCHES == (1, 2, 4, 8)
    shapes = decode_shapes(layout, 4, 50)
    assert shapes["past_key_values.0.key"] == (4, 4, 50, 32) and shapes["past_length.2"] == (4,)
    with pytest.raises(InputError):
        phase_profiles(layout, max_batch=2, max_context=64, opt_batch=4)


def test_one_engine_per_phase_with_aliased_plugin_io_mock_tensorrt(mock_tensorrt, pair, tmp_path):
    import json

    engines, reports, library = _engines(pair, tmp_path)
    for phase, report in reports.items():
        payload = json.loads(engines[phase].read_bytes())
        assert len(payload["profiles"]) == 1, "one optimisation profile per engine"
        assert payload["plugins"] == [str(library)]
        assert report["aliased_plugin_io"] and payload["preview"] == {"1": True}
    decode_profile = json.loads(engines["decode"].read_bytes())["profiles"][0]
    assert decode_profile["past_key_values.0.key"][2] == [8, 4, 64, 32]


def test_trt_stepper_generates_like_onnx_runtime_with_the_cache_in_place_mock_tensorrt(mock_tensorrt, pair, tmp_path):
    forms, _, layout = pair
    engines, _, library = _engines(pair, tmp_path)
    trt = TrtStepper(engines["prefill"], engines["decode"], layout, library, device="cpu", torch_module=torch)
    ort = OrtStepper(forms.step)
    rng = np.random.default_rng(7)
    prompts = [list(rng.integers(0, 256, n)) for n in (5, 11, 8)]  # batch 3: padded to the graph batch 4
    ids, mask = left_pad(prompts)
    capacity = ids.shape[1] + 12
    a, b = ort.prefill(ids, mask, capacity), trt.prefill(ids, mask, capacity)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    assert trt.batch == 4 and trt.keys[0].shape == (4, layout.heads, capacity, layout.head_dim)
    addresses = [t.data_ptr() for t in trt.keys + trt.values]
    decode_context = trt.contexts["decode"]
    for t in range(10):
        active = np.array([True, t < 6, True])
        tokens = rng.integers(0, 256, 3)
        a, b = ort.step(tokens, active), trt.step(tokens, active)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        for layer in range(layout.layers):
            np.testing.assert_array_equal(ort.lengths[layer], trt.host_lengths[layer][:3])
            np.testing.assert_array_equal(trt.lengths[layer].numpy(), trt.host_lengths[layer])
            np.testing.assert_allclose(ort.keys[layer], trt.keys[layer][:3].numpy(), atol=1e-6)
            assert trt.host_lengths[layer][3] == 0, "the padding row takes nothing and writes nothing"
        # per-step shapes: fixed for the generation, and the caches are the decode outputs themselves
        assert decode_context.shapes["past_key_values.1.key"] == (4, layout.heads, capacity, layout.head_dim)
        assert decode_context.shapes["input_ids"] == (4, 1)
        assert decode_context.addresses["key.1"] == decode_context.addresses["past_key_values.1.key"]
    assert [t.data_ptr() for t in trt.keys + trt.values] == addresses, "no cache buffer is ever reallocated"
    assert decode_context.executions == 10 and trt.cuda_graphs == {}, "no CUDA graph on the CPU stand-in"
    assert set(trt.take_rates(0)) == set(layout.routed_layers)


def test_trt_stepper_drives_the_generate_loop_and_refuses_a_full_cache_mock_tensorrt(mock_tensorrt, pair, tmp_path):
    forms, _, layout = pair
    engines, _, library = _engines(pair, tmp_path)
    trt = TrtStepper(
        engines["prefill"], engines["decode"], layout, library, device="cpu", torch_module=torch, max_cache=64
    )
    ort = OrtStepper(forms.step)
    prompts = [[1, 2, 3, 4, 5], [9, 8, 7]]
    want = generate(ort, prompts, 8, Sampling())
    got = generate(trt, prompts, 8, Sampling())
    assert got.tokens == want.tokens, "greedy tokens equal"
    with pytest.raises(InputError, match="the engines allow 64"):
        trt.prefill(*left_pad(prompts), 65)
    ids, mask = left_pad([[1, 2, 3]])
    trt.prefill(ids, mask, 4)
    with pytest.raises(InputError, match="cache is full"):
        for _ in range(4):
            trt.step(np.array([5]), np.array([True]))


def test_target_trt_writes_one_engine_per_phase_and_names_them_mock_tensorrt(
    mock_tensorrt, monkeypatch, trained, tmp_path
):
    """`--target trt` builds the generation engines from the plugin-form pair next to model.engine, records them in
    the manifest (what Session.generate and examples/cpp/generate.cpp read), and they generate like ONNX Runtime."""
    import json

    _, _, ckpt = trained
    out, library = tmp_path / "trt", tmp_path / "libmod_export_plugins.so"
    report = export_on_mock_tensorrt(monkeypatch, ckpt, out, library, target="trt")
    built = report["engine"]["generation"]
    assert [built[p]["engine"] for p in ("prefill", "decode")] == ["model.prefill.engine", "model.decode.engine"]
    assert all(built[p]["aliased_plugin_io"] for p in built)
    manifest = json.loads((out / "manifest.json").read_text())
    generation = manifest["generation"]
    assert (
        generation["prefill_engine"] == "model.prefill.engine" and generation["decode_engine"] == "model.decode.engine"
    )
    assert {"model.prefill.engine", "model.decode.engine", "model.plugin.decode.onnx"} <= set(manifest["files"])
    profile = json.loads((out / "model.decode.engine").read_bytes())["profiles"][0]
    assert profile["past_key_values.0.key"][2][2] == generation["max_context"] == 4096
    layout = DecodeLayout(
        generation["layers"], tuple(generation["routed_layers"]), generation["heads"], generation["head_dim"]
    )
    trt = TrtStepper(
        out / "model.prefill.engine",
        out / "model.decode.engine",
        layout,
        out / library.name,
        device="cpu",
        torch_module=torch,
    )
    ort = OrtStepper(onnx.load(out / "model.step.onnx"))
    prompts = [list(b"def main("), list(b"import os\n")]
    assert generate(trt, prompts, 6).tokens == generate(ort, prompts, 6).tokens


def test_llama_gqa_model_plugin_form_and_trt_stepper_follow_the_kv_heads_mock_tensorrt(mock_tensorrt, tmp_path):
    """A Llama-style model with grouped-query attention (4 query heads, 2 key/value heads): the plugin form and the
    TensorRT stepper size the caches by the key/value heads and generate like the portable pair on ONNX Runtime."""
    import dataclasses

    torch.manual_seed(5)
    cfg = dataclasses.replace(example_config(), arch="llama", n_kv_heads=2)
    forms = export_decode_forms(MoDTransformer(cfg).eval())
    paths = {"prefill": tmp_path / "p.onnx", "decode": tmp_path / "d.onnx"}
    graphs = {"p.onnx": plugin_prefill_graph(forms.prefill), "d.onnx": plugin_decode_graph(forms.decode)}
    save_graphs(graphs, tmp_path)
    layout = DecodeLayout.of(forms.decode)
    assert layout.heads == 2 == cfg.kv_heads
    engines, _, library = _engines((forms, paths, layout), tmp_path)
    trt = TrtStepper(engines["prefill"], engines["decode"], layout, library, device="cpu", torch_module=torch)
    ort = OrtStepper(forms.step)
    prompts = [[3, 1, 4, 1, 5], [9, 2, 6]]
    assert generate(trt, prompts, 6).tokens == generate(ort, prompts, 6).tokens
    assert trt.keys[0].shape[1] == 2, "caches hold the key/value heads"
