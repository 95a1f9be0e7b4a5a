"""The bad-input matrix of the public Python entry points (Session, its methods, mod_export.export, the model
config) and of `mod-export generate` (docs/errors.md): every row states the call, the ModExportError subclass it
must raise and a fragment of its one-line message; CLI rows state the exit code and run as
tests/unit/test_bad_input_matrix.py's rows do (one `error:` line, last, no traceback, no file changed). Around
the matrix: text in and out (incremental UTF-8, prompts as bytes), sampling parameters and prompt contents under
hypothesis, concurrent generate/stream calls on one Session, and the help text of every option.

Only the public API is used in the rows, so the file also runs against older checkouts (to count what they fail).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mod_export.cli.main import MAIN_FORM, SUBCOMMANDS, OneLineArgumentParser, main
from mod_export.errors import ConfigError, ExportError, InputError, ModExportError, UsageError
from mod_export.runtime import Session
from tests.helpers import snapshot
from tests.unit.test_bad_input_matrix import Row, existing_file, export_copy

# ---------------------------------------------------------------- the Python API rows


@dataclass
class ApiRow:
    name: str
    call: Callable[[dict], object]  # ctx: session (open), closed (a closed Session), paths, model, tmp
    error: type  # the exact class raised
    fragment: str


IDS = np.zeros((1, 5), np.int64)
OK = {"prompts": [1, 2, 3], "max_new_tokens": 2}


def gen(**changes):
    """session.generate with OK's arguments changed."""
    return lambda c: c["session"].generate(**{**OK, **changes})


def stream(**changes):
    """session.stream with OK's arguments changed: refused at the call, before any event is taken."""
    return lambda c: c["session"].stream(**{**OK, **changes})


def opened(source_key: str, **kwargs):
    return lambda c: Session(c[source_key], **kwargs)


def fresh_take_rates(c):
    return Session(c["dir"]).take_rates()


def after_one_row(row):
    def call(c):
        session = Session(c["dir"])
        session.generate([1, 2], 1)
        return session.take_rates(row)

    return call


def closed(method: str, *args):
    return lambda c: getattr(c["closed"], method)(*args)


def closed_with(c):
    with c["closed"]:
        pass


def export_with(**changes):
    def call(c):
        import mod_export

        kwargs = {"out_dir": c["tmp"] / "out", **changes}
        model = kwargs.pop("model", c["model"])
        return mod_export.export(model, **kwargs)

    return call


def config(**changes):
    def call(c):
        from mod_export.models.config import MoDConfig

        return MoDConfig(**{"vocab_size": 256, "d_model": 32, "n_heads": 2, "n_layers": 2, "d_mlp": 64, **changes})

    return call


