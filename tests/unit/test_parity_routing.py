"""The margin-aware routing comparison and the non-finite-aware numeric error (mod_export.parity), on inputs
built with known margins: ties, near-ties, padding, wrong k, wrong tie rule, an ignored mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mod_export.models import routing
from mod_export.parity.numerics import max_abs_error, within
from mod_export.parity.routing import ERROR, FLIP, IDENTICAL, LayerRouting, classify_rows
from mod_export.parity.topk import capacity_k, contract_topk

TOL = 1e-5


def verdicts(ref, cand_idx, mask=None, num=1, den=4, cand_scores=None, tol=TOL):
    return [
        v.kind
        for v in classify_rows(
            np.asarray(ref, np.float32)[None] if np.ndim(ref) == 1 else ref,
            mask,
            np.asarray(cand_idx)[None] if np.ndim(cand_idx) == 1 else cand_idx,
            num,
            den,
            tol,
            cand_scores,
        )
    ]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3), st.integers(1, 60), st.integers(1, 9), st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_numpy_selection_equals_the_torch_reference(B, T, den, seed, levels):
    rng = np.random.default_rng(seed)
    num = int(rng.integers(1, den + 1))
    scores = (rng.integers(0, levels, (B, T)) * 0.5).astype(np.float32)  # many exact ties
    mask = (rng.random((B, T)) > 0.3).astype(np.int32)
    _, idx, _ = routing.topk_gather(torch.zeros(B, T, 1), torch.from_numpy(scores), torch.from_numpy(mask), num, den)
    masked = np.where(mask != 0, scores, -np.inf)
    np.testing.assert_array_equal(contract_topk(masked, capacity_k(T, num, den)), idx.numpy())


def test_identical_selection_is_identical_even_with_exact_ties():
    ref = np.zeros(8, np.float32)  # all equal: ties go to the lower positions
    assert verdicts(ref, [0, 1]) == [IDENTICAL]


def test_constructed_near_tie_is_a_flip_with_its_margin():
    ref = np.array([0.0, 5.0, 1.0 + 1e-7, 1.0, -2.0, 3.0, -1.0, 0.5], np.float32)  # k=2: {1, 5}; k=3 boundary below
    ref_k3 = np.array([0.0, 5.0, 1.0 + 1e-7, 1.0, -2.0, 3.0, -1.0, 0.5, 0, 0, 0, 0], np.float32)  # T=12, k=3
    row = classify_rows(ref_k3[None], None, np.array([[1, 3, 5]]), 1, 4, TOL)[0]
    assert row.kind == FLIP and 0 < row.margin <= 2e-7
    assert verdicts(ref, [1, 5]) == [IDENTICAL]


def test_far_flip_is_a_routing_error():
    ref = np.array([0.0, 5.0, 2.0, 1.0, -2.0, 3.0, -1.0, 0.5, 0, 0, 0, 0], np.float32)  # k=3: {1, 2, 5}
    row = classify_rows(ref[None], None, np.array([[1, 3, 5]]), 1, 4, TOL)[0]
    assert row.kind == ERROR and "from the k-th score" in row.reason


def test_wrong_candidates_are_routing_errors():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 16)).astype(np.float32)
    mask = np.ones((4, 16), np.int32)
    k = capacity_k(16, 1, 4)
    good = contract_topk(ref, k)
    assert verdicts(ref, good, mask) == [IDENTICAL] * 4
    # k off by one, either way
    assert set(verdicts(ref, contract_topk(ref, k + 1), mask)) == {ERROR}
    assert set(verdicts(ref, contract_topk(ref, k - 1), mask)) == {ERROR}
    # repeated, unsorted, out of range
    assert verdicts(ref[:1], [[good[0, 0]] * k], mask[:1]) == [ERROR]
    assert verdicts(ref[:1], [good[0, ::-1]], mask[:1]) == [ERROR]
    assert verdicts(ref[:1], [[0, 1, 16, 17][:k]], mask[:1]) == [ERROR]


def test_ties_to_the_higher_position_are_caught_through_the_candidates_own_scores():
    scores = np.zeros((1, 8), np.float32)  # exact ties everywhere: the tie rule alone decides
    higher = np.array([[6, 7]])  # ties broken to the higher positions
    # judged by margins alone, a tie has margin 0 and would look like a harmless flip ...
    assert verdicts(scores, higher) == [FLIP]
    # ... but the candidate's own scores are tied too, and the contract picks the lower positions on them
    assert verdicts(scores, higher, cand_scores=scores) == [ERROR]
    assert verdicts(scores, [[0, 1]], cand_scores=scores) == [IDENTICAL]


def test_a_candidate_that_ignores_the_padding_mask_is_caught():
    scores = np.array([[9.0, 8.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], np.float32)
    mask = np.array([[0, 0, 1, 1, 1, 1, 1, 1]], np.int32)  # the two best scores are padding
    unmasked = contract_topk(scores, 2)  # [0, 1]: padding chosen over real tokens
    assert verdicts(scores, unmasked, mask) == [ERROR]
    assert verdicts(scores, unmasked, mask, cand_scores=scores) == [ERROR]
    assert verdicts(scores, [[6, 7]], mask, cand_scores=scores) == [IDENTICAL]


def test_padding_beyond_capacity_takes_the_lowest_pads():
    scores = np.array([[0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]], np.float32)
    mask = np.array([[0, 0, 0, 0, 1, 0, 0, 0]], np.int32)  # one real token, k=2: one pad must be selected
    assert verdicts(scores, [[0, 4]], mask) == [IDENTICAL]
    assert verdicts(scores, [[4, 7]], mask, cand_scores=scores) == [ERROR]


@settings(max_examples=100, deadline=None)
@given(st.integers(4, 64), st.integers(0, 2**31 - 1))
def test_noise_below_half_the_tolerance_never_gives_an_error(T, seed):
    """Two implementations whose scores differ by less than tol/2 can only differ by near-tie flips."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((3, T)).astype(np.float32)
    ref[:, 1] = ref[:, 0] + np.float32(1e-7)  # a near tie in every row (it may or may not sit at the boundary)
    cand = ref + rng.uniform(-0.49 * TOL, 0.49 * TOL, ref.shape).astype(np.float32)
    k = capacity_k(T, 1, 4)
    kinds = verdicts(ref, contract_topk(cand, k), num=1, den=4, cand_scores=cand)
    assert ERROR not in kinds


