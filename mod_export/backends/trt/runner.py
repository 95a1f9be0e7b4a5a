"""A TensorRT engine as a Polygraphy runner: numpy in, numpy out, like every other backend, with the engine's
routing outputs renamed `idx:l` where it was built with them (mod_export.backends.trt.builder marks them).
Needs TensorRT and a GPU; on the CPU-only development machines its host logic runs against a mock."""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from mod_export.backends.trt.engine_runner import TensorRTEngineRunner
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
        self._runner: TensorRTEngineRunner | None = None

    def activate_impl(self):
        self._runner = TensorRTEngineRunner(self.engine_path, self.plugin_library, self.cuda_graphs)

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for input_name in INPUT_NAMES:
            meta.add(input_name, np.int64, (-1, -1))
        return meta

    def infer_impl(self, feed_dict):
        import torch  # noqa: PLC0415 - optional for the runtime: only the TensorRT backend needs CUDA tensors

        ids = torch.from_numpy(np.ascontiguousarray(feed_dict[INPUT_IDS], dtype=np.int64)).cuda()
        mask = torch.from_numpy(np.ascontiguousarray(feed_dict[ATTENTION_MASK], dtype=np.int64)).cuda()
        start = time.perf_counter()
        outputs = self._runner.run_all(ids, mask)
        torch.cuda.synchronize()
        self.inference_time = time.perf_counter() - start
        return OrderedDict((self.rename.get(k, k), v.cpu().numpy()) for k, v in outputs.items())

    @property
    def engine(self) -> TensorRTEngineRunner:
        """The underlying engine runner (torch CUDA tensors in and out), once active."""
        return self._runner

    def deactivate_impl(self):
        self._runner = None