API_ROWS = [
    # ---- Session(...)
    ApiRow("source None", lambda c: Session(None), UsageError, "source must be a path"),
    ApiRow("source an int", lambda c: Session(5), UsageError, "source must be a path"),
    ApiRow("source missing", lambda c: Session(c["tmp"] / "none"), InputError, "not found"),
    ApiRow("source a text file", opened("text"), InputError, "is not an export directory"),
    ApiRow("source a folder without models", opened("empty"), InputError, "no ONNX file"),
    ApiRow("source a damaged lone .onnx", opened("garbage"), ExportError, "not a readable ONNX file"),
    ApiRow("backend unknown", opened("dir", backend="tflite"), UsageError, "backend must be one of"),
    ApiRow("backend None", opened("dir", backend=None), UsageError, "backend must be one of"),
    ApiRow("backend a list", opened("dir", backend=["onnxruntime"]), UsageError, "backend must be one of"),
    ApiRow("form unknown", opened("dir", form="fast"), UsageError, "form must be one of"),
    ApiRow("form an int", opened("dir", form=5), UsageError, "form must be one of"),
    ApiRow("providers a string", opened("dir", providers="CPUExecutionProvider"), UsageError, "list of provider"),
    ApiRow("providers empty", opened("dir", providers=[]), UsageError, "list of provider"),
    ApiRow("providers unknown", opened("dir", providers=["FooExecutionProvider"]), UsageError, "not available"),
    ApiRow("threads negative", opened("dir", threads=-1), UsageError, "threads must be"),
    ApiRow("threads text", opened("dir", threads="2"), UsageError, "threads must be"),
    ApiRow("threads float", opened("dir", threads=1.5), UsageError, "threads must be"),
    ApiRow("threads bool", opened("dir", threads=True), UsageError, "threads must be"),
    ApiRow("cuda_graphs text", opened("dir", cuda_graphs="yes"), UsageError, "cuda_graphs must be True or False"),
    ApiRow("skip_integrity an int", opened("dir", skip_integrity=1), UsageError, "skip_integrity must be"),
    # ---- run / run_with_routing / check_inputs
    ApiRow("run ragged lists", lambda c: c["session"].run([[1, 2], [3]]), InputError, "rectangular"),
    ApiRow("run ragged mask", lambda c: c["session"].run([[1, 2]], [[1], [1, 1]]), InputError, "rectangular"),
    ApiRow(
        "run numpy ids, torch mask",
        lambda c: c["session"].run(IDS, torch.ones(1, 5, dtype=torch.int64)),
        InputError,
        "must both be torch tensors or both numpy arrays",
    ),
    ApiRow(
        "run torch ids, numpy mask",
        lambda c: c["session"].run(torch.zeros(1, 5, dtype=torch.int64), np.ones((1, 5), np.int64)),
        InputError,
        "must both be torch tensors or both numpy arrays",
    ),
    ApiRow("run None", lambda c: c["session"].run(None), InputError, "integer token ids"),
    ApiRow("run text", lambda c: c["session"].run("def f(): pass"), InputError, "integer token ids"),
    ApiRow("run 3-D ids", lambda c: c["session"].run(np.zeros((1, 2, 3), np.int64)), InputError, "[batch, seq]"),
    ApiRow("run bool ids", lambda c: c["session"].run(np.ones((1, 3), bool)), InputError, "integer token ids"),
    ApiRow("run torch bool ids", lambda c: c["session"].run(torch.ones(1, 3, dtype=torch.bool)), InputError, "integer"),
    ApiRow(
        "routing of ragged lists", lambda c: c["session"].run_with_routing([[1], [2, 3]]), InputError, "rectangular"
    ),
    ApiRow(
        "routing of mixed inputs",
        lambda c: c["session"].run_with_routing(IDS, torch.ones(1, 5, dtype=torch.int64)),
        InputError,
        "must both be torch tensors or both numpy arrays",
    ),
    ApiRow("check_inputs ragged", lambda c: c["session"].check_inputs([[1], [2, 3]]), InputError, "rectangular"),
    # ---- use after close()
    ApiRow("run after close", closed("run", IDS), UsageError, "closed"),
    ApiRow("generate after close", closed("generate", [1, 2], 2), UsageError, "closed"),
    ApiRow("stream after close", closed("stream", [1, 2], 2), UsageError, "closed"),
    ApiRow("routing after close", closed("run_with_routing", IDS), UsageError, "closed"),
    ApiRow("check_inputs after close", closed("check_inputs", IDS), UsageError, "closed"),
    ApiRow("take_rates after close", closed("take_rates"), UsageError, "closed"),
    ApiRow("generation_stepper after close", closed("generation_stepper"), UsageError, "closed"),
    ApiRow("with-block on a closed Session", closed_with, UsageError, "closed"),
    # ---- generate / stream: sampling parameters
    ApiRow("seed negative", gen(seed=-1), InputError, "seed must be an integer >= 0"),
    ApiRow("seed float", gen(seed=1.5), InputError, "seed must be an integer >= 0"),
    ApiRow("seed text", gen(seed="1"), InputError, "seed must be an integer >= 0"),
    ApiRow("seed None", gen(seed=None), InputError, "seed must be an integer >= 0"),
    ApiRow("top_p text", gen(top_p="0.5"), InputError, "top_p"),
    ApiRow("top_p zero", gen(top_p=0.0), InputError, "top_p must be in (0, 1]"),
    ApiRow("top_p above one", gen(top_p=1.5), InputError, "top_p must be in (0, 1]"),
    ApiRow("top_p NaN", gen(top_p=float("nan")), InputError, "top_p"),
    ApiRow("temperature text", gen(temperature="0.5"), InputError, "temperature"),
    ApiRow("temperature negative", gen(temperature=-1.0), InputError, "temperature"),
    ApiRow("temperature infinite", gen(temperature=float("inf")), InputError, "temperature"),
    ApiRow("temperature None", gen(temperature=None), InputError, "temperature"),
    ApiRow("top_k negative", gen(top_k=-1), InputError, "top_k must be an integer >= 0"),
    ApiRow("top_k float", gen(top_k=2.5), InputError, "top_k must be an integer >= 0"),
    ApiRow("top_k text", gen(top_k="3"), InputError, "top_k must be an integer >= 0"),
    ApiRow("max_new_tokens None", gen(max_new_tokens=None), InputError, "max_new_tokens must be an integer >= 1"),
    ApiRow("max_new_tokens zero", gen(max_new_tokens=0), InputError, "max_new_tokens must be an integer >= 1"),
    ApiRow("max_new_tokens float", gen(max_new_tokens=1.5), InputError, "max_new_tokens must be an integer >= 1"),
    ApiRow("max_new_tokens text", gen(max_new_tokens="5"), InputError, "max_new_tokens must be an integer >= 1"),
    ApiRow("max_new_tokens bool", gen(max_new_tokens=True), InputError, "max_new_tokens must be an integer >= 1"),
    ApiRow("stream seed negative", stream(seed=-1), InputError, "seed must be an integer >= 0"),
    ApiRow("stream max_new_tokens None", stream(max_new_tokens=None), InputError, "max_new_tokens"),
    # ---- stop tokens
    ApiRow("stop_tokens an int", gen(stop_tokens=5), InputError, "stop_tokens must be a sequence of token ids"),
    ApiRow("stop_tokens text", gen(stop_tokens="ab"), InputError, "stop_tokens must be a sequence of token ids"),
    ApiRow("stop token beyond vocabulary", gen(stop_tokens=(999,)), InputError, "stop_tokens must be token ids in"),
    ApiRow("stop token negative", gen(stop_tokens=(-1,)), InputError, "stop_tokens must be token ids in [0, 256)"),
    ApiRow("stop token float", gen(stop_tokens=(1.5,)), InputError, "stop_tokens must hold integer token ids"),
    ApiRow("stream stop beyond vocabulary", stream(stop_tokens=[300]), InputError, "[0, 256)"),
    # ---- prompts
    ApiRow("prompts empty list", gen(prompts=[]), InputError, "prompts is empty"),
    ApiRow("prompts None", gen(prompts=None), InputError, "prompts must be a sequence of token ids"),
    ApiRow("prompts an int", gen(prompts=5), InputError, "prompts must be a sequence of token ids"),
    ApiRow("prompts text", gen(prompts="def f"), InputError, "encode text first"),
    ApiRow("prompts bytes", gen(prompts=b"def f"), InputError, "encode text first"),
    ApiRow("prompt empty", gen(prompts=[[]]), InputError, "at least one token"),
    ApiRow("prompt ragged inside", gen(prompts=[[1, [2, 3]]]), InputError, "each prompt"),
    ApiRow("prompt nested too deep", gen(prompts=[[[1, 2]]]), InputError, "each prompt"),
    ApiRow("prompt of floats", gen(prompts=[1.5, 2.0]), InputError, "integer token ids"),
    ApiRow("prompt id negative", gen(prompts=[-1, 3]), InputError, "token ids in [0, 256)"),
    ApiRow("prompt id beyond vocabulary", gen(prompts=[[1, 2], [3, 300]]), InputError, "token ids in [0, 256)"),
    ApiRow("prompt past the max context", gen(max_new_tokens=5000), InputError, "max context of 4096"),
    ApiRow("stream prompt empty", stream(prompts=[]), InputError, "prompts is empty"),
    # ---- take_rates
    ApiRow("take_rates before any generation", fresh_take_rates, UsageError, "call generate() or stream() first"),
    ApiRow("take_rates row out of range", after_one_row(5), InputError, "row must be in [0, 1)"),
    ApiRow("take_rates row negative", after_one_row(-1), InputError, "row must be an integer >= 0"),
    ApiRow("take_rates row text", after_one_row("0"), InputError, "row must be an integer >= 0"),
    # ---- generation from what is not an export directory
    ApiRow(
        "a .onnx file without its data file",
        lambda c: Session(c["weightless"] / "model.onnx", skip_integrity=True),
        ExportError,
        "weights file model.onnx.data is missing",
    ),
    ApiRow(
        "generate from a lone .onnx file",
        lambda c: Session(c["lone"]).generate([1, 2], 2),
        InputError,
        "no manifest.json beside it",
    ),
    ApiRow(
        "generate from an export without generation graphs",
        lambda c: Session(c["nogen"]).generate([1, 2], 2),
        InputError,
        "without the generation graphs",
    ),
    # ---- mod_export.export(...)
    ApiRow("export target unknown", export_with(target="tflite"), UsageError, "target must be one of"),
    ApiRow("export precision unknown", export_with(precision="fp8"), UsageError, "precision must be one of"),
    ApiRow("export out_dir None", export_with(out_dir=None), UsageError, "out_dir must be a path"),
    ApiRow("export out_dir an int", export_with(out_dir=5), UsageError, "out_dir must be a path"),
    ApiRow("export opset text", export_with(opset="18"), UsageError, "opset must be an integer"),
    ApiRow("export atol NaN", export_with(atol=float("nan")), UsageError, "atol must be a finite number > 0"),
    ApiRow("export atol negative", export_with(atol=-1.0), UsageError, "atol must be a finite number > 0"),
    ApiRow("export atol text", export_with(atol="1e-3"), UsageError, "atol must be a finite number > 0"),
    ApiRow("export max_context zero", export_with(max_context=0), UsageError, "max_context must be an integer >= 1"),
    ApiRow("export calib_method unknown", export_with(calib_method="kl"), UsageError, "calib_method must be one of"),
    ApiRow("export calib_windows zero", export_with(calib_windows=0), UsageError, "calib_windows must be"),
    ApiRow("export routing_guard above one", export_with(routing_guard=1.5), UsageError, "routing_guard must be"),
    ApiRow(
        "export min_routing_agreement NaN",
        export_with(min_routing_agreement=float("nan")),
        UsageError,
        "min_routing_agreement must be",
    ),
    ApiRow("export engine of another type", export_with(engine="fast"), UsageError, "engine must be"),
    ApiRow("export triton a dict", export_with(triton={"slots": 2}), UsageError, "triton must be"),
    ApiRow("export force text", export_with(force="yes"), UsageError, "force must be True or False"),
    ApiRow("export validate None", export_with(validate=None), UsageError, "validate must be True or False"),
    ApiRow("export calib_data an int", export_with(calib_data=5), UsageError, "calib_data must be None or a path"),
    ApiRow("export model None", export_with(model=None), UsageError, "expected a torch.nn.Module"),
    ApiRow("export model an int", export_with(model=5), UsageError, "expected a torch.nn.Module"),
    ApiRow(
        "export example inputs of floats",
        export_with(example_inputs=(torch.zeros(1, 4),)),
        UsageError,
        "example input_ids must be int64",
    ),
    # ---- model configs (example, bench and every loaded model go through them)
    ApiRow("config capacity 1/1000000", config(capacity="1/1000000"), ConfigError, "smallest supported capacity"),
    ApiRow("config capacity 1/2048", config(capacity="1/2048"), ConfigError, "smallest supported capacity 1/1024"),
]


