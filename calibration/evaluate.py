"""Routing of an ONNX model on windows of text in ONNX Runtime, for the int8 routing guard: which MatMuls may
be quantised without moving the selected sets (raw agreement with the float32 model on calibration windows)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from mod_export.contract import ATTENTION_MASK, INPUT_IDS
from mod_export.graph.queries import idx_tensor_names, with_extra_outputs
from mod_export.graph.weights import session_config


def run_indices(
    model: onnx.ModelProto, plugin_reference: onnx.ModelProto, windows: np.ndarray, batch: int = 8
) -> list[np.ndarray]:
    """Per routed layer (graph order of plugin_reference): the idx rows [N, k] over windows[N, T]. `model` is a
    portable form (standard ops only), so a plain ONNX Runtime session runs it."""
    names = idx_tensor_names(plugin_reference)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for key, value in session_config(model).items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(
        with_extra_outputs(model, names).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    indices: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, len(windows), batch):
        ids = windows[start : start + batch]
        outs = session.run(names, {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)})
        for layer, idx in enumerate(outs):
            indices[layer].append(idx)
    return [np.concatenate(i) for i in indices]


def raw_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction of rows whose selected index sets are identical. [N,k] each."""
    if reference.shape != candidate.shape:
        return 0.0
    same = (np.sort(reference, axis=1) == np.sort(candidate, axis=1)).all(axis=1)
    return float(same.mean()) if same.size else 1.0


def agreement_per_layer(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict[str, float]:
    return {str(layer): raw_agreement(r, c) for layer, (r, c) in enumerate(zip(reference, candidate))}
