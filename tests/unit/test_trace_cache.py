"""The trace cache (mod_export/exporter/trace_cache.py, docs/trace-cache.md): a reused graph is exactly the graph a fresh
trace gives, anything the trace depends on changes the key, a user's module is never reused, a damaged entry is
traced again, and the cache only ever adds to a folder it owns. Real torch.onnx exports of a tiny random model."""

from __future__ import annotations

import copy
import logging
import os

import onnx
import pytest
import torch
from torch import nn

from mod_export import output
from mod_export.errors import OutputDirError
from mod_export.exporter import trace_cache, tracing
from mod_export.exporter.onnx_export import export_forms
from mod_export.exporter.trace_cache import (
    CACHE_TAG,
    ENV_VAR,
    GRAPH_FILE,
    MODULE_TENSOR,
    check_cache_folder,
    trace_key,
)
from mod_export.graph.weights import graph_sha256
from mod_export.models.checkpoint import save_checkpoint
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer
from tests.helpers import run_cli

SETTINGS = {"opset": 18, "names": [["input_ids", "attention_mask"], ["logits"]]}


def _model(seed: int = 0, **changes) -> MoDTransformer:
    torch.manual_seed(seed)
    sizes = {"d_model": 32, "n_heads": 2, "n_layers": 2, "d_mlp": 64, **changes}
    return MoDTransformer(MoDConfig(**sizes)).eval()


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(seed))  # [B,T]
    return ids, torch.ones_like(ids)


