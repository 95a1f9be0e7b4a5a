"""Fault injection for the writers other than the export (whose own is in test_output_safety.py): a failure at each
write step of convert (both directions) and bench --out leaves the previous output exactly as it was and nothing
beside it; a real SIGKILL mid-write leaves the previous output intact, and the next run cleans up what the killed
one left, with one note. Also the success paths the refusals guard: validate vouching for a whole directory and
naming what it did not check, --force replacing our own outputs, bench without matplotlib."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mod_export.cli.main import main
from mod_export.models.checkpoint import load_checkpoint, save_checkpoint
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from mod_export.models.safetensors_folder import save_folder
from mod_export.output import staged
from tests.helpers import snapshot


def leftovers(root: Path) -> list[str]:
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name.startswith(".") and (".tmp-" in p.name or p.name.endswith((".lock", ".new")) or ".old-" in p.name)
    )


def tiny(seed: int) -> MoDTransformer:
    torch.manual_seed(seed)
    return MoDTransformer(MoDConfig(d_model=32, n_heads=2, n_layers=2, d_mlp=64)).eval()


@pytest.fixture()
def models(tmp_path):
    """Two different checkpoints, and model A as a folder and as model B's checkpoint's future home."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(tiny(0), a)
    save_checkpoint(tiny(1), b)
    save_folder(load_checkpoint(a), tmp_path / "folder")  # the earlier output convert --force replaces
    save_folder(load_checkpoint(b), tmp_path / "b-folder")  # what the replacement must end up as
    return a, b


def _failing(original, nth: int, error: BaseException):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            raise error
        return original(*args, **kwargs)

    return wrapper


def _inject(fault: pytest.MonkeyPatch, step: str) -> None:
    import safetensors.torch

    kind, _, nth = step.partition(":")
    error = OSError(5, f"injected fault at {step}")
    if kind == "save_file":
        fault.setattr(safetensors.torch, "save_file", _failing(safetensors.torch.save_file, int(nth or 1), error))
    elif kind == "torch.save":
        fault.setattr(torch, "save", _failing(torch.save, int(nth or 1), error))
    elif kind == "savefig":
        import matplotlib.figure

        fault.setattr(matplotlib.figure.Figure, "savefig", _failing(matplotlib.figure.Figure.savefig, int(nth), error))
    elif kind == "fsync":
        fault.setattr(os, "fsync", _failing(os.fsync, int(nth), error))
    elif kind == "exchange":
        fault.setattr(staged, "exchange", _failing(staged.exchange, 1, error))
    elif kind == "replace":
        fault.setattr(staged, "exchange", lambda a, b: False)  # a file system without RENAME_EXCHANGE
        fault.setattr(os, "replace", _failing(os.replace, int(nth), error))
    elif kind == "remove_old":
        fault.setattr(staged, "remove_tree", lambda path: None)
    else:
        raise AssertionError(step)


def _fault_then_rerun(argv, step, tmp_path, target: Path, expected: dict, capsys) -> None:
    before = snapshot(target) if target.is_dir() else {"file": target.read_bytes()}
    with pytest.MonkeyPatch.context() as fault:
        _inject(fault, step)
        code = main(argv)
    err = capsys.readouterr().err
    now = snapshot(target) if target.is_dir() else {"file": target.read_bytes()}
    if step == "remove_old":  # the swap happened; only the previous copy is left beside it
        assert code == 0 and now == expected and leftovers(tmp_path), err
    else:
        assert code == 1 and "Traceback" not in err and err.rstrip().splitlines()[-1].startswith("error:"), err
        assert now == before, "the previous output must be intact"
        assert leftovers(tmp_path) == [], "nothing half-written may stay"
    assert main(argv) == 0  # the next run
    err = capsys.readouterr().err
    now = snapshot(target) if target.is_dir() else {"file": target.read_bytes()}
    assert now == expected and leftovers(tmp_path) == []
    assert ("interrupted run" in err) == (step == "remove_old"), err


FOLDER_STEPS = ["save_file:1", "fsync:1", "fsync:2", "exchange", "replace:1", "replace:2", "remove_old"]
CHECKPOINT_STEPS = ["torch.save:1", "fsync:1", "replace:1"]


@pytest.mark.parametrize("step", FOLDER_STEPS)
def test_convert_to_a_folder_fails_cleanly_at_every_write_step(step, models, tmp_path, capsys):
    _, b = models
    argv = ["convert", str(b), str(tmp_path / "folder"), "--force"]
    _fault_then_rerun(argv, step, tmp_path, tmp_path / "folder", snapshot(tmp_path / "b-folder"), capsys)


