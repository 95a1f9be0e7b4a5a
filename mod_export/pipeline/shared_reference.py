"""The export job's PyTorch reference reads its weights from the same memory as ONNX Runtime (docs/weights.md).

Validation runs the model the job loaded beside ONNX Runtime sessions of its graphs. The sessions read the
weights through one map of the job's data file (backends/onnxrt/mapped_weights.py); here each float32 parameter
and buffer of that model becomes a view of the same map, found by content in the store: the tensor's own bytes,
or its transpose's (the exporter folds each Linear weight into a transposed MatMul initializer, so PyTorch's
weight is a transposed view of it). The model's own copy is then freed, and the job holds the weights once.

Only a model the job loaded itself is rebound (never a caller's live module); tensors found nowhere keep their
memory. The views are read-only in effect: the map is private copy-on-write, so a write would not reach the file.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import nn

from mod_export.graph.weights import WeightStore, mapped_file

logger = logging.getLogger(__name__)


def share_with_store(module: nn.Module, store: WeightStore) -> int:
    """Rebind `module`'s float32 tensors to views of `store`'s data file where their bytes (or their transpose's)
    are there; returns the bytes rebound."""
    if not store.path.is_file():
        return 0
    mapped = mapped_file(store.path)
    rebound = 0
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):  # each once, tied ones too
            if tensor.dtype != torch.float32 or tensor.numel() == 0:
                continue
            view = _stored_view(tensor.detach(), store, mapped)
            if view is not None:
                tensor.data = view  # the Parameter object stays (tied weights stay tied); its memory goes
                rebound += view.numel() * 4
    logger.info("the PyTorch reference reads %.2f GB of weights from the export's data file", rebound / 1e9)
    return rebound


def _stored_view(tensor: torch.Tensor, store: WeightStore, mapped: np.memmap) -> torch.Tensor | None:
    """tensor[...] as a view of the map, from its own bytes or (2-D) its transpose's; None if neither is stored."""
    candidates = [(tensor.contiguous(), False)]
    if tensor.dim() == 2:
        candidates.append((tensor.t().contiguous(), True))  # one tensor's transient copy, to find it
    for candidate, transposed in candidates:
        offset = store.offset_of(candidate.numpy())
        if offset is None:
            continue
        array = np.ndarray(tuple(candidate.shape), dtype=np.float32, buffer=mapped, offset=offset)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's memmap subclass: torch wraps the same memory
            view = torch.from_numpy(array)
        return view.t() if transposed else view
    return None
