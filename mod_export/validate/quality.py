"""Quality of reduced-precision forms on held-out text (the evaluation part, never calibrated on): bits per
byte against the float32 reference, and the two-part parity verdict at the candidate's precision (forced-routing
logits error, raw and margin-aware routing agreement per routed layer)."""

from __future__ import annotations

import math

import numpy as np
import onnx

from mod_export.backends.onnxrt.runner import onnxrt_runner, routing_outputs
from mod_export.backends.torch.runner import TorchRunner
from mod_export.contract import DEFAULT_MIN_ROUTING_AGREEMENT, LOGITS, QUALITY_LIMITS, tolerance_for
from mod_export.graph.queries import routing_tensors
from mod_export.parity.numerics import max_abs_error, within
from mod_export.parity.routing import LayerRouting, compare_layers
from mod_export.validate.cases import Case
from mod_export.validate.judge import check_reference, score_deviation


def _nll_sum(logits: np.ndarray, targets: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -float(np.take_along_axis(logp, targets[..., None], -1).sum())


def _reference_pass(reference: TorchRunner, windows: np.ndarray, batch: int) -> list[tuple]:
    """The reference's own (unforced) logits on each batch of windows: [(case, targets[B,T], outputs)]."""
    unforced = []
    for start in range(0, len(windows), batch):
        chunk = windows[start : start + batch]
        case = Case(f"held-out windows {start}..{start + len(chunk) - 1}", chunk[:, :-1], np.ones_like(chunk[:, :-1]))
        result = reference.infer(case.feed)
        check_reference(case, result[LOGITS])
        unforced.append((case, chunk[:, 1:], result))
    return unforced


def _form_quality(reference: TorchRunner, runner, unforced: list[tuple], capacities: list, tolerance) -> dict:
    """One form over the windows: its bits/byte, its logits with the reference forced to its routing, its scores,
    and its routing tallied per routed layer."""
    layers = range(len(capacities))
    totals = [LayerRouting(tolerance.score_tolerance) for _ in capacities]
    nll, forced_err, deviation = 0.0, 0.0, 0.0
    with runner:
        for case, targets, _ in unforced:
            got = runner.infer(case.feed)
            idx = [got[f"idx:{layer}"] for layer in layers]
            scores = [got[f"scores:{layer}"] for layer in layers]
            forced = reference.infer(case.feed, forced_idx=idx)
            ref_scores = [forced[f"scores:{layer}"] for layer in layers]
            compared = compare_layers(
                ref_scores, case.attention_mask, idx, capacities, tolerance.score_tolerance, scores
            )
            for total, r in zip(totals, compared):
                total.merge(r)
            nll += _nll_sum(got[LOGITS], targets)
            forced_err = max(forced_err, max_abs_error(got[LOGITS], forced[LOGITS]))
            deviation = max(deviation, score_deviation(scores, ref_scores, case.attention_mask))
    return {"nll": nll, "forced_max_abs_err": forced_err, "max_score_deviation": deviation, "totals": totals}


def _form_mismatches(where: str, entry: dict, totals: list, limit: float, tolerance, min_agreement: float) -> list:
    found = []
    if not math.isfinite(entry["bits_per_byte"]) or entry["relative_bpb_change"] > limit:
        found.append(f"{where}: bits/byte {100 * entry['relative_bpb_change']:+.2f}% > {100 * limit:.1f}%")
    if not within(entry["forced_max_abs_err"], tolerance.logits_atol):
        found.append(
            f"{where}: forced-routing logits max abs error {entry['forced_max_abs_err']:.3g} > {tolerance.logits_atol:g}"
        )
    for layer, t in enumerate(totals):
        if t.margin_aware_agreement < min_agreement:
            found.append(
                f"{where}: routed layer #{layer}: margin-aware routing agreement {100 * t.margin_aware_agreement:.1f}% "
                f"< {100 * min_agreement:.1f}% ({t.errors} routing errors in {t.rows} rows)"
            )
    return found


def quality_report(
    model,
    forms: dict[str, onnx.ModelProto],
    plugin: onnx.ModelProto,
    windows: np.ndarray,
    precision: str,
    min_routing_agreement: float = DEFAULT_MIN_ROUTING_AGREEMENT,
    batch: int = 8,
) -> dict:
    """forms: reduced-precision protos by name; windows[N, T+1] int64 held-out text. Never raises on a mismatch."""
    tolerance = tolerance_for(precision)
    limit = QUALITY_LIMITS.get(precision, 0.0)
    routing = routing_tensors(plugin)
    capacities = [r.capacity for r in routing]
    out: dict = {
        "precision": precision,
        "max_relative_bpb_increase": limit,
        "min_routing_agreement": min_routing_agreement,
        "atol": tolerance.logits_atol,
        "score_tolerance": tolerance.score_tolerance,
        "windows": int(len(windows)),
        "seq_len": int(windows.shape[1] - 1),
        "forms": {},
        "mismatches": [],
    }
    reference = TorchRunner(model)
    with reference:
        unforced = _reference_pass(reference, windows, batch)
        count = sum(t.size for _, t, _ in unforced)
        ref_bpb = sum(_nll_sum(r[LOGITS], t) for _, t, r in unforced) / count / math.log(2)
        for name, proto in forms.items():
            runner = onnxrt_runner(proto, name, routing_outputs(routing), shared_weights=True)
            measured = _form_quality(reference, runner, unforced, capacities, tolerance)
            bpb = measured["nll"] / count / math.log(2)
            entry = {
                "bits_per_byte": bpb,
                "reference_bits_per_byte": ref_bpb,
                "relative_bpb_change": bpb / ref_bpb - 1.0,
                "forced_max_abs_err": measured["forced_max_abs_err"],
                "max_score_deviation": measured["max_score_deviation"],
                "routing": {str(layer): t.as_dict() for layer, t in enumerate(measured["totals"])},
            }
            out["forms"][name] = entry
            out["mismatches"] += _form_mismatches(
                f"{precision} {name}", entry, measured["totals"], limit, tolerance, min_routing_agreement
            )
    out["passed"] = not out["mismatches"]
    return out


def format_quality(quality: dict) -> str:
    lines = [
        f"{'form':9} {'precision':9} {'bits/byte':>9} {'fp32':>7} {'change':>8} {'forced err':>10}  "
        "routing per routed layer: raw / margin-aware (flips, errors)"
    ]
    for name, r in quality["forms"].items():
        agree = "  ".join(
            f"#{k}: {100 * v['raw_agreement']:.1f}% / {100 * v['margin_aware_agreement']:.1f}% "
            f"({v['near_tie_flips']}, {v['routing_errors']})"
            for k, v in r["routing"].items()
        )
        lines.append(
            f"{name:9} {quality['precision']:9} {r['bits_per_byte']:9.4f} {r['reference_bits_per_byte']:7.4f} "
            f"{100 * r['relative_bpb_change']:+7.3f}% {r['forced_max_abs_err']:10.2e}  {agree}"
        )
    return "\n".join(lines)