@pytest.fixture(scope="module")
def api_context(trained, exported, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    out = Path(exported[1])
    (root / "lone").mkdir()
    shutil.copyfile(out / "model.onnx", root / "lone" / "model.onnx")
    shutil.copyfile(out / "model.onnx.data", root / "lone" / "model.onnx.data")  # a graph with its weights
    (root / "weightless").mkdir()
    shutil.copyfile(out / "model.onnx", root / "weightless" / "model.onnx")  # its data file left behind
    shutil.copytree(out, root / "nogen")
    manifest = json.loads((root / "nogen" / "manifest.json").read_text())
    manifest.pop("generation", None)
    (root / "nogen" / "manifest.json").write_text(json.dumps(manifest))
    (root / "notes.txt").write_text("not a model\n")
    (root / "empty").mkdir()
    (root / "garbage.onnx").write_bytes(os.urandom(2048))
    closed_session = Session(out)
    closed_session.close()
    ctx = {
        "dir": out,
        "lone": root / "lone" / "model.onnx",
        "weightless": root / "weightless",
        "nogen": root / "nogen",
        "text": root / "notes.txt",
        "empty": root / "empty",
        "garbage": root / "garbage.onnx",
        "model": trained[0],
        "session": Session(out, threads=1),
        "closed": closed_session,
    }
    return ctx


@pytest.mark.parametrize("row", API_ROWS, ids=[r.name for r in API_ROWS])
def test_python_api_refuses_bad_arguments_with_one_typed_error(row: ApiRow, api_context, tmp_path):
    ctx = {**api_context, "tmp": tmp_path}
    before, export_before = snapshot(tmp_path), snapshot(ctx["dir"])
    with pytest.raises(ModExportError) as info:
        row.call(ctx)
    assert type(info.value) is row.error, (type(info.value).__name__, str(info.value))
    message = str(info.value)
    assert row.fragment in message and "\n" not in message, message
    assert snapshot(tmp_path) == before and snapshot(ctx["dir"]) == export_before


def test_close_is_final_and_may_be_repeated(exported):
    session = Session(exported[1])
    assert session.run([[1, 2]]).shape == (1, 2, 256)
    session.close()
    session.close()  # twice: nothing happens
    with pytest.raises(UsageError, match="closed"):
        session.run([[1, 2]])
    with Session(exported[1]) as inner:
        inner.generate([1, 2], 1)
    with pytest.raises(UsageError, match="closed"):
        inner.generate([1, 2], 1)


# ---------------------------------------------------------------- the CLI rows (generate, capacities)

GEN = ["generate", "{dir}"]
CLI_ROWS = [
    Row("generate prompt ids beginning with a negative id", [*GEN, "--prompt-ids", "-1,3"], 1, "[0, 256)"),
    Row("generate prompt ids as one negative id", [*GEN, "--prompt-ids", "-7"], 1, "[0, 256)"),
    Row("generate empty prompt", [*GEN, "--prompt", ""], 1, "the prompt is empty"),
    Row("generate empty prompt ids", [*GEN, "--prompt-ids", ""], 1, "the prompt is empty"),
    Row("generate prompt ids of commas", [*GEN, "--prompt-ids", ",,"], 1, "the prompt is empty"),
    Row("generate stop id beyond vocabulary", [*GEN, "--prompt", "a", "--stop", "999"], 1, "[0, 256)"),
    Row("generate stop id negative", [*GEN, "--prompt", "a", "--stop", "-5"], 1, "[0, 256)"),
    Row("generate stop ids negative list", [*GEN, "--prompt", "a", "--stop", "-5,3"], 1, "[0, 256)"),
    Row("generate stop not ids", [*GEN, "--prompt", "a", "--stop", "x"], 1, "comma-separated integers"),
    Row("generate seed negative", [*GEN, "--prompt", "a", "--seed", "-1"], 2, "non-negative"),
    Row("generate top-k negative", [*GEN, "--prompt", "a", "--top-k", "-3"], 2, "non-negative"),
    Row("generate temperature NaN", [*GEN, "--prompt", "a", "--temperature", "nan"], 2, ">= 0"),
    Row("generate max-new-tokens fraction", [*GEN, "--prompt", "a", "--max-new-tokens", "1.5"], 2, "positive"),
    Row(
        "generate a text file",
        ["generate", "{tmp}/f.txt", "--prompt", "a"],
        1,
        "not an export directory",
        existing_file("f.txt"),
    ),
    Row(
        "generate a lone .onnx file",
        ["generate", "{tmp}/dir/model.onnx", "--prompt", "a"],
        1,
        "no manifest.json beside it",
        export_copy(lambda d: (d / "manifest.json").unlink()),
    ),
    Row(
        "generate an export without generation graphs",
        [*GEN[:1], "{tmp}/dir", "--prompt", "a"],
        1,
        "without the generation graphs",
        export_copy(
            lambda d: (d / "manifest.json").write_text(
                json.dumps(
                    {k: v for k, v in json.loads((d / "manifest.json").read_text()).items() if k != "generation"}
                )
            )
        ),
    ),
    Row("example capacity 1/1000000", ["example", "--out", "{tmp}/m.pt", "--capacity", "1/1000000"], 1, "1/1024"),
    Row("example capacity 1/0", ["example", "--out", "{tmp}/m.pt", "--capacity", "1/0"], 1, "capacity"),
    Row("bench capacity 1/4096", ["bench", "synthetic:64x2", "--capacities", "1/4096"], 1, "smallest supported"),
]

# Rows that must succeed (exit 0) where main c625d93 crashed or refused: each with what stdout must hold.
CLI_OK_ROWS = [
    (
        "generate prompt ids on a byte-level model",
        [*GEN, "--prompt-ids", "100,101,102", "--max-new-tokens", "3"],
        "def",
    ),
    ("generate a prompt that is not UTF-8", [*GEN, "--prompt", "def \udcff", "--max-new-tokens", "3"], "def \ufffd"),
    (
        "generate at temperature 1e-320",
        [*GEN, "--prompt", "a", "--temperature", "1e-320", "--max-new-tokens", "3"],
        "a",
    ),
    ("generate a prompt beginning with a dash", [*GEN, "--prompt", "-- note", "--max-new-tokens", "2"], "-- note"),
    ("generate stop ids given with =", [*GEN, "--prompt", "ab", "--stop=10", "--max-new-tokens", "2"], "ab"),
]


@pytest.fixture(scope="module")
def cli_context(trained, exported):
    return {"ckpt": str(trained[2]), "dir": str(exported[1])}


def _run_cli(argv: list[str], tmp_path: Path, ctx: dict, capsys) -> tuple[int, str, str]:
    values = {"dir": ctx["dir"], "ckpt": ctx["ckpt"], "tmp": str(tmp_path)}
    code = main([a.format(**values) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r.name for r in CLI_ROWS])
def test_cli_refuses_bad_input_with_one_error_line(row: Row, cli_context, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOD_EXPORT_PLUGIN_LIBRARY", str(tmp_path / "no-plugin-library.so"))
    if row.setup is not None:
        row.setup(tmp_path, cli_context)
    before, export_before = snapshot(tmp_path), snapshot(Path(cli_context["dir"]))
    code, _, err = _run_cli(row.argv, tmp_path, cli_context, capsys)
    assert code == row.code, (code, err[-2000:])
    assert "Traceback" not in err and "\x1b[" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and row.fragment in errors[0], err[-2000:]
    assert err.rstrip().endswith(errors[0]), "the error line is the last thing printed"
    assert snapshot(tmp_path) == before and snapshot(Path(cli_context["dir"])) == export_before


@pytest.mark.parametrize("row", CLI_OK_ROWS, ids=[r[0] for r in CLI_OK_ROWS])
def test_cli_generates_where_it_used_to_fail(row, cli_context, tmp_path, capsys):
    _, argv, expected = row
    code, out, err = _run_cli(argv, tmp_path, cli_context, capsys)
    assert code == 0, err[-2000:]
    assert out.startswith(expected), out
    assert "error" not in err and "Traceback" not in err


def test_the_api_matrix_covers_every_case():
    assert len(API_ROWS) + len(CLI_ROWS) + len(CLI_OK_ROWS) >= 130


# ---------------------------------------------------------------- text in and out


class FakeSession:
    """What `generate` needs of a Session, emitting chosen bytes: the printing is checked on its own."""

    vocab = 256
    to_emit: list[int] = []

    def __init__(self, source, **kwargs):
        self.emitted: list[int] = []

    @property
    def codec(self):
        from mod_export.generation.text import codec_for

        return codec_for(self.vocab)

    def stream(self, prompt, max_new_tokens, *args):
        from mod_export.generation.loop import Event

        self.prompt = prompt
        for index, token in enumerate(self.to_emit):
            yield Event(index, np.array([token]), np.array([True]), np.array([False]), 0.001)

    def take_rates(self, row):
        return {1: 0.5}


@pytest.mark.parametrize(
    "emitted, printed",
    [
        ([0xCF, 0x96], "ϖ"),  # one character in two bytes: printed once, complete
        ([0xE2, 0x82, 0xAC, 0x21], "€!"),
        ([0xF0, 0x9F, 0x98, 0x80], "\U0001f600"),
        ([0xCF], "\ufffd"),  # cut short by max_new_tokens: one replacement character at the end
        ([0xFF, 0x41], "\ufffdA"),  # not UTF-8
    ],
)
def test_generate_prints_each_character_once_complete(emitted, printed, monkeypatch, capsys):
    import mod_export.cli.generate as generate_cli

    monkeypatch.setattr(generate_cli, "Session", FakeSession)
    monkeypatch.setattr(FakeSession, "to_emit", emitted)
    assert main(["generate", "unused", "--prompt", "x = "]) == 0
    assert capsys.readouterr().out == f"x = {printed}\n"


def test_a_prompt_that_is_not_utf8_is_taken_as_its_bytes(monkeypatch, capsys):
    import mod_export.cli.generate as generate_cli

    seen = {}

    class Recording(FakeSession):
        to_emit = [0x96]  # completes the prompt's last byte 0xcf: ϖ

        def stream(self, prompt, *args):
            seen["prompt"] = prompt
            return super().stream(prompt, *args)

    monkeypatch.setattr(generate_cli, "Session", Recording)
    assert main(["generate", "unused", "--prompt", os.fsdecode(b"def \xff\xcf")]) == 0
    assert seen["prompt"] == list(b"def \xff\xcf")
    assert capsys.readouterr().out == "def \ufffdϖ\n"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=6), max_size=20))
