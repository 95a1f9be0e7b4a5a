"""The routing contract (docs/design.md (routing semantics)) against naive per-row Python loops."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mod_export.errors import ConfigError
from mod_export.models import routing
from mod_export.models.config import MoDConfig, parse_capacity
from mod_export.models.model import MoDTransformer


def naive_k(T: int, num: int, den: int) -> int:
    return min(T, max(1, math.ceil(Fraction(T * num, den))))


def naive_topk_gather(x, scores, mask, num, den):
    """Per-row loop: sort positions by (-score, position), keep k, then ascending."""
    B, T, D = x.shape
    k = naive_k(T, num, den)
    idx = np.zeros((B, k), dtype=np.int64)
    s_sel = np.zeros((B, k), dtype=np.float32)
    for b in range(B):
        row = [(-float("inf") if mask[b, t] == 0 else float(scores[b, t]), t) for t in range(T)]
        chosen = sorted(row, key=lambda st_: (-st_[0], st_[1]))[:k]
        chosen = sorted(chosen, key=lambda st_: st_[1])
        idx[b] = [t for _, t in chosen]
        s_sel[b] = [s for s, _ in chosen]
    x_sel = np.stack([x[b, idx[b]] for b in range(B)])
    return x_sel, idx, s_sel


def naive_scatter(x, idx, x_sel, y_sel, s_sel, gate):
    out = x.copy()
    for b in range(x.shape[0]):
        for j, t in enumerate(idx[b]):
            s = s_sel[b, j]
            g = 1 / (1 + math.exp(-s)) if gate == 1 and s != -math.inf else (0.0 if s == -math.inf else s)
            out[b, t] = x_sel[b, j] + g * (y_sel[b, j] - x_sel[b, j])
    return out


@st.composite
def routing_case(draw):
    B = draw(st.integers(1, 3))
    T = draw(st.integers(1, 40))
    D = draw(st.integers(1, 5))
    den = draw(st.integers(1, 9))
    num = draw(st.integers(1, den))
    # few distinct values -> many exact ties
    levels = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(B, T)).astype(np.float32) * 0.5
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = (rng.random((B, T)) > draw(st.sampled_from([0.0, 0.3, 0.9]))).astype(np.int32)
    return x, scores, mask, num, den


@settings(max_examples=300, deadline=None)
@given(routing_case())
def test_topk_gather_matches_naive_loop_with_ties_and_padding(case):
    x, scores, mask, num, den = case
    x_sel, idx, s_sel = routing.topk_gather(
        torch.from_numpy(x), torch.from_numpy(scores), torch.from_numpy(mask), num, den
    )
    ex, eidx, es = naive_topk_gather(x, scores, mask, num, den)
    assert idx.dtype == torch.int32
    np.testing.assert_array_equal(idx.numpy(), eidx)
    np.testing.assert_array_equal(s_sel.numpy(), es)
    np.testing.assert_array_equal(x_sel.numpy(), ex)
    assert (np.diff(idx.numpy(), axis=1) > 0).all(), "idx must be strictly ascending"


@settings(max_examples=200, deadline=None)
@given(routing_case(), st.sampled_from([0, 1]))
def test_scatter_matches_naive_loop(case, gate):
    x, scores, mask, num, den = case
    x_sel, idx, s_sel = routing.topk_gather(
        torch.from_numpy(x), torch.from_numpy(scores), torch.from_numpy(mask), num, den
    )
    y_sel = x_sel * 2 + 1
    out = routing.scatter_update(torch.from_numpy(x), idx, x_sel, y_sel, s_sel, gate)
    expected = naive_scatter(x, idx.numpy(), x_sel.numpy(), y_sel.numpy(), s_sel.numpy(), gate)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert np.isfinite(out.numpy()).all(), "padding tokens must not turn into NaN/inf"


def test_k_formula_for_many_capacities():
    for den in range(1, 17):
        for num in range(1, den + 1):
            for T in list(range(1, 200)) + [1023, 1024, 1025, 4096, 65537]:
                assert routing.capacity_k(T, num, den) == naive_k(T, num, den), (T, num, den)
    assert routing.capacity_k(0, 1, 8) == 0


def test_ties_go_to_lower_position():
    scores = torch.zeros(1, 10)
    scores[0, 7] = 1.0
    _, idx, _ = routing.topk_gather(torch.randn(1, 10, 2), scores, None, 3, 10)
    assert idx.tolist() == [[0, 1, 7]]


def test_padding_is_chosen_last_and_never_updated():
    x = torch.randn(1, 6, 3)
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    x_sel, idx, s_sel = routing.topk_gather(x, scores, mask, 5, 6)  # k=5 > 4 valid tokens
    assert idx.tolist() == [[0, 2, 3, 4, 5]]  # the lower pad position fills the fifth slot
    assert torch.isneginf(s_sel[0, 0])
    for gate in (0, 1):
        out = routing.scatter_update(x, idx, x_sel, x_sel + 10, s_sel, gate)
        assert torch.equal(out[0, 0], x[0, 0]) and torch.equal(out[0, 1], x[0, 1])


def test_float_capacity_is_refused():
    with pytest.raises(ConfigError):
        parse_capacity(0.125)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        parse_capacity("0.125")
    for bad in ("0/8", "9/8", "1/0", "-1/8"):
        with pytest.raises(ConfigError):
            parse_capacity(bad)
    assert parse_capacity("3/16") == (3, 16)


def test_aux_loss_weight_must_be_a_non_negative_number():
    from mod_export.models.config import MoDConfig

    for bad in (-0.1, "0.01", True, float("nan")):
        with pytest.raises(ConfigError, match="aux_loss_weight"):
            MoDConfig(aux_loss=True, aux_loss_weight=bad)
    assert MoDConfig(aux_loss=True, aux_loss_weight=0).aux_loss_weight == 0


def test_gradients_reach_the_router():
    torch.manual_seed(0)
    model = MoDTransformer(MoDConfig(d_model=32, n_heads=2, n_layers=2, d_mlp=64, causal_predictor=False)).train()
    ids = torch.randint(0, 256, (2, 24))
    model(ids).logsumexp(-1).mean().backward()
    router = model.blocks[1].router
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0
    assert router.bias.grad is not None and router.bias.grad.abs() > 0


def test_routing_off_equals_a_plain_transformer():
    torch.manual_seed(0)
    cfg = MoDConfig(d_model=32, n_heads=2, n_layers=4, d_mlp=64)
    mod = MoDTransformer(cfg)
    plain = MoDTransformer(cfg.replace(routed_layers=()))  # no routed blocks at all
    state = {
        k.replace(".block.", "."): v
        for k, v in mod.state_dict().items()
        if ".router." not in k and ".predictor." not in k
    }
    plain.load_state_dict(state)
    ids = torch.randint(0, 256, (2, 33))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    torch.testing.assert_close(mod.dense_twin()(ids, mask), plain.eval()(ids, mask), rtol=0, atol=0)
    assert not torch.allclose(mod.eval()(ids, mask), plain(ids, mask)), "routing on must change the output"


def test_default_routed_layers_are_every_other_from_the_second():
    assert MoDConfig(n_layers=6).routed == (1, 3, 5)
    assert MoDConfig(n_layers=5, routed_layers=(4, 0)).routed == (0, 4)
    with pytest.raises(ConfigError):
        MoDConfig(n_layers=4, routed_layers=(4,))


def test_only_selected_tokens_change_in_a_routed_block():
    torch.manual_seed(1)
    cfg = MoDConfig(d_model=16, n_heads=2, n_layers=2, d_mlp=32, capacity="1/4")
    block = MoDTransformer(cfg).blocks[1]
    x = torch.randn(2, 16, 16)
    positions = torch.arange(16).expand(2, 16)
    valid = torch.ones(2, 16, dtype=torch.bool)
    from mod_export.models.model import attention_bias

    out = block(x, positions, attention_bias(valid), valid.int(), MoDTransformer(cfg).routing_ops, True, [])
    changed = (out != x).any(-1)  # [B,T]
    assert changed.sum(-1).tolist() == [4, 4]
