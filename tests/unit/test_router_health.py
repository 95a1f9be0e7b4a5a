"""Router health and the degenerate-router alarm: a content router on text passes, deliberately broken routers
(ranking by position, zero or vanishing weights) raise the alarm, in the library and in an export's report."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from mod_export.contract import WINDOW_BYTES
from mod_export.data.corpus import fixed_windows, held_out_split
from mod_export.models.model import RoutedBlock
from mod_export.parity.health import POSITION_OVERLAP_ALARM, LayerScores, boundary_margins, layer_health
from mod_export.validate.forms import reference_health
from tests.helpers import run_cli


def test_boundary_margins_are_the_gap_at_k():
    masked = np.array([[5.0, 1.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, -np.inf, -np.inf, -np.inf]])
    np.testing.assert_allclose(boundary_margins(masked, 2), [1.0, 0.0, np.inf])


def test_content_scores_raise_no_alarm():
    rng = np.random.default_rng(0)
    entry = layer_health(LayerScores([rng.standard_normal((64, 256))], [None], (1, 8)))
    assert entry["alarms"] == [] and entry["position_overlap"] < 0.5
    assert entry["selected_fraction"] == pytest.approx(1 / 8) and 0 < entry["score_entropy_normalised"] < 1


def test_positional_scores_raise_the_positional_alarm():
    scores = -np.tile(np.arange(256, dtype=np.float64), (32, 1))  # the earliest tokens, whatever they are
    scores += np.random.default_rng(1).standard_normal(scores.shape) * 0.01  # content barely matters
    entry = layer_health(LayerScores([scores], [None], (1, 8)))
    assert entry["position_overlap"] > POSITION_OVERLAP_ALARM
    assert any(a.startswith("positional") for a in entry["alarms"])


def test_constant_scores_raise_both_alarms():
    entry = layer_health(LayerScores([np.full((16, 128), 0.3)], [None], (1, 8)))
    kinds = {a.split(":")[0] for a in entry["alarms"]}
    assert kinds == {"positional", "uninformative"} and entry["margin_p50"] == 0.0


def test_padding_is_not_counted_as_selected():
    scores = np.random.default_rng(2).standard_normal((4, 64))
    mask = np.ones((4, 64), np.int32)
    mask[:, 32:] = 0
    entry = layer_health(LayerScores([scores], [mask], (1, 8)))
    assert entry["selected_fraction"] == pytest.approx(8 / 32)


def _broken(model, how: str):
    broken = copy.deepcopy(model)
    for block in broken.blocks:
        if isinstance(block, RoutedBlock):
            with torch.no_grad():
                if how == "zero":
                    block.router.weight.zero_()
                else:  # vanishing: content still decides in exact arithmetic, float rounding decides in practice
                    block.router.weight.mul_(1e-9)
                    block.router.bias.zero_()
    return broken


@pytest.fixture(scope="module")
def windows(corpus):
    return fixed_windows(held_out_split(corpus.held_out).evaluation, 16, WINDOW_BYTES)


def test_trained_router_is_healthy_and_broken_routers_alarm(trained, windows):
    model = trained[0]
    capacities = [(1, 8), (1, 8)]
    healthy = reference_health(model, windows, capacities)
    assert healthy["alarms"] == [] and not healthy["degenerate"]
    for layer in healthy["layers"].values():
        assert 0.5 < layer["predictor_topk_agreement"] <= 1 and layer["selected_minus_skipped_score"] > 0
    zero = reference_health(_broken(model, "zero"), windows, capacities)
    assert zero["degenerate"] and all(len(e["alarms"]) == 2 for e in zero["layers"].values())
    tiny = reference_health(_broken(model, "vanishing"), windows, capacities)
    assert tiny["degenerate"] and all(
        any(a.startswith("uninformative") for a in e["alarms"]) for e in tiny["layers"].values()
    )


def test_export_reports_a_degenerate_router_in_one_line_and_in_report_json(trained, tmp_path):
    from mod_export.models.checkpoint import save_checkpoint

    path = save_checkpoint(_broken(trained[0], "zero"), tmp_path / "zero.pt")
    out = tmp_path / "out"
    proc = run_cli(str(path), "--target", "onnx", "--out", str(out), "--no-decode")
    assert proc.returncode == 0, proc.stderr  # a degenerate router is a warning, not a parity failure
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: degenerate router")]
    assert len(warnings) == 4, proc.stderr  # 2 routed layers x (positional, uninformative), one line each
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["router_health"]["degenerate"] is True
