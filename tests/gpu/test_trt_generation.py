"""GPU and TensorRT only (markers `gpu`, `tensorrt`): generation on TensorRT (mod_export/backends/trt/generation.py)
with the real runtime: the plugin-form pair built as one engine per phase with the plugin library, driven on the
device, against the ONNX Runtime stepper. Never executed on the CPU-only development machines (it skips there);
its host logic runs on a mock TensorRT in tests/unit/test_trt_generation.py."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]


def test_generation_engines_generate_like_onnx_runtime(exported, tmp_path):
    import json

    import torch

    from mod_export.backends.onnxrt.generation import OrtStepper
    from mod_export.backends.trt.generation import DecodeLayout, TrtStepper, build_phase_engine, phase_profiles
    from mod_export.generation.loop import generate, left_pad
    from mod_export.plugin_build import build_plugins

    _, out = exported
    info = json.loads((out / "manifest.json").read_text())["generation"]
    layout = DecodeLayout(info["layers"], tuple(info["routed_layers"]), info["heads"], info["head_dim"])
    library = build_plugins(tmp_path / "plugins", run_tests=False).library
    profiles = phase_profiles(layout, 8, 512)
    engines = {}
    for phase in ("prefill", "decode"):
        engines[phase] = tmp_path / f"model.{phase}.engine"
        report = build_phase_engine(out / info[f"plugin_{phase}"], engines[phase], profiles[phase], library)
        assert report["aliased_plugin_io"]
    trt = TrtStepper(engines["prefill"], engines["decode"], layout, library, device="cuda", torch_module=torch)
    ort = OrtStepper(onnx.load(out / info["step"]))
    prompts = [list(b"def main(argv):\n"), list(b"import os"), list(b"class A:\n    pass\n")]
    assert generate(trt, prompts, 32).tokens == generate(ort, prompts, 32).tokens
    ids, mask = left_pad(prompts)
    a, b = ort.prefill(ids, mask, ids.shape[1] + 9), trt.prefill(ids, mask, ids.shape[1] + 9)
    for _ in range(8):
        tokens, active = np.array([65, 66, 67]), np.ones(3, bool)
        a, b = ort.step(tokens, active), trt.step(tokens, active)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-3)
        for layer in range(layout.layers):
            np.testing.assert_array_equal(ort.lengths[layer], trt.host_lengths[layer][:3])
            np.testing.assert_allclose(ort.keys[layer], trt.keys[layer][:3].cpu().numpy(), atol=1e-3)
    print("decode CUDA graphs:", trt.cuda_graphs)  # "captured" or why TensorRT refused the capture
