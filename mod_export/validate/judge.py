"""Two-part parity verdicts (docs/parity.md) of candidate runners against the PyTorch reference.

Per case and candidate:
1. routing: per routed layer and row, identical / near-tie flip / routing error (mod_export.parity.routing),
   judged on the reference's own scores *with the reference forced to the candidate's selections*, so that a
   flip in one layer does not turn every later layer into a mismatch;
2. numerics: the candidate's logits against that forced reference (the arithmetic is checked, flips or not);
   the unforced error is reported as information.

A case passes on zero routing errors and a finite forced error within atol. Every mismatch is collected; the
caller decides what to raise after writing the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mod_export.contract import LOGITS, Tolerance, tolerance_for
from mod_export.errors import ModelError
from mod_export.parity.numerics import max_abs_error, nonfinite_count, within
from mod_export.parity.routing import LayerRouting, compare_layers, masked_scores
from mod_export.validate.cases import Case


@dataclass
class Candidate:
    """A named Polygraphy runner (activated by the caller) that returns logits, `scores:l` and `idx:l`."""

    name: str
    runner: object


def _outputs(result: dict, kind: str, layers: int) -> list[np.ndarray] | None:
    values = [result.get(f"{kind}:{layer}") for layer in range(layers)]
    return None if any(v is None for v in values) else [np.asarray(v) for v in values]


def score_deviation(candidate: list[np.ndarray], reference: list[np.ndarray], mask: np.ndarray) -> float:
    """Largest |candidate score - reference score| over real tokens and routed layers (inf if non-finite)."""
    worst = 0.0
    for c, r in zip(candidate, reference):
        worst = max(worst, max_abs_error(masked_scores(c, mask), masked_scores(r, mask)))
    return worst


def check_reference(case: Case, logits: np.ndarray, reference_name: str = "PyTorch reference") -> None:
    bad = nonfinite_count(logits)
    if bad:
        raise ModelError(
            f"the {reference_name}'s logits are not finite on validation case '{case.name}' "
            f"({bad} of {logits.size} values are NaN or Inf): the model itself is broken"
        )


def _failed_to_run(
    exc: Exception, where: str, case: Case, layers: int, tolerance: Tolerance
) -> tuple[dict, list[LayerRouting], list[str]]:
    message = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)[:300]
    row = {
        "case": case.name,
        "shape": list(case.input_ids.shape),
        "forced_max_abs_err": math.inf,
        "unforced_max_abs_err": math.inf,
        "max_score_deviation": None,
        "near_tie_flips": 0,
        "routing_errors": 0,
        "routing": {},
        "run_error": message,
        "passed": False,
    }
    return row, [LayerRouting(tolerance.score_tolerance) for _ in range(layers)], [f"{where}: failed to run: {message}"]


def judge_case(
    reference, candidate: Candidate, case: Case, capacities: list[tuple[int, int]], tolerance: Tolerance, unforced: dict
) -> tuple[dict, list[LayerRouting], list[str]]:
    """-> (report row, per-layer routing of this case, mismatch messages)."""
    where = f"{candidate.name} / {case.name}"
    layers = len(capacities)
    try:
        got = candidate.runner.infer(case.feed)
    except Exception as exc:  # a candidate that cannot run is a failed case, never a traceback
        return _failed_to_run(exc, where, case, layers, tolerance)
    cand_idx, cand_scores = _outputs(got, "idx", layers), _outputs(got, "scores", layers)
    mismatches: list[str] = []
    if cand_idx is None:
        raise ModelError(f"{where}: the candidate does not output every routed layer's selection")
    forced = reference.infer(case.feed, forced_idx=cand_idx)
    ref_scores = _outputs(forced, "scores", layers)
    if ref_scores is None or f"scores:{layers}" in forced:
        count = sum(k.startswith("scores:") for k in forced)
        raise ModelError(f"the reference routed {count} time(s) per forward, the graph has {layers} routed layers")
    routing = compare_layers(
        ref_scores, case.attention_mask, cand_idx, capacities, tolerance.score_tolerance, cand_scores, where=""
    )
    forced_err = max_abs_error(got[LOGITS], forced[LOGITS])
    unforced_err = max_abs_error(got[LOGITS], unforced[LOGITS])
    deviation = score_deviation(cand_scores, ref_scores, case.attention_mask) if cand_scores is not None else None
    errors = sum(r.errors for r in routing)
    row = {
        "case": case.name,
        "shape": list(case.input_ids.shape),
        "forced_max_abs_err": forced_err,
        "unforced_max_abs_err": unforced_err,
        "max_score_deviation": deviation,
        "near_tie_flips": sum(r.flips for r in routing),
        "routing_errors": errors,
        "routing": {str(layer): r.as_dict() for layer, r in enumerate(routing)},
        "passed": within(forced_err, tolerance.logits_atol) and errors == 0,
    }
    if not within(forced_err, tolerance.logits_atol):
        mismatches.append(f"{where}: forced-routing logits max abs error {forced_err:.3g} > {tolerance.logits_atol:g}")
    for layer, r in enumerate(routing):
        if r.errors:
            mismatches.append(
                f"{where}: routed layer #{layer}: {r.errors} routing error(s), first: {r.error_examples[0]}"
            )
    return row, routing, mismatches


def judge(
    reference,
    candidates: list[Candidate],
    cases: list[Case],
    capacities: list[tuple[int, int]],
    precision: str = "fp32",
    tolerance: Tolerance | None = None,
) -> dict:
    """Run every candidate and the reference on every case; returns the report (never raises on a mismatch;
    raises ModelError when the reference itself produces non-finite logits)."""
    tolerance = tolerance or tolerance_for(precision)
    report: dict = {
        "precision": precision,
        "atol": tolerance.logits_atol,
        "score_tolerance": tolerance.score_tolerance,
        "forms": {},
        "mismatches": [],
    }
    unforced = {}
    for case in cases:
        try:
            unforced[case.name] = reference.infer(case.feed)
        except Exception as exc:  # the user's module cannot run the validation inputs: its problem, said once
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")[:200]
            raise ModelError(
                f"the PyTorch model failed on validation case '{case.name}' ({type(exc).__name__}: {first})"
            ) from exc
        check_reference(case, unforced[case.name][LOGITS])
    for candidate in candidates:
        rows, totals = [], [LayerRouting(tolerance.score_tolerance) for _ in capacities]
        for case in cases:
            row, routing, mismatches = judge_case(
                reference, candidate, case, capacities, tolerance, unforced[case.name]
            )
            rows.append(row)
            report["mismatches"] += mismatches
            for total, r in zip(totals, routing):
                total.merge(r)
        report["forms"][candidate.name] = {
            "cases": rows,
            "routing": {str(layer): t.as_dict() for layer, t in enumerate(totals)},
            "passed": all(r["passed"] for r in rows),
        }
    report["passed"] = not report["mismatches"]
    return report


def format_table(report: dict) -> str:
    lines = [f"{'form':9} {'case':50} {'forced err':>10} {'unforced':>9} {'flips':>5} {'errors':>6}  ok"]
    for form, entry in report["forms"].items():
        for row in entry["cases"]:
            lines.append(
                f"{form:9} {row['case'][:50]:50} {row['forced_max_abs_err']:10.2e} {row['unforced_max_abs_err']:9.2e} "
                f"{row['near_tie_flips']:5d} {row['routing_errors']:6d}  {'yes' if row['passed'] else 'NO'}"
            )
    for form, entry in report["forms"].items():
        per_layer = []
        for layer, r in entry["routing"].items():
            margins = (
                "" if not r["near_tie_flips"] else f", margins {r['flip_margin_min']:.1e}..{r['flip_margin_max']:.1e}"
            )
            per_layer.append(
                f"#{layer} raw {100 * r['raw_agreement']:.1f}%, {r['near_tie_flips']} flips{margins}, "
                f"{r['routing_errors']} errors"
            )
        lines.append(
            f"{form}: routing over {next(iter(entry['routing'].values()), {}).get('rows', 0)} rows per layer: "
            + "; ".join(per_layer)
        )
    lines.append(
        f"(precision {report['precision']}: forced-routing logits atol {report['atol']:g}; a differing selection "
        f"is a near-tie flip when every swapped token is within {report['score_tolerance']:g} x max(1, |scores|) "
        "of the row's k-th score)"
    )
    return "\n".join(lines)
