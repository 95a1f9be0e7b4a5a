"""The bad-input matrix (docs/errors.md): every row is a command a careless or unlucky user may run, with the exit
code and the message fragment it must give, one `error:` line and no traceback, and the file system exactly as
it was (nothing written, nothing deleted, no temporary or lock file left). Rows run in-process through
`mod_export.cli.main.main` (one import of torch for all of them)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mod_export.cli.main import main
from tests.helpers import snapshot

OK_CONFIG_KEYS = ("vocab_size", "d_model", "n_heads", "n_layers", "d_mlp")


@dataclass
class Row:
    name: str
    argv: list[str]  # placeholders: {ckpt} a good checkpoint, {bad} the row's prepared file, {out} an output dir,
    #                  {dir} the good export, {tmp} the row's folder
    code: int
    fragment: str
    setup: Callable[[Path, dict], None] | None = None


# ---------------------------------------------------------------- builders of bad files


def payload(ctx) -> dict:
    return torch.load(ctx["ckpt"], weights_only=True)


def save_payload(ctx, mutate) -> Callable[[Path, dict], None]:
    def setup(tmp: Path, ctx_: dict) -> None:
        p = payload(ctx_)
        mutate(p)
        torch.save(p, tmp / "bad.pt")

    return setup


def config_change(**changes):
    def mutate(p):
        p["config"].update(changes)

    return save_payload(None, mutate)


def tensor_change(fn):
    def mutate(p):
        name = "blocks.0.attn.qkv.weight"
        p["state_dict"][name] = fn(p["state_dict"][name].clone())

    return save_payload(None, mutate)


def write_bytes(data: bytes, name: str = "bad.pt"):
    def setup(tmp: Path, ctx: dict) -> None:
        (tmp / name).write_bytes(data)

    return setup


def truncated(tmp: Path, ctx: dict) -> None:
    data = Path(ctx["ckpt"]).read_bytes()
    (tmp / "bad.pt").write_bytes(data[: len(data) // 2])


def not_torch_zip(tmp: Path, ctx: dict) -> None:
    with zipfile.ZipFile(tmp / "bad.pt", "w") as z:
        z.writestr("readme.txt", "hello")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mod_export_matrix_pickle_ran",))


def pickled_code(tmp: Path, ctx: dict) -> None:
    torch.save({"format": "mod_export/1", "config": {}, "state_dict": {}, "x": RunsCode()}, tmp / "bad.pt")


def flipped_bits(tmp: Path, ctx: dict) -> None:
    p = payload(ctx)
    t = p["state_dict"]["blocks.0.mlp.up.weight"]
    t.view(torch.int32)[0, 0] ^= 1 << 3  # one low mantissa bit: finite, plausible, different
    torch.save(p, tmp / "bad.pt")


def user_dir(tmp: Path, ctx: dict) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "thesis.tex").write_text("years of work\n")


def our_export_plus(extra: str):
    def setup(tmp: Path, ctx: dict) -> None:
        shutil.copytree(ctx["dir"], tmp / "out")
        (tmp / "out" / extra).write_text("mine\n")

    return setup


def our_export_with_symlink(tmp: Path, ctx: dict) -> None:
    shutil.copytree(ctx["dir"], tmp / "out")
    (tmp / "elsewhere.txt").write_text("precious\n")
    os.symlink(tmp / "elsewhere.txt", tmp / "out" / "link.txt")


def ckpt_inside_out(tmp: Path, ctx: dict) -> None:
    (tmp / "out").mkdir()
    shutil.copyfile(ctx["ckpt"], tmp / "out" / "bad.pt")


def existing_file(name: str, text: str = "keep me\n"):
    def setup(tmp: Path, ctx: dict) -> None:
        (tmp / name).write_text(text)

    return setup


def calib_file(text: str):
    return existing_file("calib.txt", text)


def empty_folder(tmp: Path, ctx: dict) -> None:
    (tmp / "calib").mkdir()


def export_copy(mutate: Callable[[Path], None] | None = None):
    def setup(tmp: Path, ctx: dict) -> None:
        shutil.copytree(ctx["dir"], tmp / "dir")
        if mutate:
            mutate(tmp / "dir")

    return setup


def older_generation_entry(d: Path) -> None:
    """The manifest's generation entry as mod-export wrote it before the step graph: a portable prefill/decode pair."""
    manifest = json.loads((d / "manifest.json").read_text())
    entry = manifest["generation"]
    entry.pop("step")
    entry.update(prefill="model.prefill.onnx", decode="model.decode.onnx")
    (d / "manifest.json").write_text(json.dumps(manifest))


