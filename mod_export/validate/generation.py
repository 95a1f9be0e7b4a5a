"""Validation of generation: a candidate stepper (an exported generation graph on ONNX Runtime) against the
PyTorch causal-routing reference, token by token, with the same two-part verdict as full-sequence parity
(docs/parity.md):

1. decisions: per routed layer and token, a differing take/skip is a near-tie flip when the reference's decision
   logit is within the tolerance band of 0, and a routing error otherwise;
2. numerics: the candidate's logits against the reference *forced to the candidate's decisions* at every step.

Inputs are teacher-forced (prompts and continuations are held-out text), so both sides see the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mod_export.contract import Tolerance, tolerance_for
from mod_export.generation.loop import left_pad
from mod_export.models.generation import TorchStepper
from mod_export.parity.numerics import max_abs_error, within
from mod_export.parity.routing import LayerRouting, decision_verdicts


def decision_tally(tolerance: float) -> LayerRouting:
    """One routed layer's per-token decisions over a whole generation (the routing tally, counting tokens)."""
    return LayerRouting(tolerance, unit="tokens")


def tally_decisions(
    tally: LayerRouting, ref_logits: np.ndarray, ref_take: np.ndarray, cand_take: np.ndarray, valid, where: str
) -> None:
    verdicts, labels = decision_verdicts(ref_logits, ref_take, cand_take, valid, tally.tolerance)
    tally.add(verdicts, f"{where} ", labels)


@dataclass
class GenerationCase:
    name: str
    prompts: list[list[int]]
    continuations: np.ndarray  # [B, steps] int64: the tokens fed after the prompts (teacher forcing)


def generation_cases(text: np.ndarray, vocab: int, steps: int = 64, seed: int = 0) -> list[GenerationCase]:
    """Batch 1 and batch 4 (prompts of different lengths, left-padded together), from held-out text."""
    rng = np.random.default_rng(seed)

    def piece(length: int) -> list[int]:
        start = int(rng.integers(0, len(text) - length - 1))
        return [int(t) % vocab for t in text[start : start + length]]

    cases = []
    for name, lengths in (("batch 1, prompt 40", [40]), ("batch 4, prompts 7/33/20/64", [7, 33, 20, 64])):
        rows = [piece(length + steps) for length in lengths]
        prompts = [row[:length] for row, length in zip(rows, lengths)]
        continuations = np.array([row[length:] for row, length in zip(rows, lengths)], dtype=np.int64)
        cases.append(GenerationCase(f"{name}, {steps} steps", prompts, continuations))
    return cases


def judge_generation(
    model, candidate, cases: list[GenerationCase], precision: str = "fp32", tolerance: Tolerance | None = None
) -> dict:
    """candidate: a stepper (prefill / step, as mod_export.generation.loop expects). Returns the report."""
    tolerance = tolerance or tolerance_for(precision)
    report: dict = {
        "precision": precision,
        "atol": tolerance.logits_atol,
        "score_tolerance": tolerance.score_tolerance,
        "cases": [],
        "mismatches": [],
    }
    for case in cases:
        reference = TorchStepper(model)
        ids, mask = left_pad(case.prompts)
        steps = case.continuations.shape[1]
        capacity = ids.shape[1] + steps + 1
        tallies = {layer: decision_tally(tolerance.score_tolerance) for layer in reference.routed_layers}
        got = candidate.prefill(ids, mask, capacity)
        ref = reference.prefill(ids, mask, capacity, forced={i: got.take[i] for i in got.take})
        valid = mask != 0
        errors = [max_abs_error(got.logits, ref.logits)]
        for layer, tally in tallies.items():
            tally_decisions(tally, ref.decision[layer], ref.take[layer], got.take[layer], valid, "prefill")
        active = np.ones(ids.shape[0], dtype=bool)
        for t in range(steps):
            tokens = case.continuations[:, t]
            got = candidate.step(tokens, active)
            ref = reference.step(tokens, active, forced={i: got.take[i] for i in got.take})
            errors.append(max_abs_error(got.logits, ref.logits))
            for layer, tally in tallies.items():
                tally_decisions(tally, ref.decision[layer], ref.take[layer], got.take[layer], active, f"step {t}")
        forced_err = max(errors)
        fed = int(mask.sum()) + steps * ids.shape[0]  # every token both sides processed
        routing_errors = sum(t.errors for t in tallies.values())
        row = {
            "case": case.name,
            "steps": steps,
            "forced_max_abs_err": forced_err,
            "decisions": {str(k): v.as_dict() for k, v in tallies.items()},
            "near_tie_flips": sum(t.flips for t in tallies.values()),
            "routing_errors": routing_errors,
            "take_rate": {str(layer): int(reference.cache.lengths[layer].sum()) / fed for layer in tallies},
            "passed": within(forced_err, tolerance.logits_atol) and routing_errors == 0,
        }
        if not within(forced_err, tolerance.logits_atol):
            report["mismatches"].append(
                f"decode / {case.name}: forced-decision logits max abs error {forced_err:.3g} "
                f"> {tolerance.logits_atol:g}"
            )
        for layer, tally in tallies.items():
            if tally.errors:
                report["mismatches"].append(
                    f"decode / {case.name}: routed layer {layer}: {tally.errors} decision "
                    f"error(s), first: {tally.error_examples[0]}"
                )
        report["cases"].append(row)
    report["passed"] = not report["mismatches"]
    return report


def format_generation(report: dict) -> str:
    lines = [f"{'decode':9} {'case':44} {'forced err':>10} {'flips':>5} {'errors':>6}  take rate per routed block ok"]
    for row in report["cases"]:
        rates = " ".join(f"block {k}: {100 * v:.0f}%" for k, v in row["take_rate"].items())
        lines.append(
            f"{'onnxrt':9} {row['case'][:44]:44} {row['forced_max_abs_err']:10.2e} {row['near_tie_flips']:5d} "
            f"{row['routing_errors']:6d}  {rates:26} {'yes' if row['passed'] else 'NO'}"
        )
    lines.append(
        f"(decode: logits against the reference forced to the candidate's decisions, atol {report['atol']:g}; a "
        f"differing decision is a near-tie flip when its logit is within {report['score_tolerance']:g} x "
        "max(1, |logits|) of 0)"
    )
    return "\n".join(lines)