def test_incremental_decoding_equals_one_shot_decoding(chunks):
    from mod_export.generation.text import ByteCodec

    codec = ByteCodec()
    data = b"".join(chunks)
    decoder = codec.decoder()
    pieces = [decoder.feed(byte for byte in chunk) for chunk in chunks] + [decoder.flush()]
    assert "".join(pieces) == data.decode("utf-8", errors="replace") == codec.decode(data)
    one_by_one = codec.decoder()
    assert "".join(one_by_one.feed([b]) for b in data) + one_by_one.flush() == data.decode("utf-8", "replace")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_encodes_to_byte_ids_or_one_typed_error(text):
    from mod_export.generation.text import ByteCodec

    try:
        ids = ByteCodec().encode(text)
    except InputError as exc:
        assert "surrogate" in str(exc)
        return
    assert all(0 <= t < 256 for t in ids) and bytes(ids) == text.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- hypothesis: sampling and prompts never crash

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1e-300),  # subnormal temperatures
    st.integers(-(2**70), 2**70),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    temperature=NUMBERS,
    top_k=st.one_of(st.integers(-3, 600), NUMBERS),
    top_p=NUMBERS,
    seed=st.one_of(st.integers(-3, 2**80), NUMBERS),
    logits=st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=8),
)
def test_sampling_parameters_give_a_token_or_one_typed_error(temperature, top_k, top_p, seed, logits):
    from mod_export.generation.sampling import Sampling, sample

    try:
        sampling = Sampling(temperature, top_k, top_p, seed)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    table = np.asarray([logits, logits[::-1]], np.float32)
    tokens = sample(table, sampling, sampling.generators(2))
    assert tokens.dtype == np.int64 and ((0 <= tokens) & (tokens < len(logits))).all()
    if sampling.temperature < 1e-30 or sampling.top_k == 1:
        assert tokens.tolist() == table.argmax(-1).tolist()


