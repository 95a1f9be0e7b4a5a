"""What a runtime backend gives `mod_export.runtime.Session`: one loaded model, driven through five calls. Inputs
arrive checked (mod_export.runtime.checks); the model only runs them.

    model.run(feed) -> logits [B,T,V] (numpy)              feed: input_ids, attention_mask int64 [B,T]
    model.run_with_routing(feed) -> (logits, [idx [B,k]])  per routed layer, where the backend reports it
    model.run_torch(ids, mask) -> logits (torch)           the caller's torch tensors, kept on their device
    model.stepper(directory, info) -> generation stepper   mod_export.generation.loop.Stepper over its graphs
    model.close()
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

from mod_export.errors import UsageError


def is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def caller_torch():
    """The torch module of a caller who passed torch tensors (loaded by that caller, never imported here)."""
    return sys.modules["torch"]


class RuntimeModel:
    """Base of the backends' runtime models (ONNX Runtime: backends.onnxrt.model, TensorRT: backends.trt.model)."""

    name = ""  # the backend's registry name
    serial_generation = False  # True: one generation at a time (the backend owns one set of contexts)

    def __init__(self, manifest: dict | None, vocab: int | None, idx_names: list[str]):
        self.manifest = manifest  # the export folder's manifest.json (None for a lone file)
        self.vocab = vocab  # the vocabulary size where the graph states it
        self.idx_names = idx_names  # per routed layer, the tensor holding its selection idx[B,k]
        self.lock = threading.Lock()  # serialises runs where the backend needs it (run_serialised)

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def run_with_routing(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        raise UsageError(f"run_with_routing is available on the ONNX Runtime backend, not on {self.name}")

    def run_torch(self, ids, mask):
        raise NotImplementedError

    def stepper(self, directory: Path, info: dict, max_context: int | None, skip_integrity: bool):
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
