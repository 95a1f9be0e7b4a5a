"""A TensorRT engine as a Polygraphy runner: numpy in, numpy out, like every other backend, with the engine's
routing outputs renamed `idx:l` where it was built with them (mod_export.backends.trt.builder marks them).

The numpy path is Polygraphy's own TrtRunner (device buffers through the CUDA runtime library, no torch), so a
deployment container needs TensorRT, numpy and ONNX Runtime only. Callers holding torch CUDA tensors get the
zero-copy runner (engine_runner.TensorRTEngineRunner) over the same deserialized engine with `torch_engine`.
Needs TensorRT and a GPU; on the CPU-only development machines its host logic runs against a mock."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.trt import TrtRunner
from polygraphy.common import TensorMetadata

from mod_export.backends.trt.engine_runner import LoadedEngine, TensorRTEngineRunner, load_engine
from mod_export.contract import ATTENTION_MASK, INPUT_IDS, INPUT_NAMES


class EngineRunner(BaseRunner):
    def __init__(
        self,
        engine: Path,
        plugin_library: Path | None = None,
        idx_names: list[str] | None = None,
        name: str = "tensorrt",
        cuda_graphs: bool = False,
    ):
        super().__init__(name=name, prefix="mod-export-trt-runner")
        self.engine_path, self.plugin_library, self.cuda_graphs = Path(engine), plugin_library, cuda_graphs
        self.rename = {n: f"idx:{layer}" for layer, n in enumerate(idx_names or [])}
        self._loaded: LoadedEngine | None = None
        self._numpy: TrtRunner | None = None
        self._torch: TensorRTEngineRunner | None = None

    def activate_impl(self):
        self._loaded = load_engine(self.engine_path, self.plugin_library)
        self._numpy = TrtRunner(self._loaded.engine, name=f"{self.name}/polygraphy")
        self._numpy.activate()

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for input_name in INPUT_NAMES:
            meta.add(input_name, np.int64, (-1, -1))
        return meta

    def infer_impl(self, feed_dict):
        feed = {name: np.ascontiguousarray(feed_dict[name], dtype=np.int64) for name in (INPUT_IDS, ATTENTION_MASK)}
        outputs = self._numpy.infer(feed, check_inputs=False)
        self.inference_time = self._numpy.last_inference_time()
        return OrderedDict((self.rename.get(k, k), np.asarray(v)) for k, v in outputs.items())

    def torch_engine(self, torch) -> TensorRTEngineRunner:
        """The zero-copy runner on torch CUDA tensors (`torch`: the caller's module), made on first use."""
        if self._torch is None:
            self._torch = TensorRTEngineRunner(self._loaded, torch, self.cuda_graphs)
        return self._torch

    def deactivate_impl(self):
        if self._numpy is not None:
            self._numpy.deactivate()
        self._numpy = self._torch = self._loaded = None