@pytest.fixture(scope="module")
def shared_session(exported):
    return Session(exported[1], threads=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=40), new=st.integers(1, 3))
def test_any_bytes_prompt_generates(shared_session, data, new):
    if not data:
        with pytest.raises(InputError, match="at least one"):
            shared_session.generate([list(data)], new)
        return
    result = shared_session.generate(list(data), new)
    assert len(result.tokens[0]) == new and all(0 <= t < 256 for t in result.tokens[0])


PROMPT_ITEMS = st.one_of(st.integers(-5, 300), st.floats(allow_nan=True), st.text(max_size=2), st.none())
PROMPTS = st.one_of(
    st.lists(PROMPT_ITEMS, max_size=5),
    st.lists(st.lists(PROMPT_ITEMS, max_size=4), max_size=3),
    st.lists(st.lists(st.lists(st.integers(0, 255), max_size=2), max_size=2), max_size=2),
    PROMPT_ITEMS,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompts=PROMPTS, stops=st.one_of(st.lists(PROMPT_ITEMS, max_size=3), PROMPT_ITEMS))
def test_any_prompt_and_stop_tokens_give_tokens_or_one_typed_error(shared_session, prompts, stops):
    try:
        result = shared_session.generate(prompts, 2, stop_tokens=stops)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert all(0 <= t < 256 for row in result.tokens for t in row)