@pytest.mark.parametrize("step", CHECKPOINT_STEPS)
def test_convert_to_a_checkpoint_fails_cleanly_at_every_write_step(step, models, tmp_path, capsys):
    a, _ = models
    target = tmp_path / "b.pt"  # replaced by model A's folder converted back
    expected_state = torch.load(a, weights_only=True)["state_dict"]
    before = target.read_bytes()
    with pytest.MonkeyPatch.context() as fault:
        _inject(fault, step)
        code = main(["convert", str(tmp_path / "folder"), str(target), "--force"])
    assert code == 1 and target.read_bytes() == before and leftovers(tmp_path) == []
    assert main(["convert", str(tmp_path / "folder"), str(target), "--force"]) == 0
    got = torch.load(target, weights_only=True)["state_dict"]
    assert all(torch.equal(got[k], v) for k, v in expected_state.items()) and leftovers(tmp_path) == []
    capsys.readouterr()


# ---------------------------------------------------------------- a real SIGKILL mid-write

DRIVER = """
import importlib, os, sys, time
target, nth = sys.argv[1].rsplit(":", 1)
module_name, attr = target.rsplit(".", 1)
module = importlib.import_module(module_name)
original, calls = getattr(module, attr), [0]
def paused(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(nth):
        print("PAUSED", flush=True)
        time.sleep(600)
    return original(*args, **kwargs)
setattr(module, attr, paused)
from mod_export.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def kill_mid_write(pause_at: str, *argv: str) -> None:
    """Run `mod-export ARGV` in a subprocess, stop it just before the `pause_at` (module.attr:nth) call, SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, pause_at, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stdout:
            if line.strip() == "PAUSED":
                break
        else:
            raise AssertionError(f"never reached {pause_at}: {proc.stderr.read()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        assert proc.wait(timeout=60) == -signal.SIGKILL


@pytest.mark.parametrize("pause_at", ["os.fsync:2", "mod_export.output.staged.exchange:1"])
def test_a_killed_convert_to_a_folder_keeps_the_old_one_and_the_next_run_cleans_up(pause_at, models, tmp_path):
    _, b = models
    before = snapshot(tmp_path / "folder")
    kill_mid_write(pause_at, "convert", str(b), str(tmp_path / "folder"), "--force")
    assert snapshot(tmp_path / "folder") == before, "the old folder is intact"
    assert any(".folder.tmp-" in n for n in leftovers(tmp_path)) and ".folder.lock" in leftovers(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "mod_export.cli.main", "convert", str(b), str(tmp_path / "folder"), "--force"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "interrupted run" in line]
    assert len(notes) == 1 and ".folder.tmp-" in notes[0] and ".folder.lock" in notes[0], proc.stderr
    assert snapshot(tmp_path / "folder") == snapshot(tmp_path / "b-folder") and leftovers(tmp_path) == []


def test_a_killed_convert_to_a_checkpoint_keeps_the_old_one_and_the_next_run_cleans_up(models, tmp_path):
    target = tmp_path / "b.pt"
    before = target.read_bytes()
    kill_mid_write("os.replace:1", "convert", str(tmp_path / "folder"), str(target), "--force")
    assert target.read_bytes() == before and any(".b.pt.tmp-" in n for n in leftovers(tmp_path))
    assert main(["convert", str(tmp_path / "folder"), str(target), "--force"]) == 0
    assert target.read_bytes() != before and leftovers(tmp_path) == []


def test_what_an_older_convert_left_is_put_back(models, tmp_path, capsys):
    """Older versions staged into .FOLDER.new and deleted FOLDER first: killed between, only .FOLDER.new was left,
    and every later run stopped on it. Now the next run puts it in place, then does its work."""
    a, _ = models
    os.rename(tmp_path / "folder", tmp_path / ".folder.new")
    assert main(["convert", str(a), str(tmp_path / "folder"), "--force"]) == 0
    assert "interrupted run" in capsys.readouterr().err and leftovers(tmp_path) == []
    assert (tmp_path / "folder" / "config.json").is_file()


# ---------------------------------------------------------------- bench --out


@pytest.fixture(scope="module")
def bench_data():
    from mod_export.bench.runner import BenchSettings, run_bench

    settings = BenchSettings(("torch",), (1,), (16,), ("1/8",), 1, 0, 1, False, False)
    return run_bench("synthetic:64x2", settings, show_progress=False)


BENCH_STEPS = ["fsync:1", "savefig:1", "savefig:2", "exchange", "replace:2", "remove_old"]


@pytest.mark.parametrize("step", BENCH_STEPS)
def test_bench_out_fails_cleanly_at_every_write_step(step, bench_data, tmp_path):
    from mod_export.bench.report import write_outputs
    from mod_export.output import Target, kinds

    res = tmp_path / "res"
    with Target(res, kinds.BENCH_FOLDER) as out:
        write_outputs({**bench_data, "model": "earlier"}, out)
    before = snapshot(res)
    with pytest.MonkeyPatch.context() as fault:
        _inject(fault, step)
        if step == "remove_old":
            with Target(res, kinds.BENCH_FOLDER, force=True) as out:
                write_outputs(bench_data, out)
        else:
            with pytest.raises(Exception), Target(res, kinds.BENCH_FOLDER, force=True) as out:  # noqa: B017 - any
                write_outputs(bench_data, out)
    if step != "remove_old":
        assert snapshot(res) == before and leftovers(tmp_path) == []
    with Target(res, kinds.BENCH_FOLDER, force=True) as out:  # the next run
        write_outputs(bench_data, out)
    assert json.loads((res / "results.json").read_text())["model"] == "synthetic:64x2" and leftovers(tmp_path) == []


def test_bench_without_matplotlib_warns_once_and_writes_the_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    argv = ["bench", "synthetic:64x2", "--seq-lens", "16", "--repeats", "1", "--warmup", "0", "--backends", "torch"]
    assert main([*argv, "--no-profile", "--out", str(tmp_path / "res")]) == 0
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "matplotlib" in line]) == 1 and "warning:" in err
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["results.json", "results.md"]
    assert main([*argv, "--no-profile", "--out", str(tmp_path / "res"), "--force"]) == 0  # our results: replaced


