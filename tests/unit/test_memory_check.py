"""The export's memory pre-flight (mod_export/models/memory.py): a job whose predicted peak exceeds the available
memory is refused with one line and exit 4 before any slow work, with the --no-validate figure when that fits;
--no-memory-check starts anyway. The prediction is the measured line of benchmarks/scale.py."""

from __future__ import annotations

import pytest

from mod_export.cli.main import main
from mod_export.models import memory
from mod_export.models.memory import EXPORT_PEAK_FACTOR, predicted_export_peak


def test_the_prediction_grows_linearly_and_validation_costs_more():
    small, large = predicted_export_peak(10**8, True), predicted_export_peak(2 * 10**8, True)
    assert large - small == pytest.approx(EXPORT_PEAK_FACTOR[True] * 4 * 10**8, rel=1e-6)
    assert predicted_export_peak(10**9, False) < predicted_export_peak(10**9, True)


def test_an_export_that_cannot_fit_is_refused_before_any_work(trained, tmp_path, monkeypatch, capsys):
    _, _, ckpt = trained
    params = sum(p.numel() for p in trained[0].parameters())
    # Enough for the job without validation, not with it.
    have = (predicted_export_peak(params, False) + predicted_export_peak(params, True)) // 2 - params * 4
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: have)
    code = main([str(ckpt), "--target", "onnx", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4 and len(err) == 1 and err[0].startswith("error: exporting"), err
    assert "--no-validate needs about" in err[0] and "--no-memory-check" in err[0]
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: params * 4 + (1 << 20))  # the model, no more
    code = main([str(ckpt), "--target", "onnx", "--out", str(tmp_path / "out"), "--no-validate"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4 and "--no-validate needs" not in err[0]


def test_no_memory_check_starts_anyway(trained, tmp_path, monkeypatch):
    _, _, ckpt = trained
    params = sum(p.numel() for p in trained[0].parameters())
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: params * 4 + (1 << 20))  # loads, cannot export
    argv = [str(ckpt), "--target", "onnx", "--out", str(tmp_path / "out"), "--no-validate", "--no-decode"]
    argv.append("--no-memory-check")
    assert main(argv) == 0 and (tmp_path / "out" / "model.onnx.data").is_file()