# ---------------------------------------------------------------- concurrent generation on one Session


def _requests(count: int) -> list[dict]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(count):
        prompt = [int(t) for t in rng.integers(0, 256, int(rng.integers(1, 24)))]
        sampled = {"temperature": 0.8, "top_k": 40, "seed": i} if i % 3 == 0 else {}
        out.append({"prompts": prompt, "max_new_tokens": 6 + i % 5, **sampled})
    return out


@pytest.mark.parametrize("threads", [2, 4])
def test_concurrent_generate_and_stream_calls_equal_serial_ones(exported, threads):
    """threads x N calls on one Session: every result equals the serial call's (no "KV cache is full", no mixing
    of two calls' caches), generate and stream alike, and take_rates() reports each thread's own last call."""
    session = Session(exported[1], threads=1)
    requests = _requests(6 * threads)
    serial = [session.generate(**r).tokens for r in requests]
    results: dict[int, list] = {}
    failures: list[BaseException] = []
    cursor = iter(range(len(requests)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            try:
                if i % 2:
                    results[i] = session.generate(**requests[i]).tokens
                else:
                    events = list(session.stream(**requests[i]))
                    results[i] = [[int(e.tokens[0]) for e in events if e.emitted[0]]]
                rates = session.take_rates(0)
                assert set(rates) and all(0.0 <= r <= 1.0 for r in rates.values())
            except BaseException as exc:  # noqa: BLE001 - reported below, with the request
                failures.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in pool)
    assert not failures, failures[:3]
    assert [results[i] for i in range(len(requests))] == serial


# ---------------------------------------------------------------- help text of every option


def _parsers():
    for name, module_path in [*SUBCOMMANDS.items(), ("MODEL (main form)", MAIN_FORM)]:
        parser = OneLineArgumentParser(prog=f"mod-export {name}")
        importlib.import_module(module_path).register(parser)
        yield name, parser


def test_every_option_of_every_command_has_help_text():
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in _parsers()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert not missing, f"options without help text: {', '.join(missing)}"


def test_a_value_beginning_with_a_dash_is_the_option_s_value():
    from mod_export.cli.main import attach_dash_values

    parser = OneLineArgumentParser(prog="t")
    parser.add_argument("--prompt")
    parser.add_argument("--prompt-ids")
    parser.add_argument("--max-new-tokens")
    parser.add_argument("--force", action="store_true")
    assert attach_dash_values(parser, ["--prompt-ids", "-1,3"]) == ["--prompt-ids=-1,3"]
    assert attach_dash_values(parser, ["--prompt", "-- x", "--force"]) == ["--prompt=-- x", "--force"]
    assert attach_dash_values(parser, ["--prompt", "--force"]) == ["--prompt", "--force"]  # an option stays one
    assert attach_dash_values(parser, ["--prompt", "--max", "3"]) == ["--prompt", "--max", "3"]  # an abbreviation
    assert attach_dash_values(parser, ["--", "--prompt", "-x"]) == ["--", "--prompt", "-x"]


def test_library_colour_codes_never_reach_the_error_line(monkeypatch, capsys):
    import mod_export.cli.generate as generate_cli

    def broken(*args, **kwargs):
        raise ExportError("torch.onnx.export failed: see the \x1b[96m*torch.export*\x1b[0m component")

    monkeypatch.setattr(generate_cli, "Session", broken)
    assert main(["generate", "unused", "--prompt", "a"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: torch.onnx.export failed: see the *torch.export* component"
