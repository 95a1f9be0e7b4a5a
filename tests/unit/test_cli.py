"""CLI structure: help, version, the example trainer, not-implemented targets."""

from __future__ import annotations

import torch

from mod_export.cli.main import main
from mod_export.models.checkpoint import load_checkpoint, read_checkpoint
from tests.helpers import run_cli


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "--target" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mod-export ")


def test_subcommand_help_exits_zero():
    proc = run_cli("example", "--help")
    assert proc.returncode == 0 and "--steps" in proc.stdout


def test_unknown_target_is_a_usage_error(tmp_path):
    proc = run_cli(str(tmp_path / "m.pt"), "--target", "tflite", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr


def test_example_trains_saves_metrics_and_is_deterministic(tmp_path):
    paths = []
    for name in ("a.pt", "b.pt"):
        path = tmp_path / name
        proc = run_cli("example", "--out", str(path), "--steps", "4", "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert "held-out bits/byte" in proc.stdout and "causal predictor accuracy" in proc.stdout
        paths.append(path)
    a, b = (read_checkpoint(p) for p in paths)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    metrics = a["metrics"]
    assert {"held_out_bits_per_byte", "unigram_bits_per_byte", "routing"} <= set(metrics)
    for layer_stats in metrics["routing"].values():
        assert "predictor_accuracy" in layer_stats and "score_entropy_normalised" in layer_stats
    load_checkpoint(paths[0])


def test_trained_example_beats_unigram_and_router_is_not_degenerate(trained):
    _, metrics, _ = trained
    # 120 short steps only (the full example reaches far more); real text, held-out files
    assert metrics["held_out_bits_per_byte"] < 0.8 * metrics["unigram_bits_per_byte"]
    for stats in metrics["routing"].values():
        assert stats["score_std"] > 0.05
        assert stats["mean_score_selected"] > stats["mean_score_skipped"]
        assert stats["predictor_accuracy"] > stats["predictor_baseline_accuracy"] - 0.02


def test_unknown_option_and_missing_args_fail_cleanly():
    proc = run_cli()
    assert proc.returncode == 2
    proc = run_cli("model.pt", "--target", "onnx")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