def tamper(d: Path) -> None:
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))


def other_vocab_ckpt(tmp: Path, ctx: dict) -> None:
    from mod_export.models.checkpoint import save_checkpoint
    from mod_export.models.config import MoDConfig
    from mod_export.models.model import MoDTransformer

    save_checkpoint(
        MoDTransformer(MoDConfig(vocab_size=300, d_model=32, n_heads=2, n_layers=2, d_mlp=64)), tmp / "bad.pt"
    )


ONNX = ["--target", "onnx", "--out", "{out}"]
BAD = ["{bad}", *ONNX]
GOOD = ["{ckpt}", *ONNX]

ROWS = [
    # ---- checkpoints
    Row("checkpoint missing", ["{tmp}/missing.pt", *ONNX], 1, "not found"),
    Row(
        "checkpoint is a directory",
        ["{tmp}/sub", *ONNX],
        1,
        "folder without config.json",
        lambda t, c: (t / "sub").mkdir(),
    ),
    Row("checkpoint empty", BAD, 1, "not a PyTorch checkpoint", write_bytes(b"")),
    Row("checkpoint random bytes", BAD, 1, "not a PyTorch checkpoint", write_bytes(os.urandom(4096))),
    Row("checkpoint truncated", BAD, 1, "checkpoint", truncated),
    Row("checkpoint zip of something else", BAD, 1, "could not be read", not_torch_zip),
    Row("checkpoint with pickled code", BAD, 1, "--unsafe-load", pickled_code),
    Row("checkpoint wrong format tag", BAD, 1, "format tag", save_payload(None, lambda p: p.update(format="x/2"))),
    Row("checkpoint not a dict", BAD, 1, "expected a dict", lambda t, c: torch.save([1, 2], t / "bad.pt")),
    Row("checkpoint without config", BAD, 1, "'config'", save_payload(None, lambda p: p.pop("config"))),
    Row("checkpoint without state_dict", BAD, 1, "'state_dict'", save_payload(None, lambda p: p.pop("state_dict"))),
    Row("state_dict not a dict", BAD, 1, "dict of tensors", save_payload(None, lambda p: p.update(state_dict=[1]))),
    Row(
        "state_dict missing a key",
        BAD,
        1,
        "missing 1 key",
        save_payload(None, lambda p: p["state_dict"].pop("lm_head.weight")),
    ),
    Row(
        "state_dict extra key",
        BAD,
        1,
        "unexpected",
        save_payload(None, lambda p: p["state_dict"].update(x=torch.zeros(1))),
    ),
    Row("state_dict wrong shape", BAD, 1, "shape", tensor_change(lambda t: t[:-1])),
    Row("state_dict integer tensor", BAD, 1, "dtype", tensor_change(lambda t: t.long())),
    Row(
        "state_dict non-tensor",
        BAD,
        1,
        "not a tensor",
        save_payload(None, lambda p: p["state_dict"].update({"lm_head.weight": 3})),
    ),
    Row("weights with NaN", BAD, 1, "NaN", tensor_change(lambda t: t.index_fill_(0, torch.tensor([0]), float("nan")))),
    Row(
        "weights with Inf",
        BAD,
        1,
        "NaN or Inf",
        tensor_change(lambda t: t.index_fill_(0, torch.tensor([1]), float("inf"))),
    ),
    Row("flipped bits in a tensor", BAD, 1, "content hash", flipped_bits),
    # ---- configs inside checkpoints
    Row("config unknown key", BAD, 1, "unknown keys", config_change(colour="blue")),
    Row("config width not divisible by heads", BAD, 1, "divisible", config_change(d_model=130)),
    Row("config odd head width", BAD, 1, "even", config_change(d_model=12, n_heads=4)),
    Row("config negative width", BAD, 1, "positive integer", config_change(d_model=-128)),
    Row("config width as text", BAD, 1, "positive integer", config_change(d_model="128")),
    Row("config layers as bool", BAD, 1, "positive integer", config_change(n_layers=True)),
    Row("config rope_base negative", BAD, 1, "rope_base", config_change(rope_base=-1.0)),
    Row("config rope_base text", BAD, 1, "rope_base", config_change(rope_base="abc")),
    Row("config rope_base NaN", BAD, 1, "rope_base", config_change(rope_base=float("nan"))),
    Row("config layer_norm_eps negative", BAD, 1, "layer_norm_eps", config_change(layer_norm_eps=-1.0)),
    Row("config layer_norm_eps zero", BAD, 1, "layer_norm_eps", config_change(layer_norm_eps=0.0)),
    Row("config capacity float text", BAD, 1, "capacity", config_change(capacity="0.125")),
    Row("config capacity zero", BAD, 1, "capacity", config_change(capacity="0/8")),
    Row("config capacity above one", BAD, 1, "capacity", config_change(capacity="9/8")),
    Row("config capacity float", BAD, 1, "capacity", config_change(capacity=0.125)),
    Row("config unknown gate", BAD, 1, "gate", config_change(gate="relu")),
    Row("config routed layer out of range", BAD, 1, "routed_layers", config_change(routed_layers=[7])),
    Row("config routed layers repeated", BAD, 1, "duplicates", config_change(routed_layers=[1, 1])),
    Row("config routed layers as text", BAD, 1, "routed_layers", config_change(routed_layers="1,3")),
    Row("config too large for memory", BAD, 1, "GiB", config_change(d_model=65536, n_heads=256, d_mlp=262144)),
    Row("config aux weight negative", BAD, 1, "aux_loss_weight", config_change(aux_loss_weight=-1.0)),
    Row("config predictor flag as text", BAD, 1, "true or false", config_change(causal_predictor="yes")),
    Row("config not a mapping", BAD, 1, "mapping", save_payload(None, lambda p: p.update(config=[1]))),
    # ---- output directories
    Row("out is a file", [*GOOD[:-1], "{tmp}/file.txt"], 1, "not a directory", existing_file("file.txt")),
    Row("out holds user files", GOOD, 1, "not empty", user_dir),
    Row("force on user files", [*GOOD, "--force"], 1, "no mod-export manifest.json (first file: thesis.tex)", user_dir),
    Row(
        "force on an export plus a user file",
        [*GOOD, "--force"],
        1,
        "notes.txt, which its manifest does not list",
        our_export_plus("notes.txt"),
    ),
    Row("force on an export holding a symlink", [*GOOD, "--force"], 1, "not a plain file", our_export_with_symlink),
    Row(
        "out contains the checkpoint", ["{tmp}/out/bad.pt", *ONNX, "--force"], 1, "contains the input", ckpt_inside_out
    ),
    Row(
        "out is the checkpoint",
        ["{bad}", "--target", "onnx", "--out", "{bad}", "--force"],
        1,
        "contains the input",
        lambda t, c: shutil.copyfile(c["ckpt"], t / "bad.pt"),
    ),
    Row("out under /proc", [*GOOD[:-1], "/proc/mod-export-out"], 1, "output directory"),
    Row("out locked by another run", GOOD, 1, "another mod-export run", None),  # lock taken by the test itself
    # ---- option values
    Row("opset not a number", [*GOOD, "--opset", "abc"], 2, "--opset"),
    Row("opset too low", [*GOOD, "--opset", "17"], 1, "opset 17 is below"),
    Row("opset too high", [*GOOD, "--opset", "99"], 1, "opset 99 is above"),
    Row("atol NaN", [*GOOD, "--atol", "nan"], 2, "finite"),
    Row("atol negative", [*GOOD, "--atol", "-1"], 2, "positive"),
    Row("atol zero", [*GOOD, "--atol", "0"], 2, "positive"),
    Row("atol infinite", [*GOOD, "--atol", "inf"], 2, "finite"),
    Row("calib windows negative", [*GOOD, "--calib-windows", "-5"], 2, "positive integer"),
    Row("calib windows zero", [*GOOD, "--calib-windows", "0"], 2, "positive integer"),
    Row("routing guard above one", [*GOOD, "--routing-guard", "1.5"], 2, "between 0 and 1"),
    Row("min routing agreement NaN", [*GOOD, "--min-routing-agreement", "nan"], 2, "finite"),
    Row("workspace zero", [*GOOD, "--target", "trt", "--workspace-mb", "0"], 2, "positive integer"),
    Row("triton instances zero", [*GOOD, "--target", "triton", "--triton-instances", "0"], 2, "positive integer"),
    Row("triton instances text", [*GOOD, "--target", "triton", "--triton-instances", "two"], 2, "positive integer"),
    Row(
        "triton queue delay negative", [*GOOD, "--target", "triton", "--triton-queue-delay-us", "-1"], 2, "non-negative"
    ),
    Row(
        "triton queue delay fraction",
        [*GOOD, "--target", "triton", "--triton-queue-delay-us", "0.5"],
        2,
        "non-negative",
    ),
    Row("triton threads negative", [*GOOD, "--target", "triton", "--triton-threads", "-2"], 2, "non-negative"),
    Row("triton slots zero", [*GOOD, "--target", "triton", "--triton-slots", "0"], 2, "positive integer"),
    Row("triton context text", [*GOOD, "--target", "triton", "--triton-context", "long"], 2, "positive integer"),
    Row("unknown target", ["{ckpt}", "--target", "tflite", "--out", "{out}"], 2, "invalid choice"),
    Row("missing target", ["{ckpt}", "--out", "{out}"], 2, "--target"),
    Row("unknown option", [*GOOD, "--bogus"], 2, "unrecognized arguments"),
    Row("unknown precision", [*GOOD, "--precision", "fp8"], 2, "invalid choice"),
    Row("batch range zero", ["{ckpt}", "--target", "trt", "--out", "{out}", "--batch", "0:1:8"], 1, "MIN:OPT:MAX"),
    Row("seq range text", ["{ckpt}", "--target", "trt", "--out", "{out}", "--seq-len", "a:b:c"], 1, "MIN:OPT:MAX"),
    Row("no arguments at all", [], 2, ""),
    # ---- calibration data
    Row("calib data missing", [*GOOD, "--precision", "int8", "--calib-data", "{tmp}/none.txt"], 1, "not found"),
    Row(
        "calib data empty folder",
        [*GOOD, "--precision", "int8", "--calib-data", "{tmp}/calib"],
        1,
        "no files",
        empty_folder,
    ),
    Row(
        "calib data empty file",
        [*GOOD, "--precision", "int8", "--calib-data", "{tmp}/calib.txt"],
        1,
        "empty",
        calib_file(""),
    ),
    Row(
        "calib data too short",
        [*GOOD, "--precision", "int8", "--calib-data", "{tmp}/calib.txt"],
        1,
        "too short",
        calib_file("x = 1\n"),
    ),
    Row("calib cache is a directory", [*GOOD, "--precision", "int8", "--calib-cache", "{tmp}"], 1, "must be a file"),
    Row(
        "calib cache in a missing folder",
        [*GOOD, "--precision", "int8", "--calib-cache", "{tmp}/no/c.json"],
        1,
        "existing directory",
    ),
    Row(
        "calib cache garbage",
        [*GOOD, "--precision", "int8", "--calib-cache", "{tmp}/c.json", "--no-validate"],
        1,
        "calibration cache",
        existing_file("c.json", "{not json"),
    ),
    Row(
        "calib cache of another format",
        [*GOOD, "--precision", "int8", "--calib-cache", "{tmp}/c.json", "--no-validate"],
        1,
        "not a mod-export calibration cache",
        existing_file("c.json", json.dumps({"format": "other"})),
    ),
    Row("calib method unknown", [*GOOD, "--precision", "int8", "--calib-method", "kl"], 2, "invalid choice"),
    # ---- validate
    Row("validate missing dir", ["validate", "{ckpt}", "{tmp}/nope"], 1, "not a directory"),
    Row(
        "validate dir without models",
        ["validate", "{ckpt}", "{tmp}/empty"],
        1,
        "not found",
        lambda t, c: (t / "empty").mkdir(),
    ),
    Row(
        "validate dir without manifest",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "no manifest.json",
        export_copy(lambda d: (d / "manifest.json").unlink()),
    ),
    Row(
        "validate tampered model",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "does not match the sha256",
        export_copy(tamper),
    ),
    Row(
        "validate truncated model",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "does not match the sha256",
        export_copy(lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:1000])),
    ),
    Row(
        "validate truncated model, integrity skipped",
        ["validate", "{ckpt}", "{tmp}/dir", "--skip-integrity"],
        1,
        "not a readable ONNX file",
        export_copy(lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:1000])),
    ),
    Row(
        "validate garbage manifest",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "not readable JSON",
        export_copy(lambda d: (d / "manifest.json").write_text("{")),
    ),
    Row("validate model of another vocabulary", ["validate", "{bad}", "{dir}"], 1, "vocabulary", other_vocab_ckpt),
    Row(
        "validate report in a missing folder",
        ["validate", "{ckpt}", "{dir}", "--report", "{tmp}/nope/r.json"],
        1,
        "--report",
    ),
    Row("validate atol NaN", ["validate", "{ckpt}", "{dir}", "--atol", "nan"], 2, "finite"),
    Row("validate missing checkpoint", ["validate", "{tmp}/none.pt", "{dir}"], 1, "not found"),
    # ---- example
    Row(
        "example over an existing file",
        ["example", "--out", "{tmp}/model.pt"],
        1,
        "already exists",
        existing_file("model.pt", "hours of training\n"),
    ),
    Row("example into a directory", ["example", "--out", "{tmp}"], 1, "is a directory"),
    Row("example under /proc", ["example", "--out", "/proc/mod-export/model.pt"], 1, "cannot write"),
    Row("example zero steps", ["example", "--out", "{tmp}/m.pt", "--steps", "0"], 2, "positive integer"),
    Row("example negative seed", ["example", "--out", "{tmp}/m.pt", "--seed", "-1"], 2, "non-negative"),
    Row(
        "example float capacity", ["example", "--out", "{tmp}/m.pt", "--capacity", "0.5", "--steps", "1"], 1, "capacity"
    ),
    Row("example unknown gate", ["example", "--out", "{tmp}/m.pt", "--gate", "relu"], 2, "invalid choice"),
    # ---- bench
    Row("bench bad synthetic spec", ["bench", "synthetic:big"], 1, "synthetic:WIDTHxLAYERS"),
    Row("bench synthetic too large", ["bench", "synthetic:102400x2", "--no-profile"], 1, "GiB"),
    Row("bench float capacity", ["bench", "synthetic:64x2", "--capacities", "0.125"], 1, "capacity"),
    Row("bench zero length", ["bench", "synthetic:64x2", "--seq-lens", "0"], 1, "seq-lens"),
    Row("bench unknown backend", ["bench", "synthetic:64x2", "--backends", "tflite"], 1, "unknown backend"),
    Row(
        "bench out is a file",
        ["bench", "synthetic:64x2", "--out", "{tmp}/f.txt"],
        1,
        "not a directory",
        existing_file("f.txt"),
    ),
    Row("bench zero repeats", ["bench", "synthetic:64x2", "--repeats", "0"], 2, "positive integer"),
    Row("bench missing checkpoint", ["bench", "{tmp}/none.pt", "--seq-lens", "16"], 1, "not found"),
    # ---- generate
    Row("generate negative temperature", ["generate", "{dir}", "--prompt", "a", "--temperature", "-1"], 2, ">= 0"),
    Row("generate top-p zero", ["generate", "{dir}", "--prompt", "a", "--top-p", "0"], 2, "(0, 1]"),
    Row("generate top-p above one", ["generate", "{dir}", "--prompt", "a", "--top-p", "1.5"], 2, "between 0 and 1"),
    Row("generate zero new tokens", ["generate", "{dir}", "--prompt", "a", "--max-new-tokens", "0"], 2, "positive"),
    Row("generate text and ids", ["generate", "{dir}", "--prompt", "a", "--prompt-ids", "1"], 2, "not allowed with"),
    Row("generate bad ids", ["generate", "{dir}", "--prompt-ids", "1,b"], 1, "comma-separated integers"),
    Row("generate id beyond vocabulary", ["generate", "{dir}", "--prompt-ids", "1,256"], 1, "token ids in [0, 256)"),
    Row(
        "generate past the max context",
        ["generate", "{dir}", "--prompt", "a", "--max-new-tokens", "5000"],
        1,
        "max context of 4096",
    ),
    Row("generate missing directory", ["generate", "{tmp}/none", "--prompt", "a"], 1, "not found"),
    Row(
        "generate with the step graph missing",
        ["generate", "{tmp}/dir", "--prompt", "a"],
        1,
        "missing",
        export_copy(lambda d: (d / "model.step.onnx").unlink()),
    ),
    Row(
        "generate on an export from before the step graph",
        ["generate", "{tmp}/dir", "--prompt", "a"],
        1,
        "re-export it",
        export_copy(older_generation_entry),
    ),
    # ---- build-plugins
    Row(
        "build-plugins headers missing",
        ["build-plugins", "--tensorrt-include", "{tmp}", "--build-dir", "{tmp}/b"],
        4,
        "NvInferRuntime.h",
    ),
    Row("build-plugins zero jobs", ["build-plugins", "--jobs", "0"], 2, "positive integer"),
]


