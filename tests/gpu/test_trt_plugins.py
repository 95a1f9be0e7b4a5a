"""GPU and TensorRT only (markers `gpu`, `tensorrt`): the plugins inside a real TensorRT engine versus ONNX
Runtime. Never executed on the CPU-only development machines; it skips there with one reason (conftest.py).
The kernels alone, without TensorRT: test_kernels.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]


def test_plugin_engine_matches_onnxruntime(exported, tmp_path):
    from polygraphy.backend.onnxrt import OnnxrtRunner
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, Profile, TrtRunner
    from polygraphy.comparator import Comparator

    from mod_export.backends.onnxrt.session import create_session
    from mod_export.plugin_build import build_plugins

    _, out = exported
    library = build_plugins(tmp_path / "plugins", run_tests=False).library
    profile = Profile().add("input_ids", (1, 1), (2, 256), (4, 2048)).add("attention_mask", (1, 1), (2, 256), (4, 2048))
    engine = EngineFromNetwork(
        NetworkFromOnnxPath(str(out / "model.plugin.onnx"), plugin_instancenorm=False),
        config=CreateConfig(profiles=[profile]),
    )
    import tensorrt as trt

    trt.get_plugin_registry().load_library(str(library))
    feeds = []
    rng = np.random.default_rng(0)
    for B, T in ((1, 1), (2, 97), (3, 256), (1, 2048)):
        ids = rng.integers(0, 256, (B, T)).astype(np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    runners = [TrtRunner(engine), OnnxrtRunner(create_session(out / "model.onnx", providers=["CPUExecutionProvider"]))]
    results = Comparator.run(runners, data_loader=feeds)
    assert Comparator.compare_accuracy(results)
