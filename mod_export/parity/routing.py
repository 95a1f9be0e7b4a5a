"""Margin-aware comparison of routing decisions (docs/parity.md).

Two float implementations that agree to 1e-6 still select different tokens when a row's k-th and (k+1)-th
router scores are closer than their rounding noise. So a differing selected set is judged by the
*reference's* scores on the same inputs:

- **identical**: the candidate selected exactly the reference's top-k set;
- **near-tie flip**: every token swapped in or out has a reference score within the row's tolerance of the
  reference's k-th score (expected rounding, not a defect). The row's tolerance is `tolerance` (relative, set
  by the candidate's precision: mod_export.contract.TOLERANCES) times the row's score scale
  max(1, max |reference score| over its real tokens): float rounding of a dot product grows with its size;
- **routing error**: anything else: a token far from the boundary, a padding token chosen over a real
  one, a wrong k, an index out of range, a repeated or unsorted index, or (when the candidate's own
  scores are known) a selection that does not follow the contract on those very scores (ties to the
  higher position, the mask ignored, a different k).

Only numpy: every layer (validation, precision reports, benchmarks, tests) uses this one module.
Shapes: B rows, T positions, k selected tokens per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mod_export.parity.topk import capacity_k, contract_topk

IDENTICAL, FLIP, ERROR = "identical", "near_tie_flip", "routing_error"


@dataclass
class RowVerdict:
    kind: str  # IDENTICAL | FLIP | ERROR
    margin: float = 0.0  # flips: the largest |reference score - k-th score| over the swapped tokens
    reason: str = ""  # errors: why, in a few words
    row_tolerance: float = 0.0  # the absolute tolerance this row was judged with


@dataclass
class LayerRouting:
    """The verdicts of one routed layer over every row of one or more batches (or, for generation's per-token
    decisions, every token: unit "tokens"). The one tally of routing verdicts."""

    tolerance: float  # relative (see module docstring)
    rows: int = 0
    identical: int = 0
    flips: int = 0
    errors: int = 0
    flip_margins: list[float] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)
    unit: str = "rows"  # what is counted: the key of the count in as_dict()

    def add(self, verdicts: list[RowVerdict], where: str = "", labels: list[str] | None = None) -> None:
        """labels: how an error example names each verdict (default "row i")."""
        for row, v in enumerate(verdicts):
            self.rows += 1
            if v.kind == IDENTICAL:
                self.identical += 1
            elif v.kind == FLIP:
                self.flips += 1
                self.flip_margins.append(v.margin)
            else:
                self.errors += 1
                if len(self.error_examples) < 5:
                    self.error_examples.append(f"{where}{labels[row] if labels else f'row {row}'}: {v.reason}")

    def merge(self, other: LayerRouting) -> None:
        self.rows += other.rows
        self.identical += other.identical
        self.flips += other.flips
        self.errors += other.errors
        self.flip_margins += other.flip_margins
        self.error_examples = (self.error_examples + other.error_examples)[:5]

    @property
    def raw_agreement(self) -> float:
        """Fraction of rows whose selected set is identical (1.0 for no rows)."""
        return self.identical / self.rows if self.rows else 1.0

    @property
    def margin_aware_agreement(self) -> float:
        """Fraction of rows that are identical or near-tie flips."""
        return (self.identical + self.flips) / self.rows if self.rows else 1.0

    def as_dict(self) -> dict:
        return {
            self.unit: self.rows,
            "identical": self.identical,
            "near_tie_flips": self.flips,
            "routing_errors": self.errors,
            "raw_agreement": self.raw_agreement,
            "margin_aware_agreement": self.margin_aware_agreement,
            "tolerance": self.tolerance,
            "flip_margin_min": min(self.flip_margins) if self.flip_margins else None,
            "flip_margin_max": max(self.flip_margins) if self.flip_margins else None,
            "error_examples": list(self.error_examples),
        }


def decision_verdicts(
    ref_logits: np.ndarray, ref_take: np.ndarray, cand_take: np.ndarray, valid: np.ndarray, tolerance: float
) -> tuple[list[RowVerdict], list[str]]:
    """Per-token routing decisions (causal routing: a token takes a block when its decision logit is > 0), judged
    like rows: a differing decision is a near-tie flip when the reference's logit is within `tolerance` x
    max(1, max |logit|) of 0, an error otherwise. Arrays of one layer, one shape ([B] or [B,P]); valid marks the
    tokens that count. Returns the verdicts and a label for each ("token (b, p)")."""
    scale = max(1.0, float(np.abs(ref_logits[valid]).max())) if valid.any() else 1.0
    band = tolerance * scale
    verdicts, labels = [], []
    for index in zip(*np.nonzero(valid)):
        logit = float(ref_logits[index])
        if bool(ref_take[index]) == bool(cand_take[index]):
            verdicts.append(RowVerdict(IDENTICAL, row_tolerance=band))
        elif abs(logit) <= band:
            verdicts.append(RowVerdict(FLIP, margin=abs(logit), row_tolerance=band))
        else:
            reason = f"decision logit {logit:.3g} is {abs(logit):.3g} from 0 (band {band:.3g})"
            verdicts.append(RowVerdict(ERROR, reason=reason, row_tolerance=band))
        labels.append(f"token {index}")
    return verdicts, labels


def masked_scores(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """scores[B,T] as float32 with -inf where mask == 0 (padding is chosen last)."""
    s = np.asarray(scores, dtype=np.float32)
    if mask is None:
        return s
    return np.where(np.asarray(mask) != 0, s, np.float32(-np.inf)).astype(np.float32)


def _structure_problem(idx: np.ndarray, T: int, k: int) -> str:
    if idx.shape[-1] != k:
        return f"selects {idx.shape[-1]} tokens, the contract's k is {k}"
    if idx.size and (idx.min() < 0 or idx.max() >= T):
        return f"index out of range [0, {T})"
    if k > 1 and not (np.diff(idx) > 0).all():
        return "indices not strictly ascending (repeated or unsorted)"
    return ""


def row_tolerance(ref_masked: np.ndarray, tolerance: float) -> float:
    """tolerance x max(1, max |score| over the row's real tokens): the absolute near-tie band of one row."""
    finite = ref_masked[np.isfinite(ref_masked)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    return tolerance * scale


def classify_row(
    ref_masked: np.ndarray, cand_idx: np.ndarray, k: int, tolerance: float, cand_masked: np.ndarray | None = None
) -> RowVerdict:
    """One row. ref_masked[T] f32 (reference scores, -inf at padding), cand_idx[k'] int, k = contract k,
    tolerance: relative (row_tolerance gives the absolute band).

    cand_masked[T]: the candidate's own scores with the same mask applied, when known; its selection must then
    be exactly the contract's top-k of them (a deterministic function of its own numbers)."""
    T = ref_masked.shape[0]
    cand_idx = np.asarray(cand_idx).astype(np.int64)
    problem = _structure_problem(cand_idx, T, k)
    if problem:
        return RowVerdict(ERROR, reason=problem)
    if cand_masked is not None:
        own = contract_topk(cand_masked[None], k)[0]
        if not np.array_equal(own, cand_idx):
            return RowVerdict(
                ERROR,
                reason="selection does not follow the contract on the candidate's own scores (tie rule, padding mask or k)",
            )
    ref_idx = contract_topk(ref_masked[None], k)[0]
    if np.array_equal(ref_idx, cand_idx):
        return RowVerdict(IDENTICAL)
    swapped = np.setxor1d(ref_idx, cand_idx)  # tokens swapped in or out
    kth = ref_masked[ref_idx].min()  # the reference's k-th largest score
    with np.errstate(invalid="ignore"):
        margins = np.abs(ref_masked[swapped].astype(np.float64) - float(kth))  # inf/nan where padding is involved
    if not np.isfinite(margins).all():
        return RowVerdict(ERROR, reason="a padding token is selected in place of a real token (or the reverse)")
    worst = float(margins.max())
    band = row_tolerance(ref_masked, tolerance)
    if worst <= band:
        return RowVerdict(FLIP, margin=worst, row_tolerance=band)
    position = int(swapped[np.argmax(margins)])
    return RowVerdict(
        ERROR,
        reason=f"token {position} is {worst:.3g} from the k-th score (row tolerance {band:.3g})",
        row_tolerance=band,
    )


def classify_rows(
    ref_scores: np.ndarray,
    mask: np.ndarray | None,
    cand_idx: np.ndarray,
    num: int,
    den: int,
    tolerance: float,
    cand_scores: np.ndarray | None = None,
) -> list[RowVerdict]:
    """Every row of one routed layer. ref_scores[B,T] raw reference router scores (float32), mask[B,T] (0 = pad)
    or None, cand_idx[B,k'] the candidate's selection, cand_scores[B,T] the candidate's own raw scores or None."""
    ref = masked_scores(ref_scores, mask)
    cand = None if cand_scores is None else masked_scores(cand_scores, mask)
    B, T = ref.shape
    k = capacity_k(T, num, den)
    cand_idx = np.asarray(cand_idx)
    if cand_idx.ndim != 2 or cand_idx.shape[0] != B:
        return [RowVerdict(ERROR, reason=f"selection has shape {cand_idx.shape}, expected [{B}, {k}]")] * B
    return [classify_row(ref[b], cand_idx[b], k, tolerance, None if cand is None else cand[b]) for b in range(B)]


def compare_layers(
    ref_scores: list[np.ndarray],
    mask: np.ndarray | None,
    cand_idx: list[np.ndarray],
    capacities: list[tuple[int, int]],
    tolerance: float,
    cand_scores: list[np.ndarray] | None = None,
    where: str = "",
) -> list[LayerRouting]:
    """Per routed layer (in graph order): the LayerRouting of the candidate against the reference."""
    out = []
    for layer, (ref, idx, (num, den)) in enumerate(zip(ref_scores, cand_idx, capacities)):
        summary = LayerRouting(tolerance)
        own = None if cand_scores is None else cand_scores[layer]
        summary.add(classify_rows(ref, mask, idx, num, den, tolerance, own), where)
        out.append(summary)
    return out