def test_summary_counts_and_margins():
    summary = LayerRouting(TOL)
    ref = np.array([[3.0, 1.0 + 1e-7, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]], np.float32)
    summary.add(classify_rows(ref, None, np.array([[0, 2], [0, 2]]), 1, 2, TOL))
    d = summary.as_dict()
    assert (d["rows"], d["identical"], d["near_tie_flips"], d["routing_errors"]) == (2, 0, 1, 1)
    assert d["raw_agreement"] == 0.0 and d["margin_aware_agreement"] == 0.5
    assert 0 < d["flip_margin_min"] == d["flip_margin_max"] <= 2e-7 and len(d["error_examples"]) == 1


def test_numeric_error_treats_nan_and_inf_as_mismatch():
    a = np.zeros((2, 3), np.float32)
    assert max_abs_error(a, a) == 0.0
    b = a.copy()
    b[0, 0] = np.nan
    assert max_abs_error(b, a) == math.inf and max_abs_error(a, b) == math.inf
    assert not within(max_abs_error(b, a), 1e-4)
    b[0, 0] = np.inf
    assert max_abs_error(b, a) == math.inf
    assert max_abs_error(a, a[:1]) == math.inf  # shape mismatch
    assert not within(0.0, float("nan")) and not within(0.0, float("inf")) and within(1e-5, 1e-4)
    masked = np.array([-np.inf, 1.0])
    assert max_abs_error(masked, masked) == 0.0  # the same infinity (padding) on both sides is no error


@pytest.mark.parametrize("shape", [(2, 5), (1, 3)])
def test_selection_of_the_wrong_batch_shape_is_an_error_per_row(shape):
    ref = np.zeros((2, 8), np.float32)
    kinds = verdicts(ref, np.zeros(shape, np.int64))
    assert set(kinds) == {ERROR} and len(kinds) == 2
