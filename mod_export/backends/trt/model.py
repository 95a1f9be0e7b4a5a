"""TensorRT as a runtime backend (mod_export.backends.model.RuntimeModel): an export folder's model.engine (or one
.engine file) with the plugin library beside it. The engine owns one execution context, so runs are serialised,
and so are generations (the generation engines' stepper owns one set of contexts and device caches). Needs
TensorRT and a GPU; here its host logic runs against the mock TensorRT of the tests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mod_export.backends.model import RuntimeModel, caller_torch
from mod_export.backends.trt.generation import DecodeLayout, TrtStepper
from mod_export.backends.trt.runner import EngineRunner
from mod_export.contract import ENGINE_FILE, LIBRARY_NAME, LOGITS
from mod_export.errors import InputError
from mod_export.integrity import check_files


class TrtModel(RuntimeModel):
    name = "tensorrt"
    serial_generation = True

    def __init__(self, path: Path, cuda_graphs: bool = False, skip_integrity: bool = False, **_):
        engine = path if path.suffix in (".engine", ".plan") else path / ENGINE_FILE
        if not engine.is_file():
            raise InputError(f"no TensorRT engine at {engine} (export with --target trt)")
        library = engine.parent / LIBRARY_NAME
        names = [engine.name] + ([library.name] if library.is_file() else [])
        manifest = check_files(path, names, skip_integrity)
        super().__init__(manifest, None, list((manifest or {}).get("routing_idx_tensors") or []))
        # numpy runs: Polygraphy's TrtRunner (no torch); torch CUDA tensors: the zero-copy runner, which
        # also captures CUDA graphs (cuda_graphs=True applies to torch input).
        self.runner = EngineRunner(
            engine, library if library.is_file() else None, self.idx_names, cuda_graphs=cuda_graphs
        )
        self.runner.activate()

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:  # one execution context: TensorRT runs are serialised
            return self.runner.infer(feed, check_inputs=False)[LOGITS]

    def run_torch(self, ids, mask):
        """torch CUDA tensors straight through the engine runner (no host copies)."""
        with self.lock:
            return self.runner.torch_engine(caller_torch()).run(ids, mask)

    def stepper(self, directory: Path, info: dict, max_context: int | None, skip_integrity: bool):
        """The two generation engines of `--target trt` (docs/generation.md)."""
        names = [info.get("prefill_engine"), info.get("decode_engine")]
        if not all(names):
            raise InputError(f"{directory} has no generation engines (export it with --target trt on a GPU)")
        check_files(directory, names, skip_integrity)
        library = directory / LIBRARY_NAME
        layout = DecodeLayout(
            int(info["layers"]), tuple(info["routed_layers"]), int(info["heads"]), int(info["head_dim"])
        )
        return TrtStepper(
            directory / names[0],
            directory / names[1],
            layout,
            library if library.is_file() else None,
            max_cache=max_context,
            torch_module=sys.modules.get("torch"),
        )

    def close(self) -> None:
        if self.runner.is_active:
            self.runner.deactivate()
