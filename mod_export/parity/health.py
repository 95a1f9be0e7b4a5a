"""Router health: is each routed layer's router deciding by content, with margins that float rounding
cannot flip? Measured from the reference's scores on real text (docs/parity.md).

Per routed layer: fraction of tokens selected, normalised score entropy, the distribution of boundary
margins (k-th minus (k+1)-th largest score of a row), the selected-vs-skipped score gap, the causal
predictor's agreement with top-k, and two alarms:

- **positional**: the router picks the same positions in every row. `position_overlap` is the mean, over
  rows, of the share of a row's selection that falls on the k positions selected most often overall. A router
  that ranks by position scores 1.0; a content router on text sits far lower (the example models: 0.2-0.4).
  Alarm above POSITION_OVERLAP_ALARM.
- **uninformative**: the median boundary margin is below the float32 near-tie tolerance, so float rounding,
  not content, decides most rows (a router whose weights are zero or vanishingly small).

Shapes: N rows, T positions (rows of one batch share T), k selected per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mod_export.contract import TOLERANCES
from mod_export.parity.routing import masked_scores
from mod_export.parity.topk import capacity_k, contract_topk

POSITION_OVERLAP_ALARM = 0.9
UNINFORMATIVE_MARGIN = TOLERANCES["fp32"].score_tolerance
MARGIN_THRESHOLDS = (1e-5, 1e-3)  # fraction of rows under each: predicts fp32 and fp16 near-tie flips


@dataclass
class LayerScores:
    """What one routed layer produced on some batches of text."""

    scores: list[np.ndarray]  # per batch: [N,T] raw scores
    masks: list[np.ndarray | None]  # per batch: [N,T] or None
    capacity: tuple[int, int]
    predictor_logits: list[np.ndarray] | None = None  # per batch: [N,T], the causal decision logits


def _membership(idx: np.ndarray, T: int) -> np.ndarray:
    member = np.zeros((idx.shape[0], T), dtype=bool)
    np.put_along_axis(member, idx, True, axis=1)
    return member


def boundary_margins(masked: np.ndarray, k: int) -> np.ndarray:
    """Per row: k-th minus (k+1)-th largest score (inf when the row has no (k+1)-th real token)."""
    if k >= masked.shape[1]:
        return np.full(masked.shape[0], np.inf)
    top = -np.sort(-masked.astype(np.float64), axis=1)[:, : k + 1]
    with np.errstate(invalid="ignore"):
        gap = top[:, k - 1] - top[:, k]
    return np.where(np.isfinite(gap), gap, np.inf)


def _normalised_entropy(masked: np.ndarray, valid: np.ndarray) -> np.ndarray:
    z = masked.astype(np.float64) - masked.max(axis=1, keepdims=True)
    p = np.where(valid, np.exp(z), 0.0)
    p /= p.sum(axis=1, keepdims=True)
    h = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(axis=1)
    n = valid.sum(axis=1)
    return np.where(n > 1, h / np.log(np.maximum(n, 2)), 1.0)


def layer_health(data: LayerScores) -> dict:
    """The health entry of one routed layer (JSON-ready)."""
    num, den = data.capacity
    margins, entropies, overlaps = [], [], []
    selected = skipped = 0.0
    n_sel = n_skip = n_valid = 0
    agree = agree_n = 0
    for i, (scores, mask) in enumerate(zip(data.scores, data.masks)):
        masked = masked_scores(scores, mask)
        valid = np.ones(masked.shape, bool) if mask is None else np.asarray(mask) != 0
        N, T = masked.shape
        k = capacity_k(T, num, den)
        idx = contract_topk(masked, k)
        member = _membership(idx, T) & valid
        margins.append(boundary_margins(masked, k))
        entropies.append(_normalised_entropy(masked, valid))
        counts = member.sum(axis=0)  # how often each position is selected
        favourite = np.argsort(-counts, kind="stable")[:k]
        overlaps.append(member[:, favourite].sum(axis=1) / max(k, 1))
        s = masked.astype(np.float64)
        selected += s[member].sum()
        n_sel += int(member.sum())
        skip = valid & ~member
        skipped += s[skip].sum()
        n_skip += int(skip.sum())
        n_valid += int(valid.sum())
        if data.predictor_logits is not None:
            decision = np.asarray(data.predictor_logits[i]) > 0
            agree += int(((decision == member) & valid).sum())
            agree_n += int(valid.sum())
    m = np.concatenate(margins)
    finite = m[np.isfinite(m)]
    pct = (lambda q: float(np.percentile(finite, q))) if finite.size else (lambda q: None)
    entry = {
        "selected_fraction": n_sel / max(n_valid, 1),
        "capacity": f"{num}/{den}",
        "score_entropy_normalised": float(np.concatenate(entropies).mean()),
        "margin_p1": pct(1),
        "margin_p5": pct(5),
        "margin_p50": pct(50),
        **{f"rows_margin_below_{t:g}": float((m < t).mean()) for t in MARGIN_THRESHOLDS},
        "selected_minus_skipped_score": (selected / max(n_sel, 1)) - (skipped / max(n_skip, 1)) if n_skip else None,
        "position_overlap": float(np.concatenate(overlaps).mean()),
        "rows": int(m.size),
    }
    if agree_n:
        entry["predictor_topk_agreement"] = agree / agree_n
    entry["alarms"] = _alarms(entry)
    return entry


def _alarms(entry: dict) -> list[str]:
    """A degenerate router: one that picks the same positions whatever the text, or whose scores barely differ."""
    alarms = []
    if entry["position_overlap"] > POSITION_OVERLAP_ALARM:
        alarms.append(
            f"positional: {100 * entry['position_overlap']:.0f}% of each row's selection falls on the same "
            f"k positions (alarm above {100 * POSITION_OVERLAP_ALARM:.0f}%)"
        )
    if entry["margin_p50"] is not None and entry["margin_p50"] < UNINFORMATIVE_MARGIN:
        alarms.append(
            f"uninformative: median boundary margin {entry['margin_p50']:.2g} is below float32 rounding "
            f"tolerance {UNINFORMATIVE_MARGIN:g}"
        )
    return alarms


def router_health(layers: list[LayerScores]) -> dict:
    """{"layers": {"0": entry, ...}, "alarms": ["routed layer #0: ...", ...]} in graph order."""
    entries = {str(i): layer_health(layer) for i, layer in enumerate(layers)}
    alarms = [f"routed layer #{i}: {a}" for i, e in entries.items() for a in e["alarms"]]
    return {"layers": entries, "alarms": alarms, "degenerate": bool(alarms)}


def format_health(health: dict) -> str:
    lines = [
        f"{'routed layer':12} {'selected':>8} {'entropy':>7} {'margin p1/p5/p50':>26} {'<1e-5':>6} {'<1e-3':>6} "
        f"{'sel-skip':>8} {'pos.overlap':>11} {'predictor':>9}"
    ]
    for layer, e in health["layers"].items():
        pcts = "/".join("-" if e[f"margin_p{q}"] is None else f"{e[f'margin_p{q}']:.1e}" for q in (1, 5, 50))
        gap = "-" if e["selected_minus_skipped_score"] is None else f"{e['selected_minus_skipped_score']:+.2f}"
        pred = f"{100 * e['predictor_topk_agreement']:.1f}%" if "predictor_topk_agreement" in e else "-"
        lines.append(
            f"#{layer:11} {100 * e['selected_fraction']:7.1f}% {e['score_entropy_normalised']:7.3f} {pcts:>26} "
            f"{100 * e['rows_margin_below_1e-05']:5.1f}% {100 * e['rows_margin_below_0.001']:5.1f}% {gap:>8} "
            f"{e['position_overlap']:11.2f} {pred:>9}"
        )
    for alarm in health["alarms"]:
        lines.append(f"warning: degenerate router: {alarm}")
    return "\n".join(lines)