def placeholders(context: dict, tmp_path: Path, **more: str) -> dict[str, str]:
    """What a row's argv may name: {ckpt}, {dir} (the shared export), {tmp}, {out}, {bad}, and `more`."""
    return {
        "ckpt": context["ckpt"],
        "dir": context["dir"],
        "tmp": str(tmp_path),
        "out": str(tmp_path / "out"),
        "bad": str(tmp_path / "bad.pt"),
        **more,
    }


@pytest.fixture(scope="module")
def context(trained, exported):
    return {"ckpt": str(trained[2]), "dir": str(exported[1])}


def test_the_matrix_is_large_enough():
    assert len(ROWS) + len(SESSION_ROWS) >= 80


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_bad_input(row: Row, context, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOD_EXPORT_PLUGIN_LIBRARY", str(tmp_path / "no-plugin-library.so"))
    if row.setup is not None:
        row.setup(tmp_path, context)
    argv = [a.format(**placeholders(context, tmp_path)) for a in row.argv]
    before, export_before = snapshot(tmp_path), snapshot(Path(context["dir"]))
    lock = None
    if row.name == "out locked by another run":
        lock = os.open(tmp_path / ".out.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = snapshot(tmp_path)
    try:
        code = main(argv)
    finally:
        if lock is not None:
            os.close(lock)
    err = capsys.readouterr().err
    assert code == row.code, (code, err[-2000:])
    assert "Traceback" not in err
    if row.argv:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and row.fragment in errors[0], err[-2000:]
        assert err.rstrip().endswith(errors[0]), "the error line is the last thing printed"
    assert snapshot(tmp_path) == before, "nothing may be written, moved or deleted"
    assert snapshot(Path(context["dir"])) == export_before
    assert not Path("/tmp/mod_export_matrix_pickle_ran").exists(), "pickled code ran"


# ---------------------------------------------------------------- Session inputs


def _session_rows():
    import numpy as np

    ids = np.zeros((1, 5), np.int64)
    return [
        ("float ids", lambda s: s.run(ids.astype(np.float32)), "integer token ids"),
        ("negative id", lambda s: s.run(ids - 1), "token ids in [0, 256)"),
        ("id beyond vocabulary", lambda s: s.run(ids + 256), "token ids in [0, 256)"),
        ("NaN ids", lambda s: s.run(np.full((1, 5), np.nan)), "integer token ids"),
        ("1-D ids", lambda s: s.run(ids[0]), "[batch, seq]"),
        ("empty batch", lambda s: s.run(np.zeros((0, 5), np.int64)), "[batch, seq]"),
        ("empty sequence", lambda s: s.run(np.zeros((1, 0), np.int64)), "[batch, seq]"),
        ("mask of another shape", lambda s: s.run(ids, np.ones((1, 4), np.int64)), "differs"),
        ("mask holding 2", lambda s: s.run(ids, np.full((1, 5), 2)), "only 0 (padding) and 1"),
        ("float mask", lambda s: s.run(ids, np.ones((1, 5), np.float32)), "as integers or booleans"),
        ("torch float ids", lambda s: s.run(torch.zeros(1, 5)), "integer token ids"),
        ("torch ids beyond vocabulary", lambda s: s.run(torch.full((1, 5), 999)), "token ids in [0, 256)"),
        ("routing of a form", lambda s: s.run_with_routing(ids - 1), "token ids"),
    ]


SESSION_ROWS = _session_rows()


@pytest.mark.parametrize("row", SESSION_ROWS, ids=[r[0] for r in SESSION_ROWS])
def test_session_refuses_bad_input_with_one_clear_error(row, exported):
    from mod_export.errors import InputError
    from mod_export.runtime import Session

    _, call, fragment = row
    session = Session(exported[1])
    with pytest.raises(InputError, match=None) as info:
        call(session)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_session_refuses_unknown_forms_backends_and_damaged_files(exported, tmp_path):
    from mod_export.errors import IntegrityError, ModExportError
    from mod_export.runtime import Session

    with pytest.raises(ModExportError, match="form must be one of"):
        Session(exported[1], form="no-such-form")
    with pytest.raises(ModExportError, match="backend must be one of"):
        Session(exported[1], backend="tflite")
    with pytest.raises(ModExportError, match="not found"):
        Session(tmp_path / "nothing")
    damaged = tmp_path / "damaged"
    shutil.copytree(exported[1], damaged)
    tamper(damaged)
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        Session(damaged)
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        Session(damaged / "model.onnx")
    Session(damaged, form="plugin")  # the plugin form's file is intact
    (damaged / "manifest.json").unlink()
    with pytest.raises(IntegrityError, match="no manifest.json"):
        Session(damaged)
    with pytest.raises(ModExportError, match="ONNX Runtime cannot load|not a readable ONNX file"):  # one clear error
        Session(damaged, skip_integrity=True)
    weights = bytearray((damaged / "model.onnx.data").read_bytes())
    weights[len(weights) // 2] ^= 0x01  # weights edited on purpose, graph intact
    shutil.copyfile(exported[1] / "model.onnx", damaged / "model.onnx")
    (damaged / "model.onnx.data").write_bytes(bytes(weights))
    assert Session(damaged, skip_integrity=True).run([[1, 2, 3]]).shape == (1, 3, 256)