# ---------------------------------------------------------------- validate vouches for everything


def test_validate_checks_the_generation_graphs_and_writes_a_report_of_ours(trained, exported, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["validate", str(trained[2]), str(exported[1]), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "parity: passed" in out and "batch 4, prompts 7/33/20/64" in out and "not checked" not in out
    data = json.loads(report.read_text())
    assert data["format"] == "mod_export.validation/1" and data["generation"]["passed"] and data["passed"]
    assert data["generation"]["plugin"]["passed"] and data["not_checked"] == []


def test_validate_names_what_it_did_not_check(trained, exported, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "dir"
    shutil.copytree(exported[1], damaged)
    (damaged / "manifest.json").unlink()
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"format": "mod_export.validation/1"}))  # an earlier report of ours
    argv = ["validate", str(trained[2]), str(damaged), "--skip-integrity", "--report", str(report), "--force"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "not checked: the sha256 of every file (--skip-integrity)" in out
    assert "not checked: the generation graphs (no readable manifest.json" in out
    assert "without the generation graphs" not in out and json.loads(report.read_text())["not_checked"]


def test_validate_in_a_deleted_directory_names_it(trained, tmp_path, capsys, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    monkeypatch.setenv("PWD", str(gone))
    gone.rmdir()
    assert main(["validate", str(trained[2]), "."]) == 1
    err = capsys.readouterr().err
    assert f"the current directory ({gone}) no longer exists" in err and "Traceback" not in err


def test_example_replaces_its_own_checkpoint_and_metrics_with_force(tmp_path):
    argv = ["example", "--out", str(tmp_path / "m.pt"), "--metrics-json", str(tmp_path / "m.json"), "--steps", "1"]
    assert main(argv) == 0
    assert json.loads((tmp_path / "m.json").read_text())["format"] == "mod_export.metrics/1"
    assert main(argv) == 1  # both exist: --force needed
    assert main([*argv, "--force"]) == 0 and leftovers(tmp_path) == []
    load_checkpoint(tmp_path / "m.pt")


@pytest.mark.parametrize("change", [{"files": 5}, {"routing_idx_tensors": "x"}, {"generation": []}])
def test_a_hand_edited_manifest_is_one_integrity_error_everywhere(change, exported, tmp_path):
    import shutil

    from mod_export.errors import IntegrityError
    from mod_export.runtime import Session
    from mod_export.validate.directory import load_directory

    edited = tmp_path / "dir"
    shutil.copytree(exported[1], edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    (edited / "manifest.json").write_text(json.dumps({**manifest, **change}))
    key = next(iter(change))
    for load in (load_directory, Session):
        with pytest.raises(IntegrityError, match=key) as info:
            load(edited)
        assert "\n" not in str(info.value) and "--skip-integrity / skip_integrity=True" in str(info.value)
