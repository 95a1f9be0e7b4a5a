"""Quality of a reduced-precision ONNX model against the float32 one, on held-out text in ONNX Runtime:
bits per byte and routing agreement per routed layer (fraction of (row, layer) top-k sets identical)."""
from __future__ import annotations

import math

import numpy as np
import onnx

from mod_export.export.onnx_export import with_extra_outputs
from mod_export.validate import idx_tensor_names, routing_agreement


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def run_with_indices(model: onnx.ModelProto, idx_names: list[str], windows: np.ndarray, batch: int = 8,
                     with_loss: bool = True):
    """-> (bits per byte over windows[N, T+1] or None, per routed layer: the idx rows [N, k])."""
    from mod_export.backends.onnxrt.session import create_session

    session = create_session(with_extra_outputs(model, idx_names), providers=["CPUExecutionProvider"])
    nll, count = 0.0, 0
    indices: list[list[np.ndarray]] = [[] for _ in idx_names]
    for start in range(0, len(windows), batch):
        chunk = windows[start : start + batch]
        ids = chunk[:, :-1] if with_loss else chunk
        outs = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        if with_loss:
            logp = _log_softmax(outs[0].astype(np.float64))
            nll -= float(np.take_along_axis(logp, chunk[:, 1:, None], -1).sum())
            count += chunk[:, 1:].size
        for layer, idx in enumerate(outs[1:]):
            indices[layer].append(idx)
    bpb = nll / count / math.log(2) if with_loss else None
    return bpb, [np.concatenate(i) for i in indices]


def agreement_per_layer(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict[str, float]:
    return {str(layer): routing_agreement(r, c) for layer, (r, c) in enumerate(zip(reference, candidate))}


def compare_to_reference(reference: onnx.ModelProto, candidate: onnx.ModelProto, plugin_reference: onnx.ModelProto,
                         windows: np.ndarray, reference_run: tuple | None = None) -> dict:
    """bits/byte of both and per-layer routing agreement of candidate vs reference. reference_run: the
    reference's own run_with_indices result on the same windows, when the caller already has it."""
    names = idx_tensor_names(plugin_reference)
    ref_bpb, ref_idx = reference_run or run_with_indices(reference, names, windows)
    bpb, idx = run_with_indices(candidate, names, windows)
    agreement = agreement_per_layer(ref_idx, idx)
    return {
        "bits_per_byte": bpb,
        "reference_bits_per_byte": ref_bpb,
        "relative_bpb_change": bpb / ref_bpb - 1.0,
        "routing_agreement": agreement,
        "windows": int(len(windows)),
        "seq_len": int(windows.shape[1] - 1),
    }
