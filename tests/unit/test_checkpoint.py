"""Checkpoints: round trip, and one clear error per kind of bad file, without running pickled code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mod_export.errors import CheckpointError
from mod_export.models.checkpoint import FORMAT_TAG, load_checkpoint, save_checkpoint
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from tests.helpers import run_cli

MARKER = Path("/tmp/mod_export_pickle_ran")


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


@pytest.fixture()
def small_model():
    torch.manual_seed(0)
    return MoDTransformer(MoDConfig(d_model=32, n_heads=2, n_layers=2, d_mlp=64)).eval()


def payload(model):
    return {"format": FORMAT_TAG, "config": model.config.to_dict(), "state_dict": model.state_dict(), "metrics": {}}


def test_round_trip_gives_identical_logits(tmp_path, small_model):
    path = save_checkpoint(small_model, tmp_path / "m.pt", {"bpb": 1.0})
    loaded = load_checkpoint(path)
    ids = torch.randint(0, 256, (2, 19))
    torch.testing.assert_close(loaded(ids), small_model(ids), rtol=0, atol=0)
    assert loaded.config == small_model.config
    import mod_export

    assert isinstance(mod_export.load_checkpoint(path), torch.nn.Module)


def write_bad(tmp_path: Path, kind: str, model) -> Path:
    path = tmp_path / "model.pt"
    if kind == "missing":
        return tmp_path / "nope.pt"
    if kind == "truncated":
        save_checkpoint(model, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "wrong_tag":
        torch.save({**payload(model), "format": "someone_else/3"}, path)
    elif kind == "missing_key":
        p = payload(model)
        p["state_dict"] = {k: v for k, v in p["state_dict"].items() if k != "lm_head.weight"}
        torch.save(p, path)
    elif kind == "wrong_shape":
        p = payload(model)
        p["state_dict"]["embed.weight"] = torch.zeros(10, 10)
        torch.save(p, path)
    elif kind == "bad_config":
        p = payload(model)
        p["config"]["capacity"] = 0.125
        torch.save(p, path)
    elif kind == "no_state_dict":
        torch.save({"format": FORMAT_TAG, "config": model.config.to_dict()}, path)
    elif kind == "pickle_code":
        torch.save({**payload(model), "metrics": {"x": RunsCodeWhenUnpickled()}}, path)
    return path


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("missing", "not found"),
        ("truncated", "not a PyTorch checkpoint"),
        ("text", "not a PyTorch checkpoint"),
        ("wrong_tag", "format tag"),
        ("missing_key", "missing 1 key"),
        ("wrong_shape", "has shape"),
        ("bad_config", "capacity"),
        ("no_state_dict", "state_dict"),
        ("pickle_code", "would run pickled code"),
    ],
)
def test_bad_checkpoints_give_one_clear_error(tmp_path, small_model, kind, needle):
    MARKER.unlink(missing_ok=True)
    path = write_bad(tmp_path, kind, small_model)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert not MARKER.exists(), "loading must never execute pickled code"


def test_cli_reports_bad_checkpoint_in_one_line_without_traceback(tmp_path, small_model):
    MARKER.unlink(missing_ok=True)
    path = write_bad(tmp_path, "pickle_code", small_model)
    out = tmp_path / "out"
    proc = run_cli(str(path), "--target", "onnx", "--out", str(out), "--no-decode")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not MARKER.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]
