"""Bring your own model (docs/models.md): the public ops, mod_export.export() on a class the project has never
seen, .pt2 archives (refused without --unsafe-load, and a malicious one runs nothing), safetensors folders that
round-trip bit-exactly through `mod-export convert`, the Llama-style architecture, and the bad inputs."""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from mod_export import ops
from mod_export.models import routing
from mod_export.models.capture import RoutingCapture
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from tests.helpers import assert_one_line_error, run_cli

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "custom_model"
sys.path.insert(0, str(EXAMPLE_DIR))
from model import PostLNByteLM  # noqa: E402  (examples/custom_model/model.py: the user's own class)


def _ids(B: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def custom_model():
    torch.manual_seed(0)
    return PostLNByteLM(d=48, heads=4, layers=6).eval()


@pytest.fixture(scope="module")
def archive(custom_model, tmp_path_factory):
    import mod_export

    path = tmp_path_factory.mktemp("pt2") / "custom.pt2"
    ids = _ids(2, 48)
    return mod_export.save_archive(custom_model, path, (ids, torch.ones_like(ids)))


# --- the public ops --------------------------------------------------------------------------------------------


def test_ops_in_eager_mode_are_the_canonical_routing_and_are_captured():
    x = torch.randn(3, 21, 8)
    scores = torch.randn(3, 21)
    mask = torch.ones(3, 21, dtype=torch.int64)
    mask[1, :5] = 0
    with RoutingCapture() as capture:
        x_sel, idx, s_sel = ops.topk_gather(x, scores, mask, capacity=(1, 4))
    ref = routing.topk_gather(x, scores, mask.to(torch.int32), 1, 4)
    assert all(torch.equal(a, b) for a, b in zip((x_sel, idx, s_sel), ref))
    assert len(capture.records) == 1 and capture.records[0].capacity == (1, 4)
    y_sel = torch.randn_like(x_sel)
    out = ops.scatter(x, idx, x_sel, y_sel, s_sel, gate="identity")
    assert torch.equal(out, routing.scatter_update(x, idx, x_sel, y_sel, s_sel, routing.GATE_IDS["identity"]))


def test_ops_are_differentiable_so_a_user_can_train_with_them():
    block = ops.Routed(nn.Linear(8, 8), 8, capacity=(1, 2))
    block.block = _Residual(nn.Linear(8, 8))
    out = block(torch.randn(2, 10, 8, requires_grad=True))
    out.sum().backward()
    assert block.router.weight.grad is not None and block.router.weight.grad.abs().sum() > 0


class _Residual(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x_sel, idx, key_valid):
        return x_sel + self.inner(x_sel)


def test_causal_ops_follow_the_generation_rule():
    logits = torch.tensor([[0.3, -0.1, 0.0, 2.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    take = ops.causal_take(logits, mask)
    assert take.tolist() == [[True, False, False, False]]  # > 0 takes, 0 skips, padding never takes
    x, y = torch.zeros(1, 4, 2), torch.ones(1, 4, 2)
    out = ops.causal_update(x, y, torch.zeros(1, 4), take, gate="sigmoid")
    assert out[0, 0].tolist() == [0.5, 0.5] and out[0, 1:].abs().sum() == 0


@pytest.mark.parametrize("bad", [(0, 4), (5, 4), (1, 0), "1/0", "a/b", (1, 2, 3), 0.25])
def test_ops_reject_a_bad_capacity(bad):
    with pytest.raises(ValueError, match="capacity"):
        ops.topk_gather(torch.randn(1, 4, 2), torch.randn(1, 4), None, capacity=bad)


def test_under_torch_export_the_ops_become_the_custom_ops(custom_model):
    from mod_export.exporter.onnx_export import dynamic_shapes
    from mod_export.models.sources import from_module

    ids = _ids(2, 40)
    src = from_module(custom_model, (ids, torch.ones_like(ids)))
    program = torch.export.export(custom_model, src.inputs(), dynamic_shapes=dynamic_shapes(src))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert targets.count("mod_export.topk_gather.default") == 2
    assert targets.count("mod_export.scatter.default") == 2


# --- mod_export.export() on a class the project has never seen -----------------------------------------------


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """examples/custom_model/train_and_export.py as a user runs it: a few seconds of training, then the API
    export and the .pt2 + CLI export (its exit code says whether both validated)."""
    import subprocess

    out = tmp_path_factory.mktemp("custom")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE_DIR / "train_and_export.py"), "--out", str(out), "--steps", "15"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_api_exports_and_validates_a_user_defined_model(example_run):
    out, proc = example_run
    report = json.loads((out / "api" / "report.json").read_text())
    assert report["parity"]["passed"] and report["export"]["routed_blocks_found"] == 2
    assert {"model.onnx", "model.plugin.onnx", "report.json", "manifest.json"} <= {
        p.name for p in (out / "api").iterdir()
    }
    assert report["source"] == "module" and report["config"] == {"class": "PostLNByteLM"}
    assert "skipped" in report["generation"]  # generation graphs: built-in architectures only
    names = {row["case"] for row in report["parity"]["forms"]["portable"]["cases"]}
    assert any("T=1" in n for n in names) and any("< capacity den 4" in n for n in names)  # below torch's seq min
    assert "held-out bits/byte after 15 steps" in proc.stderr


def test_pt2_archive_exports_and_validates_through_the_cli(example_run):
    out, _ = example_run
    report = json.loads((out / "pt2" / "report.json").read_text())
    assert report["parity"]["passed"] and report["source"] == "pt2" and report["export"]["routed_blocks_found"] == 2
    api = json.loads((out / "api" / "report.json").read_text())
    assert report["export"]["idx_tensors"] and len(report["export"]["idx_tensors"]) == len(api["export"]["idx_tensors"])


def test_a_module_whose_routed_blocks_bypass_the_ops_is_refused(tmp_path):
    import mod_export
    from mod_export.errors import ExportError

    class Bypass(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(256, 16), nn.Linear(16, 256)
            self.router = nn.Linear(16, 1)

        def forward(self, input_ids, attention_mask=None):
            x = self.embed(input_ids)
            keep = self.router(x).squeeze(-1).topk(max(1, x.shape[1] // 8), dim=-1).indices  # not the ops
            return self.head(x + x.gather(1, keep.sort().values[..., None].expand(-1, -1, 16)).mean(1, keepdim=True))

    with pytest.raises(ExportError, match="no routing ops found in nn.Module Bypass.*--allow-dense"):
        mod_export.export(Bypass(), None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- .pt2 archives ---------------------------------------------------------------------------------------------


def test_pt2_is_refused_without_unsafe_load(archive, tmp_path):
    proc = run_cli(archive, "--target", "onnx", "--out", tmp_path / "out")
    assert_one_line_error(proc, 1, "--unsafe-load")
    assert not (tmp_path / "out").exists()


class _Payload:
    """Unpickling this runs `open(marker, "w")`: what a hostile archive would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pt2_runs_nothing_without_the_flag(archive, tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt2"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(hostile, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith(".pkl"):
                data = pickle.dumps(_Payload(marker))
            dst.writestr(item, data)
        dst.writestr(f"{src.namelist()[0].split('/')[0]}/data/payload.pkl", pickle.dumps(_Payload(marker)))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "proof")))  # the payload is live: unpickling it writes a file
    assert (tmp_path / "proof").exists()
    proc = run_cli(hostile, "--target", "onnx", "--out", tmp_path / "out")
    assert_one_line_error(proc, 1, "--unsafe-load")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_pt2_without_routing_ops_offers_allow_dense(tmp_path):
    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(256, 16), nn.Linear(16, 256)

        def forward(self, input_ids, attention_mask):
            return self.head(self.embed(input_ids))

    ids = _ids(2, 16)
    path = tmp_path / "dense.pt2"
    torch.export.save(torch.export.export(Dense(), (ids, torch.ones_like(ids))), path)
    proc = run_cli(path, "--target", "onnx", "--out", tmp_path / "out", "--unsafe-load")
    assert_one_line_error(proc, 1, "--allow-dense")
    assert "no routing ops found" in proc.stderr


# --- safetensors folders ---------------------------------------------------------------------------------------


def _tiny_builtin(arch: str = "gpt", seed: int = 0) -> MoDTransformer:
    torch.manual_seed(seed)
    cfg = MoDConfig(vocab_size=256, d_model=32, n_heads=4, n_layers=3, d_mlp=64, capacity="1/4", aux_loss=True)
    if arch == "llama":
        cfg = cfg.replace(arch="llama", n_kv_heads=2, tie_embeddings=True, rope_base=500.0)
    return MoDTransformer(cfg).eval()


@pytest.fixture()
def checkpoint(tmp_path):
    from mod_export.models.checkpoint import save_checkpoint

    return save_checkpoint(_tiny_builtin("llama"), tmp_path / "model.pt")


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("shard", [None, "40KB"])
def test_convert_round_trips_bit_exactly(checkpoint, tmp_path, shard):
    folder, back, again = tmp_path / "folder", tmp_path / "back.pt", tmp_path / "again"
    extra = () if shard is None else ("--max-shard-size", shard)
    assert run_cli("convert", checkpoint, folder, *extra).returncode == 0
    assert (folder / "config.json").is_file()
    if shard is not None:
        assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("model-*"))) > 2
    assert run_cli("convert", folder, back).returncode == 0
    original, restored = _state(checkpoint), _state(back)
    assert original.keys() == restored.keys()
    for name in original:
        assert original[name].dtype == restored[name].dtype
        assert original[name].numpy().tobytes() == restored[name].numpy().tobytes(), name
    assert run_cli("convert", back, again, *extra).returncode == 0
    for file in folder.iterdir():  # folder -> checkpoint -> folder gives the same bytes
        assert (again / file.name).read_bytes() == file.read_bytes(), file.name


def test_a_safetensors_folder_exports_with_parity(checkpoint, tmp_path):
    folder = tmp_path / "folder"
    assert run_cli("convert", checkpoint, folder).returncode == 0
    proc = run_cli(folder, "--target", "onnx", "--out", tmp_path / "out", "--no-decode")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["source"] == "safetensors" and report["config"]["arch"] == "llama" and report["parity"]["passed"]


def _edit_folder(folder: Path, change: str) -> str:
    """Damage a converted folder one way; returns the text the one-line error must hold."""
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    config = json.loads((folder / "config.json").read_text())
    tensors = load_file(str(weights))
    if change == "unknown architecture":
        config["arch"] = "mamba"
        (folder / "config.json").write_text(json.dumps(config))
        return "config.arch must be one of"
    if change == "foreign model_type":
        config["model_type"] = "llama"
        (folder / "config.json").write_text(json.dumps(config))
        return "is not a mod-export architecture"
    if change == "missing tensor":
        tensors.pop("ln_f.weight")
        save_file(tensors, str(weights))
        return "missing 1 key(s): ln_f.weight"
    if change == "extra tensor":
        tensors["blocks.9.router.weight"] = torch.zeros(1, 32)
        save_file(tensors, str(weights))
        return "unexpected key(s): blocks.9.router.weight"
    if change == "wrong shape":
        tensors["ln_f.weight"] = torch.zeros(33)
        save_file(tensors, str(weights))
        return "has shape (33,)"
    if change == "wrong dtype":
        tensors["ln_f.weight"] = torch.zeros(32, dtype=torch.int32)
        save_file(tensors, str(weights))
        return "dtype torch.int32"
    if change == "truncated file":
        weights.write_bytes(weights.read_bytes()[:1000])
        return "not a readable safetensors file"
    if change == "no weights":
        weights.unlink()
        return "neither model.safetensors nor model.safetensors.index.json"
    raise AssertionError(change)


@pytest.mark.parametrize(
    "change",
    [
        "unknown architecture",
        "foreign model_type",
        "missing tensor",
        "extra tensor",
        "wrong shape",
        "wrong dtype",
        "truncated file",
        "no weights",
    ],
)
def test_bad_safetensors_folders_get_one_clear_line(checkpoint, tmp_path, change):
    folder = tmp_path / "folder"
    assert run_cli("convert", checkpoint, folder).returncode == 0
    needle = _edit_folder(folder, change)
    proc = run_cli(folder, "--target", "onnx", "--out", tmp_path / "out", "--no-validate", "--no-decode")
    assert_one_line_error(proc, 1, needle)
    assert not (tmp_path / "out").exists()


def test_convert_never_replaces_what_it_did_not_write(checkpoint, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert_one_line_error(run_cli("convert", checkpoint, mine), 1, "already exists")
    assert_one_line_error(run_cli("convert", checkpoint, mine, "--force"), 1, "not a model folder mod-export wrote")
    assert (mine / "notes.txt").read_text() == "keep me"


# --- the Llama-style architecture ------------------------------------------------------------------------------


def test_llama_parameter_count_and_shapes():
    model = _tiny_builtin("llama")
    cfg = model.config
    assert cfg.parameter_count() == sum(p.numel() for p in model.parameters())  # tied weights counted once
    block = model.blocks[0]
    assert block.k.weight.shape == (2 * 8, 32)  # 2 key/value heads of width 8
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    blocks = [m for n, m in linears if "router" not in n and "predictor" not in n]  # routers keep their bias
    assert len(blocks) > 20 and all(m.bias is None for m in blocks)
    assert model.lm_head.weight is model.embed.weight


def test_llama_exports_with_parity_and_generates(tmp_path):
    import mod_export
    from mod_export.runtime import Session

    model = _tiny_builtin("llama", seed=3)
    result = mod_export.export(model, None, tmp_path / "out")
    assert result.passed is True
    generation = result.report["generation"]
    assert generation["heads"] == 2 and generation["parity"]["passed"]
    with Session(tmp_path / "out") as session:
        prompt = np.array([[72, 101, 108, 108, 111]], dtype=np.int64)
        generation = session.generate(prompt, max_new_tokens=6)
    assert len(generation.tokens) == 1 and len(generation.tokens[0]) == 6
