"""One inference API over every backend: Session(DIR or file, backend=...).run(input_ids, attention_mask).

numpy in -> numpy out; torch tensors in -> torch tensors out (CUDA tensors stay on the device).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mod_export.errors import MissingDependencyError, ModExportError
from mod_export.export.artifacts import ENGINE_FILE, PLUGIN_FILE, PORTABLE_FILE
from mod_export.plugins import LIBRARY_NAME

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


class Session:
    def __init__(self, source: str | os.PathLike, backend: str = "auto", form: str = "portable",
                 providers: list[str] | None = None, cuda_graphs: bool = False, threads: int | None = None):
        """source: an export DIR, an .onnx file or an .engine file. form: which ONNX file of a DIR
        ("portable" = model.onnx, "plugin" = model.plugin.onnx, run through its reference functions)."""
        if backend not in BACKENDS:
            raise ModExportError(f"backend must be one of {BACKENDS}, got {backend!r}")
        path = Path(source)
        if not path.exists():
            raise ModExportError(f"{path} not found")
        engine = path if path.suffix in (".engine", ".plan") else path / ENGINE_FILE
        if backend == "auto":
            backend = "tensorrt" if engine.is_file() and self._tensorrt_usable() else "onnxruntime"
        self.backend = backend
        if backend == "tensorrt":
            from mod_export.backends.trt.engine_runner import TensorRTEngineRunner

            if not engine.is_file():
                raise ModExportError(f"no TensorRT engine at {engine} (export with --target trt)")
            library = engine.parent / LIBRARY_NAME
            self._runner = TensorRTEngineRunner(engine, library if library.is_file() else None, cuda_graphs)
            return
        from mod_export.backends.onnxrt.session import available_providers, create_session

        onnx_file = path if path.suffix == ".onnx" else path / (PLUGIN_FILE if form == "plugin" else PORTABLE_FILE)
        if not onnx_file.is_file():
            raise ModExportError(f"no ONNX file at {onnx_file}")
        self.providers = providers or available_providers()
        self._ort = create_session(onnx_file, providers=self.providers, threads=threads)

    @staticmethod
    def _tensorrt_usable() -> bool:
        try:
            from mod_export.backends.trt.availability import import_tensorrt, require_gpu

            import_tensorrt()
            require_gpu()
            return True
        except MissingDependencyError:
            return False

    def run(self, input_ids, attention_mask=None):
        """input_ids [B,T] int64 (numpy or torch), attention_mask [B,T] (1 token, 0 padding) or None."""
        if _is_torch(input_ids):
            return self._run_torch(input_ids, attention_mask)
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ModExportError(f"input_ids must be [batch, seq], got shape {ids.shape}")
        mask = np.ones_like(ids) if attention_mask is None else np.ascontiguousarray(attention_mask, dtype=np.int64)
        if mask.shape != ids.shape:
            raise ModExportError(f"attention_mask shape {mask.shape} differs from input_ids {ids.shape}")
        if self.backend == "tensorrt":
            import torch

            out = self._runner.run(torch.from_numpy(ids).cuda(), torch.from_numpy(mask).cuda())
            return out.cpu().numpy()
        return self._ort.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]

    def _run_torch(self, input_ids, attention_mask):
        import torch

        ids = input_ids.to(torch.int64)
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(torch.int64)
        if self.backend == "tensorrt":
            return self._runner.run(ids, mask)
        if ids.is_cuda and "CUDAExecutionProvider" in self.providers:
            return self._run_ort_on_device(ids.contiguous(), mask.contiguous())
        return torch.from_numpy(self.run(ids.cpu().numpy(), mask.cpu().numpy())).to(ids.device)

    def _run_ort_on_device(self, ids, mask):
        """IO binding: inputs and logits stay in CUDA memory (onnxruntime-gpu only)."""
        import torch

        vocab = self._ort.get_outputs()[0].shape[-1]
        logits = torch.empty((*ids.shape, vocab), dtype=torch.float32, device=ids.device)
        binding = self._ort.io_binding()
        for name, tensor in (("input_ids", ids), ("attention_mask", mask)):
            binding.bind_input(name, "cuda", ids.device.index or 0, np.int64, tuple(tensor.shape), tensor.data_ptr())
        binding.bind_output("logits", "cuda", ids.device.index or 0, np.float32, tuple(logits.shape), logits.data_ptr())
        self._ort.run_with_iobinding(binding)
        return logits
