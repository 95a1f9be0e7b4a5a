"""One inference API over every backend: Session(DIR or file, backend=...).run(input_ids, attention_mask).

numpy in -> numpy out; torch tensors in -> torch tensors out (CUDA tensors stay on the device).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx

from mod_export.contract import (ATTENTION_MASK, ENGINE_FILE, INPUT_IDS, LOGITS, MANIFEST_FILE, PLUGIN_FILE,
                                 PORTABLE_FILE)
from mod_export.errors import MissingDependencyError, ModExportError
from mod_export.graph.queries import idx_tensor_names, with_extra_outputs
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
        proto = onnx.load(str(onnx_file))
        # Every routed layer's selection idx[B,k] is also an output: small, computed anyway, and it lets
        # run_with_routing() report what this very session decided (the logits are unaffected).
        self._idx_names = self._routing_outputs(proto, path)
        self._ort = create_session(with_extra_outputs(proto, self._idx_names), providers=self.providers, threads=threads)

    @staticmethod
    def _routing_outputs(proto, source: Path) -> list[str]:
        """idx tensor names, per routed layer: from the graph's MoDTopKGather nodes (plugin form) or, for the portable
        form, from the export's manifest.json; [] where neither says."""
        names = idx_tensor_names(proto)
        manifest = (source if source.is_dir() else source.parent) / MANIFEST_FILE
        if not names and manifest.is_file():
            try:
                names = list(json.loads(manifest.read_text()).get("routing_idx_tensors") or [])
            except (OSError, ValueError):
                names = []
        produced = {o for n in proto.graph.node for o in n.output}
        return [n for n in names if n in produced]

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
        return self._ort.run([LOGITS], {INPUT_IDS: ids, ATTENTION_MASK: mask})[0]

    def run_with_routing(self, input_ids, attention_mask=None) -> tuple[np.ndarray, list[np.ndarray]]:
        """(logits [B,T,V], per routed layer the selected positions idx [B,k] int32) from this session (ONNX
        Runtime backend, numpy in and out)."""
        if self.backend != "onnxruntime":
            raise ModExportError("run_with_routing is available on the ONNX Runtime backend")
        if not self._idx_names:
            raise ModExportError("this ONNX file does not say where its routing decisions are (open the export directory, "
                                 "whose manifest.json names them)")
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        mask = np.ones_like(ids) if attention_mask is None else np.ascontiguousarray(attention_mask, dtype=np.int64)
        outs = self._ort.run([LOGITS, *self._idx_names], {INPUT_IDS: ids, ATTENTION_MASK: mask})
        return outs[0], list(outs[1:])

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
        for name, tensor in ((INPUT_IDS, ids), (ATTENTION_MASK, mask)):
            binding.bind_input(name, "cuda", ids.device.index or 0, np.int64, tuple(tensor.shape), tensor.data_ptr())
        binding.bind_output(LOGITS, "cuda", ids.device.index or 0, np.float32, tuple(logits.shape), logits.data_ptr())
        for name in self._idx_names:  # the routing outputs stay on the device, allocated by ONNX Runtime
            binding.bind_output(name, "cuda", ids.device.index or 0)
        self._ort.run_with_iobinding(binding)
        return logits