@pytest.fixture
def traces(monkeypatch) -> list[str]:
    """The class names of the modules torch.onnx.export really ran on, in order; no cache from the environment."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    calls: list[str] = []
    real = tracing.torch_onnx_export

    def counted(module, *args, **kwargs):
        calls.append(type(module).__name__)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(tracing, "torch_onnx_export", counted)
    return calls


def _digests(forms) -> tuple[str, str]:
    return graph_sha256(forms.plugin), graph_sha256(forms.portable)


def test_a_reused_trace_is_the_graph_a_fresh_trace_gives(tmp_path, traces):
    """The entry holds the graph, not the weights: another model of the same architecture (another seed, a
    fine-tuned copy) reuses it with its own weights bound, and gets the bytes a fresh trace of it gives."""
    model, other = _model(), _model(seed=1)
    fresh = _digests(export_forms(model))
    fresh_other = _digests(export_forms(other))
    assert fresh != fresh_other
    with trace_cache.using(tmp_path / "cache"):
        first = _digests(export_forms(model))
        again = _digests(export_forms(copy.deepcopy(model)))
        reused_other = _digests(export_forms(other))
    assert len(traces) == 3, traces  # the two fresh ones and the first cached one; the others were reused
    assert fresh == first == again and reused_other == fresh_other
    assert (tmp_path / "cache" / CACHE_TAG).is_file()
    (entry,) = (tmp_path / "cache").glob(f"*/*/{GRAPH_FILE}")
    assert [p.name for p in entry.parent.iterdir()] == [GRAPH_FILE]
    weights = {name for name, _ in model.named_parameters()}
    kept = {t.name: t for t in onnx.load(str(entry), load_external_data=False).graph.initializer}
    assert weights & set(kept)
    for name in weights & set(kept):  # no weight's bytes in the cache: a reference by name
        assert not kept[name].raw_data and kept[name].external_data[0].value == MODULE_TENSOR


def test_anything_the_trace_depends_on_changes_the_key():
    model = _model()
    key = trace_key(model, _inputs(), SETTINGS)
    assert key == trace_key(copy.deepcopy(model), _inputs(), dict(SETTINGS))  # the same things: the same key
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        next(nudged.parameters())[0, 0] += 1.0
    assert key == trace_key(nudged, _inputs(), SETTINGS) == trace_key(_model(seed=1), _inputs(), SETTINGS)
    with_constant = copy.deepcopy(model)
    with_constant.blocks[0].scale = torch.ones(4)  # a plain tensor attribute: a constant in the graph
    other_constant = copy.deepcopy(with_constant)
    other_constant.blocks[0].scale = torch.full((4,), 2.0)
    others = {
        "the capacity": trace_key(_model(capacity=(1, 4)), _inputs(), SETTINGS),
        "the example inputs": trace_key(model, _inputs(seed=1), SETTINGS),
        "the opset": trace_key(model, _inputs(), {**SETTINGS, "opset": 19}),
        "train mode": trace_key(copy.deepcopy(model).train(), _inputs(), SETTINGS),
        "the dtype": trace_key(copy.deepcopy(model).half(), _inputs(), SETTINGS),
        "a tensor attribute": trace_key(with_constant, _inputs(), SETTINGS),
        "its value": trace_key(other_constant, _inputs(), SETTINGS),
    }
    tied = _model(tie_embeddings=True)
    untied = copy.deepcopy(tied)
    untied.lm_head.weight = nn.Parameter(untied.embed.weight.detach().clone())  # the same tensors, not one
    others["tied weights"] = trace_key(tied, _inputs(), SETTINGS)
    others["untied weights"] = trace_key(untied, _inputs(), SETTINGS)
    wider_norm = copy.deepcopy(model)
    wider_norm.ln_f.normalized_shape = (32, 1)  # a tuple attribute
    others["a tuple attribute"] = trace_key(wider_norm, _inputs(), SETTINGS)
    assert key not in others.values(), [what for what, other in others.items() if other == key]
    assert len(set(others.values())) == len(others)


def test_a_module_the_key_cannot_describe_is_never_cached():
    """A forward hook, or an attribute the key has no description for, can change the trace without changing
    anything the key holds: such a module is traced every time."""
    model = _model()
    handle = model.blocks[0].register_forward_hook(lambda module, args, result: result)
    assert trace_key(model, _inputs(), SETTINGS) is None
    handle.remove()
    assert trace_key(model, _inputs(), SETTINGS) is not None
    model.blocks[0].scale_fn = torch.sigmoid  # torch's function, not this package's: its code is not in the key
    assert trace_key(model, _inputs(), SETTINGS) is None


class UsersBlock(nn.Module):  # a class from outside mod_export: its code is not part of any key
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return self.proj(x)


def test_a_module_with_a_users_class_is_never_cached():
    assert trace_key(UsersBlock(), (torch.zeros(1, 4),), SETTINGS) is None
    model = _model()
    model.extra = UsersBlock()
    assert trace_key(model, _inputs(), SETTINGS) is None


def test_a_damaged_entry_is_traced_again(tmp_path, traces, caplog):
    """Unreadable bytes, or a graph whose weight references fit another model (an entry put under the wrong key):
    either is logged and traced again, and the export is the fresh one."""
    model, wider = _model(), _model(d_mlp=96)
    cache = tmp_path / "cache"
    with trace_cache.using(cache):
        good = _digests(export_forms(model))
        (entry,) = cache.glob(f"*/*/{GRAPH_FILE}")
        foreign = entry.read_bytes()
        entry.write_bytes(b"not a graph")
        with caplog.at_level(logging.WARNING, logger="mod_export.exporter.trace_cache"):
            again = _digests(export_forms(model))
        assert len(traces) == 2 and again == good and "unreadable" in caplog.text
        assert _digests(export_forms(model)) == good and len(traces) == 2  # the new trace replaced the entry
        caplog.clear()
        wider_good = _digests(export_forms(wider))
        wider_entry = next(p for p in cache.glob(f"*/*/{GRAPH_FILE}") if p != entry)
        wider_entry.write_bytes(foreign)
        with caplog.at_level(logging.WARNING, logger="mod_export.exporter.trace_cache"):
            wider_again = _digests(export_forms(wider))
    assert len(traces) == 4 and wider_again == wider_good
    assert "matches no tensor of the module" in caplog.text


def test_the_cache_only_adds_to_a_folder_it_owns(tmp_path):
    users = tmp_path / "notes"
    users.mkdir()
    (users / "thesis.tex").write_text("mine")
    with pytest.raises(OutputDirError, match="holds other files"):
        check_cache_folder(users)
    with pytest.raises(OutputDirError, match="is a file"):
        check_cache_folder(users / "thesis.tex")
    with pytest.raises(OutputDirError, match="inside the output"):
        check_cache_folder(tmp_path / "out" / "cache", tmp_path / "out")
    tagged = tmp_path / "cache"
    tagged.mkdir()
    (tagged / CACHE_TAG).write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    (tagged / "ab").mkdir()
    assert check_cache_folder(tagged) == tagged.resolve()
    assert check_cache_folder(tmp_path / "new") == (tmp_path / "new").resolve()


def test_the_cli_refuses_a_users_folder_as_the_cache_before_any_work(tmp_path):
    save_checkpoint(_model(), tmp_path / "m.pt", {})
    users = tmp_path / "notes"
    users.mkdir()
    (users / "thesis.tex").write_text("mine")
    out = tmp_path / "out"
    by_flag = run_cli(str(tmp_path / "m.pt"), "--target", "onnx", "--out", str(out), "--trace-cache", str(users))
    by_env = run_cli(
        str(tmp_path / "m.pt"), "--target", "onnx", "--out", str(out), env={**os.environ, ENV_VAR: str(users)}
    )
    for proc in (by_flag, by_env):
        assert proc.returncode != 0
        assert proc.stderr.strip().count("\n") == 0 and "holds other files" in proc.stderr, proc.stderr
    assert not out.exists() and sorted(p.name for p in users.iterdir()) == ["thesis.tex"]


def test_an_entry_published_first_is_kept(tmp_path):
    entry = tmp_path / "entry"
    for text in ("first", "second"):
        staging = output.temporary_sibling(entry, directory=True)
        (staging / GRAPH_FILE).write_text(text)
        published = output.publish_dir(staging, entry)
        assert published == (text == "first")
        output.remove_tree(staging)
    assert (entry / GRAPH_FILE).read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
