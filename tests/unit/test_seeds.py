"""One trained model proves little: the export, validation and precision path must hold for models trained with
other seeds too (shorter training than the example's, same architecture and losses). Nothing here may depend on
which seed is which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mod_export.models.checkpoint import save_checkpoint
from mod_export.pipeline import ExportJob, ExportOptions, run_export_job
from mod_export.training.train import TrainSettings, example_config, train_example
from tests.helpers import run_cli

SEEDS = (1, 2, 3)  # the session fixture `trained` is seed 0


@pytest.fixture(scope="module", params=SEEDS, ids=lambda s: f"seed{s}")
def seeded_checkpoint(request, corpus, tmp_path_factory) -> Path:
    settings = TrainSettings(
        steps=100, batch=8, seq_len=128, seed=request.param, config=example_config(), eval_windows=8
    )
    model, metrics = train_example(settings, corpus=corpus, show_progress=False)
    return save_checkpoint(model, tmp_path_factory.mktemp(f"seed{request.param}") / "model.pt", metrics)


def _check_parity(parity: dict) -> None:
    assert parity["passed"], parity["mismatches"][:3]
    for form in parity["forms"].values():
        for row in form["cases"]:
            assert row["routing_errors"] == 0 and row["forced_max_abs_err"] <= 1e-4


@pytest.mark.slow
def test_fp16_export_validates_and_validate_judges_it_at_its_precision(seeded_checkpoint, tmp_path):
    out = tmp_path / "fp16"
    report = run_export_job(
        ExportJob(seeded_checkpoint, out, ExportOptions(precision="fp16", eval_windows=16, decode=False))
    )
    _check_parity(report["parity"])
    quality = report["parity"]["quality"]
    assert quality["passed"] and set(quality["forms"]) == {"portable", "plugin"}
    for form in quality["forms"].values():
        assert form["relative_bpb_change"] < 0.005 and all(r["routing_errors"] == 0 for r in form["routing"].values())
    proc = run_cli("validate", str(seeded_checkpoint), str(out), "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    assert "parity: passed (fp16)" in proc.stdout
    judged = json.loads((tmp_path / "r.json").read_text())
    assert judged["reduced_precision"]["precision"] == "fp16" and judged["quality"]["passed"]


@pytest.mark.slow
def test_int8_export_passes_with_disjoint_calibration_and_evaluation(seeded_checkpoint, tmp_path):
    options = ExportOptions(precision="int8", calib_windows=8, eval_windows=16, decode=False)
    report = run_export_job(ExportJob(seeded_checkpoint, tmp_path / "int8", options))
    _check_parity(report["parity"])
    assert report["parity"]["quality"]["passed"], report["parity"]["quality"]["mismatches"]
    assert "calibration part" in report["precision_details"]["calibration_data"]
