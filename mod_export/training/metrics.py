"""Held-out evaluation: bits per byte, unigram baseline, causal-predictor accuracy, routing statistics."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mod_export.models import routing
from mod_export.models.causal import CausalRecord, causal_forward, routed_layers
from mod_export.models.model import MoDTransformer


def unigram_bits_per_byte(train: np.ndarray, held_out: np.ndarray) -> float:
    """Cross-entropy (bits) of held-out bytes under add-one-smoothed train byte frequencies."""
    counts = np.bincount(train, minlength=256).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-logp[held_out].mean())


@torch.no_grad()
def model_bits_per_byte(model: MoDTransformer, windows: np.ndarray, batch: int = 16) -> float:
    """Mean next-byte cross-entropy in bits over windows[N, T+1]."""
    total, count = 0.0, 0
    for start in range(0, len(windows), batch):
        chunk = torch.from_numpy(windows[start : start + batch])
        logits = model(chunk[:, :-1])  # [b,T,V]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum")
        total += float(loss)
        count += chunk[:, 1:].numel()
    return total / count / math.log(2)


@torch.no_grad()
def causal_routing_metrics(model: MoDTransformer, windows: np.ndarray, batch: int = 16) -> dict:
    """Held-out bits per byte in causal-routing mode (how generation routes: decision logit > 0 per token), and each
    routed block's fraction of tokens that took it in that mode."""
    total, count = 0.0, 0
    taken: dict[int, float] = {}
    for start in range(0, len(windows), batch):
        chunk = torch.from_numpy(windows[start : start + batch])
        record = CausalRecord()
        logits = causal_forward(model, chunk[:, :-1], record=record)  # [b,T,V]
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"))
        count += chunk[:, 1:].numel()
        for layer in routed_layers(model):
            taken[layer] = taken.get(layer, 0.0) + float(record.take[layer].sum())
    return {
        "bits_per_byte": total / count / math.log(2),
        "take_fraction": {str(layer): n / count for layer, n in taken.items()},
    }


def _byte_class(tokens: torch.Tensor) -> torch.Tensor:
    """0 whitespace, 1 letter/digit/underscore, 2 punctuation and other."""
    t = tokens
    space = (t == 32) | (t == 10) | (t == 9) | (t == 13)
    word = ((t >= 48) & (t <= 57)) | ((t >= 65) & (t <= 90)) | ((t >= 97) & (t <= 122)) | (t == 95)
    return torch.where(space, 0, torch.where(word, 1, 2))


@torch.no_grad()
def routing_statistics(model: MoDTransformer, windows: np.ndarray, batch: int = 16) -> dict:
    """Per routed layer: router score spread, normalised entropy, selected-vs-skipped gaps, and the
    causal predictor's accuracy (with precision/recall, since 'never selected' already scores 1 - capacity)."""
    per_layer: dict[int, dict[str, list]] = {}
    for start in range(0, len(windows), batch):
        tokens = torch.from_numpy(windows[start : start + batch, :-1])  # [b,T]
        traces: list = []
        model.forward_trace(tokens, None, traces)
        T = tokens.shape[1]
        cls = _byte_class(tokens)
        for tr in traces:
            acc = per_layer.setdefault(tr.layer, {k: [] for k in ("scores", "member", "pred", "cls", "pos")})
            acc["scores"].append(tr.scores)
            acc["member"].append(routing.membership(tr.idx, T))
            acc["pred"].append(tr.predictor_logits)
            acc["cls"].append(cls)
            acc["pos"].append(torch.arange(T).expand_as(tokens).float() / max(T - 1, 1))
    stats = {}
    for layer, acc in sorted(per_layer.items()):
        scores = torch.cat(acc["scores"])  # [N,T]
        member = torch.cat(acc["member"]).bool()  # [N,T]
        cls = torch.cat(acc["cls"])
        pos = torch.cat(acc["pos"])
        probs = torch.softmax(scores, dim=-1)
        entropy = float((-(probs * probs.clamp_min(1e-30).log()).sum(-1) / math.log(scores.shape[-1])).mean())
        sel, skip = scores[member], scores[~member]
        entry = {
            "score_std": float(scores.std()),
            "score_entropy_normalised": entropy,
            "mean_score_selected": float(sel.mean()),
            "mean_score_skipped": float(skip.mean()),
            "selected_fraction": float(member.float().mean()),
            "selected_whitespace_share": float((cls[member] == 0).float().mean()),
            "overall_whitespace_share": float((cls == 0).float().mean()),
            "selected_mean_relative_position": float(pos[member].mean()),
        }
        if acc["pred"][0] is not None:
            pred = torch.cat(acc["pred"]) > 0
            tp = float((pred & member).sum())
            entry["predictor_accuracy"] = float((pred == member).float().mean())
            entry["predictor_precision"] = tp / max(float(pred.sum()), 1.0)
            entry["predictor_recall"] = tp / max(float(member.sum()), 1.0)
            entry["predictor_baseline_accuracy"] = 1.0 - entry["selected_fraction"]
        stats[str(layer)] = entry
    return stats
